"""One command at a time per run folder (core/run_lock.py): refused at once naming the holder, never
blocked by the lock of a killed process, temporary files in the run folder's own RUN/.tmp."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from edge_export.core.errors import EdgeExportError
from edge_export.core.run_folder import RunFolder
from edge_export.core.run_lock import locked_run

from conftest import build_cmd, resume, start_paused, write_image_folder


def _cli(*args: str):
    from click.testing import CliRunner

    from edge_export.cli import cli

    return CliRunner().invoke(cli, list(args))


def test_second_holder_is_refused_at_once_naming_the_first(tmp_path):
    run = RunFolder(tmp_path / "run")
    with locked_run(run, "edge-export build --out run"):
        with pytest.raises(EdgeExportError) as refused:
            with locked_run(run, "edge-export export run"):
                pytest.fail("two holders of one run folder")
        text = str(refused.value)
        assert f"run folder {run.root} is in use by pid {os.getpid()} (edge-export build --out run, started " in text
        assert "wait for it to finish, or use another --out" in text
    with locked_run(run):  # released at the end
        pass


def test_temporary_files_go_to_the_run_folder_and_are_cleaned(tmp_path, monkeypatch):
    (tmp_path / "system").mkdir()
    monkeypatch.setenv("TMPDIR", str(tmp_path / "system"))
    run = RunFolder(tmp_path / "run")
    (run.tmp_dir / "edge-export-bench-old").mkdir(parents=True)  # left by a killed command
    before = tempfile.tempdir
    with locked_run(run):
        assert list(run.tmp_dir.iterdir()) == []
        assert tempfile.gettempdir() == os.environ["TMPDIR"] == str(run.tmp_dir.resolve())
        made = Path(tempfile.mkdtemp(prefix="edge-export-"))
        assert made.parent == run.tmp_dir.resolve()
        child = subprocess.run(
            [sys.executable, "-c", "import tempfile; print(tempfile.gettempdir())"], capture_output=True, text=True
        )
        assert child.stdout.strip() == str(run.tmp_dir.resolve())  # children too (TMPDIR)
    assert not run.tmp_dir.exists()
    assert tempfile.tempdir == before and os.environ["TMPDIR"] == str(tmp_path / "system")
    assert run.lock_file.read_text() == ""  # released: nobody named as holder


def test_a_failed_start_leaves_no_run_folder_and_bad_out_is_a_clear_error(tmp_path):
    run = RunFolder(tmp_path / "new" / "run")
    with pytest.raises(RuntimeError):
        with locked_run(run):
            raise RuntimeError("bad settings")
    assert not run.root.exists()
    (tmp_path / "file").write_text("x")
    with pytest.raises(EdgeExportError, match="cannot use the run folder"):
        with locked_run(RunFolder(tmp_path / "file")):
            pass


def test_every_command_writing_a_run_folder_is_refused_while_it_is_held(tiny_export, tmp_path):
    run = RunFolder(tmp_path / "run")
    shutil.copytree(tiny_export["run"], run.root)
    data = str(tiny_export["data"])
    commands = {
        "train": ["train", "--data", data, "--out", str(run.root), "model.backbone=tiny_cnn", "model.weights=none"],
        "export": ["export", str(run.root)],
        "bench": ["bench", str(run.root), "--data", data, "--no-keras"],
        "package": ["package", str(run.root)],
    }
    with locked_run(run, "edge-export build --out run"):
        before = {p: p.stat().st_mtime_ns for p in run.root.rglob("*")}
        for name, args in commands.items():
            result = _cli(*args)
            assert isinstance(result.exception, EdgeExportError), (name, result.output, result.exception)
            assert f"is in use by pid {os.getpid()} (edge-export build --out run" in str(result.exception), name
        assert {p: p.stat().st_mtime_ns for p in run.root.rglob("*")} == before  # nothing written or removed


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return write_image_folder(tmp_path_factory.mktemp("lock") / "data", {"train": 10, "validation": 5, "test": 5})


def test_concurrent_builds_on_one_out(data, tmp_path):
    """The second build exits at once naming the first; the first, resumed, completes as if alone."""
    out = tmp_path / "run"
    first, _ = start_paused(build_cmd(data, out), "export.artifact.tflite-fp32")  # mid-export, temp files in use
    try:
        in_use = sorted(p.relative_to(out) for p in (out / ".tmp").rglob("*"))
        assert in_use
        second = subprocess.run(build_cmd(data, out), capture_output=True, text=True, timeout=300)
        assert second.returncode == 2, second.stderr
        assert re.search(
            rf"error: run folder {re.escape(str(out))} is in use by pid {first.pid} \(edge-export build ", second.stderr
        )
        assert "Traceback" not in second.stderr and second.stdout == ""
        assert sorted(p.relative_to(out) for p in (out / ".tmp").rglob("*")) == in_use  # the first's files untouched
    finally:
        rest = resume(first)
    assert first.returncode == 0, rest
    assert '"event": "build_finished", "ok": true' in rest


def test_a_killed_holder_does_not_block_the_next_command(data, tmp_path):
    out = tmp_path / "run"
    first, _ = start_paused(build_cmd(data, out, "--stages", "train"), "lock.acquired")
    first.kill()
    first.wait(timeout=60)
    first.stdout.close()
    assert f'"pid": {first.pid}' in (out / ".lock").read_text()  # its note is still there; its lock is not
    again = subprocess.run(build_cmd(data, out, "--stages", "train"), capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    assert (out / "model.keras").is_file()
