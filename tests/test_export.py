"""Export of a tiny trained run to every format, with real TensorFlow, LiteRT, tf2onnx and ONNX Runtime."""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from edge_export.core.config import load_config
from edge_export.core.errors import EdgeExportError
from edge_export.core.hashing import sha256_file as sha256_of
from edge_export.core.records.manifest import Manifest
from edge_export.core.run_folder import RunFolder
from edge_export.export.formats import FORMATS, resolve_formats
from edge_export.export.layout import ExportFolder
from edge_export.runtime.classifier import Classifier
from edge_export.runtime.metadata import read_metadata

from conftest import TINY_TRAIN, write_image_folder

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
def exported(trained, tmp_path_factory) -> tuple[RunFolder, Manifest, list[str]]:
    from edge_export.export.exporter import export_run

    run = copy_run(trained, tmp_path_factory.mktemp("exported") / "run")
    config = run_config(run, *QUICK_QAT)
    lines: list[str] = []
    manifest = export_run(run, config.export, run_config=config, formats="all", echo=lines.append)
    return run, manifest, lines


@pytest.fixture(scope="module")
def validation(trained):
    """The validation pixels and labels, and the Keras model's probabilities for them."""
    from edge_export.core.records.preprocessing import pixel_method
    from edge_export.core.tf_env import import_keras
    from edge_export.trainer.datasets import load_pixels, scan_dataset

    config = load_config(trained.config)
    split = scan_dataset(config.data.path).splits["validation"]
    pixels, labels, _ = load_pixels(split, (32, 32), pixel_method(config.model.resize, config.model.decoder))
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
    from edge_export.api import export_config

    config_file = tmp_path / "export.yaml"
    config_file.write_text("export:\n  int8_io: int8\n  onnx_opset: 15\n  formats: [onnx]\n")
    config = export_config(trained, config_file, ["export.onnx_opset=16"], formats="tflite-fp32,onnx-fp32")
    assert (config.export.int8_io, config.export.onnx_opset) == ("int8", 16)
    assert config.export.formats == ["tflite-fp32", "onnx-fp32"]
    assert config.model.backbone == "tiny_cnn"  # from the run's config.yaml
    assert config.data.path == load_config(trained.config).data.path


# ----------------------------------------------------------------------------- the full export


def test_every_format_converts_runs_and_agrees_with_keras(exported, validation):
    run, manifest, _ = exported
    pixels, labels, keras_probs = validation
    assert manifest.ok, [(a.name, a.error) for a in manifest.artifacts]
    assert [a.name for a in manifest.artifacts] == list(FORMATS)
    tolerance = {"fp32": 1e-4, "fp16": 1e-2, "dynamic-int8": 0.1, "int8": 0.1}
    for artifact in manifest.artifacts:
        fmt = FORMATS[artifact.name]
        classifier = Classifier.load(run.export_dir / artifact.path)  # labels + preprocessing from metadata
        assert classifier.backend.name == {"tflite": "litert", "onnx": "onnxruntime"}[fmt.family]
        probs = classifier.predict_proba(pixels)
        diff = float(np.abs(probs - keras_probs).max())
        assert diff < tolerance[fmt.precision], (fmt.name, diff)
        assert (probs.argmax(1) == keras_probs.argmax(1)).all(), fmt.name
        assert artifact.parity["max_abs_diff"] == pytest.approx(diff, abs=1e-5)
        assert artifact.accuracy == pytest.approx(float((probs.argmax(1) == labels).mean()))


def test_onnx_input_is_named_image_and_nhwc(exported):
    run, _, _ = exported
    for name in ("onnx-fp32", "onnx-int8"):
        spec = Classifier.load(run.export_dir / FORMATS[name].filename).backend.input_spec
        assert spec.name == "image" and spec.shape == (None, 32, 32, 3) and spec.dtype == np.float32


def test_memory_saving_batch_sizes_change_no_result(trained, tmp_path, monkeypatch):
    """The Keras reference and the ONNX MinMax calibration run in small batches to bound memory: the outputs
    and the int8 quantization must not depend on the batch (one big batch, one image at a time). On this
    project's CPU they are the same bits (the artifacts of two builds are byte-identical); another CPU's
    kernels may round a batch differently in the last bit, so that is what the tolerances allow, no more."""
    import onnx
    from onnx import numpy_helper

    from edge_export.export import onnx as onnx_export
    from edge_export.export import parity
    from edge_export.export.context import ExportContext

    config = run_config(trained)
    ctx = ExportContext(trained, config.export, config)
    pixels = np.asarray(ctx.parity_images().pixels)
    assert len(pixels) > parity.BATCH  # several batches, so the batch size matters
    results = []
    for batch in (1, parity.BATCH, len(pixels)):
        monkeypatch.setattr(parity, "BATCH", batch)
        results.append(parity.keras_probabilities(ctx.model, pixels))
    assert results[0].shape == (len(pixels), 2)
    for r in results[1:]:
        np.testing.assert_allclose(r, results[0], rtol=0, atol=1e-6)
    eager = np.asarray(ctx.model(pixels.astype(np.float32), training=False))  # the traced graph computes the same
    np.testing.assert_allclose(results[0], eager, rtol=0, atol=1e-6)

    calibration = ctx.representative()
    assert len(calibration) > onnx_export.MINMAX_BATCH  # several batches, so the batch size matters
    quantization = []
    for batch in (1, onnx_export.MINMAX_BATCH, len(calibration)):
        monkeypatch.setattr(onnx_export, "MINMAX_BATCH", batch)
        work = tmp_path / f"batch{batch}"
        work.mkdir()
        onnx_export._save(onnx_export.fp32_model(ctx), work / "fp32.onnx")
        onnx_export.quantize(work / "fp32.onnx", work / "int8.onnx", calibration, work)
        graph = onnx.load_model(str(work / "int8.onnx")).graph
        quantization.append(
            {
                t.name: numpy_helper.to_array(t).astype(np.float64)
                for t in graph.initializer
                if t.name.endswith(("_scale", "_zero_point"))
            }
        )
    ctx.close()
    assert quantization[0] and all(q.keys() == quantization[0].keys() for q in quantization)
    for q in quantization[1:]:  # every activation's range: the same (a min of mins, a max of maxes)
        for name, value in q.items():
            tolerance = {"atol": 1} if name.endswith("_zero_point") else {"rtol": 1e-5}
            np.testing.assert_allclose(value, quantization[0][name], err_msg=name, **tolerance)


def test_manifest_is_complete_and_true(exported, trained):
    run, manifest, lines = exported
    folder = ExportFolder(run)
    on_disk = json.loads(folder.manifest.read_text())
    assert on_disk == json.loads(json.dumps(manifest.to_dict()))
    assert Manifest.from_dict(on_disk, folder=folder.root).to_dict() == on_disk  # the record round-trips the file
    assert on_disk["keras"]["images"] == 16 and on_disk["keras"]["split"] == "validation"
    assert on_disk["model"]["sha256"] == sha256_of(run.model)
    for artifact in on_disk["artifacts"]:
        path = folder.root / artifact["path"]
        assert artifact["status"] == "ok" and "error" not in artifact
        assert artifact["size_bytes"] == path.stat().st_size
        assert artifact["sha256"] == sha256_of(path)
        fmt = FORMATS[artifact["name"]]
        assert (artifact["format"], artifact["precision"], artifact["path"]) == (
            fmt.family,
            fmt.precision,
            fmt.filename,
        )
        assert set(artifact["parity"]) >= {
            "top1_agreement",
            "max_abs_diff",
            "accuracy",
            "keras_accuracy",
            "accuracy_drop",
        }
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
    from edge_export.core.records.model_spec import ModelSpec
    from edge_export.runtime.metadata import read_model_metadata

    run, _, _ = exported
    spec = ModelSpec.read(run.model_spec)
    for fmt in FORMATS.values():
        meta = read_model_metadata(run.export_dir / fmt.filename)
        assert meta.labels == ("blue", "red")
        assert meta.preprocessing.to_dict() == spec.preprocessing
        assert (meta.format, meta.precision, meta.backbone) == (fmt.name, fmt.precision, "tiny_cnn")
        assert meta.edge_export and not meta.extra  # every key export writes is a declared field
        assert meta.int8_io == ("uint8" if fmt.integer_io else None)
        assert read_metadata(run.export_dir / fmt.filename) == meta.to_dict()  # the document view: same keys
        assert "color" not in meta.to_dict()["preprocessing"]  # written and never read: no longer written
    qat = read_model_metadata(run.export_dir / FORMATS["tflite-qat-int8"].filename).qat
    assert qat["epochs"] == 1 and qat["images"] == 32


def test_qat_reports_its_epochs_and_keeps_the_best(exported):
    _, manifest, _ = exported
    qat = manifest.artifact("tflite-qat-int8").details["qat"]
    assert [v["epoch"] for v in qat["validation"]] == [0, 1]  # 0: calibrated ranges, before training
    best = max(qat["validation"], key=lambda v: (v["accuracy"], -v["loss"]))
    assert qat["best_epoch"] == best["epoch"]
    assert qat["images"] == 32 and qat["trained_weights"] == 5


@pytest.mark.parametrize(
    "blocks, expected",
    [(3, ["block0_conv", "block1_conv", "block2_conv", "classifier"]), (1, ["block2_conv", "classifier"])],
)
def test_qat_fine_tunes_only_what_training_fine_tuned(trained, validation, blocks, expected):
    from edge_export.core.tf_env import import_keras
    from edge_export.export.qat import trainable_layers
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
        from edge_export.export.exporter import export_run

        run = copy_run(trained, tmp_path / "run")
        config = run_config(run, f"export.int8_io={io_type}", *QUICK_QAT)
        manifest = export_run(run, config.export, run_config=config, formats=names, echo=None)
        assert manifest.ok, manifest.failed
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
    from edge_export.export import exporter

    real = exporter.artifact_probabilities

    def broken_dynamic(path, pixels):  # the dynamic-range model "loses" its accuracy
        probs, classifier = real(path, pixels)
        return (probs[:, ::-1] if "dynamic" in Path(path).name else probs), classifier

    monkeypatch.setattr(exporter, "artifact_probabilities", broken_dynamic)
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
    from edge_export.core.config import ExportConfig
    from edge_export.export.exporter import export_run

    run = copy_run(trained, tmp_path / "run")
    manifest = export_run(run, ExportConfig(accuracy_budget=-1.0), formats="tflite-fp32", echo=None)
    (artifact,) = manifest.artifacts
    assert artifact.status == "failed" and "budget of -1 point" in artifact.error


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
    from edge_export.export.exporter import export_run

    run = copy_run(trained, tmp_path / "run")
    folder = ExportFolder(run)
    assert export_run(run, formats="tflite-fp32,tflite-fp16", echo=None).ok  # an earlier, finished export
    assert folder.manifest.is_file()
    earlier = (folder.root / "tflite-fp16.tflite").read_bytes()

    def interrupted(ctx, fmt, out):
        out.write_bytes(b"TFL3" * 1000)  # half-written
        raise KeyboardInterrupt

    monkeypatch.setattr(tflite, "convert_fp16", interrupted)
    with pytest.raises(KeyboardInterrupt):
        export_run(run, formats="tflite-fp32,tflite-fp16", echo=None)
    assert not folder.manifest.exists() and not folder.model_card.exists()
    # the earlier export's file stays, whole, until a new one replaces it (issue 25: never none during a re-export)
    assert (folder.root / "tflite-fp16.tflite").read_bytes() == earlier
    assert not partials(folder.root)

    assert cli("export", str(run.root), "--formats", "tflite-fp16") == 130  # Ctrl-C in the CLI
    assert "Traceback" not in capsys.readouterr().err
    assert not folder.manifest.exists() and (folder.root / "tflite-fp16.tflite").read_bytes() == earlier


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
    assert str(run.model) in err and "corrupt, truncated or replaced" in err  # its sha256 is not run.json's
    assert f"re-run `edge-export train --out {run.root}`" in err
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


# ----------------------------------------------------------------------------- exporting some formats


def _files(run: RunFolder) -> dict[str, tuple[int, str]]:
    """Each artifact file: (mtime_ns, sha256)."""
    return {
        p.name: (p.stat().st_mtime_ns, sha256_of(p))
        for p in run.export_dir.iterdir()
        if p.suffix in (".tflite", ".onnx")
    }


def test_exporting_some_formats_adds_or_replaces_only_those(trained, tmp_path, capsys):
    from edge_export.export.exporter import export_run

    run = copy_run(trained, tmp_path / "run")
    first = export_run(run, formats="tflite-fp32,tflite-int8,onnx-fp32", echo=None)
    before = _files(run)
    lines: list[str] = []
    manifest = export_run(run, formats="tflite-fp16,tflite-int8", echo=lines.append)

    assert [a.name for a in manifest.artifacts] == ["tflite-fp32", "tflite-fp16", "tflite-int8", "onnx-fp32"]
    assert manifest.ok and manifest.formats == ["tflite-fp16", "tflite-int8"]
    old = {a.name: a.to_dict() for a in first.artifacts}
    new = {a.name: a.to_dict() for a in manifest.artifacts}
    for name in ("tflite-fp32", "onnx-fp32"):  # kept: the same entry, the same untouched file
        assert new[name] == old[name]
        assert _files(run)[FORMATS[name].filename] == before[FORMATS[name].filename]
    assert _files(run)["tflite-int8.tflite"][0] != before["tflite-int8.tflite"][0]  # replaced
    assert all(a.details["settings"]["int8_io"] == "uint8" for a in manifest.artifacts)  # each entry: its settings
    assert "export/: keeping tflite-fp32, onnx-fp32 (exported earlier from this same model.keras)" in lines
    card = json.loads(ExportFolder(run).model_card.read_text())
    assert [a["name"] for a in card["artifacts"]] == [a.name for a in manifest.artifacts]
    assert json.loads(ExportFolder(run).manifest.read_text()) == json.loads(json.dumps(manifest.to_dict()))

    # the command exits 0 on its own formats, and prints the whole table
    from edge_export.cli import main

    main(["export", str(run.root), "--formats", "tflite-fp32"])  # returns: exit status 0
    out = capsys.readouterr().out
    assert all(re.search(rf"^{name} +ok ", out, re.M) for name in new), out


def test_a_new_model_removes_the_older_models_artifacts(trained, tmp_path):
    from edge_export.export.exporter import export_run
    from edge_export.trainer.run import train_run

    run = copy_run(trained, tmp_path / "run")
    export_run(run, formats="tflite-fp32,onnx-fp32", echo=None)
    train_run(load_config(run.config), run)  # a new model.keras (and run record)
    lines: list[str] = []
    manifest = export_run(run, formats="tflite-fp16", echo=lines.append)
    assert [a.name for a in manifest.artifacts] == ["tflite-fp16"]
    assert sorted(p.name for p in run.export_dir.iterdir()) == [
        "labels.txt",
        "manifest.json",
        "model_card.json",
        "tflite-fp16.tflite",
    ]
    assert (
        "export/: removing the earlier export (tflite-fp32, onnx-fp32): it was made from an older model.keras" in lines
    )
    assert manifest.model.sha256 == sha256_of(run.model) and manifest.model.run_id == run.verify().run_id


def test_an_interrupted_partial_export_keeps_a_true_manifest(trained, tmp_path, monkeypatch):
    from edge_export.export import tflite
    from edge_export.export.exporter import export_run

    run = copy_run(trained, tmp_path / "run")
    folder = ExportFolder(run)
    export_run(run, formats="tflite-fp32,tflite-fp16", echo=None)
    earlier = (folder.root / "tflite-fp16.tflite").read_bytes()
    real = tflite.convert_fp16

    def interrupted(ctx, fmt, out):
        out.write_bytes(b"TFL3" * 1000)
        raise KeyboardInterrupt

    monkeypatch.setattr(tflite, "convert_fp16", interrupted)
    with pytest.raises(KeyboardInterrupt):
        export_run(run, formats="tflite-fp16", echo=None)
    manifest = json.loads(folder.manifest.read_text())  # still there: it claims only what stayed
    assert [a["name"] for a in manifest["artifacts"]] == ["tflite-fp32"] and manifest["settings"]["formats"] == []
    for a in manifest["artifacts"]:
        assert sha256_of(folder.root / a["path"]) == a["sha256"]
    # the manifest no longer claims tflite-fp16; its earlier file stays whole until a new one replaces it
    assert (folder.root / "tflite-fp16.tflite").read_bytes() == earlier and not partials(folder.root)
    assert [a["name"] for a in json.loads(folder.model_card.read_text())["artifacts"]] == ["tflite-fp32"]

    monkeypatch.setattr(tflite, "convert_fp16", real)
    manifest = export_run(run, formats="tflite-fp16", echo=None)
    assert [a.name for a in manifest.artifacts] == ["tflite-fp32", "tflite-fp16"] and manifest.ok


def test_what_was_made_from_a_replaced_artifact_is_stale(trained, tmp_path):
    """bench/, deploy/ and package/ record the sha256 of what they used: a re-export that changes an
    artifact makes them stale (reported by export, refused by package), the others stay current."""
    from edge_export.benchmarks.suite import bench_run
    from edge_export.core.config import BenchConfig
    from edge_export.deploy.bundle import package_run
    from edge_export.export.dependents import stale_bench, stale_dependents
    from edge_export.export.exporter import export_run
    from edge_export.pipeline import stages

    run = copy_run(trained, tmp_path / "run")
    config = run_config(run)
    data = Path(config.data.path) / "validation"
    export_run(run, formats="tflite-fp32,tflite-int8", echo=None)
    bench_run(run, data=data, config=BenchConfig(threads=[1], runs=5, warmup=0, batch_size=2), isolate=False, echo=None)
    ctx = SimpleNamespace(run=run, config=config, test_dir=data)
    bench_fingerprint = stages._bench_fingerprint(ctx)
    int8 = next(
        a for a in json.loads(ExportFolder(run).manifest.read_text())["artifacts"] if a["name"] == "tflite-int8"
    )
    # what build and package record (deploy/recommendation.json, package/*/bundle.json): the artifact's sha256
    (run.deploy_dir).mkdir()
    (run.deploy_dir / "recommendation.json").write_text(
        json.dumps({"artifact": "tflite-int8", "sha256": int8["sha256"]})
    )
    (run.package_dir / "tflite-int8-cpu").mkdir(parents=True)
    (run.package_dir / "tflite-int8-cpu" / "bundle.json").write_text(
        json.dumps(
            {"source": {"artifact": "tflite-int8"}, "artifacts": [{"name": "tflite-int8", "sha256": int8["sha256"]}]}
        )
    )
    (run.root / "report.json").write_text(json.dumps({"recommendation": {"artifact": "tflite-int8"}}))
    assert stale_dependents(run) == [] and stale_bench(run) == []

    lines: list[str] = []
    other = run_config(run, "export.int8_io=int8")  # a different tflite-int8
    export_run(run, other.export, run_config=other, formats="tflite-int8", echo=lines.append)
    assert stale_bench(run) == ["tflite-int8"]  # tflite-fp32 and the Keras model are unchanged: still current
    stale = [line for line in lines if line.startswith("stale: ")]
    assert len(stale) == 3, lines
    assert "bench/bench.json measured tflite-int8" in stale[0] and "re-run bench" in stale[0]
    assert "deploy/ holds tflite-int8" in stale[1] and "package/tflite-int8-cpu bundles tflite-int8" in stale[2]
    assert stages._bench_fingerprint(ctx) != bench_fingerprint  # the build re-runs bench
    with pytest.raises(
        EdgeExportError, match="stale: the build recommended tflite-int8 from bench numbers measured before"
    ):
        package_run(run, out=tmp_path / "out", echo=None)


def test_a_re_export_keeps_the_old_artifact_usable_until_the_new_one_is_checked(trained, tmp_path, monkeypatch):
    """Issue 25: re-exporting a format replaces its file by one rename once the new file is converted AND checked;
    while the converter and the check run, the old file is in place and loads (a `predict` loop never finds it
    missing). A re-conversion that fails leaves no file of the format (the manifest says failed)."""
    from edge_export.export import tflite
    from edge_export.export.exporter import export_run
    from edge_export.runtime.classifier import Classifier

    run = copy_run(trained, tmp_path / "run")
    folder = ExportFolder(run)
    assert export_run(run, formats="tflite-fp16", echo=None).ok
    target = folder.root / "tflite-fp16.tflite"
    earlier = target.read_bytes()
    real = tflite.convert_fp16
    seen = []

    def watched(ctx, fmt, out):
        seen.append(target.read_bytes() == earlier and Classifier.load(target).labels is not None)
        return real(ctx, fmt, out)

    monkeypatch.setattr(tflite, "convert_fp16", watched)
    manifest = export_run(run, formats="tflite-fp16", echo=None)
    assert seen == [True] and manifest.ok and target.is_file()
    assert sha256_of(target) == next(a.sha256 for a in manifest.artifacts if a.name == "tflite-fp16")

    def broken(ctx, fmt, out):
        raise RuntimeError("converter exploded")

    monkeypatch.setattr(tflite, "convert_fp16", broken)
    manifest = export_run(run, formats="tflite-fp16", echo=None)
    assert not manifest.ok and not target.exists() and not partials(folder.root)
