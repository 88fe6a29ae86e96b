"""`edge-export build`: one resumable pipeline. Killed (kill -9) during each stage, it resumes correctly.

Kills happen at pause points the build announces (core/pause.py), never after a guessed delay.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
from pathlib import Path

import numpy as np
import pytest

from conftest import build_cmd as _cmd
from conftest import process_alive, resume, start_paused, wait_until, write_image_folder


def _events(stdout: str) -> list[dict]:
    return [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]


def _kill_at(data: Path, out: Path, point: str, stage: str, env: dict | None = None) -> list[dict]:
    """Run the build until pause point ``point`` inside ``stage``, SIGKILL it there; its events."""
    proc, events = start_paused(_cmd(data, out), point, env)
    try:
        assert {"event": "stage_started", "stage": stage} in events
        assert not [e for e in events if e["event"] == "stage_finished" and e["stage"] == stage]
        assert not (out / ".build" / f"{stage}.json").exists()  # stopped mid-stage: not recorded as done
    finally:
        proc.kill()
        proc.wait(timeout=60)
        proc.stdout.close()
    assert proc.returncode == -signal.SIGKILL
    return events


def _artifact_digests(out: Path) -> dict[str, str]:
    manifest = json.loads((out / "export" / "manifest.json").read_text())
    return {a["name"]: a["sha256"] for a in manifest["artifacts"]}


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return write_image_folder(tmp_path_factory.mktemp("build") / "data", {"train": 10, "validation": 5, "test": 5})


@pytest.fixture(scope="module")
def reference_build(data, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ref") / "run"
    result = subprocess.run(_cmd(data, out), capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    events = _events(result.stdout)
    assert [e["stage"] for e in events if e["event"] == "stage_finished"] == ["train", "export", "bench"]
    return out


def test_uninterrupted_build_outputs(reference_build):
    out = reference_build
    for name in ("model.keras", "export/manifest.json", "bench/bench.json", "report.md", "report.html", "report.json"):
        assert (out / name).is_file(), name
    report = json.loads((out / "report.json").read_text())
    assert set(report) >= {"dataset", "train", "export", "bench", "recommendation"}
    rec = report["recommendation"]
    assert rec["artifact"] in {a["name"] for a in report["export"]["artifacts"]}
    deployed = sorted(p.name for p in (out / "deploy").iterdir())
    assert "labels.txt" in deployed and "model_card.json" in deployed
    assert any(name.endswith((".tflite", ".onnx")) for name in deployed)
    html = (out / "report.html").read_text()
    assert "data:image/png;base64," in html and "<table>" in html  # self-contained


def test_rerun_skips_everything(reference_build, data):
    result = subprocess.run(_cmd(data, reference_build), capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    events = _events(result.stdout)
    assert [e["stage"] for e in events if e["event"] == "stage_skipped"] == ["train", "export", "bench"]


def test_changed_setting_redoes_only_what_depends_on_it(reference_build, data, tmp_path):
    out = tmp_path / "run"
    shutil.copytree(reference_build, out)
    result = subprocess.run(_cmd(data, out, "bench.runs=6"), capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    events = _events(result.stdout)
    assert [e["stage"] for e in events if e["event"] == "stage_skipped"] == ["train", "export"]
    assert [e["stage"] for e in events if e["event"] == "stage_finished"] == ["bench"]


def test_killed_during_each_stage_resumes_to_the_same_artifacts(reference_build, data, tmp_path):
    out = tmp_path / "run"
    # training: after the first fine-tuning epoch (feature extraction done, its checkpoint saved)
    _kill_at(data, out, "train.fine_tune.epoch.1", "train")
    assert (out / "checkpoints" / "feature_extraction_best.keras").is_file() and not (out / "model.keras").exists()
    # export: after the first of three artifacts was written, before the manifest
    _kill_at(data, out, "export.artifact.tflite-fp32", "export")
    assert (out / ".build" / "train.json").is_file()
    assert (out / "export" / "tflite-fp32.tflite").is_file() and not (out / "export" / "manifest.json").exists()
    # bench: after the first measured model, before bench.json
    _kill_at(data, out, "bench.measured.keras", "bench")
    assert (out / ".build" / "export.json").is_file() and not (out / "bench" / "bench.json").exists()

    result = subprocess.run(_cmd(data, out), capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    events = _events(result.stdout)
    assert [e["stage"] for e in events if e["event"] == "stage_skipped"] == ["train", "export"]
    assert [e["stage"] for e in events if e["event"] == "stage_finished"] == ["bench"]
    assert not list(out.rglob(".*.partial*"))  # leftovers of the kills were cleaned up

    # Same seed, same artifacts: the exported files are byte-identical to the uninterrupted build's.
    assert _artifact_digests(out) == _artifact_digests(reference_build)
    # model.keras is a zip that records its save time, so compare its weights instead of its bytes.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import keras

    a = keras.models.load_model(out / "model.keras").get_weights()
    b = keras.models.load_model(reference_build / "model.keras").get_weights()
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)


def _parent(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def test_kill_during_bench_leaves_no_worker_and_no_temp_files(reference_build, data, tmp_path):
    """kill -9 while a measuring worker is alive: the worker dies with the build; temporary files were in
    the run folder's own RUN/.tmp (never the system's temp folder), which the next command cleans first."""
    out, system_tmp = tmp_path / "run", tmp_path / "system-tmp"
    shutil.copytree(reference_build, out)
    system_tmp.mkdir()
    env = {"TMPDIR": str(system_tmp)}
    # the build stops right after starting a worker; the worker stops before measuring: alive until killed
    proc, events = start_paused(_cmd(data, out, "bench.runs=6"), "bench.worker_started,bench.worker", env)
    worker = events[-1]["child"]
    try:
        assert events[-1]["at"] == "bench.worker_started" and {"event": "stage_started", "stage": "bench"} in events
        assert process_alive(worker) and _parent(worker) == proc.pid
        assert list((out / ".tmp").glob("edge-export-bench-*"))  # the benchmark's work folder is in the run folder
    finally:
        proc.kill()
        proc.wait(timeout=60)
        proc.stdout.close()
    try:
        wait_until(lambda: not process_alive(worker), f"worker {worker} to die with the killed build")
    finally:
        if process_alive(worker):
            os.kill(worker, signal.SIGKILL)
    assert list(system_tmp.iterdir()) == []
    assert list((out / ".tmp").iterdir())  # what the killed build left, in its own run folder

    # the next command on the run folder empties RUN/.tmp as soon as it holds the lock, before any work
    proc, events = start_paused(_cmd(data, out, "bench.runs=6"), "lock.acquired", env)
    try:
        assert (out / ".tmp").is_dir() and list((out / ".tmp").iterdir()) == []
    finally:
        rest = resume(proc)
    assert proc.returncode == 0
    assert [e["stage"] for e in _events(rest) if e["event"] == "stage_finished"] == ["bench"]
    assert not (out / ".tmp").exists() and list(system_tmp.iterdir()) == []
