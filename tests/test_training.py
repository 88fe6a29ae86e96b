"""Two-stage training on a tiny random-weight backbone: what trains, what stays frozen, what is written."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from edge_export.core.config import load_config
from edge_export.core.run_folder import RunFolder
from edge_export.core.tf_env import import_keras
from edge_export.trainer.run import train_run

from conftest import write_image_folder

keras = import_keras()

TINY = ["model.backbone=tiny_cnn", "model.weights=none", "train.batch_size=8"]


def _train(data, out, *overrides):
    config = load_config(None, [f"data.path={data}", *TINY, *overrides])
    run = RunFolder(out)
    return train_run(config, run), run


def _weights_by_layer(model):
    return {layer.name: [w.copy() for w in layer.get_weights()] for layer in model.layers if layer.weights}


def _changed(before, after):
    return {name for name in before if any(not np.array_equal(a, b) for a, b in zip(before[name], after[name]))}


@pytest.mark.parametrize("mode", ["cached", "augmented"])
def test_feature_extraction_trains_only_the_head(image_folder, tmp_path, mode):
    metrics, run = _train(
        image_folder,
        tmp_path / "run",
        "train.fine_tune.enabled=false",
        f"train.feature_extraction.mode={mode}",
        "train.feature_extraction.epochs=3",
    )
    from edge_export.trainer.model import ModelSpec, build_classifier

    keras.utils.set_random_seed(1337)
    fresh = build_classifier(keras, ModelSpec("tiny_cnn", 32, 2), weights="none")
    trained = keras.models.load_model(run.model)
    changed = _changed(_weights_by_layer(fresh), _weights_by_layer(trained))
    assert changed == {"classifier"}
    history = json.loads(run.history.read_text())
    assert list(history) == ["feature_extraction"] and len(history["feature_extraction"]["loss"]) == 3
    assert set(metrics) >= {"train", "validation", "test"}


def test_fine_tune_changes_only_unfrozen_layers_and_never_batchnorm(image_folder, tmp_path):
    _, run = _train(
        image_folder,
        tmp_path / "run",
        "train.feature_extraction.epochs=2",
        "train.fine_tune.epochs=3",
        "train.fine_tune.unfreeze_blocks=1",
        "train.fine_tune.learning_rate=0.01",
    )
    after_stage1 = keras.models.load_model(run.checkpoints / "feature_extraction_best.keras")
    final = keras.models.load_model(run.model)
    changed = _changed(_weights_by_layer(after_stage1), _weights_by_layer(final))
    assert "block2_conv" in changed  # the unfrozen top block learned
    assert changed <= {"block2_conv", "classifier"}  # nothing below it, and no BatchNorm statistics
    history = json.loads(run.history.read_text())
    assert list(history) == ["feature_extraction", "fine_tune"]


def test_run_folder_contract(image_folder, tmp_path):
    metrics, run = _train(
        image_folder, tmp_path / "run", "train.feature_extraction.epochs=2", "train.fine_tune.epochs=1"
    )
    for path in (run.model, run.labels, run.config, run.history, run.metrics, run.curves, run.model_spec):
        assert path.is_file(), path
    assert run.read_labels() == ["blue", "red"]
    saved = json.loads(run.metrics.read_text())
    assert set(saved["validation"]) >= {"accuracy", "loss"} and "accuracy" in saved["test"]
    assert load_config(run.config).model.backbone == "tiny_cnn"
    assert not list(run.root.glob(".*partial*"))
    # model_spec.json: the typed record, read back by its one reader (the same keys as before, plus its version)
    from edge_export.core.records.model_spec import DEFAULT_DROPOUT, ModelSpec

    on_disk = json.loads(run.model_spec.read_text())
    spec = ModelSpec.read(run.model_spec)
    assert (spec.backbone, spec.image_size, spec.num_classes, spec.dropout) == ("tiny_cnn", 32, 2, DEFAULT_DROPOUT)
    assert spec.weights == on_disk["weights"] and spec.preprocessing == on_disk["preprocessing"]
    assert spec.to_dict() == on_disk and on_disk["format_version"] == 1
    assert list(on_disk)[:4] == ["backbone", "image_size", "num_classes", "dropout"]

    # The model contract: 0-255 RGB at the input size in, softmax N x C out (two classes: N x 2).
    model = keras.models.load_model(run.model)
    assert tuple(model.input.shape) == (None, 32, 32, 3)
    pixels = np.random.default_rng(0).integers(0, 256, (5, 32, 32, 3)).astype("float32")
    probs = model.predict(pixels, verbose=0)
    assert probs.shape == (5, 2)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    assert (probs >= 0).all()

    # metrics.json agrees with the saved model run end to end on the test images
    from edge_export.trainer.datasets import load_pixels, scan_dataset

    test = scan_dataset(image_folder).splits["test"]
    x, y, _ = load_pixels(test, (32, 32))
    accuracy = float(np.mean(model.predict(x.astype("float32"), verbose=0).argmax(1) == y))
    assert accuracy == pytest.approx(saved["test"]["accuracy"])


def test_same_seed_same_model(tmp_path):
    data = write_image_folder(tmp_path / "d", {"train": 6, "validation": 3})
    weights = []
    for name in ("a", "b"):
        _, run = _train(data, tmp_path / name, "train.feature_extraction.epochs=2", "train.fine_tune.epochs=1")
        weights.append(keras.models.load_model(run.model).get_weights())
    for a, b in zip(*weights):
        np.testing.assert_array_equal(a, b)


def test_interrupted_training_leaves_no_model(image_folder, tmp_path, monkeypatch):
    from edge_export.trainer import two_stage

    real_fit = two_stage._fit

    def interrupted(name, *args, **kwargs):
        if name == "fine_tune":
            raise KeyboardInterrupt
        return real_fit(name, *args, **kwargs)

    monkeypatch.setattr(two_stage, "_fit", interrupted)
    with pytest.raises(KeyboardInterrupt):
        _train(image_folder, tmp_path / "run", "train.feature_extraction.epochs=1")
    run = RunFolder(tmp_path / "run")
    assert not run.model.exists()
    assert not list(run.root.rglob(".*partial*"))
    assert (run.checkpoints / "feature_extraction_best.keras").is_file()  # finished work is kept


def _cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "edge_export.cli", *args], capture_output=True, text=True, cwd=cwd)


def test_cli_errors_are_clear(tmp_path, image_folder):
    result = _cli("train", "--data", str(image_folder), "train.bogus=1")
    assert result.returncode == 2
    assert "unknown config key 'train.bogus'" in result.stderr and "Traceback" not in result.stderr
    result = _cli("train", "--data", str(tmp_path / "missing"))
    assert result.returncode == 2 and "not found" in result.stderr and "Traceback" not in result.stderr
    result = _cli("train", "--data", str(image_folder), "--backbone", "resnet9000")
    assert result.returncode == 2 and "unknown backbone" in result.stderr


def test_cli_train_end_to_end(tmp_path, image_folder):
    out = tmp_path / "run"
    result = _cli(
        "train",
        "--data",
        str(image_folder),
        "--out",
        str(out),
        "--backbone",
        "tiny_cnn",
        "--weights",
        "none",
        "train.feature_extraction.epochs=2",
        "train.fine_tune.epochs=1",
    )
    assert result.returncode == 0, result.stderr
    assert "validation" in result.stdout and "blue" in result.stdout  # the per-class table came first
    assert (out / "model.keras").is_file()


def test_cached_mirrored_images_train_and_evaluate_on_the_real_splits(image_folder, tmp_path):
    metrics, run = _train(
        image_folder,
        tmp_path / "run",
        "train.cache_flipped=true",
        "train.feature_extraction.epochs=1",
        "train.fine_tune.epochs=1",
    )
    assert metrics["train"]["images"] == 24 and metrics["validation"]["images"] == 12  # mirrors are not evaluated
    assert run.model.is_file()


def test_resize_setting_reaches_training_export_and_runtime(tmp_path, monkeypatch):
    """model.resize=nearest: training decodes with it, model_spec records it, the artifact's metadata carries it
    and the runtime resizes with it (predict(path) = predict_proba on nearest-resized pixels)."""
    import edge_export.trainer.datasets as datasets
    from edge_export.core.records.model_spec import ModelSpec
    from edge_export.export.exporter import export_run
    from edge_export.runtime.classifier import Classifier
    from edge_export.runtime.images import load_image

    data = write_image_folder(tmp_path / "data", {"train": 8, "validation": 4, "test": 4})
    methods = []
    decode = datasets._decode

    def spy(split, size, method, *args, **kwargs):
        methods.append(method)
        return decode(split, size, method, *args, **kwargs)

    monkeypatch.setattr(datasets, "_decode", spy)
    config = load_config(
        None,
        [
            f"data.path={data}",
            *TINY,
            "model.resize=nearest",
            "train.fine_tune.enabled=false",
            "train.feature_extraction.epochs=1",
        ],
    )
    run = RunFolder(tmp_path / "run")
    train_run(config, run)
    assert methods and set(methods) == {"opencv:nearest"}  # the default decoder, with the resize asked for
    assert ModelSpec.read(run.model_spec).preprocessing["resize"] == "nearest"
    manifest = export_run(run, config.export, run_config=config, formats="tflite-fp32", echo=None)
    assert manifest.ok
    clf = Classifier.load(run.export_dir / manifest.artifact("tflite-fp32").path)
    assert clf.preprocessing.resize == "nearest" and clf.preprocessing.pixel_method == "opencv:nearest"
    photo = sorted((data / "test").rglob("*.png"))[0]
    expected = clf.predict_proba(load_image(photo, clf.input_size, "opencv:nearest"))[0]
    got = {p.index: p.probability for p in clf.predict(photo, top_k=len(expected))[0]}
    np.testing.assert_allclose([got[i] for i in range(len(expected))], expected, rtol=1e-6)
