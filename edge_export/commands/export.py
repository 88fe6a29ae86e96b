"""``edge-export export RUN_DIR``: TFLite and ONNX formats, checked against Keras (wraps ``edge_export.api.export``)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from edge_export import api
from edge_export.api import EXPORT_FLAGS, MODEL_FLAGS
from edge_export.commands.options import setting_options
from edge_export.export.exporter import print_table


@click.command()
@click.argument("run_dir", type=click.Path(path_type=Path), metavar="RUN_DIR|MODEL")
@setting_options(EXPORT_FLAGS)
@setting_options(("data", *MODEL_FLAGS[1:]))
@click.option("--out", type=click.Path(path_type=Path), help="MODEL only: the run folder made for it [runs/<name>].")
@click.option("--config", "config_path", type=click.Path(path_type=Path), help="YAML config file (export: section).")
@click.argument("overrides", nargs=-1)
@click.pass_context
def export(
    ctx: click.Context,
    /,
    run_dir: Path,
    config_path: Path | None,
    overrides: tuple[str, ...],
    out: Path | None,
    **flags: Any,
) -> None:
    """Export the model in RUN_DIR to RUN_DIR/export/. OVERRIDES are key=value, e.g. export.int8_io=int8.

    MODEL (bring your own model: a .keras, .h5, SavedModel folder or .onnx) is imported with the photos in
    --data into --out [runs/<name>] (what it expects is inferred and checked on validation photos), then
    exported (an .onnx model to the ONNX formats).

    \b
    Formats: tflite-fp32, tflite-fp16, tflite-dynamic, tflite-int8, tflite-qat-int8,
             onnx-fp32, onnx-int8.

    Exporting some formats adds or replaces those only: the other artifacts of an earlier export of the
    same model.keras stay (of an older model.keras, they are removed). bench/, deploy/ and package/ made
    from a replaced artifact are reported stale.

    Exit code 1 when any artifact of this export failed (conversion error or accuracy drop over
    export.accuracy_budget).
    """
    debug = bool((ctx.find_root().obj or {}).get("debug"))
    with api.cli_spelling():
        result = api.export(
            run_dir, config_path, overrides=list(overrides), echo=click.echo, debug=debug, out=out, **flags
        )
    click.echo("")
    print_table(result.manifest, click.echo)
    for artifact in result.failed:
        click.secho(f"FAILED {artifact.name}: {artifact.error}", fg="red", err=True)
    click.echo(f"manifest: {result.run.export_manifest}")
    if result.failed:
        sys.exit(1)
