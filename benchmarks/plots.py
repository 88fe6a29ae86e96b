"""PNG plots of a benchmark report: accuracy vs latency (marker area ~ model size), confusion matrices.

matplotlib's object API on the Agg canvas (no pyplot state, no display needed); files written atomically.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from edge_export.benchmarks.render import CONFUSION_MAX_CLASSES  # beyond it no matrix is drawn
from edge_export.core.atomic import atomic_path
from edge_export.core.formatting import size_text
from edge_export.core.records.bench import BenchResult
from edge_export.core.untrusted import printable

FORMAT_COLORS = {"tflite": "tab:blue", "onnx": "tab:orange", "keras": "tab:green"}


def _figure(width: float, height: float):
    # lazy: matplotlib (the train extra, a second to import); only a plot needs it
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure  # lazy: matplotlib (the train extra, a second to import); only a plot needs it

    fig = Figure(figsize=(width, height))
    FigureCanvasAgg(fig)
    return fig


def _save(fig, path: Path) -> Path:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100)
    return path


def _overlapping(points: list[tuple[float, float]], fraction: float = 0.04) -> list[list[int]]:
    """Indices of points grouped when they lie within ``fraction`` of the data range of each other."""
    if not points:
        return []
    xs, ys = np.array([p[0] for p in points]), np.array([p[1] for p in points])
    dx, dy = max(np.ptp(xs), 1e-9) * fraction, max(np.ptp(ys), 1e-9) * fraction
    groups: list[list[int]] = []
    for i, (x, y) in enumerate(points):
        for group in groups:
            gx, gy = points[group[0]]
            if abs(x - gx) <= dx and abs(y - gy) <= dy:
                group.append(i)
                break
        else:
            groups.append([i])
    return groups


def plot_accuracy_latency(result: BenchResult, path: Path) -> Path:
    """Accuracy (y) against p50 latency at the first thread count (x); marker area proportional to size."""
    measured = [r for r in result.rows if r.ok and r.p50_ms is not None]
    latencies = [r.p50_ms for r in measured if r.p50_ms is not None]  # one per measured row
    fig = _figure(8, 5)
    ax = fig.add_subplot(1, 1, 1)
    sizes = np.array([r.size_bytes or 0 for r in measured], dtype=np.float64)
    biggest = sizes.max() if len(sizes) and sizes.max() > 0 else 1.0
    points = [(x, (r.accuracy or 0.0) * 100) for r, x in zip(measured, latencies)]
    for r, size, (x, y) in zip(measured, sizes, points):
        area = 30 + 1500 * size / biggest
        ax.scatter(
            [x],
            [y],
            s=area,
            alpha=0.55,
            color=FORMAT_COLORS.get(r.format, "tab:gray"),
            edgecolors="black",
            linewidths=0.5,
        )
    if latencies and min(latencies) > 0 and max(latencies) / min(latencies) > 20:
        ax.set_xscale("log")
    threads = result.settings["threads_used"][0]
    ax.set_xlabel(f"p50 latency, one image, {threads} thread(s) (ms)")
    ax.set_ylabel("accuracy (%)")
    ax.set_title("accuracy vs latency (marker area ~ model size)")
    for fmt, color in FORMAT_COLORS.items():
        if any(r.format == fmt for r in measured):
            ax.scatter([], [], color=color, label=fmt, s=40)
    if measured:
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))  # outside: never over a label
        ax.margins(x=0.25, y=0.25)
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    # One label per group of markers that sit on top of each other (e.g. float32 TFLite and ONNX), beside
    # the group's largest marker: above it, or below where that would cover a label already placed.
    fig.canvas.draw()  # final limits and layout, so label boxes can be compared
    renderer = fig.canvas.get_renderer()
    placed: list[Any] = []
    for group in sorted(_overlapping(points), key=lambda g: points[g[0]][0]):
        lead = max(group, key=lambda i: sizes[i])
        radius = (30 + 1500 * sizes[lead] / biggest) ** 0.5 / 2
        lines = [f"{measured[i].id} {size_text(int(sizes[i]))}" for i in group]
        right_edge = ax.get_window_extent(renderer).x1
        for dy in (radius * 0.7 + 2, -radius * 0.7 - 11 * len(lines)):
            dx = radius * 0.7 + 3
            label = ax.annotate("\n".join(lines), points[lead], textcoords="offset points", xytext=(dx, dy), fontsize=8)
            box = label.get_window_extent(renderer)
            if box.x1 > right_edge:  # a long label near the right edge: put it left of the marker
                label.remove()
                label = ax.annotate(
                    "\n".join(lines), points[lead], textcoords="offset points", xytext=(-dx, dy), fontsize=8, ha="right"
                )
                box = label.get_window_extent(renderer)
            if not any(box.overlaps(other) for other in placed) or dy < 0:
                placed.append(box)
                break
            label.remove()
    return _save(fig, path)


def _short(name: str, limit: int = 18) -> str:
    name = printable(name, 200)
    return name if len(name) <= limit else name[: limit - 1] + "…"


def plot_confusions(result: BenchResult, path: Path, names: list[str] | None = None) -> Path | None:
    """One panel per measured model (or those named): row-normalized colours, class names on both axes,
    counts in the cells up to 20 classes. None (nothing written) when no model has at most
    ``CONFUSION_MAX_CLASSES`` classes: such a matrix is unreadable, the tables say it instead."""
    measured = [
        (r, r.confusion)
        for r in result.rows
        if r.ok
        and r.confusion
        and (names is None or r.name in names)
        and len(r.confusion["rows"]) <= CONFUSION_MAX_CLASSES
    ]
    if not measured:
        if path.exists():
            path.unlink()  # a stale plot of an earlier benchmark would be taken for this one's
        return None
    n = len(measured)
    k = max(len(conf["columns"]) for _, conf in measured)
    cols = min(n, 3 if k <= 12 else 2)
    rows = (n + cols - 1) // cols
    cell = 1.0 if k <= 6 else 0.45 if k <= 12 else 0.3 if k <= 24 else 0.22
    label_room = 1.6 if k <= 6 else 2.4
    width = max(3.6, label_room + cell * k) * cols
    height = max(3.2, label_room + cell * k) * rows
    fontsize = 7 if k <= 24 else 6
    fig = _figure(width, height)
    for i, (row, conf) in enumerate(measured):
        ax = fig.add_subplot(rows, cols, i + 1)
        matrix = np.asarray(conf["matrix"], dtype=np.float64)
        totals = matrix.sum(axis=1, keepdims=True)
        norm = np.divide(matrix, totals, out=np.zeros_like(matrix), where=totals > 0)
        ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
        if len(conf["rows"]) <= 20:
            for (r, c), v in np.ndenumerate(matrix):
                ax.text(
                    c,
                    r,
                    f"{int(v)}",
                    ha="center",
                    va="center",
                    fontsize=fontsize + 1,
                    color="white" if norm[r, c] > 0.6 else "black",
                )
        ax.set_xticks(
            range(len(conf["columns"])),
            [_short(c) for c in conf["columns"]],
            rotation=60,
            ha="right",
            fontsize=fontsize,
        )
        ax.set_yticks(range(len(conf["rows"])), [_short(c) for c in conf["rows"]], fontsize=fontsize)
        ax.set_xlabel("predicted", fontsize=8)
        ax.set_ylabel("true", fontsize=8)
        ax.set_title(f"{row.id} ({row.accuracy or 0.0:.1%})", fontsize=9)
    fig.tight_layout()
    return _save(fig, path)
