"""``edge-export bench --device ssh://...`` (old name ``--target``) through a real OpenSSH server on 127.0.0.1,
started here (the ``sshd`` fixture, conftest.py).

The "device" is this machine reached over ssh: a throwaway host key and user key, a known_hosts file
that trusts only that host key, and a Python that sees no TensorFlow and no installed edge-export
(``device_env``), so the bundle's wheel and run.py are what runs there.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from edge_export.core.errors import EdgeExportError
from edge_export.core.run_folder import BenchFiles

FAST = ["--threads", "1", "--runs", "5", "--warmup", "1", "--no-keras"]


def _ssh_args(sshd, options=None) -> list[str]:
    return [x for o in (options or sshd["options"]) for x in ("--ssh-option", o)]


def _bench(*args: str):
    from click.testing import CliRunner

    from edge_export.cli import cli

    return CliRunner().invoke(cli, ["bench", *args])


def test_bench_on_a_device_over_ssh(tiny_export, sshd, device_python, tmp_path):
    remote_python, blocked_log = device_python
    out, remote_dir = tmp_path / "out", tmp_path / "device-home"
    result = _bench(
        str(tiny_export["run"]),
        "--data",
        str(tiny_export["data"]),
        "--out",
        str(out),
        *FAST,
        "--device",
        sshd["url"],
        *_ssh_args(sshd),
        "--remote-python",
        remote_python,
        "--remote-dir",
        str(remote_dir),
    )  # the other tests pass the old name, --target
    assert result.exit_code == 0, f"{result.output}\n{result.exception!r}"
    report = json.loads((out / "bench.json").read_text())
    name = sshd["name"]
    assert set(report["targets"]) == {"local", name} and not report.get("target_errors")
    device = report["targets"][name]
    assert isinstance(device["cpu"], str) and isinstance(device["cores"], int) and device["os"] and device["python"]
    assert device["libraries"]["ai-edge-litert"] and device["libraries"]["onnxruntime"]
    rows = {(a["name"], a["target"]): a for a in report["artifacts"]}
    assert set(rows) == {(n, t) for n in ("tflite-int8", "onnx-fp32") for t in ("local", name)}
    for artifact in ("tflite-int8", "onnx-fp32"):
        local, remote = rows[(artifact, "local")], rows[(artifact, name)]
        assert remote["status"] == "ok", remote.get("error")
        assert (
            remote["accuracy"] == local["accuracy"] and remote["confusion"] == local["confusion"]
        )  # same runtime, same images
        assert (remote["format"], remote["precision"], remote["size_bytes"]) == (
            local["format"],
            local["precision"],
            local["size_bytes"],
        )
        assert remote["latency_ms"]["p50"] > 0 and remote["by_threads"][0]["threads_requested"] == 1
    assert report["ok"] and report["failed"] == []
    assert report["target_runs"][name]["images"] == 12
    assert any((sshd["folder"] / "pixels").iterdir())  # decoded into the login's cache (SetEnv above), never ~/.cache
    # the table shows both machines; the device's own report is kept
    lines = result.output.splitlines()
    assert (
        any(line.startswith("tflite-int8") and f" {name} " in line for line in lines) and "p50 ms @1t" in result.output
    )
    assert (
        json.loads((out / BenchFiles.DEVICES / name.replace(":", "_") / BenchFiles.JSON).read_text())["machine"]
        == device
    )
    md = (out / "bench.md").read_text()
    assert f"- device {name}:" in md and f"### tflite-int8@{name}" in md
    assert not list(remote_dir.glob("bench-*"))  # the device's working folder is removed
    assert not blocked_log.exists(), f"the device tried to import: {blocked_log.read_text()}"


def test_unknown_host_key_is_refused_before_any_local_work(tiny_export, sshd, device_python, tmp_path):
    remote_python, _ = device_python
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    options = [o if not o.startswith("UserKnownHostsFile=") else f"UserKnownHostsFile={empty}" for o in sshd["options"]]
    model = tiny_export["run"] / "export" / "tflite-int8.tflite"
    out = tmp_path / "out"
    result = _bench(
        str(model),
        "--data",
        str(tiny_export["data"]),
        "--out",
        str(out),
        *FAST,
        "--target",
        sshd["url"],
        *_ssh_args(sshd, options),
        "--remote-python",
        remote_python,
        "--remote-dir",
        str(tmp_path / "home"),
    )
    assert isinstance(result.exception, EdgeExportError), result.output
    text = str(result.exception)
    assert "host key is not trusted, refusing to connect" in text and "Host key verification failed" in text
    assert "UserKnownHostsFile" in text and "nothing was measured" in text
    assert empty.read_text() == ""  # nothing was accepted into known_hosts
    _assert_nothing_measured(out, result.output)


def test_device_without_python_is_a_clear_error(tiny_export, sshd, tmp_path):
    model = tiny_export["run"] / "export" / "tflite-int8.tflite"
    out = tmp_path / "out"
    result = _bench(
        str(model),
        "--data",
        str(tiny_export["data"]),
        "--out",
        str(out),
        *FAST,
        "--target",
        sshd["url"],
        *_ssh_args(sshd),
        "--remote-python",
        "/nonexistent/bin/python3",
        "--remote-dir",
        str(tmp_path / "home"),
    )
    assert isinstance(result.exception, EdgeExportError), result.output
    assert f"{sshd['name']}: no Python at '/nonexistent/bin/python3' on the device" in str(result.exception)
    assert "--remote-python" in result.exception.hint
    _assert_nothing_measured(out, result.output)
    assert not (tmp_path / "home").exists()  # nothing was copied


def test_unknown_host_fails_first_and_once(tiny_export, tmp_path, capsys):
    """A host name that does not resolve (.invalid never does) is found before the local benchmark, and said once."""
    from edge_export.cli import main

    out = tmp_path / "out"
    with pytest.raises(SystemExit) as info:
        main(
            [
                "bench",
                str(tiny_export["run"]),
                "--data",
                str(tiny_export["data"]),
                "--out",
                str(out),
                *FAST,
                "--target",
                "ssh://nobody@does-not-exist.invalid",
            ]
        )
    stdout, stderr = capsys.readouterr()
    assert info.value.code == 2
    assert (stdout + stderr).count("does-not-exist.invalid does not resolve") == 1, stdout + stderr
    assert stderr.startswith(
        "error: nobody@does-not-exist.invalid: the host name does-not-exist.invalid does not resolve"
    )
    assert "nothing was measured" in stderr and "fix: check the name in --device" in stderr
    _assert_nothing_measured(out, stdout)


def test_a_device_that_fails_after_the_check_keeps_the_local_results(
    tiny_export, sshd, device_python, tmp_path, capsys
):
    """The device answers, but its --remote-dir cannot be made: local results are written, the failure said once."""
    from edge_export.cli import main

    remote_python, _ = device_python
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    model = tiny_export["run"] / "export" / "tflite-int8.tflite"
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as info:
        main(
            [
                "bench",
                str(model),
                "--data",
                str(tiny_export["data"]),
                "--out",
                str(out),
                *FAST,
                "--target",
                sshd["url"],
                *_ssh_args(sshd),
                "--remote-python",
                remote_python,
                "--remote-dir",
                str(blocker / "home"),
            ]
        )
    stdout, stderr = capsys.readouterr()
    assert info.value.code == 1
    assert (stdout + stderr).count("could not unpack") == 1, stdout + stderr
    assert f"error: could not measure on {sshd['name']} (see FAILED" in stderr
    _assert_local_intact(out, sshd["name"], "could not unpack")


def test_setup_makes_a_venv_on_the_device(tiny_export, sshd, tmp_path):
    """--setup: venv + pinned requirements + the wheel on the device (system site packages: no network here)."""
    model = tiny_export["run"] / "export" / "onnx-fp32.onnx"
    out, home = tmp_path / "out", tmp_path / "home"
    result = _bench(
        str(model),
        "--data",
        str(tiny_export["data"]),
        "--out",
        str(out),
        *FAST,
        "--target",
        sshd["url"],
        *_ssh_args(sshd),
        "--remote-python",
        sys.executable,
        "--remote-dir",
        str(home),
        "--setup",
        "--system-site-packages",
    )
    assert result.exit_code == 0, f"{result.output}\n{result.exception!r}"
    assert "setting up" in result.output
    venv_python = home / "venv" / "bin" / "python"
    assert venv_python.exists()
    shown = subprocess.run(
        [str(venv_python), "-c", "import edge_export; print(edge_export.__file__)"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert str(home / "venv") in shown.stdout  # edge-export installed from the bundle's wheel into the venv
    report = json.loads((out / "bench.json").read_text())
    remote = [a for a in report["artifacts"] if a["target"] == sshd["name"]]
    assert [a["name"] for a in remote] == ["onnx-fp32"] and remote[0]["status"] == "ok"
    assert remote[0]["backend"] == "onnxruntime"


def test_bad_targets_are_rejected_before_any_work(tmp_path, image_folder):
    model = tmp_path / "m.tflite"
    for bad, message in (
        ("pi@host", "not an ssh device"),
        ("ssh://host:notaport", "bad ssh device"),
        ("ssh://", "bad ssh device"),
    ):
        result = _bench(str(model), "--data", str(image_folder), "--out", str(tmp_path / "o"), "--target", bad)
        assert isinstance(result.exception, EdgeExportError) and message in str(result.exception), (bad, result.output)
    result = _bench(str(model), "--data", str(image_folder), "--target", "ssh://h", "--ssh-option", "NoEquals")
    assert isinstance(result.exception, EdgeExportError) and "bad ssh option 'NoEquals'" in str(result.exception)
    assert not (tmp_path / "o").exists()


def _assert_nothing_measured(out: Path, output: str) -> None:
    assert not out.exists(), sorted(out.rglob("*"))  # no bench.json, no bench.md: the local benchmark never ran
    assert "test data:" not in output and "p50" not in output


def _assert_local_intact(out: Path, name: str, why: str) -> None:
    report = json.loads((out / "bench.json").read_text())
    (row,) = report["artifacts"]
    assert (
        row["name"] == "tflite-int8"
        and row["target"] == "local"
        and row["status"] == "ok"
        and row["accuracy"] is not None
    )
    assert set(report["targets"]) == {"local"} and name in report["target_errors"], why
    assert report["ok"] is False
    assert f"FAILED device {name}" in (out / "bench.md").read_text()


def _device_entries(sshd) -> set[str]:
    pixels = sshd["folder"] / "pixels"
    return {p.name for p in pixels.iterdir() if not p.name.startswith(".")} if pixels.is_dir() else set()


def test_linked_photos_are_shipped_as_photos_and_the_device_cache_is_reused(tiny_export, sshd, device_python, tmp_path):
    """Issue 25, classes 3 and 7: a test folder of (relative) links reaches the device as the photos' bytes, so
    the device measures every photo the table counts; a second bench of the same photos (a new working folder on
    the device) reuses the device's pixel-cache entry instead of leaving another one behind."""
    import os

    remote_python, _ = device_python
    source = tiny_export["data"] / "test"
    links = tmp_path / "linked" / "test"
    for photo in sorted(source.rglob("*.png")):
        target = links / photo.relative_to(source)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.symlink_to(os.path.relpath(photo, target.parent))  # valid here, a dead link anywhere else
    model = tiny_export["run"] / "export" / "tflite-int8.tflite"
    common = [
        *FAST,
        "--device",
        sshd["url"],
        *_ssh_args(sshd),
        "--remote-python",
        remote_python,
        "--remote-dir",
        str(tmp_path / "home"),
    ]
    result = _bench(str(model), "--data", str(links), "--out", str(tmp_path / "o1"), *common)
    assert result.exit_code == 0, f"{result.output}\n{result.exception!r}"
    report = json.loads((tmp_path / "o1" / "bench.json").read_text())
    assert not report.get("target_errors") and report["data"]["images"] == 12
    assert report["target_runs"][sshd["name"]]["images"] == 12
    rows = {a["target"]: a for a in report["artifacts"]}
    assert rows[sshd["name"]]["confusion"] == rows["local"]["confusion"]

    entries = _device_entries(sshd)
    again = _bench(str(model), "--data", str(links), "--out", str(tmp_path / "o2"), *common)
    assert again.exit_code == 0, again.output
    assert _device_entries(sshd) == entries  # reused by content: nothing new left on the device


def test_a_device_that_measures_other_photos_is_a_failed_device_not_a_row(
    tiny_export, sshd, device_python, tmp_path, monkeypatch
):
    """Class 3's rule: the counts are compared; a device that measured fewer photos (here: one lost on the way)
    is a FAILED device, and none of its rows reach the table."""
    import tarfile

    from edge_export.deploy import remote

    real = remote._test_archive

    def one_photo_lost(data, path):
        full = real(data, path)
        with tarfile.open(full) as tar:
            members = [(m, tar.extractfile(m).read() if m.isfile() else None) for m in tar.getmembers()]
        dropped = next(m.name for m, _ in members if m.isfile())
        with tarfile.open(full, "w:gz") as tar:
            for member, data_ in members:
                if member.name != dropped:
                    tar.addfile(member, None if data_ is None else __import__("io").BytesIO(data_))
        return full

    monkeypatch.setattr(remote, "_test_archive", one_photo_lost)
    remote_python, _ = device_python
    model = tiny_export["run"] / "export" / "tflite-int8.tflite"
    out = tmp_path / "out"
    result = _bench(
        str(model),
        "--data",
        str(tiny_export["data"]),
        "--out",
        str(out),
        *FAST,
        "--device",
        sshd["url"],
        *_ssh_args(sshd),
        "--remote-python",
        remote_python,
        "--remote-dir",
        str(tmp_path / "home"),
    )
    assert result.exit_code == 1, result.output
    _assert_local_intact(out, sshd["name"], "measured other photos")
    error = json.loads((out / "bench.json").read_text())["target_errors"][sshd["name"]]
    assert "the device measured other photos than this machine (images: 11 there, 12 here)" in error
