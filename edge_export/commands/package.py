"""``edge-export package RUN_DIR``: a self-contained bundle (folder + .tar.gz) to run one artifact on a device."""

from __future__ import annotations

from pathlib import Path

import click

from edge_export import api
from edge_export.deploy.flavours import FLAVOURS


@click.command()
@click.argument("run_dir", type=click.Path(exists=True, path_type=Path, file_okay=False))
@click.option("--artifact", help="Exported artifact to bundle [the build's recommendation, else tflite-int8].")
@click.option("--flavour", type=click.Choice(list(FLAVOURS)), help="Kind of device the bundle is for [cpu].")
@click.option(
    "--target",
    "old_flavour",
    type=click.Choice(list(FLAVOURS)),
    hidden=True,
    help="Old name of --flavour (kept for one release).",
)
@click.option("--out", type=click.Path(path_type=Path), help="Folder to write into [RUN_DIR/package].")
def package(
    run_dir: Path, artifact: str | None, flavour: str | None, old_flavour: str | None, out: Path | None
) -> None:
    """Bundle RUN_DIR's artifact with labels, model card, pinned TF-free runtime requirements, an
    edge-export wheel and run.py (predict, bench), as OUT/<artifact>-<flavour>/ and OUT/<artifact>-<flavour>.tar.gz.
    Wraps ``edge_export.api.package``."""
    with api.cli_spelling():
        result = api.package(
            run_dir, artifact=artifact, flavour=flavour or old_flavour or "cpu", out=out, echo=click.echo
        )
    click.echo(
        f"on the device: tar xzf {result.archive.name} && cd {result.folder.name} && "
        "python -m pip install -r requirements.txt wheels/*.whl && python run.py predict IMAGE.jpg"
    )
