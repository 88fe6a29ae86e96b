"""``edge-export package RUN_DIR``: a self-contained bundle (folder + .tar.gz) to run one artifact on a device."""

from __future__ import annotations

import contextlib
from pathlib import Path

import click

from edge_export.deploy.targets import TARGETS


@click.command()
@click.argument("run_dir", type=click.Path(exists=True, path_type=Path, file_okay=False))
@click.option("--artifact", help="Exported artifact to bundle [the build's recommendation, else tflite-int8].")
@click.option("--target", type=click.Choice(list(TARGETS)), default="cpu", show_default=True, help="Device the bundle is for.")
@click.option("--out", type=click.Path(path_type=Path), help="Folder to write into [RUN_DIR/package].")
def package(run_dir: Path, artifact: str | None, target: str, out: Path | None) -> None:
    """Bundle RUN_DIR's artifact with labels, model card, pinned TF-free runtime requirements, an
    edge-export wheel and run.py (predict, bench), as OUT/<artifact>-<target>/ and OUT/<artifact>-<target>.tar.gz."""
    from edge_export.commands.out_folder import check_out_folder
    from edge_export.deploy.bundle import package_run

    if out is not None:
        check_out_folder(out)

    from edge_export.core.run_folder import RunFolder
    from edge_export.core.run_lock import locked_run

    # writing RUN/package: one writer per run folder (with --out elsewhere the run folder is only read)
    with locked_run(RunFolder(run_dir)) if out is None else contextlib.nullcontext():
        result = package_run(run_dir, artifact=artifact, target=target, out=out, echo=click.echo)
    click.echo(f"on the device: tar xzf {result.archive.name} && cd {result.folder.name} && "
               "python -m pip install -r requirements.txt wheels/*.whl && python run.py predict IMAGE.jpg")
