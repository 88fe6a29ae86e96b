"""Learning-curve plot (PNG) from the stages' histories."""

from __future__ import annotations

from pathlib import Path

from edge_export.core.atomic import atomic_path


def plot_learning_curves(stages: list, path: Path) -> None:
    import matplotlib  # lazy: matplotlib (the train extra, a second to import); only the curves plot needs it

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # lazy: after matplotlib.use("Agg") above: no display backend

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    offset = 0
    for stage in stages:
        h = stage.history
        epochs = range(offset + 1, offset + 1 + len(h.get("loss", [])))
        for ax, metric in zip(axes, ("accuracy", "loss")):
            ax.plot(epochs, h.get(metric, []), marker=".", label=f"train ({stage.name})")
            ax.plot(epochs, h.get(f"val_{metric}", []), marker=".", label=f"validation ({stage.name})")
        offset += len(h.get("loss", []))
        for ax in axes:
            ax.axvline(offset + 0.5, color="grey", linewidth=0.5)
    for ax, metric in zip(axes, ("accuracy", "loss")):
        ax.set_xlabel("epoch")
        ax.set_title(metric)
        ax.legend(fontsize=7)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100)
    plt.close(fig)
