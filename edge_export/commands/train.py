"""``edge-export train``: two-stage transfer learning into a run folder (wraps ``edge_export.api.train``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from edge_export import api
from edge_export.api import TRAIN_FLAGS
from edge_export.commands.options import setting_options


@click.command()
@click.option("--out", "out", type=click.Path(path_type=Path), help="Run folder [runs/train-<time>].")
@click.option("--config", "config_path", type=click.Path(path_type=Path), help="YAML config file.")
@setting_options(TRAIN_FLAGS)
@click.argument("overrides", nargs=-1)
def train(out: Path | None, config_path: Path | None, overrides: tuple[str, ...], **flags: Any) -> None:
    """Train a classifier by transfer learning. OVERRIDES are key=value, e.g. train.fine_tune.epochs=5."""
    api.quiet_logging(False)
    with api.cli_spelling():
        result = api.train(config_path, out=out, overrides=list(overrides), echo=click.echo, **flags)
    metrics = result.metrics
    click.echo(f"validation accuracy {metrics['validation']['accuracy']:.4f}  loss {metrics['validation']['loss']:.4f}")
    if "test" in metrics:
        click.echo(f"test accuracy {metrics['test']['accuracy']:.4f}")
    if metrics.get("training", {}).get("chief", True):
        click.echo(f"total {metrics['timing_seconds']['total']:.0f}s  ->  {result.run.model}")
    else:  # a multi_worker worker: its run folder was scratch, removed
        click.echo(
            f"total {metrics['timing_seconds']['total']:.0f}s  "
            "(trained with the chief; only the chief writes the run folder)"
        )
