"""`edge-export build`: one resumable pipeline. Killed (kill -9) during each stage, it resumes correctly."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import write_image_folder

FAST = [
    "model.backbone=tiny_cnn", "model.weights=none", "train.batch_size=8",
    "train.feature_extraction.epochs=3", "train.fine_tune.epochs=2",
    "export.formats=tflite-fp32,tflite-int8,onnx-fp32", "export.representative_images=16",
    "export.accuracy_budget=100", "bench.runs=5", "bench.warmup=1", "bench.threads=[1]",
    "build.accuracy_budget=100",
]


def _cmd(data: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "edge_export.cli", "build", "--data", str(data), "--out", str(out), "--json", *FAST, *extra]


def _events(stdout: str) -> list[dict]:
    return [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]


def _kill_during(data: Path, out: Path, stage: str, delay: float) -> None:
    proc = subprocess.Popen(_cmd(data, out), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        for line in proc.stdout:
            if line.startswith("{") and json.loads(line) == {"event": "stage_started", "stage": stage}:
                time.sleep(delay)
                break
        else:
            pytest.fail(f"build ended before stage {stage} started")
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=60)
    assert not (out / ".build" / f"{stage}.json").exists(), f"{stage} finished before the kill; the test proves nothing"


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
    _kill_during(data, out, "train", 1.0)
    _kill_during(data, out, "export", 2.0)
    assert (out / ".build" / "train.json").is_file()
    _kill_during(data, out, "bench", 1.0)
    assert (out / ".build" / "export.json").is_file()

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
