"""Shared fixtures: tiny generated image folders, the shared/ folder, quiet TensorFlow, a local sshd."""

from __future__ import annotations

import getpass
import os
import shlex
import shutil
import socket
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# decoded images go to a temporary folder per process (removed at exit), never to ~/.cache; tests of the
# cache itself point EDGE_EXPORT_PIXEL_CACHE at their tmp_path
os.environ.setdefault("EDGE_EXPORT_PIXEL_CACHE", "off")

SHARED = Path(os.environ.get("EDGE_EXPORT_SHARED", Path(__file__).resolve().parents[1].parent / "shared"))
COLORS = {"red": 0, "green": 1, "blue": 2}


def write_image_folder(root: Path, splits: dict[str, int], classes=("blue", "red"), size=(40, 48), seed=0) -> Path:
    """root/<split>/<class>/<i>.png: noise plus a strong colour channel per class (easy to learn)."""
    rng = np.random.default_rng(seed)
    for split, per_class in splits.items():
        for cls in classes:
            folder = root / split / cls
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(per_class):
                pixels = rng.integers(0, 90, (*size, 3), dtype=np.uint8)
                pixels[..., COLORS.get(cls, sum(map(ord, cls)) % 3)] += 160
                Image.fromarray(pixels).save(folder / f"{cls}_{i}.png")
    return root


@pytest.fixture
def image_folder(tmp_path: Path) -> Path:
    return write_image_folder(tmp_path / "data", {"train": 12, "validation": 6, "test": 6})


@pytest.fixture(scope="session")
def shared() -> Path:
    if not SHARED.is_dir():
        pytest.skip(f"shared folder not found at {SHARED} (set EDGE_EXPORT_SHARED)")
    return SHARED


# --------------------------------------------------------------------- a tiny exported run, a device without TensorFlow

TINY_TRAIN = [
    "model.backbone=tiny_cnn",
    "model.weights=none",
    "train.batch_size=8",
    "train.feature_extraction.epochs=4",
    "train.feature_extraction.learning_rate=0.05",
    "train.fine_tune.epochs=1",
]


@pytest.fixture(scope="session")
def tiny_export(tmp_path_factory) -> dict[str, Path]:
    """A trained tiny_cnn run with a real export (tflite-int8, onnx-fp32: manifest, labels, model card) and its data."""
    from edge_export.core.config import load_config
    from edge_export.core.run_folder import RunFolder
    from edge_export.export.exporter import export_run
    from edge_export.trainer.run import train_run

    base = tmp_path_factory.mktemp("tiny_export")
    data = write_image_folder(base / "data", {"train": 12, "validation": 6, "test": 6})
    run = RunFolder(base / "run")
    config = load_config(None, [f"data.path={data}", *TINY_TRAIN])
    train_run(config, run)
    manifest = export_run(run, config.export, run_config=config, formats="tflite-int8,onnx-fp32", echo=None)
    assert manifest.ok, [(a.name, a.error) for a in manifest.artifacts]
    return {"run": run.root, "data": data, "base": base}


BLOCKED = ("tensorflow", "keras", "tf_keras", "onnx")  # a device has none of them


def device_env(folder: Path) -> tuple[dict[str, str], list[str], Path]:
    """Environment and interpreter arguments for a process that sees a device's packages only.

    ``python -S`` (no site: no edge-export install, no .pth finders) with PYTHONPATH = stand-ins that
    refuse ``import tensorflow`` & co. (logging the attempt) and matplotlib, then site-packages
    (numpy, Pillow, LiteRT, ONNX Runtime...). edge_export itself must come from elsewhere (a bundle's
    wheel). Child processes inherit PYTHONPATH (they have site, but the stand-ins come first).
    Returns (env, [python, -S], the log of blocked import attempts).
    """
    import site
    import sys

    blockers = folder / "blockers"
    log = folder / "blocked-imports.log"
    for name in (*BLOCKED, "matplotlib"):
        pkg = blockers / name
        pkg.mkdir(parents=True, exist_ok=True)
        record = "" if name == "matplotlib" else f"open({str(log)!r}, 'a').write(__name__ + '\\n')\n"
        (pkg / "__init__.py").write_text(
            record
            + "raise ModuleNotFoundError("
            + f"{f'No module named {name!r} (blocked: not on the device)'!r}, name={name!r})\n"
        )
    paths = [str(blockers), *site.getsitepackages()]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(paths)}
    env.pop("PYTHONHOME", None)
    return env, [sys.executable, "-S"], log


# ----------------------------------------------------------------------------- a device over SSH (this machine)

SSHD = Path("/usr/sbin/sshd")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def sshd(tmp_path_factory):
    if not SSHD.is_file() or shutil.which("ssh") is None or shutil.which("ssh-keygen") is None:
        pytest.skip(
            f"OpenSSH server/client not installed ({SSHD}, ssh, ssh-keygen): "
            "apt-get install openssh-server openssh-client"
        )
    privsep = Path("/run/sshd")
    if not privsep.is_dir():
        try:
            privsep.mkdir(mode=0o755, parents=True)
        except OSError as exc:
            pytest.skip(f"sshd needs {privsep} and it cannot be created here ({exc})")
    folder = tmp_path_factory.mktemp("sshd")
    for name in ("host_key", "user_key"):
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", str(folder / name)], check=True
        )
    shutil.copy(folder / "user_key.pub", folder / "authorized_keys")
    port = _free_port()
    user = getpass.getuser()
    config = folder / "sshd_config"
    config.write_text(
        "ListenAddress 127.0.0.1\n"
        f"HostKey {folder / 'host_key'}\n"
        f"PidFile {folder / 'sshd.pid'}\n"
        f"AuthorizedKeysFile {folder / 'authorized_keys'}\n"
        f"AllowUsers {user}\n"
        "PermitRootLogin prohibit-password\n"
        "PubkeyAuthentication yes\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n"
        "UsePAM no\nStrictModes no\nLogLevel ERROR\n"
        # a login gets a fresh environment: without this, the device side decodes into ~/.cache/edge-export
        f"SetEnv EDGE_EXPORT_PIXEL_CACHE={folder / 'pixels'}\n"
    )
    host_key = " ".join((folder / "host_key.pub").read_text().split()[:2])
    known_hosts = folder / "known_hosts"
    known_hosts.write_text(f"[127.0.0.1]:{port} {host_key}\n")
    log = open(folder / "sshd.log", "w")
    proc = subprocess.Popen(
        [str(SSHD), "-D", "-e", "-f", str(config), "-p", str(port)], stdout=log, stderr=subprocess.STDOUT
    )
    options = [
        f"UserKnownHostsFile={known_hosts}",
        "GlobalKnownHostsFile=/dev/null",
        f"IdentityFile={folder / 'user_key'}",
        "IdentitiesOnly=yes",
    ]
    ssh = [
        "ssh",
        *(x for o in options for x in ("-o", o)),
        "-o",
        "BatchMode=yes",
        "-p",
        str(port),
        f"{user}@127.0.0.1",
        "true",
    ]
    deadline = time.monotonic() + 60  # a poll for sshd to answer, with a generous overall deadline (never a fixed wait)
    while subprocess.run(ssh, capture_output=True).returncode != 0:
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"sshd did not come up: {(folder / 'sshd.log').read_text()}")
        time.sleep(0.2)
    yield {
        "url": f"ssh://{user}@127.0.0.1:{port}",
        "name": f"{user}@127.0.0.1:{port}",
        "port": port,
        "options": options,
        "folder": folder,
    }
    proc.terminate()
    proc.wait(timeout=10)
    log.close()


@pytest.fixture(scope="module")
def device_python(tmp_path_factory) -> tuple[str, Path]:
    """--remote-python for a device without TensorFlow or edge-export, and its blocked-import log."""
    env, python, log = device_env(tmp_path_factory.mktemp("device"))
    command = shlex.join(["env", f"PYTHONPATH={env['PYTHONPATH']}", *python])
    return command, log


# ----------------------------------------------------------------------------- a tiny build, paused at a known point

BUILD_FAST = [
    "model.backbone=tiny_cnn",
    "model.weights=none",
    "train.batch_size=8",
    "train.feature_extraction.epochs=3",
    "train.fine_tune.epochs=2",
    "export.formats=tflite-fp32,tflite-int8,onnx-fp32",
    "export.representative_images=16",
    "export.accuracy_budget=100",
    "bench.runs=5",
    "bench.warmup=1",
    "bench.threads=[1]",
    "build.accuracy_budget=100",
]


def build_cmd(data: Path, out: Path, *extra: str) -> list[str]:
    """``edge-export build --json`` of a tiny tiny_cnn run (seconds): JSON events on stdout."""
    import sys

    return [
        sys.executable,
        "-m",
        "edge_export.cli",
        "build",
        "--data",
        str(data),
        "--out",
        str(out),
        "--json",
        *BUILD_FAST,
        *extra,
    ]


def start_paused(cmd: list[str], point: str, env: dict | None = None):
    """Start ``cmd`` with the pause point(s) ``point`` (core/pause.py) and read its JSON events up
    to the ``paused`` one: (process, stopped there; its events). Kill it with SIGKILL or go on with SIGCONT."""
    import json

    env = {**os.environ, **(env or {}), "EDGE_EXPORT_PAUSE_AT": point}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
    events = []
    for line in proc.stdout:
        if line.startswith("{"):
            events.append(json.loads(line))
            if events[-1]["event"] == "paused":
                # the line comes just before the process stops itself: a SIGCONT sent earlier would be lost
                wait_until(lambda: process_state(proc.pid) in ("T", None), f"pid {proc.pid} to stop at {point}")
                return proc, events
    proc.wait(timeout=60)
    pytest.fail(f"exited with status {proc.returncode} before reaching pause point {point}; events: {events}")


def process_state(pid: int) -> str | None:
    """The state letter of ``pid`` in /proc (R, S, T stopped, Z zombie...), None when there is no such process."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return None


def process_alive(pid: int) -> bool:
    """Running or stopped (a zombie, dead but not yet reaped, is not alive)."""
    return process_state(pid) not in (None, "Z")


def resume(proc, timeout: float = 600) -> str:
    """SIGCONT a process stopped by ``start_paused``; the rest of its stdout once it ended (killed on timeout)."""
    import signal

    proc.send_signal(signal.SIGCONT)
    try:
        return proc.communicate(timeout=timeout)[0]
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise


def wait_until(condition, what: str, deadline_s: float = 120.0) -> None:
    """Poll ``condition()`` until true; fail naming ``what`` after a generous deadline (never a fixed wait)."""
    end = time.monotonic() + deadline_s
    while not condition():
        if time.monotonic() > end:
            pytest.fail(f"timed out after {deadline_s:.0f}s waiting for {what}")
        time.sleep(0.05)


def cli_main(capsys, *args: str) -> tuple[int, str]:
    """`edge-export ARGS` as the console script runs it: (exit status, everything printed)."""
    from edge_export.cli import main

    with pytest.raises(SystemExit) as info:
        main(list(args))
        raise SystemExit(0)
    out = capsys.readouterr()
    return info.value.code, out.out + out.err


SCRIPTS = Path(__file__).resolve().parents[1] / "benchmarks" / "scripts"


def load_script(name: str):
    """A script behind the README's numbers (benchmarks/scripts/NAME.py, not installed), imported by path."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(f"benchmark_script_{name}", SCRIPTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def without_module(monkeypatch, name: str) -> None:
    """Make ``import name`` fail for the rest of the test, as on a machine where it is not installed."""
    import builtins

    real_import = builtins.__import__

    def refuse(module, *args, **kwargs):
        if module == name or module.startswith(name + "."):
            raise ImportError(f"No module named {name!r}")
        return real_import(module, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", refuse)
