"""``edge-export build``: image folder -> trained, exported, benchmarked, recommended. Resumable."""

from __future__ import annotations

import contextlib
import io
import json
import shlex
import sys
from pathlib import Path

import click

from edge_export.commands.out_folder import check_out_folder
from edge_export.core.config import flatten, load_config, parse_overrides
from edge_export.core.run_folder import RunFolder
from edge_export.core.tf_env import require_tensorflow

FLAG_KEYS = {
    "data": "data.path",
    "min_accuracy": "bench.min_accuracy",
    "accuracy_budget": "build.accuracy_budget",
    "max_size_mb": "build.max_size_mb",
    "stages": "build.stages",
}


def resolve(config_path: Path | None, overrides: tuple[str, ...], flags: dict):
    merged = parse_overrides(list(overrides))
    merged.update({FLAG_KEYS[k]: v for k, v in flags.items() if v is not None})
    return load_config(config_path, merged)


@click.command()
@click.option("--config", "config_path", type=click.Path(path_type=Path), help="YAML config with every stage's settings.")
@click.option("--data", help="Dataset folder or known name [cats_vs_dogs].")
@click.option("--out", type=click.Path(path_type=Path), default=Path("runs/build"), show_default=True, help="Run folder.")
@click.option("--stages", help="Comma-separated subset of train,export,bench.")
@click.option("--force", is_flag=True, help="Redo the selected stages even if up to date.")
@click.option("--min-accuracy", type=float, help="Fail (exit 1) if an artifact's test accuracy is below this fraction.")
@click.option("--accuracy-budget", type=float, help="Recommendation: max points below the Keras model.")
@click.option("--max-size-mb", type=float, help="Recommendation: max artifact size.")
@click.option("--quiet", is_flag=True, help="Only the final summary.")
@click.option("--json", "as_json", is_flag=True, help="JSON-lines events on stdout, nothing else.")
@click.argument("overrides", nargs=-1)
@click.pass_context
def build(ctx: click.Context, config_path, out: Path, force: bool, quiet: bool, as_json: bool, overrides, **flags) -> None:
    """Train, export and benchmark in one resumable pipeline. OVERRIDES are key=value (any stage's setting)."""
    config = resolve(config_path, overrides, flags)
    check_out_folder(out)
    if {"train", "export"} & set(config.build.stages):
        require_tensorflow("build")
    import logging

    logging.basicConfig(level=logging.WARNING if (quiet or as_json) else logging.INFO, format="%(message)s")
    from edge_export.pipeline.runner import build as run_build

    command = "edge-export " + " ".join(shlex.quote(a) for a in sys.argv[1:]) if sys.argv[1:] else "edge-export build"
    real_stdout = sys.stdout
    emit = (lambda e: print(json.dumps(e), file=real_stdout, flush=True)) if as_json else None
    silent = quiet or as_json
    sink = io.StringIO() if silent else None
    debug = bool((ctx.find_root().obj or {}).get("debug"))
    from edge_export.core.run_lock import locked_run

    with locked_run(RunFolder(out), command) as run, \
            contextlib.redirect_stdout(sink) if silent else contextlib.nullcontext():
        result = run_build(
            config, run, force=force, command=command,
            echo=(lambda line: None) if silent else click.echo, event=emit, debug=debug,
        )
    if not as_json:
        click.echo(f"stages run: {', '.join(result.ran) or 'none'}; skipped: {', '.join(result.skipped) or 'none'}")
        if result.recommendation:
            click.echo(f"recommended: {result.recommendation['artifact'] or 'none'} - {result.recommendation['why']}")
        click.echo(f"report: {result.reports.get('html')}")
        for failure in result.failures:
            click.secho(f"FAILED {failure}", fg="red", err=True)
    if not result.ok:
        sys.exit(1)


@click.command("config")
@click.option("--config", "config_path", type=click.Path(path_type=Path), help="YAML config file.")
@click.option("--show", is_flag=True, default=True, help="Print the resolved config with each value's source.")
@click.argument("overrides", nargs=-1)
def config_command(config_path: Path | None, show: bool, overrides: tuple[str, ...]) -> None:
    """Print the resolved config (defaults < file < key=value) and where each value came from."""
    config = load_config(config_path, list(overrides))
    flat = flatten(config.to_dict())
    width = max(len(k) for k in flat)
    for key, value in flat.items():
        click.echo(f"{key:<{width}}  {json.dumps(value):<24}  # {config.sources.get(key, 'default')}")
