"""``tflite-qat-int8:auto`` (in the default export.formats): quantization-aware training runs only when
post-training tflite-int8 loses more than export.qat.trigger_points of validation accuracy, and the manifest
says whether it ran and why. The triggers here are set so that the rule's answer is certain (a trigger of
-100 points: any drop is more; 100 points: no drop is), never by hoping int8 loses."""

from __future__ import annotations

import json
import shutil

import pytest

from edge_export.core.config import Config, load_config
from edge_export.core.errors import EdgeExportError
from edge_export.core.records.manifest import ArtifactRecord, Manifest
from edge_export.core.run_folder import RunFolder
from edge_export.export.formats import FORMATS, auto_formats, resolve_formats

AUTO = ["tflite-int8", "tflite-qat-int8:auto"]


@pytest.fixture
def fresh_run(tiny_export, tmp_path) -> RunFolder:
    dest = tmp_path / "run"
    shutil.copytree(tiny_export["run"], dest, ignore=shutil.ignore_patterns("export", "checkpoints", "bench"))
    return RunFolder(dest)


def _export(run: RunFolder, trigger: float, formats=AUTO, *extra: str):
    from edge_export.export.exporter import export_run

    config = load_config(run.config, [f"export.qat.trigger_points={trigger}", "export.qat.epochs=1", *extra])
    lines: list[str] = []
    manifest = export_run(run, config.export, run_config=config, formats=formats, echo=lines.append)
    return manifest, lines


def test_the_default_formats_ask_for_qat_in_auto_mode():
    config = Config()
    assert "tflite-qat-int8:auto" in config.export.formats
    assert config.export.qat.trigger_points == 0.3
    assert auto_formats(config.export.formats) == {"tflite-qat-int8"}
    assert [f.name for f in resolve_formats(config.export.formats)] == list(FORMATS)


def test_a_plain_request_always_runs_and_only_qat_has_an_auto_mode():
    assert auto_formats("all,tflite-qat-int8:auto") == set()  # named plainly too (all): it always runs
    assert auto_formats("tflite,tflite-qat-int8:auto") == set()
    assert auto_formats(["tflite-qat-int8:auto", "onnx-int8"]) == {"tflite-qat-int8"}
    with pytest.raises(EdgeExportError, match="onnx-int8 has no auto mode"):
        resolve_formats("onnx-int8:auto")
    with pytest.raises(EdgeExportError, match="unknown export format"):
        resolve_formats("tflite-qat-int4:auto")
    with pytest.raises(EdgeExportError, match="trigger_points"):
        load_config(None, ["export.qat.trigger_points=nan"])


def test_without_a_post_training_result_qat_runs_and_says_why():
    from edge_export.export.exporter import auto_qat_decision

    config = Config().export
    decision = auto_qat_decision(config, [])
    assert decision["ran"] and "tflite-int8" in decision["reason"] and "not exported" in decision["reason"]
    failed = ArtifactRecord("tflite-int8", status="failed", error="conversion failed: boom")
    assert auto_qat_decision(config, [failed])["ran"]
    loses = ArtifactRecord("tflite-int8", parity={"accuracy_drop": 0.31, "images": 1000, "top1_agreement": 0.99})
    keeps = ArtifactRecord("tflite-int8", parity={"accuracy_drop": 0.3, "images": 1000, "top1_agreement": 0.99})
    assert auto_qat_decision(config, [loses])["ran"] and not auto_qat_decision(config, [keeps])["ran"]
    assert "+0.31 points" in auto_qat_decision(config, [loses])["reason"]


def test_auto_qat_is_skipped_when_post_training_int8_keeps_accuracy(fresh_run):
    manifest, lines = _export(fresh_run, 100)
    assert manifest.ok and [a.name for a in manifest.artifacts] == ["tflite-int8"]
    assert manifest.formats == ["tflite-int8"]  # what this export made
    assert not (fresh_run.export_dir / FORMATS["tflite-qat-int8"].filename).exists()
    decision = manifest.auto["tflite-qat-int8"]
    drop = manifest.artifact("tflite-int8").parity["accuracy_drop"]
    assert decision["ran"] is False and decision["trigger_points"] == 100
    assert decision["int8_accuracy_drop"] == pytest.approx(drop, abs=1e-4)
    assert "within export.qat.trigger_points 100" in decision["reason"]
    assert any("tflite-qat-int8: skipped" in line for line in lines)
    on_disk = json.loads(fresh_run.export_manifest.read_text())  # the file says it, and reads back
    assert on_disk["auto"]["tflite-qat-int8"]["ran"] is False
    again = Manifest.from_dict(on_disk, folder=fresh_run.export_dir)
    assert again.auto == manifest.auto and again.to_dict() == on_disk


def test_auto_qat_runs_when_post_training_int8_loses_more_than_the_trigger(fresh_run):
    manifest, lines = _export(fresh_run, -100, AUTO, "export.qat.max_images=16", "export.qat.validation_images=8")
    assert [a.name for a in manifest.artifacts] == ["tflite-int8", "tflite-qat-int8"]
    qat = manifest.artifact("tflite-qat-int8")
    assert qat.ok and (fresh_run.export_dir / qat.path).is_file()
    decision = manifest.auto["tflite-qat-int8"]
    assert decision["ran"] is True and qat.details["auto"] == decision
    assert "more than export.qat.trigger_points -100" in decision["reason"]
    assert any("tflite-qat-int8: running" in line for line in lines)
