"""Export of a tiny trained run to every format, with real TensorFlow, LiteRT, tf2onnx and ONNX Runtime."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from conftest import TINY_TRAIN, write_image_folder
from edge_export.config import load_config
from edge_export.errors import EdgeExportError
from edge_export.export.formats import FORMATS, resolve_formats
from edge_export.export.layout import ExportFolder
from edge_export.export.manifest import sha256_of
from edge_export.run_folder import RunFolder
from edge_export.runtime.classifier import Classifier
from edge_export.runtime.metadata import read_metadata

QUICK_QAT = ["export.qat.epochs=1"]


# ----------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> RunFolder:
    """A tiny trained run folder (confident on its easy data, so quantized copies agree with it)."""
    from edge_export.trainer.run import train_run

    root = tmp_path_factory.mktemp("export")
    data = write_image_folder(root / "data", {"train": 16, "validation": 8})
    run = RunFolder(root / "run")
    metrics = train_run(load_config(None, [f"data.path={data}", *TINY_TRAIN]), run)
    assert metrics["validation"]["accuracy"] == 1.0
    return run


def copy_run(run: RunFolder, dest: Path) -> RunFolder:
    shutil.copytree(run.root, dest, ignore=shutil.ignore_patterns("export", "checkpoints"))
    return RunFolder(dest)


def run_config(run: RunFolder, *overrides: str):
    return load_config(run.config, list(overrides))


@pytest.fixture(scope="module")
def exported(trained, tmp_path_factory) -> tuple[RunFolder, dict]:
    from edge_export.export.pipeline import export_run

    run = copy_run(trained, tmp_path_factory.mktemp("exported") / "run")
    config = run_config(run, *QUICK_QAT)
    lines: list[str] = []
    manifest = export_run(run, config.export, run_config=config, formats="all", echo=lines.append)
    return run, manifest, lines


@pytest.fixture(scope="module")
def validation(trained):
    """The validation pixels and labels, and the Keras model's probabilities for them."""
    from edge_export.tf_env import import_keras
    from edge_export.trainer.datasets import load_pixels, scan_dataset

    config = load_config(trained.config)
    split = scan_dataset(config.data.path).splits["validation"]
    pixels, labels, _ = load_pixels(split, (32, 32))
    model = import_keras().models.load_model(trained.model, compile=False)
    return pixels, labels, np.asarray(model.predict(pixels.astype(np.float32), verbose=0))


def cli(*args: str) -> int:
    from edge_export.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(list(args))
    return exit_info.value.code


def partials(folder: Path) -> list[Path]:
    return sorted(folder.glob(".*partial*")) if folder.is_dir() else []


# ----------------------------------------------------------------------------- formats


def test_format_registry_resolves_names_families_and_all():
    assert [f.name for f in resolve_formats("all")] == list(FORMATS)
    assert {f.family for f in resolve_formats("onnx")} == {"onnx"}
    assert [f.name for f in resolve_formats(["onnx-int8,tflite-fp32", "tflite-fp32"])] == ["tflite-fp32", "onnx-int8"]
    assert len({f.filename for f in FORMATS.values()}) == len(FORMATS)
    with pytest.raises(EdgeExportError, match="unknown export format 'tflite-int4'"):
        resolve_formats("tflite-int4")


def test_export_settings_precedence(trained, tmp_path):
    """defaults < the run's config.yaml < --config FILE < key=value < --formats."""
    from edge_export.commands.export import resolve_export_config

    config_file = tmp_path / "export.yaml"
    config_file.write_text("export:\n  int8_io: int8\n  onnx_opset: 15\n  formats: [onnx]\n")
    config = resolve_export_config(trained, config_file, ["export.onnx_opset=16"], "tflite-fp32,onnx-fp32")
    assert (config.export.int8_io, config.export.onnx_opset) == ("int8", 16)
    assert config.export.formats == ["tflite-fp32", "onnx-fp32"]
    assert config.model.backbone == "tiny_cnn"  # from the run's config.yaml
    assert config.data.path == load_config(trained.config).data.path


# ----------------------------------------------------------------------------- the full export


def test_every_format_converts_runs_and_agrees_with_keras(exported, validation):
    run, manifest, _ = exported
    pixels, labels, keras_probs = validation
    assert manifest["ok"], [(a["name"], a.get("error")) for a in manifest["artifacts"]]
    assert [a["name"] for a in manifest["artifacts"]] == list(FORMATS)
    tolerance = {"fp32": 1e-4, "fp16": 1e-2, "dynamic-int8": 0.1, "int8": 0.1}
    for artifact in manifest["artifacts"]:
        fmt = FORMATS[artifact["name"]]
        classifier = Classifier.load(run.export_dir / artifact["path"])  # labels + preprocessing from metadata
        assert classifier.backend.name == {"tflite": "litert", "onnx": "onnxruntime"}[fmt.family]
        probs = classifier.predict_proba(pixels)
        diff = float(np.abs(probs - keras_probs).max())
        assert diff < tolerance[fmt.precision], (fmt.name, diff)
        assert (probs.argmax(1) == keras_probs.argmax(1)).all(), fmt.name
        assert artifact["parity"]["max_abs_diff"] == pytest.approx(diff, abs=1e-5)
        assert artifact["parity"]["accuracy"] == pytest.approx(float((probs.argmax(1) == labels).mean()))


def test_onnx_input_is_named_image_and_nhwc(exported):
    run, _, _ = exported
    for name in ("onnx-fp32", "onnx-int8"):
        spec = Classifier.load(run.export_dir / FORMATS[name].filename).backend.input_spec
        assert spec.name == "image" and spec.shape == (None, 32, 32, 3) and spec.dtype == np.float32


def test_manifest_is_complete_and_true(exported, trained):
    run, manifest, lines = exported
    folder = ExportFolder(run)
    on_disk = json.loads(folder.manifest.read_text())
    assert on_disk == json.loads(json.dumps(manifest))
    assert on_disk["keras"]["images"] == 16 and on_disk["keras"]["split"] == "validation"
    assert on_disk["model"]["sha256"] == sha256_of(run.model)
    for artifact in on_disk["artifacts"]:
        path = folder.root / artifact["path"]
        assert artifact["status"] == "ok" and "error" not in artifact
        assert artifact["size_bytes"] == path.stat().st_size
        assert artifact["sha256"] == sha256_of(path)
        fmt = FORMATS[artifact["name"]]
        assert (artifact["format"], artifact["precision"], artifact["path"]) == (fmt.family, fmt.precision, fmt.filename)
        assert set(artifact["parity"]) >= {"top1_agreement", "max_abs_diff", "accuracy", "keras_accuracy", "accuracy_drop"}
        assert artifact["parity"]["keras_accuracy"] == on_disk["keras"]["accuracy"]
    assert folder.labels.read_text().splitlines() == run.read_labels()
    card = json.loads(folder.model_card.read_text())
    assert {a["name"]: a["sha256"] for a in card["artifacts"]} == {a["name"]: a["sha256"] for a in on_disk["artifacts"]}
    assert card["training_data"]["counts"]["train"] == {"blue": 16, "red": 16}
    assert card["metrics"]["validation"]["accuracy"] == 1.0
    assert card["versions"]["tensorflow"] and card["versions"]["onnxruntime"] and card["versions"]["edge_export"]
    assert not partials(folder.root)
    # progress: a start and a finish line per format, with the time
    for name in FORMATS:
        assert sum(line.split()[1] == f"{name}:" for line in lines if line.startswith("[")) == 2
    assert any(line.startswith("    qat: epoch 1/1") for line in lines)


def test_metadata_round_trips(exported):
    run, _, _ = exported
    spec = json.loads(run.model_spec.read_text())
    for fmt in FORMATS.values():
        meta = read_metadata(run.export_dir / fmt.filename)
        assert meta["labels"] == ["blue", "red"]
        assert meta["preprocessing"] == spec["preprocessing"]
        assert (meta["format"], meta["precision"], meta["backbone"]) == (fmt.name, fmt.precision, "tiny_cnn")
        assert meta["edge_export"]
        assert meta.get("int8_io") == ("uint8" if fmt.integer_io else None)


def test_qat_reports_its_epochs_and_keeps_the_best(exported):
    _, manifest, _ = exported
    (qat,) = [a["qat"] for a in manifest["artifacts"] if a["name"] == "tflite-qat-int8"]
    assert [v["epoch"] for v in qat["validation"]] == [0, 1]  # 0: calibrated ranges, before training
    best = max(qat["validation"], key=lambda v: (v["accuracy"], -v["loss"]))
    assert qat["best_epoch"] == best["epoch"]
    assert qat["images"] == 32 and qat["trained_weights"] == 5


@pytest.mark.parametrize("blocks, expected", [(3, ["block0_conv", "block1_conv", "block2_conv", "classifier"]), (1, ["block2_conv", "classifier"])])
def test_qat_fine_tunes_only_what_training_fine_tuned(trained, validation, blocks, expected):
    from edge_export.export.qat import trainable_layers
    from edge_export.tf_env import import_keras
    from edge_export.trainer.model import ModelSpec

    model = import_keras().models.load_model(trained.model, compile=False)
    fine_tune = load_config(trained.config, [f"train.fine_tune.unfreeze_blocks={blocks}"]).train.fine_tune
    assert sorted(trainable_layers(model, ModelSpec("tiny_cnn", 32, 2), fine_tune)) == expected
    fine_tune.enabled = False
    assert trainable_layers(model, ModelSpec("tiny_cnn", 32, 2), fine_tune) == ["classifier"]


def test_qat_subprocess_leaves_this_process_on_keras_3(exported):
    import keras

    assert "TF_USE_LEGACY_KERAS" not in os.environ
    assert keras.__version__.startswith("3.")


# ----------------------------------------------------------------------------- integer input/output


@pytest.mark.parametrize("io_type, dtype, zero_point", [("uint8", np.uint8, 0), ("int8", np.int8, -128)])
def test_integer_io_type(exported, trained, validation, tmp_path, io_type, dtype, zero_point):
    names = ["tflite-int8", "tflite-qat-int8"]
    if io_type == "uint8":  # the default: already exported
        run = exported[0]
    else:
        from edge_export.export.pipeline import export_run

        run = copy_run(trained, tmp_path / "run")
        config = run_config(run, f"export.int8_io={io_type}", *QUICK_QAT)
        manifest = export_run(run, config.export, run_config=config, formats=names, echo=None)
        assert manifest["ok"], manifest["failed"]
    pixels, _, keras_probs = validation
    for name in names:
        classifier = Classifier.load(run.export_dir / FORMATS[name].filename)
        inp, out = classifier.backend.input_spec, classifier.backend.output_spec
        assert inp.dtype == dtype and out.dtype == dtype, name
        assert (inp.scale, inp.zero_point) == (1.0, zero_point), name  # raw pixels in
        assert read_metadata(classifier.path)["int8_io"] == io_type
        probs = classifier.predict_proba(pixels)
        assert (probs.argmax(1) == keras_probs.argmax(1)).all() and np.abs(probs - keras_probs).max() < 0.1, name


# ----------------------------------------------------------------------------- failures


def test_accuracy_budget_fails_that_artifact_with_exit_1(trained, tmp_path, monkeypatch, capsys):
    from edge_export.export import pipeline

    real = pipeline.artifact_probabilities

    def broken_dynamic(path, pixels):  # the dynamic-range model "loses" its accuracy
        probs, classifier = real(path, pixels)
        return (probs[:, ::-1] if "dynamic" in Path(path).name else probs), classifier

    monkeypatch.setattr(pipeline, "artifact_probabilities", broken_dynamic)
    run = copy_run(trained, tmp_path / "run")
    assert cli("export", str(run.root), "--formats", "tflite-fp32,tflite-dynamic,onnx-fp32") == 1
    out, err = capsys.readouterr()
    manifest = json.loads(ExportFolder(run).manifest.read_text())
    status = {a["name"]: a for a in manifest["artifacts"]}
    assert status["tflite-fp32"]["status"] == status["onnx-fp32"]["status"] == "ok"
    failed = status["tflite-dynamic"]
    assert failed["status"] == "failed" and "export.accuracy_budget" in failed["error"]
    assert failed["parity"]["accuracy_drop"] == pytest.approx(100.0)
    assert manifest["failed"] == ["tflite-dynamic"] and manifest["ok"] is False
    for a in manifest["artifacts"]:  # all written, the failed one too (for inspection)
        assert (run.export_dir / a["path"]).is_file()
    assert "FAILED tflite-dynamic" in err and "Traceback" not in out + err
    assert "tflite-dynamic  failed" in out  # the table


def test_budget_from_config_applies(trained, tmp_path):
    from edge_export.config import ExportConfig
    from edge_export.export.pipeline import export_run

    run = copy_run(trained, tmp_path / "run")
    manifest = export_run(run, ExportConfig(accuracy_budget=-1.0), formats="tflite-fp32", echo=None)
    (artifact,) = manifest["artifacts"]
    assert artifact["status"] == "failed" and "budget of -1 point" in artifact["error"]


def test_converter_exception_fails_only_that_format(trained, tmp_path, monkeypatch, capsys):
    from edge_export.export import tflite

    def explode(ctx, fmt, out):
        raise RuntimeError("converter exploded\nwith details")

    monkeypatch.setattr(tflite, "convert_fp16", explode)
    run = copy_run(trained, tmp_path / "run")
    assert cli("export", str(run.root), "--formats", "tflite-fp32,tflite-fp16,tflite-int8") == 1
    out, err = capsys.readouterr()
    manifest = json.loads(ExportFolder(run).manifest.read_text())
    status = {a["name"]: a for a in manifest["artifacts"]}
    assert status["tflite-fp32"]["status"] == status["tflite-int8"]["status"] == "ok"
    failed = status["tflite-fp16"]
    assert failed["status"] == "failed" and "RuntimeError: converter exploded" in failed["error"]
    assert failed["path"] is None and not (run.export_dir / "tflite-fp16.tflite").exists()
    assert "converter exploded" in out and "Traceback" not in out + err

    assert cli("--debug", "export", str(run.root), "--formats", "tflite-fp16") == 1
    assert "Traceback" in capsys.readouterr().out


def test_interrupted_export_leaves_nothing_that_looks_finished(trained, tmp_path, monkeypatch, capsys):
    from edge_export.export import tflite
    from edge_export.export.pipeline import export_run

    run = copy_run(trained, tmp_path / "run")
    folder = ExportFolder(run)
    assert export_run(run, formats="tflite-fp32,tflite-fp16", echo=None)["ok"]  # an earlier, finished export
    assert folder.manifest.is_file()

    def interrupted(ctx, fmt, out):
        out.write_bytes(b"TFL3" * 1000)  # half-written
        raise KeyboardInterrupt

    monkeypatch.setattr(tflite, "convert_fp16", interrupted)
    with pytest.raises(KeyboardInterrupt):
        export_run(run, formats="tflite-fp32,tflite-fp16", echo=None)
    assert not folder.manifest.exists() and not folder.model_card.exists()
    assert not (folder.root / "tflite-fp16.tflite").exists()
    assert not partials(folder.root)

    assert cli("export", str(run.root), "--formats", "tflite-fp16") == 130  # Ctrl-C in the CLI
    assert "Traceback" not in capsys.readouterr().err
    assert not folder.manifest.exists() and not (folder.root / "tflite-fp16.tflite").exists()


def test_missing_model_is_a_clear_cli_error(trained, tmp_path, capsys):
    run = copy_run(trained, tmp_path / "run")
    run.model.unlink()
    assert cli("export", str(run.root)) == 2
    err = capsys.readouterr().err
    assert str(run.model) in err and "edge-export train" in err and "Traceback" not in err
    assert not run.export_dir.exists()


def test_corrupt_model_is_a_clear_cli_error(trained, tmp_path, capsys):
    run = copy_run(trained, tmp_path / "run")
    run.model.write_bytes(run.model.read_bytes()[:500])  # truncated
    assert cli("export", str(run.root), "--formats", "tflite-fp32") == 2
    err = capsys.readouterr().err
    assert str(run.model) in err and "corrupt or truncated" in err and "re-run `edge-export train`" in err
    assert "Traceback" not in err
    assert not run.export_dir.exists()


def test_missing_training_data_is_a_clear_error(trained, tmp_path, capsys):
    run = copy_run(trained, tmp_path / "run")
    assert cli("export", str(run.root), "--formats", "tflite-fp32", f"data.path={tmp_path / 'gone'}") == 2
    err = capsys.readouterr().err
    assert "data.path=DIR" in err and "Traceback" not in err
    assert not run.export_dir.exists()


def test_unknown_format_is_a_clear_cli_error(trained, tmp_path, capsys):
    run = copy_run(trained, tmp_path / "run")
    assert cli("export", str(run.root), "--formats", "tflite-int4") == 2
    assert "unknown export format 'tflite-int4'" in capsys.readouterr().err
