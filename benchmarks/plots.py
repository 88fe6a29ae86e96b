"""PNG plots of a benchmark report: accuracy vs latency (marker area ~ model size), confusion matrices.

matplotlib's object API on the Agg canvas (no pyplot state, no display needed); files written atomically.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from edge_export.atomic import atomic_path
from edge_export.benchmarks.report import size_text

FORMAT_COLORS = {"tflite": "tab:blue", "onnx": "tab:orange", "keras": "tab:green"}


def _figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height))
    FigureCanvasAgg(fig)
    return fig


def _save(fig, path: Path) -> Path:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100)
    return path


def plot_accuracy_latency(report: dict[str, Any], path: Path) -> Path:
    """Accuracy (y) against p50 latency at the first thread count (x); marker area proportional to size."""
    measured = [a for a in report["artifacts"] if a["status"] == "ok" and a.get("latency_ms")]
    fig = _figure(8, 5)
    ax = fig.add_subplot(1, 1, 1)
    sizes = np.array([a.get("size_bytes") or 0 for a in measured], dtype=np.float64)
    biggest = sizes.max() if len(sizes) and sizes.max() > 0 else 1.0
    rank = {id(a): r for r, a in enumerate(sorted(measured, key=lambda a: a["latency_ms"]["p50"]))}
    for a, size in zip(measured, sizes):
        x, y = a["latency_ms"]["p50"], a["accuracy"] * 100
        area = 30 + 1500 * size / biggest
        ax.scatter([x], [y], s=area, alpha=0.55, color=FORMAT_COLORS.get(a["format"], "tab:gray"), edgecolors="black", linewidths=0.5)
        # beside the marker; above/below alternating along the x axis so neighbours' labels do not collide
        radius = area**0.5 / 2
        offset = (radius * 0.7 + 3, radius * 0.7 + 2) if rank[id(a)] % 2 == 0 else (radius * 0.7 + 3, -radius * 0.7 - 22)
        ax.annotate(f"{a['name']}\n{size_text(int(size))}", (x, y), textcoords="offset points", xytext=offset, fontsize=8)
    latencies = [a["latency_ms"]["p50"] for a in measured]
    if latencies and min(latencies) > 0 and max(latencies) / min(latencies) > 20:
        ax.set_xscale("log")
    threads = report["settings"]["threads_used"][0]
    ax.set_xlabel(f"p50 latency, one image, {threads} thread(s) (ms)")
    ax.set_ylabel("accuracy (%)")
    ax.set_title("accuracy vs latency (marker area ~ model size)")
    for fmt, color in FORMAT_COLORS.items():
        if any(a["format"] == fmt for a in measured):
            ax.scatter([], [], color=color, label=fmt, s=40)
    if measured:
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))  # outside: never over a label
        ax.margins(x=0.25, y=0.25)
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    return _save(fig, path)


def plot_confusions(report: dict[str, Any], path: Path) -> Path:
    """One panel per measured model: row-normalized colours, counts written in the cells."""
    measured = [a for a in report["artifacts"] if a["status"] == "ok" and a.get("confusion")]
    n = max(1, len(measured))
    cols = min(n, 3)
    rows = (n + cols - 1) // cols
    k = max((len(a["confusion"]["columns"]) for a in measured), default=2)
    cell = 0.45 if k > 6 else 1.0
    width = max(3.6, 1.6 + cell * k) * cols
    height = max(3.2, 1.4 + cell * k) * rows
    fig = _figure(width, height)
    for i, a in enumerate(measured):
        ax = fig.add_subplot(rows, cols, i + 1)
        conf = a["confusion"]
        matrix = np.asarray(conf["matrix"], dtype=np.float64)
        totals = matrix.sum(axis=1, keepdims=True)
        norm = np.divide(matrix, totals, out=np.zeros_like(matrix), where=totals > 0)
        ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
        if matrix.size <= 144:
            for (r, c), v in np.ndenumerate(matrix):
                ax.text(c, r, f"{int(v)}", ha="center", va="center", fontsize=8, color="white" if norm[r, c] > 0.6 else "black")
        if len(conf["columns"]) <= 20:
            ax.set_xticks(range(len(conf["columns"])), conf["columns"], rotation=45, ha="right", fontsize=7)
            ax.set_yticks(range(len(conf["rows"])), conf["rows"], fontsize=7)
        ax.set_xlabel("predicted", fontsize=8)
        ax.set_ylabel("true", fontsize=8)
        ax.set_title(f"{a['name']} ({a['accuracy']:.1%})", fontsize=9)
    if not measured:
        fig.text(0.5, 0.5, "no model measured", ha="center")
    fig.tight_layout()
    return _save(fig, path)
