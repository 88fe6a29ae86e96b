"""``edge-export build``: image folder -> trained, exported, benchmarked, recommended. Resumable."""

from __future__ import annotations

import contextlib
import io
import json
import shlex
import sys
from pathlib import Path
from typing import Any

import click

from edge_export import api
from edge_export.api import BUILD_FLAGS
from edge_export.commands.options import setting_options


@click.command()
@click.option(
    "--config", "config_path", type=click.Path(path_type=Path), help="YAML config with every stage's settings."
)
@click.option(
    "--out", type=click.Path(path_type=Path), default=Path("runs/build"), show_default=True, help="Run folder."
)
@click.option("--force", is_flag=True, help="Redo the selected stages even if up to date.")
@setting_options(BUILD_FLAGS)
@click.option("--quiet", is_flag=True, help="Only the final summary.")
@click.option("--json", "as_json", is_flag=True, help="JSON-lines events on stdout, nothing else.")
@click.argument("overrides", nargs=-1)
@click.pass_context
def build(
    ctx: click.Context,
    /,
    config_path: Path | None,
    out: Path,
    force: bool,
    quiet: bool,
    as_json: bool,
    overrides: tuple[str, ...],
    **flags: Any,
) -> None:
    """Train, export and benchmark in one resumable pipeline (wraps ``edge_export.api.build``).

    OVERRIDES are key=value (any stage's setting, e.g. export.int8_io=int8).
    """
    command = "edge-export " + " ".join(shlex.quote(a) for a in sys.argv[1:]) if sys.argv[1:] else "edge-export build"
    real_stdout = sys.stdout
    emit = (lambda e: print(json.dumps(e), file=real_stdout, flush=True)) if as_json else None
    silent = quiet or as_json
    api.quiet_logging(silent)
    debug = bool((ctx.find_root().obj or {}).get("debug"))
    with api.cli_spelling(), contextlib.redirect_stdout(io.StringIO()) if silent else contextlib.nullcontext():
        result = api.build(
            config_path,
            out=out,
            force=force,
            overrides=list(overrides),
            command=command,
            echo=None if silent else click.echo,
            event=emit,
            debug=debug,
            **flags,
        )
    if not as_json:
        click.echo(f"stages run: {', '.join(result.ran) or 'none'}; skipped: {', '.join(result.skipped) or 'none'}")
        if result.recommendation:
            click.echo(f"recommended: {result.recommendation.artifact or 'none'} - {result.recommendation.why}")
        click.echo(f"report: {result.reports.get('html')}")
        for failure in result.failures:
            click.secho(f"FAILED {failure}", fg="red", err=True)
    if not result.ok:
        sys.exit(1)


@click.command("config")
@click.option("--config", "config_path", type=click.Path(path_type=Path), help="YAML config file.")
@click.option("--show", is_flag=True, default=True, hidden=True, help="Print the resolved config (the default).")
@click.argument("overrides", nargs=-1)
def config_command(config_path: Path | None, show: bool, overrides: tuple[str, ...]) -> None:
    """Print the resolved config (defaults < file < key=value) as a config file, each value's source as a comment.

    \b
    Save it and pass it back:  edge-export config > my.yaml && edge-export build --config my.yaml
    """
    with api.cli_spelling():
        config = api.resolve_config(config_path, list(overrides))
    click.echo(config.to_annotated_yaml(), nl=False)
