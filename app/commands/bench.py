"""``edge-export bench RUN_DIR|MODEL... --data TEST_DIR``: accuracy, latency, size and memory of each artifact."""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path

import click

from edge_export.benchmarks.targets import LOCAL, row_id
from edge_export.commands.out_folder import check_out_folder
from edge_export.core.config import load_config, parse_overrides
from edge_export.core.errors import EdgeExportError
from edge_export.core.run_folder import RunFolder

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
@click.option("--target", "devices", multiple=True, metavar="local|ssh://[USER@]HOST[:PORT]",
              help="Also measure on this device over SSH (repeatable; the local machine is always measured).")
@click.option("--ssh-option", "ssh_options", multiple=True, metavar="KEY=VALUE", envvar="EDGE_EXPORT_SSH_OPTIONS",
              help="ssh -o option for --target devices, e.g. IdentityFile=~/.ssh/pi or UserKnownHostsFile=FILE (repeatable).")
@click.option("--remote-python", default="python3", show_default=True, help="Python command on the devices.")
@click.option("--remote-dir", default=".cache/edge-export", show_default=True, help="Working folder on the devices (relative to home).")
@click.option("--setup", is_flag=True, help="Create REMOTE_DIR/venv on the devices with the bundle's pinned runtime (needs PyPI there) and use it.")
@click.option("--system-site-packages", is_flag=True, help="With --setup: the venv also sees the device's system packages.")
def bench(targets, data, out, labels_file, keras, config_path, devices, ssh_options, remote_python, remote_dir, setup, system_site_packages, **flags) -> None:
    """Benchmark RUN_DIR's exported artifacts and/or MODEL files on the test images in --data.

    Also takes key=value overrides, e.g. bench.runs=50. Writes bench.json, bench.md and plots.
    With --target ssh://..., the artifacts are bundled (see `edge-export package`), copied with the test
    images to each device, benchmarked there without TensorFlow, and merged in as more targets.
    """
    run, models, overrides = split_arguments(targets)
    merged = parse_overrides(overrides)
    merged.update({FLAG_KEYS[k]: v for k, v in flags.items() if v is not None})
    full_config = load_config(config_path, merged)
    config = full_config.bench
    if out is not None:
        check_out_folder(out)
    remote = _remote_devices(devices)
    if remote:  # every device answers (ssh, login, Python) before any local work
        from edge_export.deploy.remote import RemoteSettings, connect_devices
        from edge_export.deploy.ssh import parse_options

        settings = RemoteSettings(
            ssh_options=parse_options(ssh_options), python=remote_python, remote_dir=remote_dir,
            setup=setup, system_site_packages=system_site_packages,
        )
        remote = connect_devices(remote, settings)

    from edge_export.benchmarks.suite import bench_run
    from edge_export.core.run_lock import locked_run

    # writing RUN/bench: one writer per run folder (a run folder only read, with --out elsewhere, is not locked)
    with locked_run(RunFolder(run)) if run is not None and out is None else contextlib.nullcontext():
        outcome = bench_run(
            run,
            models=models,
            data=data,
            config=config,
            out=out,
            labels=labels_file,
            keras=keras,
            echo=lambda line: click.echo(line),
            max_image_pixels=full_config.data.max_image_pixels,  # data.max_image_pixels=N
        )
        if remote:
            from edge_export.deploy.remote import bench_on_devices

            outcome = bench_on_devices(
                outcome, remote, data=data, config=config, settings=settings, labels=labels_file, run=run,
                echo=lambda line: click.echo(line),
            )
    problems = []
    if outcome.failed:
        problems.append(f"could not measure: {', '.join(outcome.failed)}")
    if outcome.report.get("target_errors"):
        problems.append(f"could not measure on {', '.join(outcome.report['target_errors'])} (see FAILED target above)")
    if outcome.below_min_accuracy:
        worst = {row_id(a): a["accuracy"] for a in outcome.report["artifacts"]}
        names = ", ".join(f"{n} ({worst[n]:.2%})" for n in outcome.below_min_accuracy)
        problems.append(f"below --min-accuracy {config.min_accuracy:.2%}: {names}")
    if problems:
        for line in problems:
            click.secho(f"error: {line}", fg="red", err=True)
        sys.exit(1)


def _remote_devices(values: tuple[str, ...]) -> list:
    """--target values -> the SSH devices (``local`` is always measured); checked before any work."""
    from edge_export.deploy.ssh import SshTarget

    devices = []
    for value in values:
        if value.strip() == LOCAL:
            continue
        device = SshTarget.parse(value.strip())
        if device.name in {d.name for d in devices}:
            raise EdgeExportError(f"--target {value} is given twice")
        devices.append(device)
    return devices
