"""Bring your own model (issue 23): a model edge-export did not train, through build/export/bench/package.

Tiny models with fixed weights that decide on brightness in the -1..1 space, on generated photos of two
classes ("bright": mean 170, "dark": mean 118). Fed pixels on the wrong scale, they answer one class for every
photo; fed ImageNet mean/std, the dark photos turn bright. So exactly one input scale is right, and the
preprocessing check must find it (or refuse, for a model whose answers do not depend on the scale).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import cli_main, load_script

FAST = ["export.representative_images=16", "bench.runs=5", "bench.warmup=1", "bench.threads=[1]",
        "bench.robustness=false"]


def write_photos(root: Path, per_class: int = 50, seed: int = 0, splits: tuple[str, ...] = ()) -> Path:
    """root/<class>/*.png (flat), or root/<split>/<class>/*.png for each of ``splits``."""
    rng = np.random.default_rng(seed)
    for split in splits or ("",):
        for cls, mean in (("bright", 170), ("dark", 118)):
            folder = root / split / cls
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(per_class):
                pixels = np.clip(rng.normal(mean, 6, (30, 38, 3)), 0, 255).astype(np.uint8)
                Image.fromarray(pixels).save(folder / f"{cls}_{i}.png")
    return root


def brightness_model(scale: str, output: str, size: int = 24, invariant: bool = False, augment: bool = False):
    """A classifier of ``bright`` (index 0) vs ``dark`` (1) that expects ``scale`` ("0-255": Rescaling inside, as
    the Keras tutorial; "-1-1": none inside). ``invariant``: decides on red minus blue (no scale changes it).
    ``augment``: RandomFlip and RandomRotation inside, in a nested Sequential, as the tutorial has them."""
    import keras

    inputs = keras.Input((size, size, 3))
    x = inputs
    if augment:
        x = keras.Sequential([keras.layers.RandomFlip("horizontal"), keras.layers.RandomRotation(0.2)])(x)
    x = keras.layers.Rescaling(1 / 127.5, offset=-1)(x) if scale == "0-255" else x
    x = keras.layers.GlobalAveragePooling2D()(x)
    per_channel = np.array([1.0, 0.0, -1.0] if invariant else [1.0, 1.0, 1.0], np.float32)[:, None]
    if output == "sigmoid":  # one unit: probability of the second class (dark)
        dense = keras.layers.Dense(1, activation="sigmoid")
        y = dense(x)
        dense.set_weights([-10 * per_channel, np.zeros(1, np.float32)])
    else:
        dense = keras.layers.Dense(2, activation="softmax" if output == "softmax" else None)
        y = dense(x)
        dense.set_weights([np.hstack([10 * per_channel, -10 * per_channel]), np.zeros(2, np.float32)])
    return keras.Model(inputs, y)


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    return write_photos(tmp_path_factory.mktemp("byom") / "photos")


def build(model, photos: Path, out: Path, *extra: str, **settings):
    from edge_export import api

    return api.build(None, out=out, model=model, data=str(photos), echo=None,
                     overrides=[*FAST, *extra], **settings)


def manifest_of(out: Path) -> dict:
    return json.loads((out / "export" / "manifest.json").read_text())


# --------------------------------------------------------------------------------------- the tutorial's model


def test_tutorial_model_sigmoid_head_preprocessing_inside(photos, tmp_path):
    """Augmentation and Rescaling inside, one sigmoid unit: 0-255 chosen on validation photos, [1 - p, p] made two
    classes, the augmentation left out of the graph (TFLite refused its random ops), every post-training format
    exported and checked, QAT skipped with its reason, all recorded; the int8 TFLite agrees
    with the Keras model and names the classes; a re-run is up to date."""
    path = tmp_path / "cats_dogs_classifier.keras"
    brightness_model("0-255", "sigmoid", augment=True).save(path)
    out = tmp_path / "run"
    result = build(str(path), photos, out, "export.formats=tflite-fp32,tflite-int8,onnx-fp32,onnx-int8,tflite-qat-int8:auto")
    assert result.ok, result.failures
    manifest = manifest_of(out)
    imported = manifest["model"]["imported_from"]
    assert (imported["input_scale"], imported["output"], imported["kind"]) == ("0-255", "sigmoid", "keras")
    assert imported["decided"] == {"input_scale": "validation check", "output": "model"}
    assert imported["sha256"] == __import__("hashlib").sha256(path.read_bytes()).hexdigest()
    assert [row["input_scale"] for row in imported["check"]][0] == "0-255" and len(imported["check"]) == 4
    assert {a["name"]: a["status"] for a in manifest["artifacts"]} == dict.fromkeys(
        ["tflite-fp32", "tflite-int8", "onnx-fp32", "onnx-int8"], "ok")
    assert manifest["auto"]["tflite-qat-int8"]["ran"] is False
    assert "imported model" in manifest["auto"]["tflite-qat-int8"]["reason"]
    int8 = next(a for a in manifest["artifacts"] if a["name"] == "tflite-int8")
    assert int8["parity"]["top1_agreement"] == 1.0
    correction = int8["bias_correction"]  # decided on the validation photos, both candidates recorded
    assert correction["mode"] == "auto" and correction["layers"] >= 1 and set(correction["validation"]) == {"without", "with"}
    card = json.loads((out / "export" / "model_card.json").read_text())
    assert card["model"]["source"]["imported_from"]["input_scale"] == "0-255"

    from edge_export.runtime.classifier import Classifier

    classifier = Classifier.load(out / "export" / "tflite-int8.tflite")
    assert list(classifier.labels) == ["bright", "dark"]
    test = json.loads((out / "dataset.json").read_text())["split"]["files"]["test"]
    answers = classifier.predict([str(photos / f) for f in test])
    assert [a[0].label for a in answers] == [f.split("/")[0] for f in test]
    bench = json.loads((out / "bench" / "bench.json").read_text())
    assert {r["name"]: r["images"] for r in bench["artifacts"]}["tflite-int8"] == len(test)

    again = build(str(path), photos, out, "export.formats=tflite-fp32,tflite-int8,onnx-fp32,onnx-int8,tflite-qat-int8:auto")
    assert again.skipped == ["train", "export", "bench"]


def test_mediapipe_reads_the_imported_int8_and_names_the_classes(photos, tmp_path):
    """MediaPipe Tasks (its own virtual environment) classifies with the imported model's int8 TFLite."""
    clients = load_script("clients")
    python, reason = clients.client_python("mediapipe")
    if python is None:
        pytest.skip(reason)
    path = tmp_path / "model.keras"
    brightness_model("0-255", "sigmoid").save(path)
    out = tmp_path / "run"
    assert build(str(path), photos, out, "export.formats=tflite-int8", stages=["train", "export"]).ok
    images = sorted(str(p) for p in photos.glob("*/*_1?.png"))
    answer = clients.run_client(python, "mediapipe-classify", str(out / "export" / "tflite-int8.tflite"), *images)
    assert answer["loaded"], answer["error"]
    assert [r[0]["name"] for r in answer["results"]] == [Path(p).parent.name for p in images]


# ------------------------------------------------------------------------------ other kinds, other preprocessing


def _save(model, tmp_path: Path, kind: str) -> Path:
    if kind == "keras":
        path = tmp_path / "model.keras"
        model.save(path)
    elif kind == "h5":
        path = tmp_path / "model.h5"
        model.save(path)
    else:
        path = tmp_path / "saved_model"
        model.export(str(path))
    return path


@pytest.mark.parametrize("kind", ["keras", "h5", "savedmodel"])
def test_softmax_model_expecting_minus_one_to_one(photos, tmp_path, kind):
    """No preprocessing inside (expects -1..1), softmax out, as .keras, .h5 and a SavedModel: the check picks -1-1
    (a SavedModel states no activation: its softmax is read off the values), and the exports agree."""
    path = _save(brightness_model("-1-1", "softmax"), tmp_path, kind)
    out = tmp_path / "run"
    result = build(str(path), photos, out, "export.formats=tflite-int8,onnx-fp32", stages=["train", "export"])
    assert result.ok, result.failures
    manifest = manifest_of(out)
    imported = manifest["model"]["imported_from"]
    assert (imported["kind"], imported["input_scale"], imported["output"]) == (kind, "-1-1", "softmax")
    assert all(a["parity"]["top1_agreement"] == 1.0 and a["parity"]["accuracy"] == 1.0 for a in manifest["artifacts"])
    spec = json.loads((out / "model_spec.json").read_text())
    assert spec["preprocessing"]["mean"] == [0, 0, 0] and spec["preprocessing"]["std"] == [1, 1, 1]  # folded in


def test_logits_output_and_flags_taken_as_given(photos, tmp_path):
    """A linear last layer is logits (softmax added); named flags are taken without trying others."""
    path = tmp_path / "logits.keras"
    brightness_model("-1-1", "logits").save(path)
    out = tmp_path / "run"
    assert build(str(path), photos, out, "export.formats=tflite-fp32", stages=["train", "export"],
                 input_scale="-1-1").ok
    imported = manifest_of(out)["model"]["imported_from"]
    assert (imported["input_scale"], imported["output"]) == ("-1-1", "logits")
    assert imported["decided"] == {"input_scale": "flag", "output": "model"}
    assert len(imported["check"]) == 1


def test_refuses_when_it_cannot_tell_then_takes_the_flag(photos, tmp_path):
    """A model whose answers do not depend on the input scale: the check stops with its table and the flag to
    pass, writing no model; with --input-scale it goes on."""
    from edge_export.core.errors import EdgeExportError

    path = tmp_path / "invariant.keras"
    brightness_model("-1-1", "softmax", invariant=True).save(path)
    colour = write_photos(tmp_path / "colour", per_class=40, seed=1)
    for file in colour.glob("dark/*.png"):  # dark photos get a blue cast, bright ones a red cast
        pixels = np.asarray(Image.open(file)).copy()
        pixels[..., 2] = np.clip(pixels[..., 2].astype(int) + 60, 0, 255)
        Image.fromarray(pixels).save(file)
    for file in colour.glob("bright/*.png"):
        pixels = np.asarray(Image.open(file)).copy()
        pixels[..., 0] = np.clip(pixels[..., 0].astype(int) + 60, 0, 255)
        Image.fromarray(pixels).save(file)
    out = tmp_path / "run"
    with pytest.raises(EdgeExportError) as info:
        build(str(path), colour, out, "export.formats=tflite-fp32", stages=["train", "export"])
    assert "cannot tell what the model expects" in info.value.message
    assert "--input-scale" in info.value.hint
    assert not (out / "model.keras").exists()
    assert build(str(path), colour, out, "export.formats=tflite-fp32", stages=["train", "export"], input_scale="0-1").ok


def test_in_memory_model_and_a_changed_file_is_a_new_model(photos, tmp_path):
    """build(model=keras.Model) works; the file's bytes (not its name) make the model: a changed file re-imports
    and the export of the old one is removed."""
    model = brightness_model("0-255", "softmax")
    out = tmp_path / "run"
    assert build(model, photos, out, "export.formats=tflite-fp32", stages=["train", "export"]).ok
    first = manifest_of(out)["model"]["imported_from"]["sha256"]
    again = build(brightness_model("-1-1", "softmax"), photos, out, "export.formats=tflite-fp32",
                  stages=["train", "export"])
    assert again.ran == ["train", "export"]
    imported = manifest_of(out)["model"]["imported_from"]
    assert imported["sha256"] != first and imported["input_scale"] == "-1-1"


def test_labels_file_in_another_order_is_followed(photos, tmp_path):
    """--labels in the model's own order (dark first): the outputs are put in the data's order, exactly."""
    import keras

    base = brightness_model("-1-1", "softmax")
    swapped = keras.Model(base.inputs, _swap(keras, base))  # outputs: dark, bright
    path = tmp_path / "swapped.keras"
    swapped.save(path)
    labels = tmp_path / "labels.txt"
    labels.write_text("dark\nbright\n")
    out = tmp_path / "run"
    assert build(str(path), photos, out, "export.formats=tflite-fp32", stages=["train", "export"],
                 labels=str(labels)).ok
    assert manifest_of(out)["artifacts"][0]["parity"]["accuracy"] == 1.0
    assert (out / "labels.txt").read_text().split() == ["bright", "dark"]


def _swap(keras, model):
    dense = keras.layers.Dense(2, use_bias=False)
    y = dense(model.outputs[0])
    dense.set_weights([np.array([[0, 1], [1, 0]], np.float32)])
    return y


# ------------------------------------------------------------------------------------------------ bad input


def _two_inputs(tmp_path: Path) -> Path:
    import keras

    a, b = keras.Input((24, 24, 3)), keras.Input((4,))
    y = keras.layers.Dense(2, activation="softmax")(keras.layers.Concatenate()([keras.layers.Flatten()(a), b]))
    path = tmp_path / "two.keras"
    keras.Model([a, b], y).save(path)
    return path


def _detection(tmp_path: Path) -> Path:
    import keras

    x = keras.Input((24, 24, 3))
    y = keras.layers.Reshape((16, 3))(keras.layers.Conv2D(3, 3, strides=6)(x))  # boxes x scores
    path = tmp_path / "detect.keras"
    keras.Model(x, y).save(path)
    return path


def _regression(tmp_path: Path) -> Path:
    import keras

    x = keras.Input((24, 24, 3))
    dense = keras.layers.Dense(1)
    y = dense(keras.layers.GlobalAveragePooling2D()(x))
    dense.set_weights([np.full((3, 1), 1.0, np.float32), np.zeros(1, np.float32)])  # positive brightness, always
    path = tmp_path / "regression.keras"
    keras.Model(x, y).save(path)
    return path


def _pooled_softmax(tmp_path: Path, name: str, side: int | None, classes: int) -> Path:
    import keras

    x = keras.Input((side, side, 3))
    y = keras.layers.Dense(classes, activation="softmax")(keras.layers.GlobalAveragePooling2D()(x))
    path = tmp_path / name
    keras.Model(x, y).save(path)
    return path


def _free_size(tmp_path: Path) -> Path:
    return _pooled_softmax(tmp_path, "free.keras", None, 2)


def _not_a_model(tmp_path: Path) -> Path:
    path = tmp_path / "notes.keras"
    path.write_text("not a model")
    return path


def _weights_only(tmp_path: Path) -> Path:
    path = tmp_path / "model.weights.h5"
    brightness_model("-1-1", "softmax").save_weights(path)
    return path


def _three_classes(tmp_path: Path) -> Path:
    return _pooled_softmax(tmp_path, "three.keras", 24, 3)


def _onnx(tmp_path: Path) -> Path:
    path = tmp_path / "model.onnx"
    path.write_bytes(b"\x08\x07")
    return path


@pytest.mark.parametrize("make, message, fix", [
    (_two_inputs, "the model has 2 inputs", "single image input"),
    (_detection, "is not class scores", "Dense layer over the classes"),
    (_regression, "no preprocessing makes the model better than guessing", "--labels"),
    (_free_size, "takes any image size", "--image-size"),
    (_not_a_model, "cannot load the file as a Keras model", ".keras"),
    (_weights_only, "holds weights only", "save the whole model"),
    (_three_classes, "but the model outputs 3 classes", "--labels FILE"),
    (_onnx, "an ONNX model", "SavedModel"),
])
def test_bad_models_are_clear_errors_before_any_work(photos, tmp_path, make, message, fix):
    from edge_export.core.errors import EdgeExportError

    path = make(tmp_path)
    out = tmp_path / "run"
    with pytest.raises(EdgeExportError) as info:
        build(str(path), photos, out, "export.formats=tflite-fp32", stages=["train", "export"])
    assert message in info.value.message, info.value.message
    assert fix in (info.value.hint or "") + info.value.message, info.value.hint
    assert info.value.path is not None and Path(info.value.path).name in (path.name, "labels.txt")
    assert not (out / "model.keras").exists()


CUSTOM_LAYER = '''
import keras


@keras.saving.register_keras_serializable(package="byom_test")
class Brighten(keras.layers.Layer):
    def call(self, x):
        return x * 1.0
'''


def test_custom_objects_named_in_the_error_and_loaded_from_a_module(photos, tmp_path):
    from edge_export.core.errors import EdgeExportError

    module = tmp_path / "byom_layers.py"
    module.write_text(CUSTOM_LAYER)
    import importlib.util
    import keras

    spec = importlib.util.spec_from_file_location("byom_layers", module)
    layers = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(layers)
    base = brightness_model("-1-1", "softmax")
    x = keras.Input((24, 24, 3))
    model = keras.Model(x, base(layers.Brighten()(x)))
    path = tmp_path / "custom.keras"
    model.save(path)
    keras.saving.get_custom_objects().clear()  # a fresh process knows nothing of Brighten
    out = tmp_path / "run"
    with pytest.raises(EdgeExportError) as info:
        build(str(path), photos, out, "export.formats=tflite-fp32", stages=["train", "export"])
    assert "Brighten" in info.value.message and "model.custom_objects" in info.value.hint
    assert build(str(path), photos, out, "export.formats=tflite-fp32", stages=["train", "export"],
                 custom_objects=str(module)).ok


# ---------------------------------------------------------------------------------------------- the CLI


def test_cli_export_and_bench_take_a_model_file(photos, tmp_path, capsys, monkeypatch):
    path = tmp_path / "model.keras"
    brightness_model("0-255", "softmax").save(path)
    monkeypatch.chdir(tmp_path)
    code, text = cli_main(capsys, "export", str(path), "--data", str(photos), "--formats", "tflite-int8",
                          "--out", "exported", "export.representative_images=16")
    assert code == 0, text
    assert "model expects: input 0-255" in text and (tmp_path / "exported/export/tflite-int8.tflite").is_file()
    code, text = cli_main(capsys, "bench", str(path), "--data", str(photos), "--runs", "5", "--warmup", "1",
                          "--threads", "1", "bench.robustness=false")
    assert code == 0, text
    bench = json.loads((tmp_path / "runs/model/bench/bench.json").read_text())
    assert [r["name"] for r in bench["artifacts"]] == ["keras"] and bench["artifacts"][0]["accuracy"] == 1.0


# ------------------------------------------------------------------------------------------ one preprocessing record


def test_one_preprocessing_record_from_the_setting_to_the_bundle(photos, tmp_path):
    """model.resize=nearest, set once, is in the run's spec, the manifest's model card, every artifact's
    metadata (what the runtime loads) and the device bundle's copy: no second default anywhere."""
    from edge_export import api
    from edge_export.runtime.classifier import Classifier

    path = tmp_path / "model.keras"
    brightness_model("0-255", "softmax").save(path)
    out = tmp_path / "run"
    assert build(str(path), photos, out, "export.formats=tflite-int8,onnx-fp32", "model.resize=nearest").ok
    assert json.loads((out / "model_spec.json").read_text())["preprocessing"]["resize"] == "nearest"
    card = json.loads((out / "export" / "model_card.json").read_text())
    assert card["model"]["preprocessing"]["resize"] == "nearest"
    for name in ("tflite-int8.tflite", "onnx-fp32.onnx"):
        assert Classifier.load(out / "export" / name).preprocessing.resize == "nearest"
    bundle = api.package(out, echo=None)
    artifacts = [p for p in Path(bundle.folder).rglob("*.tflite")]
    assert artifacts and Classifier.load(artifacts[0]).preprocessing.resize == "nearest"


def test_an_imported_run_folder_exports_without_the_source_file(photos, tmp_path):
    """model.keras holds the user's model: exporting the run folder later needs neither the file nor --model."""
    from edge_export import api

    path = tmp_path / "gone.keras"
    brightness_model("0-255", "softmax").save(path)
    out = tmp_path / "run"
    assert build(str(path), photos, out, stages=["train"]).ok
    path.unlink()
    result = api.export(out, formats="tflite-fp32", echo=None, overrides=FAST[:1])
    assert result.ok and result.manifest.model.imported_from["path"] == str(path.resolve())
