"""The benchmark on devices over SSH: the local benchmark's models go into one bundle, the bundle and the
test images go to each device, the bundle's own ``run.py bench`` measures them there, and the device's
bench.json is merged into the local result as another device (``merge_device``).

Every device is checked first (``connect_devices``: ssh, host key, login, Python), before any local
work: one that cannot be reached is one error and nothing is measured. The local results are then written
(``bench_run``) and rewritten only with the merged report, so a device that fails later (e.g. loses the
connection) never costs them; its error is recorded in ``BenchResult.device_errors`` (the report's FAILED
device line) and the outcome is not ok.
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import tarfile
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edge_export.benchmarks.devices import merge_device, record_device_error
from edge_export.benchmarks.suite import BenchOutcome, write_outputs
from edge_export.benchmarks.testset import scan_test_folder
from edge_export.core.atomic import write_json
from edge_export.core.config import BenchConfig
from edge_export.core.echo import Echo  # noqa: E402  (the one Echo type)
from edge_export.core.errors import EdgeExportError
from edge_export.core.records.bench import BenchResult, BenchRow
from edge_export.core.run_folder import BenchFiles, RunFolder
from edge_export.core.untrusted import loads_json, printable
from edge_export.deploy.bundle import BundleModel, build_bundle, write_archive
from edge_export.deploy.ssh import SshConnection, SshDevice, tail
from edge_export.export.layout import ExportFolder

BUNDLE, TESTS, RESULTS = "bundle", "test", "out"
MISSING_PACKAGES = 3  # run.py's exit status when the runtime is not installed
MIN_PYTHON = (3, 10)
CHECK_TIMEOUT_S = 120  # connecting (ssh's ConnectTimeout) and starting Python on a slow device
_VERSION = "import sys; print('%d.%d.%d' % sys.version_info[:3])"


@dataclass
class RemoteSettings:
    ssh_options: list[str] = field(default_factory=list)  # KEY=VALUE, as ssh -o
    python: str = "python3"  # the interpreter command on the device
    remote_dir: str = ".cache/edge-export"  # on the device, relative to the login's home unless absolute
    setup: bool = False  # make REMOTE_DIR/venv with the bundle's pinned requirements and run from it
    system_site_packages: bool = False  # ... letting it see the device's system packages

    def __post_init__(self) -> None:  # checked when given, before any connection
        _python_command(self.python)
        remote_base(self.remote_dir)


@dataclass
class Device:
    """A device that answered: its connection and the version of its Python."""

    address: SshDevice
    conn: SshConnection
    python_version: str


def connect_devices(devices: Sequence[SshDevice], settings: RemoteSettings) -> list[Device]:
    """Check every device (resolve, connect, host key, login, Python) with one cheap ssh call each.

    Done before any local work; any failure is one EdgeExportError naming every device that failed.
    """
    checked: list[Device] = []
    errors: list[EdgeExportError] = []
    for device in devices:
        try:
            conn = SshConnection(device, list(settings.ssh_options))
            checked.append(Device(device, conn, check_python(conn, _python_command(settings.python), settings.python)))
        except EdgeExportError as exc:
            errors.append(exc)
    if errors:
        raise EdgeExportError("; ".join(e.message for e in errors) + " (nothing was measured)", hint=errors[0].hint)
    return checked


def bench_on_devices(
    outcome: BenchOutcome,
    devices: Sequence[Device],
    *,
    data: str | Path,
    config: BenchConfig,
    settings: RemoteSettings,
    labels: str | Path | None = None,
    run: RunFolder | str | Path | None = None,
    echo: Echo | None = print,
) -> BenchOutcome:
    """Measure the models of a finished local benchmark on each device (checked by ``connect_devices``);
    merged outputs replace the local ones. A device that fails now is recorded in ``device_errors``."""
    echo = echo or (lambda line: None)
    result = outcome.result
    rows = [r for r in result.rows if not r.is_reference and r.path and Path(r.path).is_file()]
    if not rows:
        raise EdgeExportError(
            "no model to benchmark on a device (the Keras model needs TensorFlow; devices run exported artifacts)"
        )
    if devices:
        with tempfile.TemporaryDirectory(prefix="edge-export-remote-") as tmp:
            tmp_dir = Path(tmp)
            info = build_bundle(
                tmp_dir / BUNDLE,
                [BundleModel(r.name, Path(r.path), r.precision) for r in rows if r.path],  # (every row has a path)
                flavour="cpu",
                labels=_bundle_labels(labels, run, rows),
                source={"bench": str(outcome.out_dir)},
            )
            bundle_archive = write_archive(tmp_dir / BUNDLE)
            tests_archive = _test_archive(data, tmp_dir / f"{TESTS}.tar.gz")
            for device in devices:
                name = device.address.name
                try:
                    remote = bench_on_device(
                        device.conn, device.python_version, bundle_archive, tests_archive, info, config, settings, echo
                    )
                except EdgeExportError as exc:
                    fix = f" (fix: {exc.hint})" if exc.hint else ""
                    record_device_error(result, name, exc.message + fix)  # shown once: the table's FAILED device line
                    continue
                write_json(outcome.out_dir / BenchFiles.DEVICES / _safe(name) / BenchFiles.JSON, remote.to_dict())
                differs = photos_differ(result.data, remote.data)
                if differs:  # the table would state one count and hold another's measurements
                    record_device_error(
                        result,
                        name,
                        f"the device measured other photos than this machine ({differs}): "
                        "its rows are left out (fix: check the test folder's links and files)",
                    )
                    continue
                merge_device(result, name, remote, config.min_accuracy)
    return write_outputs(result, outcome.out_dir, echo)


def bench_on_device(
    conn: SshConnection,
    python_version: str,
    bundle_archive: Path,
    tests_archive: Path,
    info: dict[str, Any],
    config: BenchConfig,
    settings: RemoteSettings,
    echo: Echo,
) -> BenchResult:
    """Copy, (set up,) run ``run.py bench`` on the device and return its bench.json (read by ``BenchResult``)."""
    device = conn.device
    say = lambda line: echo(f"[{device.name}] {line}")  # noqa: E731
    base = remote_base(settings.remote_dir)
    work = f"{base}/bench-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"
    python = _python_command(settings.python)
    say(f"Python {python_version} ({settings.python}); copying the bundle and the test images to {work}")
    try:
        conn.send_archive(bundle_archive, work)
        conn.send_archive(tests_archive, work)
        bundle = f"{work}/{BUNDLE}"
        if settings.setup:
            python = setup_runtime(conn, python, f"{base}/venv", bundle, info, settings.system_site_packages, say)
        threads = ",".join(str(t) for t in config.threads)
        command = (
            f"{python} {shlex.quote(bundle + '/run.py')} bench --data {shlex.quote(work + '/' + TESTS)} "
            f"--out {shlex.quote(work + '/' + RESULTS)} --threads {threads} --runs {int(config.runs)} "
            f"--warmup {int(config.warmup)} --batch-size {int(config.batch_size)}"
        )
        say(f"benchmarking {len(info['artifacts'])} model(s)")
        started = time.perf_counter()
        proc = conn.run(command, doing="benchmarking")
        if proc.returncode == MISSING_PACKAGES:
            raise EdgeExportError(
                f"{device.name}: the runtime packages are not installed for {settings.python}: {tail(proc, 2)}",
                hint="pass --setup (a venv on the device with the bundle's pinned requirements), "
                "or --remote-python with an interpreter that has them",
            )
        if proc.returncode not in (0, 1):  # 1: a model failed or missed a gate; bench.json is written
            raise EdgeExportError(
                f"{device.name}: the benchmark failed on the device (exit status {proc.returncode}): {tail(proc)}"
            )
        raw = conn.read_file(f"{work}/{RESULTS}/{BenchFiles.JSON}", doing=f"fetching {BenchFiles.JSON}")
        source = f"{device.name}:{work}/{RESULTS}/{BenchFiles.JSON}"
        remote = BenchResult.from_dict(
            loads_json(raw, what=f"{device.name}'s {BenchFiles.JSON}", source=source), source=source
        )
        say(f"measured in {time.perf_counter() - started:.0f}s on {remote.machine.get('cpu', '?')}")
        return remote
    finally:
        with contextlib.suppress(EdgeExportError):
            conn.run(f"rm -rf {shlex.quote(work)}", doing="cleaning up", timeout=60)


def _python_command(python: str) -> str:
    """The --remote-python command (it may be several words, e.g. ``env VAR=x python3``), quoted for the device's
    shell."""
    try:
        words = shlex.split(python)
    except ValueError as exc:  # an unbalanced quote
        raise EdgeExportError(
            f"--remote-python {printable(repr(python), 120)} cannot be read: {exc}",
            hint="quote it as a shell would, e.g. --remote-python '/opt/my env/bin/python3'",
        ) from None
    if not words:
        raise EdgeExportError("--remote-python is empty", hint="name the device's Python, e.g. --remote-python python3")
    return " ".join(shlex.quote(w) for w in words)


def remote_base(remote_dir: str) -> str:
    """--remote-dir on the device: relative to the login's home (``~`` and ``~/`` mean the home), or absolute.
    The file system's root, ``~user`` and an empty value are errors (never a silent fallback to the home)."""
    base = remote_dir.strip()
    hint = "pass a folder for edge-export's files on the device, e.g. --remote-dir .cache/edge-export"
    if base in ("~", "~/"):
        return "."
    if base.startswith("~") and not base.startswith("~/"):
        raise EdgeExportError(
            f"--remote-dir {printable(repr(remote_dir), 120)}: another user's home is not supported", hint=hint
        )
    base = base[2:] if base.startswith("~/") else base  # relative paths start at the login's home anyway
    if not base or not base.strip("/"):
        raise EdgeExportError(
            f"--remote-dir {printable(repr(remote_dir), 120)} is {'empty' if not base else 'the file system root'}",
            hint=hint,
        )
    return base.rstrip("/")


def check_python(conn: SshConnection, python: str, shown: str) -> str:
    """The device's Python version; EdgeExportError when there is none (or it is too old)."""
    proc = conn.run(f"{python} -c {shlex.quote(_VERSION)}", doing="looking for Python", timeout=CHECK_TIMEOUT_S)
    out = proc.stdout.decode(errors="replace").strip()
    hint = (
        "install Python 3.10+ on the device (Debian/Raspberry Pi OS: sudo apt install python3 python3-venv), "
        "or pass --remote-python PATH"
    )
    if proc.returncode != 0 or not re.fullmatch(r"\d+\.\d+\.\d+", out):
        raise EdgeExportError(f"{conn.device.name}: no Python at {shown!r} on the device ({tail(proc, 2)})", hint=hint)
    if tuple(int(v) for v in out.split(".")[:2]) < MIN_PYTHON:
        raise EdgeExportError(f"{conn.device.name}: Python {out} at {shown!r} is too old (3.10+ needed)", hint=hint)
    return out


def setup_runtime(
    conn: SshConnection,
    python: str,
    venv: str,
    bundle: str,
    info: dict[str, Any],
    system_site_packages: bool,
    say: Echo,
) -> str:
    """A venv on the device with the bundle's pinned requirements and wheel; returns its python."""
    q = shlex.quote
    vpy = q(f"{venv}/bin/python")
    pip = f"{vpy} -m pip install --disable-pip-version-check -q"
    flags = " --system-site-packages" if system_site_packages else ""
    say(f"setting up {venv}: {', '.join(info['pinned'])}")
    proc = conn.run(
        f"{python} -m venv{flags} {q(venv)} && {pip} -r {q(bundle + '/' + info['requirements'])} "
        f"&& {pip} --no-deps --force-reinstall {q(bundle + '/' + info['wheel'])}",
        doing="setting up the runtime",
    )
    if proc.returncode != 0:
        raise EdgeExportError(
            f"{conn.device.name}: setting up the runtime in {venv} failed: {tail(proc)}",
            hint="the device needs python3-venv and access to PyPI (or an index via PIP_INDEX_URL in its environment)",
        )
    return vpy


def _bundle_labels(labels: str | Path | None, run: RunFolder | str | Path | None, rows: list[BenchRow]) -> Path | None:
    """The labels the local benchmark used: --labels, else the run's (for its own artifacts only)."""
    if labels is not None:
        return Path(labels)
    if run is None or any(r.source != "manifest" for r in rows):
        return None  # model files carry their labels in their metadata
    run = run if isinstance(run, RunFolder) else RunFolder(run)
    for path in (ExportFolder(run).labels, run.labels):
        if path.is_file():
            return path
    return None


def photos_differ(local: dict[str, Any], device: dict[str, Any]) -> str | None:
    """How the photos a device measured differ from this machine's (count, classes, images per class), or None:
    what a device measures is what the table says, photo for photo."""
    for key, what in (("images", "images"), ("classes", "classes"), ("counts", "images per class")):
        if local.get(key) != device.get(key):
            return f"{what}: {printable(device.get(key), 200)} there, {printable(local.get(key), 200)} here"
    return None


def _test_archive(data: str | Path, path: Path) -> Path:
    """The test images as ``test/<class>/<file>`` in a .tar.gz (what the device benchmarks on). Links are
    followed (``dereference``): the device gets the photos' bytes, never a link to a path of this machine."""
    testset = scan_test_folder(data)
    with tarfile.open(path, "w:gz", dereference=True) as tar:
        for name in testset.class_names:
            info = tarfile.TarInfo(f"{TESTS}/{name}")
            info.type, info.mode = tarfile.DIRTYPE, 0o755
            tar.addfile(info)
        for file in testset.files:
            tar.add(file, arcname=f"{TESTS}/{file.relative_to(testset.root).as_posix()}")
    return path


def _safe(name: str) -> str:
    return re.sub(r"[^\w.@-]+", "_", name)
