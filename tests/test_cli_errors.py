"""Clumsy input and a hostile machine give one-line errors naming the setting or path and the fix, before
any file is written: --out naming a file, a read-only or full file system, bad seeds and non-finite
numbers, the base install (no TensorFlow), and an ImageNet weights download without network."""

from __future__ import annotations

import errno
import os
import shutil
import socket
import subprocess
import sys
import urllib.error
from pathlib import Path

import pytest

from edge_export.cli import main

from conftest import device_env, write_image_folder

TINY = [
    "model.backbone=tiny_cnn",
    "model.weights=none",
    "train.batch_size=8",
    "train.feature_extraction.epochs=1",
    "train.fine_tune.enabled=false",
]


def run_main(capsys, *args: str) -> tuple[int, str, str]:
    """edge-export ARGS in this process, as the console script runs it: (exit status, stdout, stderr)."""
    with pytest.raises(SystemExit) as info:
        main([str(a) for a in args])
    out, err = capsys.readouterr()
    return info.value.code, out, err


def assert_one_line_error(err: str, *fragments: str) -> None:
    """One ``error:`` line, at the end, followed by at most its ``fix:`` line; no traceback."""
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.strip()]
    starts = [i for i, line in enumerate(lines) if line.startswith("error: ")]
    assert len(starts) == 1, err
    assert [line[:7] for line in lines[starts[0] + 1 :]] in ([], ["  fix: "]), err
    for fragment in fragments:
        assert fragment in err, (fragment, err)


@pytest.fixture
def data(tmp_path: Path) -> Path:
    return write_image_folder(tmp_path / "data", {"train": 4, "validation": 2})


# ----------------------------------------------------------------------------- --out naming a file


@pytest.mark.parametrize("command", ["train", "build", "bench", "package"])
def test_out_naming_a_file_is_refused_before_any_work(command, tmp_path, data, capsys):
    file = tmp_path / "notes.txt"
    file.write_text("mine")
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    before = {
        "train": ["--data", data],
        "build": ["--data", data],
        "bench": [run_dir / "m.tflite", "--data", data],
        "package": [run_dir],
    }[command]
    for out, message in (
        (file, f"--out {file} is a file, not a folder"),
        (file / "run", f"--out {file / 'run'} cannot be made: {file} is a file, not a folder"),
    ):
        code, _, err = run_main(
            capsys, command, *before, "--out", out, *(TINY if command in ("train", "build") else [])
        )
        assert code == 2
        assert_one_line_error(err, message, "fix: pass a")
    assert file.read_text() == "mine" and sorted(p.name for p in tmp_path.iterdir()) == ["data", "notes.txt", "run"]
    assert not any(run_dir.iterdir())


# ----------------------------------------------------------------------------- bad numbers, before config.yaml


@pytest.mark.parametrize(
    "override, message",
    [
        ("train.seed=-5", "bad config value for train.seed: expected an integer 0..4294967295"),
        ("train.seed=4294967296", "train.seed: expected an integer 0..4294967295"),
        ("train.batch_size=.inf", "bad config value inf for train.batch_size: expected a finite number"),
        ("train.batch_size=.nan", "bad config value nan for train.batch_size: expected a finite number"),
        (
            "train.feature_extraction.learning_rate=.nan",
            "train.feature_extraction.learning_rate: expected a finite number",
        ),
    ],
)
def test_bad_numbers_fail_before_the_run_folder_is_made(override, message, tmp_path, data, capsys):
    out = tmp_path / "run"
    code, _, err = run_main(capsys, "train", "--data", data, "--out", out, *TINY, override)
    assert code == 2
    assert_one_line_error(err, message)
    assert not out.exists()


def test_bench_threads_one_means_a_list_of_one(tmp_path, data, capsys):
    """bench.threads=1 used to be refused ("expected list"); now the command gets as far as the model file."""
    code, _, err = run_main(capsys, "bench", tmp_path / "missing.tflite", "--data", data, "bench.threads=1")
    assert code == 2 and "bench.threads" not in err and "missing.tflite" in err


# ----------------------------------------------------------------------------- a full disk, a read-only file system


def test_disk_full_is_one_line_naming_the_file(tmp_path, data, capsys, monkeypatch):
    """Every file goes through atomic writes; their data here lands on /dev/full (the kernel's ENOSPC)."""
    if not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full")
    from edge_export.core import atomic

    def write_bytes_on_a_full_disk(path, data_bytes):
        with atomic.atomic_path(path) as tmp:
            tmp.touch()
            with open("/dev/full", "wb") as disk:
                disk.write(data_bytes)
        return Path(path)

    monkeypatch.setattr(atomic, "write_bytes", write_bytes_on_a_full_disk)
    out = tmp_path / "run"
    code, _, err = run_main(capsys, "train", "--data", data, "--out", out, *TINY)
    assert code == 2
    assert_one_line_error(
        err, f"{out}{os.sep}", ": no space left on the device", f"fix: free space on the file system holding {out}"
    )
    assert not [p for p in out.rglob("*") if ".partial" in p.name]  # the atomic write cleaned up


@pytest.mark.parametrize(
    "error, expected",
    [
        (
            OSError(errno.EROFS, "Read-only file system", "/w/run/model.keras"),
            ["error: /w/run/model.keras: read-only file system", "fix: choose a writable --out"],
        ),
        (
            OSError(errno.EACCES, "Permission denied", "/w/run"),
            [
                "error: /w/run: permission denied",
                "fix: fix the permissions of /w/run, or choose a folder you can write to (--out)",
            ],
        ),
        (
            OSError(errno.EDQUOT, "Disk quota exceeded", "/w/run/a.onnx"),
            ["error: /w/run/a.onnx: disk quota exceeded", "fix: free space in your quota on /w/run"],
        ),
        (
            OSError(errno.ENOSPC, "No space left on device"),
            ["error: no space left on the device (No space left on device)"],
        ),
        (
            ModuleNotFoundError("No module named 'tf2onnx'", name="tf2onnx"),
            [
                "error: this command needs TensorFlow, which is not installed here",
                "fix: pip install 'edge-export[train]'",
            ],
        ),
    ],
)
def test_errors_about_the_place_written_to_are_one_line(error, expected, capsys, monkeypatch):
    def broken():
        raise error

    monkeypatch.setattr("edge_export.trainer.backbones.list_backbones", broken)
    code, _, err = run_main(capsys, "backbones")
    assert code == 2
    assert_one_line_error(err, *expected)


@pytest.mark.parametrize(
    "error",
    [
        OSError(errno.EIO, "Input/output error"),  # not a user's mistake we can name a fix for
        OSError(errno.EPERM, "Operation not permitted"),  # no file: e.g. a signal to a process not ours
        ModuleNotFoundError("No module named 'nonexistent'", name="nonexistent"),
    ],
)
def test_other_errors_stay_bugs(error, monkeypatch):
    """Only errors about the place written to (or a missing extra) become one-liners; bugs keep their traceback."""

    def broken():
        raise error

    monkeypatch.setattr("edge_export.trainer.backbones.list_backbones", broken)
    with pytest.raises(type(error)):
        main(["backbones"])


def _mount_tmpfs(options: str) -> list[str] | None:
    """``unshare -m`` + ``mount -t tmpfs``: a private file system for one process tree, or None where not allowed."""
    if shutil.which("unshare") is None or shutil.which("mount") is None:
        return None
    probe = subprocess.run(["unshare", "-m", "sh", "-c", f"mount -t tmpfs -o {options} none /mnt"], capture_output=True)
    return ["unshare", "-m", "sh", "-c"] if probe.returncode == 0 else None


def _cli_in_mount(mount: list[str], folder: Path, options: str, then: str, args: list) -> subprocess.CompletedProcess:
    folder.mkdir()
    script = f'mount -t tmpfs -o {options} none {folder} && {then} exec "$0" -m edge_export.cli "$@"'
    return subprocess.run(
        [*mount, script, sys.executable, *map(str, args)], capture_output=True, text=True, timeout=600
    )


def test_out_on_a_read_only_file_system(tmp_path, data):
    mount = _mount_tmpfs("ro,size=64k")
    if mount is None:
        pytest.skip("cannot mount a tmpfs here (needs unshare -m and mount)")
    ro = tmp_path / "ro"
    proc = _cli_in_mount(mount, ro, "ro,size=64k", "", ["train", "--data", data, "--out", ro / "run", *TINY])
    assert proc.returncode == 2, proc.stderr
    assert_one_line_error(
        proc.stderr, f"--out {ro / 'run'} is on a read-only file system", "fix: choose a writable --out"
    )


def test_disk_full_for_real(tmp_path, data):
    """A 64 KiB tmpfs filled up before the command starts: the first file train writes fails with ENOSPC."""
    mount = _mount_tmpfs("size=64k")
    if mount is None:
        pytest.skip("cannot mount a tmpfs here (needs unshare -m and mount)")
    full = tmp_path / "full"
    fill = f"head -c 1048576 /dev/zero > {full}/fill 2>/dev/null;"
    proc = _cli_in_mount(mount, full, "size=64k", fill, ["train", "--data", data, "--out", full / "run", *TINY])
    assert proc.returncode == 2, proc.stderr
    assert_one_line_error(
        proc.stderr, "no space left on the device", f"fix: free space on the file system holding {full / 'run'}"
    )
    assert f"{full / 'run'}" in proc.stderr.splitlines()[-2]  # the error names the run folder (or the file in it)


# ----------------------------------------------------------------------------- the base install: no TensorFlow


@pytest.fixture(scope="module")
def no_tensorflow(tmp_path_factory) -> dict[str, str]:
    """The environment of `pip install edge-export` (no [train] extra): importing TensorFlow & co. fails."""
    env, _, _ = device_env(tmp_path_factory.mktemp("base-install"))  # stand-ins first on PYTHONPATH
    return env


def _cli(env: dict[str, str], *args) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "edge_export.cli", *map(str, args)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        cwd=env.get("HOME", "/"),
    )


def test_commands_that_need_tensorflow_say_which_extra(no_tensorflow, tmp_path, data, tiny_export):
    run = tiny_export["run"]  # a finished run: export gets as far as needing TensorFlow
    before = sorted((str(p), p.stat().st_mtime_ns) for p in run.rglob("*") if p.is_file())
    for command, args in (
        ("train", ["--data", data, "--out", tmp_path / "t", *TINY]),
        ("build", ["--data", data, "--out", tmp_path / "b", *TINY]),
        ("export", [run]),
    ):
        proc = _cli(no_tensorflow, command, *args)
        assert proc.returncode == 2, (command, proc.stderr)
        assert_one_line_error(
            proc.stderr,
            f"`edge-export {command}` needs TensorFlow",
            "No module named 'tensorflow'",
            "fix: pip install 'edge-export[train]'",
        )
    assert not (tmp_path / "t").exists() and not (tmp_path / "b").exists()
    assert sorted((str(p), p.stat().st_mtime_ns) for p in run.rglob("*") if p.is_file()) == before
    # what the base install is for still works
    proc = _cli(no_tensorflow, "--help")
    assert proc.returncode == 0 and "predict" in proc.stdout


# ----------------------------------------------------------------------------- ImageNet weights without network


def test_imagenet_weights_without_network(tmp_path, data, capsys, monkeypatch):
    """keras.utils.get_file's bare `Exception: URL fetch failure` becomes an error naming the file and the fixes."""
    from edge_export.core.tf_env import import_keras

    import_keras()
    from keras.src.backend import config as keras_config
    from keras.src.utils import file_utils

    keras_home = tmp_path / "keras-home"  # empty: nothing cached
    monkeypatch.setenv("KERAS_HOME", str(keras_home))
    monkeypatch.setattr(keras_config, "_KERAS_DIR", str(keras_home))

    def offline(url, *args, **kwargs):
        raise urllib.error.URLError(socket.gaierror(-3, "Temporary failure in name resolution"))

    monkeypatch.setattr(file_utils, "urlretrieve", offline)
    code, _, err = run_main(
        capsys,
        "train",
        "--data",
        data,
        "--out",
        tmp_path / "run",
        "--backbone",
        "mobilenet_v2",
        "--image-size",
        "96",
        "train.fine_tune.enabled=false",
    )
    assert code == 2
    assert_one_line_error(
        err,
        "could not download the ImageNet weights https://",
        "/mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5: ",
        "download mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5 elsewhere",
        "Temporary failure in name resolution",
        f"copy it into {keras_home / 'models'}",
        "model.weights=PATH",
        "model.weights=none",
    )
