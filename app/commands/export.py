"""``edge-export export RUN_DIR``: convert a trained run to TFLite/ONNX formats, checked against Keras."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from edge_export.core.config import flatten, load_config, parse_overrides
from edge_export.core.errors import EdgeExportError
from edge_export.core.run_folder import RunFolder
from edge_export.core.tf_env import require_tensorflow


def resolve_export_config(run: RunFolder, config_path: Path | None, overrides: list[str], formats: str | None):
    """defaults < the run's config.yaml < --config FILE < key=value overrides < --formats."""
    merged: dict = {}
    if config_path is not None:
        file_config = load_config(config_path)
        flat = flatten(file_config.to_dict())
        merged.update({k: v for k, v in flat.items() if file_config.sources.get(k) == str(config_path)})
    merged.update(parse_overrides(overrides))
    if formats is not None:
        merged["export.formats"] = formats
    return load_config(run.config if run.config.is_file() else None, merged)


@click.command()
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option("--formats", help="Comma-separated formats, a family (tflite, onnx) or all [export.formats].")
@click.option("--config", "config_path", type=click.Path(path_type=Path), help="YAML config file (export: section).")
@click.argument("overrides", nargs=-1)
@click.pass_context
def export(ctx: click.Context, run_dir: Path, formats: str | None, config_path: Path | None, overrides: tuple[str, ...]) -> None:
    """Export the model in RUN_DIR to RUN_DIR/export/. OVERRIDES are key=value, e.g. export.int8_io=int8.

    \b
    Formats: tflite-fp32, tflite-fp16, tflite-dynamic, tflite-int8, tflite-qat-int8,
             onnx-fp32, onnx-int8.

    Exporting some formats adds or replaces those only: the other artifacts of an earlier export of the
    same model.keras stay (of an older model.keras, they are removed). bench/, deploy/ and package/ made
    from a replaced artifact are reported stale.

    Exit code 1 when any artifact of this export failed (conversion error or accuracy drop over
    export.accuracy_budget).
    """
    run = RunFolder(run_dir)
    if not run.root.is_dir():
        raise EdgeExportError("run folder not found", path=run.root, hint="pass the folder `edge-export train` wrote")
    run.verify()  # before its config.yaml is read: model.keras and every file beside it are from one train
    require_tensorflow("export")  # before any work: nothing below runs without it
    config = resolve_export_config(run, config_path, list(overrides), formats)

    from edge_export.export.pipeline import export_run, print_table

    debug = bool((ctx.find_root().obj or {}).get("debug"))
    click.echo(f"exporting {run.model} -> {run.export_dir}")
    from edge_export.core.run_lock import locked_run

    with locked_run(run):
        manifest = export_run(run, config.export, run_config=config, echo=click.echo, debug=debug)
    click.echo("")
    print_table(manifest, click.echo)
    made = set(manifest["settings"]["formats"])  # this export's formats (the manifest may keep earlier ones)
    failed = [a for a in manifest["artifacts"] if a["name"] in made and a["status"] != "ok"]
    for artifact in failed:
        click.secho(f"FAILED {artifact['name']}: {artifact.get('error')}", fg="red", err=True)
    click.echo(f"manifest: {run.export_dir / 'manifest.json'}")
    if failed:
        sys.exit(1)
