"""``edge-export bench RUN_DIR|MODEL... --data TEST_DIR``: accuracy, latency, size and memory of each artifact."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from edge_export import api
from edge_export.api import BENCH_FLAGS
from edge_export.commands.options import setting_options
from edge_export.core.errors import EdgeExportError
from edge_export.deploy.remote import RemoteSettings
from edge_export.deploy.ssh import parse_options


def split_arguments(items: tuple[str, ...]) -> tuple[Path | None, list[Path], list[str]]:
    """RUN_DIR (at most one folder), model files, and ``key=value`` overrides, in any order."""
    run, models, overrides = None, [], []
    for item in items:
        path = Path(item)
        if "=" in item and not path.exists():
            overrides.append(item)
        elif path.is_dir() and not (path / "saved_model.pb").is_file():  # a SavedModel folder is a model
            if run is not None:
                raise EdgeExportError(
                    f"more than one run folder given ({run}, {path})", hint="benchmark one run at a time"
                )
            run = path
        else:
            models.append(path)  # checked (exists, suffix) by bench_run
    return run, models, overrides


@click.command()
@click.argument("targets", nargs=-1, required=True, metavar="RUN_DIR|MODEL... [KEY=VALUE]...")
@click.option(
    "--data",
    required=True,
    type=click.Path(path_type=Path),
    help="Test images: DIR/<class>/*, or a dataset root with test/.",
)
@click.option(
    "--out", type=click.Path(path_type=Path), help="Output folder [RUN_DIR/bench, or ./bench for model files]."
)
@setting_options(BENCH_FLAGS)
@click.option(
    "--labels",
    "labels_file",
    type=click.Path(path_type=Path, dir_okay=False),
    help="labels.txt for every model (overrides theirs).",
)
@click.option(
    "--provider",
    "providers",
    multiple=True,
    help="ONNX Runtime provider for .onnx models (cpu, cuda, tensorrt); repeatable.",
)
@click.option(
    "--keras/--no-keras", default=None, help="Measure the run's model.keras too [when TensorFlow is installed]."
)
@click.option("--config", "config_path", type=click.Path(path_type=Path), help="YAML config file (its bench: section).")
@click.option(
    "--device",
    "devices",
    multiple=True,
    metavar="local|ssh://[USER@]HOST[:PORT]",
    help="Also measure on this device over SSH (repeatable; the local machine is always measured).",
)
@click.option(
    "--target", "old_devices", multiple=True, hidden=True, help="Old name of --device (kept for one release)."
)
@click.option(
    "--ssh-option",
    "ssh_options",
    multiple=True,
    metavar="KEY=VALUE",
    envvar="EDGE_EXPORT_SSH_OPTIONS",
    help="ssh -o option for --device devices, e.g. IdentityFile=~/.ssh/pi or UserKnownHostsFile=FILE (repeatable).",
)
@click.option("--remote-python", default="python3", show_default=True, help="Python command on the devices.")
@click.option(
    "--remote-dir",
    default=".cache/edge-export",
    show_default=True,
    help="Working folder on the devices (relative to home).",
)
@click.option(
    "--setup",
    is_flag=True,
    help="Create REMOTE_DIR/venv on the devices with the bundle's pinned runtime (needs PyPI there) and use it.",
)
@click.option(
    "--system-site-packages", is_flag=True, help="With --setup: the venv also sees the device's system packages."
)
def bench(
    targets,
    data,
    out,
    labels_file,
    providers,
    keras,
    config_path,
    devices,
    old_devices,
    ssh_options,
    remote_python,
    remote_dir,
    setup,
    system_site_packages,
    **flags,
) -> None:
    """Benchmark RUN_DIR's exported artifacts and/or MODEL files on the test images in --data.

    Also takes key=value overrides, e.g. bench.runs=50. Writes bench.json, bench.md and plots.
    With --device ssh://..., the artifacts are bundled (see `edge-export package`), copied with the test
    images to each device, benchmarked there without TensorFlow, and merged in as more rows.
    Wraps ``edge_export.api.bench``.
    """
    run, models, overrides = split_arguments(targets)
    remote = None
    if devices or old_devices:
        remote = RemoteSettings(
            ssh_options=parse_options(ssh_options),
            python=remote_python,
            remote_dir=remote_dir,
            setup=setup,
            system_site_packages=system_site_packages,
        )
    with api.cli_spelling():
        outcome = api.bench(
            run,
            models,
            data=data,
            config=config_path,
            out=out,
            labels=labels_file,
            keras=keras,
            devices=list(devices) + list(old_devices),
            remote=remote,
            providers=providers,
            overrides=overrides,
            echo=click.echo,
            **flags,
        )
    result = outcome.result  # the typed bench record (core/records/bench.py)
    problems = []
    if result.failed:
        problems.append(f"could not measure: {', '.join(result.failed)}")
    if result.device_errors:
        problems.append(f"could not measure on {', '.join(result.device_errors)} (see FAILED device above)")
    if result.below_min_accuracy:
        accuracy = {r.id: r.accuracy for r in result.rows}
        names = ", ".join(f"{n} ({accuracy[n]:.2%})" for n in result.below_min_accuracy)
        problems.append(f"below --min-accuracy {result.min_accuracy:.2%}: {names}")
    if problems:
        for line in problems:
            click.secho(f"error: {line}", fg="red", err=True)
        sys.exit(1)
