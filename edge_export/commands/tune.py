"""``edge-export tune``: the fastest model within the limits on a device (wraps ``edge_export.api.tune``)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from edge_export import api
from edge_export.deploy.remote import RemoteSettings
from edge_export.deploy.ssh import parse_options


@click.command()
@click.option("--data", help="Dataset folder (train/, validation/[, test/]) or a known data set's name.")
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    default=Path("runs/tune"),
    show_default=True,
    help="Tune folder: tune.json, tune.md, pareto.png, chosen.yaml, the candidates' runs (resumable).",
)
@click.option(
    "--config",
    "config_path",
    type=click.Path(path_type=Path),
    help="YAML config (a tune: section, and every build setting).",
)
@click.option("--device", help="Where latency is measured: local (default) or ssh://[USER@]HOST[:PORT].")
@click.option("--max-latency-ms", type=float, help="Prune candidates whose p50 at 1 thread on the device is above.")
@click.option(
    "--faster-than",
    type=click.Path(path_type=Path),
    metavar="REF.tflite|REF.onnx",
    help="Time this model with every candidate, interleaved, and prune by the latency ratio to it.",
)
@click.option("--max-latency-ratio", type=float, help="With --faster-than: the ratio ceiling [1.0; 0.8 = 20% faster].")
@click.option("--max-size-mb", type=float, help="Prune candidates whose model file is larger.")
@click.option(
    "--min-accuracy",
    type=float,
    help="Validation accuracy (fraction) the chosen model must reach; then the fastest wins.",
)
@click.option(
    "--distill",
    metavar="auto|RUN",
    help="Also train the frontier's models from a teacher's soft targets: auto (the build's own model or the "
    "search's best) or a finished run folder.",
)
@click.option("--budget-minutes", type=float, help="Start no new candidate after this many minutes.")
@click.option("--build", "build_chosen", is_flag=True, help="Build the chosen configuration into OUT/build.")
@click.option("--json", "as_json", is_flag=True, help="JSON-lines events on stdout (and the table on stderr).")
@click.option(
    "--ssh-option",
    "ssh_options",
    multiple=True,
    metavar="KEY=VALUE",
    envvar="EDGE_EXPORT_SSH_OPTIONS",
    help="ssh -o option for an ssh:// --device, e.g. IdentityFile=~/.ssh/pi (repeatable).",
)
@click.option("--remote-python", default="python3", show_default=True, help="Python command on the device.")
@click.option("--remote-dir", default=".cache/edge-export", show_default=True, help="Working folder on the device.")
@click.option(
    "--setup", is_flag=True, help="Create REMOTE_DIR/venv on the device with the bundle's pinned runtime and use it."
)
@click.argument("overrides", nargs=-1)
def tune(
    data,
    out,
    config_path,
    device,
    max_latency_ms,
    faster_than,
    max_latency_ratio,
    max_size_mb,
    min_accuracy,
    distill,
    budget_minutes,
    build_chosen,
    as_json,
    ssh_options,
    remote_python,
    remote_dir,
    setup,
    overrides,
) -> None:
    """Search backbones x input sizes x fine-tune depths x precisions for the fastest model that meets the limits.

    OVERRIDES are key=value (tune.image_sizes=[224,288], tune.backbones=[efficientnet_lite0], or any build setting).
    """
    real_stdout = sys.stdout
    emit = (lambda e: print(json.dumps(e), file=real_stdout, flush=True)) if as_json else None
    echo = (lambda line: click.echo(line, err=True)) if as_json else click.echo
    api.quiet_logging(as_json)
    remote = RemoteSettings(
        ssh_options=parse_options(ssh_options), python=remote_python, remote_dir=remote_dir, setup=setup
    )
    with api.cli_spelling():
        outcome = api.tune(
            config_path,
            out=out,
            overrides=list(overrides),
            device=device,
            max_latency_ms=max_latency_ms,
            max_size_mb=max_size_mb,
            min_accuracy=min_accuracy,
            budget_minutes=budget_minutes,
            build_chosen=build_chosen,
            remote=remote,
            echo=echo,
            event=emit,
            data=data,
            faster_than=faster_than,
            max_latency_ratio=max_latency_ratio,
            distill=distill,
        )
    result, built = outcome if build_chosen else (outcome, None)
    if result.chosen is None:
        click.secho(f"no candidate chosen: {result.why}", fg="red", err=True)
        sys.exit(1)
    if built is not None:
        echo(f"built the chosen configuration: {built.reports.get('html')}")
        if not built.ok:
            sys.exit(1)
