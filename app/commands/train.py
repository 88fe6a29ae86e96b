"""``edge-export train``: two-stage transfer learning into a run folder."""

from __future__ import annotations

import logging
from pathlib import Path

import click

from edge_export.commands.out_folder import check_out_folder
from edge_export.core.config import load_config, parse_overrides
from edge_export.core.run_folder import RunFolder
from edge_export.core.tf_env import require_tensorflow

FLAG_KEYS = {
    "data": "data.path",
    "backbone": "model.backbone",
    "image_size": "model.image_size",
    "weights": "model.weights",
    "seed": "train.seed",
    "batch_size": "train.batch_size",
    "feature_mode": "train.feature_extraction.mode",
    "fine_tune": "train.fine_tune.enabled",
    "validation_split": "data.validation_split",
}


@click.command()
@click.option("--data", help="Dataset folder (train/, validation/, test/) or a known name [cats_vs_dogs].")
@click.option("--out", "out", type=click.Path(path_type=Path), help="Run folder [runs/train-<time>].")
@click.option("--config", "config_path", type=click.Path(path_type=Path), help="YAML config file.")
@click.option("--backbone", help="Backbone name (see `edge-export backbones`).")
@click.option("--image-size", type=int, help="Input size in pixels (square).")
@click.option("--weights", help="imagenet, none, or a weights file.")
@click.option("--seed", type=int)
@click.option("--batch-size", type=int)
@click.option("--feature-mode", type=click.Choice(["cached", "augmented"]), help="Stage 1: cached features or augmentation.")
@click.option("--fine-tune/--no-fine-tune", default=None, help="Run stage 2 (fine-tuning).")
@click.option("--validation-split", type=float, help="Fraction of train/ held out when there is no validation/.")
@click.argument("overrides", nargs=-1)
def train(out: Path | None, config_path: Path | None, overrides: tuple[str, ...], **flags) -> None:
    """Train a classifier by transfer learning. OVERRIDES are key=value, e.g. train.fine_tune.epochs=5."""
    merged = parse_overrides(list(overrides))
    merged.update({FLAG_KEYS[k]: v for k, v in flags.items() if v is not None})
    config = load_config(config_path, merged)
    run = RunFolder(out) if out else RunFolder.new_default()
    check_out_folder(run.root)
    require_tensorflow("train")
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    from edge_export.trainer.run import prepare_dataset, train_run

    dataset = prepare_dataset(config)
    click.echo(f"dataset: {dataset.root}")
    click.echo(dataset.counts_table())
    click.echo(f"run folder: {run.root}")
    from edge_export.core.run_lock import locked_run

    with locked_run(run):
        metrics = train_run(config, run, dataset)
    click.echo(f"validation accuracy {metrics['validation']['accuracy']:.4f}  loss {metrics['validation']['loss']:.4f}")
    if "test" in metrics:
        click.echo(f"test accuracy {metrics['test']['accuracy']:.4f}")
    click.echo(f"total {metrics['timing_seconds']['total']:.0f}s  ->  {run.model}")
