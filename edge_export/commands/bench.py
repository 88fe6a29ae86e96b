"""``edge-export bench RUN_DIR|MODEL... --data TEST_DIR``: accuracy, latency, size and memory of each artifact."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from edge_export.config import load_config, parse_overrides
from edge_export.errors import EdgeExportError

FLAG_KEYS = {
    "threads": "bench.threads",
    "runs": "bench.runs",
    "warmup": "bench.warmup",
    "batch_size": "bench.batch_size",
    "min_accuracy": "bench.min_accuracy",
}


def _threads(ctx: click.Context, param: click.Parameter, value: str | None) -> list[int] | None:
    if value is None:
        return None
    try:
        counts = [int(v) for v in value.split(",") if v.strip()]
    except ValueError:
        raise click.BadParameter(f"expected comma-separated thread counts (0 = all cores), got {value!r}") from None
    if not counts or any(c < 0 for c in counts):
        raise click.BadParameter(f"expected thread counts >= 0, got {value!r}")
    return counts


def split_arguments(items: tuple[str, ...]) -> tuple[Path | None, list[Path], list[str]]:
    """RUN_DIR (at most one folder), model files, and ``key=value`` overrides, in any order."""
    run, models, overrides = None, [], []
    for item in items:
        path = Path(item)
        if "=" in item and not path.exists():
            overrides.append(item)
        elif path.is_dir():
            if run is not None:
                raise EdgeExportError(f"more than one run folder given ({run}, {path})", hint="benchmark one run at a time")
            run = path
        else:
            models.append(path)  # checked (exists, suffix) by bench_run
    return run, models, overrides


@click.command()
@click.argument("targets", nargs=-1, required=True)
@click.option("--data", required=True, type=click.Path(path_type=Path), help="Test images: DIR/<class>/*, or a dataset root with test/.")
@click.option("--out", type=click.Path(path_type=Path), help="Output folder [RUN_DIR/bench, or ./bench for model files].")
@click.option("--threads", callback=_threads, help="Comma-separated thread counts, 0 = all cores [1,0].")
@click.option("--runs", type=int, help="Timed single-image runs per model and thread count [100].")
@click.option("--warmup", type=int, help="Untimed runs before timing [10].")
@click.option("--batch-size", type=int, help="Images per call for throughput [8].")
@click.option("--min-accuracy", type=float, help="Exit 1 if any artifact's accuracy (fraction, e.g. 0.985) is below this (the Keras reference is not gated).")
@click.option("--labels", "labels_file", type=click.Path(path_type=Path, dir_okay=False), help="labels.txt for every model (overrides theirs).")
@click.option("--keras/--no-keras", default=None, help="Measure the run's model.keras too [when TensorFlow is installed].")
@click.option("--config", "config_path", type=click.Path(path_type=Path), help="YAML config file (its bench: section).")
def bench(targets, data, out, labels_file, keras, config_path, **flags) -> None:
    """Benchmark RUN_DIR's exported artifacts and/or MODEL files on the test images in --data.

    Also takes key=value overrides, e.g. bench.runs=50. Writes bench.json, bench.md and plots.
    """
    run, models, overrides = split_arguments(targets)
    merged = parse_overrides(overrides)
    merged.update({FLAG_KEYS[k]: v for k, v in flags.items() if v is not None})
    config = load_config(config_path, merged).bench

    from edge_export.benchmarks.suite import bench_run

    outcome = bench_run(
        run,
        models=models,
        data=data,
        config=config,
        out=out,
        labels=labels_file,
        keras=keras,
        echo=lambda line: click.echo(line),
    )
    problems = []
    if outcome.failed:
        problems.append(f"could not measure: {', '.join(outcome.failed)}")
    if outcome.below_min_accuracy:
        worst = {a["name"]: a["accuracy"] for a in outcome.report["artifacts"]}
        names = ", ".join(f"{n} ({worst[n]:.2%})" for n in outcome.below_min_accuracy)
        problems.append(f"below --min-accuracy {config.min_accuracy:.2%}: {names}")
    if problems:
        for line in problems:
            click.secho(f"error: {line}", fg="red", err=True)
        sys.exit(1)
