"""What a search leaves: tune.json (``TuneResult``), the table (screen and tune.md), the Pareto plot and
the chosen configuration as a config file that ``edge-export build --config`` takes."""

from __future__ import annotations

from pathlib import Path

from edge_export.core.atomic import atomic_path, write_json, write_text
from edge_export.core.config import Config
from edge_export.core.echo import Echo
from edge_export.core.formatting import markdown_table, number, percent, size_text
from edge_export.core.records.tune import DONE, CandidateRecord, TuneResult
from edge_export.core.run_folder import TuneFolder
from edge_export.tuning.space import candidate_config, pareto

HEADER = [
    "candidate",
    "status",
    "val acc (artifact)",
    "val acc (Keras)",
    "p50 ms",
    "p90 ms",
    "min ms",
    "x ref",
    "size",
    "robustness",
    "seconds",
    "why",
]


def rows(result: TuneResult) -> list[list[str]]:
    out = [HEADER]
    order = sorted(
        result.candidates, key=lambda r: (r.status != DONE, r.latency_ms if r.latency_ms is not None else 1e18, r.key)
    )
    for r in order:
        mark = " *" if r.key == result.chosen else ""
        out.append(
            [
                r.key + mark,
                r.status,
                percent(r.val_accuracy, ""),
                percent(r.keras_val_accuracy, ""),
                number(r.p50_ms, missing=""),
                number(r.p90_ms, missing=""),
                number(r.min_ms, missing=""),
                "" if r.latency_ratio is None else f"{r.latency_ratio:.2f}x",
                size_text(r.size_bytes, ""),
                percent(r.robustness_accuracy, ""),
                f"{sum(r.seconds.values()):.0f}" if r.seconds else "",
                "; ".join(r.reasons)[:120],
            ]
        )
    return out


def frontier_rows(result: TuneResult) -> list[list[str]]:
    """Backbone x size: its latency (or ratio to the reference) and the best validation accuracy its trained
    models reached, undistilled and distilled, over depths (the Keras model's: every trained model has one, quantized
    or not, so the two columns compare like with like); empty where nothing was trained."""
    ratio = any(r.latency_ratio is not None for r in result.candidates)
    distilled = any(r.distilled for r in result.candidates)
    header = ["backbone", "size", "x ref" if ratio else "latency ms", "val acc (Keras)"]
    out = [header + (["distilled (Keras)"] if distilled else [])]
    for backbone, size in sorted({(r.backbone, r.image_size) for r in result.candidates}):
        mine = [r for r in result.candidates if (r.backbone, r.image_size) == (backbone, size)]
        speeds = [v for v in (r.latency_ratio if ratio else r.latency_ms for r in mine) if v is not None]
        shown = "" if not speeds else (f"{min(speeds):.2f}x" if ratio else f"{min(speeds):.2f}")
        out.append([backbone, str(size), shown, _best(mine, False)] + ([_best(mine, True)] if distilled else []))
    return out


def _best(records: list[CandidateRecord], distilled: bool) -> str:
    """The best Keras validation accuracy of ``records`` (distilled or not), with the depth that reached it."""
    trained = [r for r in records if r.distilled == distilled and r.keras_val_accuracy is not None]
    if not trained:
        return ""
    best = max(trained, key=lambda r: (r.keras_val_accuracy or 0.0, -r.fine_tune_blocks))
    return f"{percent(best.keras_val_accuracy, '')} (ft{best.fine_tune_blocks})"


def render(result: TuneResult, limit: int | None = 40) -> str:
    """The table on screen: evaluated candidates first, fastest first; then the choice and where the time went."""
    table = rows(result)
    shown = table if limit is None or len(table) <= limit + 1 else table[: limit + 1]
    widths = [max(len(row[i]) for row in shown) for i in range(len(HEADER) - 1)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row[:-1], widths)) for row in shown]
    if len(shown) < len(table):
        lines.append(f"... and {len(table) - len(shown)} more in tune.json / tune.md")
    lines.append(f"chosen: {result.chosen or 'none'} - {result.why}")
    lines.append(f"binding constraint(s): {', '.join(result.binding) or 'none'}")
    lines.append("time (s): " + ", ".join(f"{k} {v:.0f}" for k, v in result.seconds.items()))
    if result.chosen_config:
        lines.append(f"chosen config: {result.chosen_config}  (edge-export build --config it)")
    return "\n".join(lines)


def write_chosen_config(path: Path, config: Config, chosen: CandidateRecord, teacher: str | None = None) -> Path:
    """The chosen candidate's build config: the search's settings with its backbone, size, depth and format
    (and ``teacher``, the run folder a distilled candidate learnt from)."""
    c = candidate_config(
        config,
        chosen.backbone,
        chosen.image_size,
        chosen.fine_tune_blocks,
        [chosen.precision],
        teacher=teacher if chosen.distilled else None,
    )
    c.build.stages = ["train", "export", "bench"]
    head = (
        f"# edge-export tune: the chosen candidate {chosen.key} (validation accuracy "
        f"{percent(chosen.val_accuracy)}, {config.tune.latency_statistic} {number(chosen.latency_ms)} ms "
        f"on {config.tune.device})\n"
        "# edge-export build --config THIS_FILE --out RUN_DIR\n"
    )
    return write_text(path, head + c.to_yaml())


def plot_pareto(result: TuneResult, path: Path) -> Path | None:
    """Validation accuracy vs device latency of the evaluated candidates; the frontier joined, the chosen marked."""
    # (candidate, latency, validation accuracy) of each evaluated candidate
    done = [
        (r, r.latency_ms, r.val_accuracy)
        for r in result.candidates
        if r.status == DONE and r.val_accuracy is not None and r.latency_ms is not None
    ]
    if not done:
        return None
    # lazy: matplotlib (the [train] extra) only when a plot is drawn; write_outputs goes on without it
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure  # lazy: as above

    fig = Figure(figsize=(8, 5.5))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    for precision, marker in (("int8", "o"), ("fp16", "s"), ("fp32", "^")):
        pts = [(latency, accuracy) for r, latency, accuracy in done if r.precision == precision]
        if pts:
            ax.scatter(
                [latency for latency, _ in pts],
                [100 * accuracy for _, accuracy in pts],
                marker=marker,
                label=precision,
                alpha=0.8,
            )
    heads = [
        (r.latency_ms, r.keras_val_accuracy)
        for r in result.candidates
        if r.status != DONE and r.keras_val_accuracy is not None and r.latency_ms is not None
    ]
    if heads:
        ax.scatter(
            [latency for latency, _ in heads],
            [100 * accuracy for _, accuracy in heads],
            marker=".",
            color="grey",
            label="not quantized (Keras accuracy)",
            alpha=0.6,
        )
    points = [(latency, accuracy) for _, latency, accuracy in done]
    front = sorted((points[i] for i in pareto(points)), key=lambda point: point[0])
    ax.plot(
        [latency for latency, _ in front],
        [100 * accuracy for _, accuracy in front],
        color="tab:green",
        lw=1,
        label="frontier",
    )
    for r, latency, accuracy in done:
        ax.annotate(
            f"{r.backbone} {r.image_size} ft{r.fine_tune_blocks}" + (" kd" if r.distilled else ""),
            (latency, 100 * accuracy),
            fontsize=6,
            xytext=(3, 3),
            textcoords="offset points",
        )
    chosen = result.candidate(result.chosen)
    if chosen is not None and chosen.latency_ms is not None and chosen.val_accuracy is not None:  # (always: evaluated)
        ax.scatter(
            [chosen.latency_ms],
            [100 * chosen.val_accuracy],
            s=250,
            facecolors="none",
            edgecolors="red",
            lw=2,
            label=f"chosen: {chosen.key}",
        )
    limit = result.constraints.get("max_latency_ms")
    if limit:
        ax.axvline(limit, color="red", ls="--", lw=1, label=f"max latency {limit:g} ms")
    floor = result.constraints.get("min_accuracy")
    if floor is not None:
        ax.axhline(100 * floor, color="purple", ls=":", lw=1, label=f"min accuracy {floor:.2%}")
    stat = result.space.get("latency_statistic", "p50")
    ax.set_xlabel(f"{stat} latency at 1 thread on {result.device} (ms, random-weight model)")
    ax.set_ylabel("validation accuracy (%)")
    ax.set_title("edge-export tune: validation accuracy vs device latency")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100)
    return path


def write_outputs(folder: TuneFolder, result: TuneResult, config: Config, echo: Echo) -> None:
    chosen = result.candidate(result.chosen)
    if chosen is not None:
        write_chosen_config(folder.chosen_config, config, chosen, result.space.get("distill_teacher"))
        result.chosen_config = TuneFolder.CHOSEN_CONFIG
    elif folder.chosen_config.is_file():
        folder.chosen_config.unlink()  # a config of an earlier search's choice is not this one's
    try:
        plotted = plot_pareto(result, folder.plot)
    except ImportError:  # matplotlib is part of [train]; the numbers stand without the picture
        plotted = None
    if plotted is None:
        folder.plot.unlink(missing_ok=True)  # an earlier search's plot is not this one's
    md = [
        "# edge-export tune\n",
        markdown_table(rows(result)),
        "",
        f"**chosen**: {result.chosen or 'none'} - {result.why}",
        "",
        f"**binding constraint(s)**: {', '.join(result.binding) or 'none'}",
        "",
        "**time (s)**: " + ", ".join(f"{k} {v:.0f}" for k, v in result.seconds.items()),
        "",
    ]
    if folder.plot.is_file():
        md += [f"![Pareto]({TuneFolder.PLOT})", ""]
    md += [
        "## Backbone x size",
        "",
        "The best validation accuracy each reached (the Keras model's; ftN: the fine-tuned blocks that reached it; "
        "the quantized artifacts' are in the table above):",
        "",
        markdown_table(frontier_rows(result)),
        "",
    ]
    md += [f"- {n}" for n in result.notes]
    write_text(folder.table, "\n".join(md) + "\n")
    write_json(folder.result, result.to_dict())  # last
    echo(render(result))
