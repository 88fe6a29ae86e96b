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

FAST = [
    "export.representative_images=16",
    "bench.runs=5",
    "bench.warmup=1",
    "bench.threads=[1]",
    "bench.robustness=false",
]


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


def brightness_onnx(
    path: Path,
    expects: str = "imagenet",
    output: str = "logits",
    channels_first: bool = True,
    batch: int | None = 1,
    size: int = 24,
    second_input: bool = False,
    uint8: bool = False,
    reverse: bool = False,
    invariant: bool = False,
) -> Path:
    """The brightness classifier as an ONNX graph made node by node (no converter), as PyTorch exports them by
    default: channels first, batch fixed at 1. ``expects`` "imagenet": no scaling inside, so only ImageNet
    mean/std separates the classes (the sum of the channel means is above 2.4 for bright photos only); "0-255":
    a Mul/Add to -1..1 inside, deciding at 0. ``output`` logits, softmax, sigmoid (one unit: dark), or
    feature-map (a 2 x 3 x 3 map per image: not class scores). ``reverse``: the classes in the other order (dark
    first; the sigmoid unit is then p(bright)). ``invariant``: decides on red minus blue (no scale changes it)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    threshold = {"imagenet": 2.4, "0-255": 0.0}[expects]
    sign = -1.0 if reverse else 1.0
    nodes, weights = [], []

    def const(name: str, value) -> str:
        weights.append(numpy_helper.from_array(np.asarray(value, np.float32), name))
        return name

    dims = [batch or "N", 3, size, size] if channels_first else [batch or "N", size, size, 3]
    inputs = [helper.make_tensor_value_info("input", TensorProto.UINT8 if uint8 else TensorProto.FLOAT, dims)]
    x = "input"
    if uint8:
        nodes.append(helper.make_node("Cast", [x], ["as_float"], to=TensorProto.FLOAT))
        x = "as_float"
    if second_input:
        inputs.append(helper.make_tensor_value_info("bias", TensorProto.FLOAT, [1]))
        nodes.append(helper.make_node("Add", [x, "bias"], ["biased"]))
        x = "biased"
    if expects == "0-255":
        nodes += [
            helper.make_node("Mul", [x, const("k", 1 / 127.5)], ["scaled"]),
            helper.make_node("Add", ["scaled", const("offset", -1.0)], ["rescaled"]),
        ]
        x = "rescaled"
    if not channels_first:
        nodes.append(helper.make_node("Transpose", [x], ["nchw"], perm=[0, 3, 1, 2]))
        x = "nchw"
    units = 1 if output == "sigmoid" else 2
    if output == "feature-map":
        nodes.append(helper.make_node("Conv", [x, const("kernel", np.ones((2, 3, 8, 8)))], ["out"], strides=[8, 8]))
        out_dims = [batch or "N", 2, size // 8, size // 8]
    else:
        nodes += [
            helper.make_node("GlobalAveragePool", [x], ["pooled"]),
            helper.make_node("Flatten", ["pooled"], ["flat"], axis=1),
        ]
        if output == "sigmoid":  # p(dark) = sigmoid(-10 (sum - t))
            nodes += [
                helper.make_node(
                    "Gemm", ["flat", const("W", [[-10.0 * sign]] * 3), const("b", [10 * sign * threshold])], ["z"]
                ),
                helper.make_node("Sigmoid", ["z"], ["out"]),
            ]
        else:
            gemm_out = "out" if output == "logits" else "z"
            kernel = [[10.0, -10.0], [0.0, 0.0], [-10.0, 10.0]] if invariant else [[10.0 * sign, -10.0 * sign]] * 3
            bias = [0.0, 0.0] if invariant else [-10 * sign * threshold, 10 * sign * threshold]
            nodes.append(helper.make_node("Gemm", ["flat", const("W", kernel), const("b", bias)], [gemm_out]))
            if output == "softmax":
                nodes.append(helper.make_node("Softmax", ["z"], ["out"], axis=1))
        out_dims = [batch or "N", units]
    graph = helper.make_graph(
        nodes, "brightness", inputs, [helper.make_tensor_value_info("out", TensorProto.FLOAT, out_dims)], weights
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save_model(model, str(path))
    return path


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    return write_photos(tmp_path_factory.mktemp("byom") / "photos")


def build(model, photos: Path, out: Path, *extra: str, **settings):
    from edge_export import api

    return api.build(None, out=out, model=model, data=str(photos), echo=None, overrides=[*FAST, *extra], **settings)


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
    result = build(
        str(path), photos, out, "export.formats=tflite-fp32,tflite-int8,onnx-fp32,onnx-int8,tflite-qat-int8:auto"
    )
    assert result.ok, result.failures
    manifest = manifest_of(out)
    imported = manifest["model"]["imported_from"]
    assert (imported["input_scale"], imported["output"], imported["kind"]) == ("0-255", "sigmoid", "keras")
    assert imported["decided"] == {"input_scale": "validation check", "output": "model"}
    assert imported["sha256"] == __import__("hashlib").sha256(path.read_bytes()).hexdigest()
    assert [row["input_scale"] for row in imported["check"]][0] == "0-255" and len(imported["check"]) == 4
    assert {a["name"]: a["status"] for a in manifest["artifacts"]} == dict.fromkeys(
        ["tflite-fp32", "tflite-int8", "onnx-fp32", "onnx-int8"], "ok"
    )
    assert manifest["auto"]["tflite-qat-int8"]["ran"] is False
    assert "imported model" in manifest["auto"]["tflite-qat-int8"]["reason"]
    int8 = next(a for a in manifest["artifacts"] if a["name"] == "tflite-int8")
    assert int8["parity"]["top1_agreement"] == 1.0
    correction = int8["bias_correction"]  # decided on the validation photos, both candidates recorded
    assert (
        correction["mode"] == "auto"
        and correction["layers"] >= 1
        and set(correction["validation"]) == {"without", "with"}
    )
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

    again = build(
        str(path), photos, out, "export.formats=tflite-fp32,tflite-int8,onnx-fp32,onnx-int8,tflite-qat-int8:auto"
    )
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
    assert build(
        str(path), photos, out, "export.formats=tflite-fp32", stages=["train", "export"], input_scale="-1-1"
    ).ok
    imported = manifest_of(out)["model"]["imported_from"]
    assert (imported["input_scale"], imported["output"]) == ("-1-1", "logits")
    assert imported["decided"] == {"input_scale": "flag", "output": "model"}
    assert len(imported["check"]) == 1


@pytest.mark.parametrize("kind", ["keras", "onnx"])
def test_refuses_when_it_cannot_tell_then_takes_the_flag(photos, tmp_path, kind):
    """A model whose answers do not depend on the input scale: the check stops with its table and the flag to
    pass, writing no model; with --input-scale it goes on."""
    from edge_export.core.errors import EdgeExportError

    if kind == "keras":
        path = tmp_path / "invariant.keras"
        brightness_model("-1-1", "softmax", invariant=True).save(path)
    else:
        path = brightness_onnx(tmp_path / "invariant.onnx", output="softmax", invariant=True)
    formats = "export.formats=tflite-fp32" if kind == "keras" else "export.formats=onnx-fp32"
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
        build(str(path), colour, out, formats, stages=["train", "export"])
    assert "cannot tell what the model expects" in info.value.message
    assert "--input-scale" in info.value.hint
    assert not (out / "model.keras").exists() and not (out / "model.onnx").exists()
    assert build(str(path), colour, out, formats, stages=["train", "export"], input_scale="0-1").ok


def test_in_memory_model_and_a_changed_file_is_a_new_model(photos, tmp_path):
    """build(model=keras.Model) works; the file's bytes (not its name) make the model: a changed file re-imports
    and the export of the old one is removed."""
    model = brightness_model("0-255", "softmax")
    out = tmp_path / "run"
    assert build(model, photos, out, "export.formats=tflite-fp32", stages=["train", "export"]).ok
    first = manifest_of(out)["model"]["imported_from"]["sha256"]
    again = build(
        brightness_model("-1-1", "softmax"), photos, out, "export.formats=tflite-fp32", stages=["train", "export"]
    )
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
    assert build(
        str(path), photos, out, "export.formats=tflite-fp32", stages=["train", "export"], labels=str(labels)
    ).ok
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


def _onnx_two_inputs(tmp_path: Path) -> Path:
    return brightness_onnx(tmp_path / "two.onnx", second_input=True)


def _onnx_detection(tmp_path: Path) -> Path:
    return brightness_onnx(tmp_path / "boxes.onnx", output="feature-map")


def _onnx_integer_input(tmp_path: Path) -> Path:
    return brightness_onnx(tmp_path / "uint8.onnx", uint8=True)


@pytest.mark.parametrize(
    "make, message, fix",
    [
        (_two_inputs, "the model has 2 inputs", "single image input"),
        (_detection, "is not class scores", "Dense layer over the classes"),
        (_regression, "no preprocessing makes the model better than guessing", "--labels"),
        (_free_size, "takes any image size", "--image-size"),
        (_not_a_model, "cannot load the file as a Keras model", ".keras"),
        (_weights_only, "holds weights only", "save the whole model"),
        (_three_classes, "but the model outputs 3 classes", "--labels FILE"),
        (_onnx, "not a valid ONNX model", "onnx.checker"),
        (_onnx_two_inputs, "the model has 2 inputs", "single image input"),
        (_onnx_detection, "is not class scores", "layer over the classes"),
        (_onnx_integer_input, "is not float32 or float16", "float model"),
    ],
)
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


CUSTOM_LAYER = """
import keras


@keras.saving.register_keras_serializable(package="byom_test")
class Brighten(keras.layers.Layer):
    def call(self, x):
        return x * 1.0
"""


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
    assert build(
        str(path), photos, out, "export.formats=tflite-fp32", stages=["train", "export"], custom_objects=str(module)
    ).ok


# ---------------------------------------------------------------------------------------------- ONNX models


def test_onnx_model_pytorch_style_through_build_bench_and_package(photos, tmp_path):
    """A PyTorch-style ONNX file (channels first, batch fixed at 1, ImageNet mean/std expected, logits out): the
    check picks ImageNet mean/std, the run's reference is model.onnx (wrapped: pixels 0-255 NHWC in, softmax
    out, batch made free), onnx-fp32 and onnx-int8 are exported and checked against it, the TFLite formats are
    skipped with the reason, the bench measures it as the reference row, and the bundle runs it."""
    from edge_export import api
    from edge_export.runtime.classifier import Classifier

    path = brightness_onnx(tmp_path / "resnet_like.onnx")
    out = tmp_path / "run"
    result = build(str(path), photos, out, "export.formats=all")
    assert result.ok, result.failures
    assert (out / "model.onnx").is_file() and not (out / "model.keras").exists()
    manifest = manifest_of(out)
    imported = manifest["model"]["imported_from"]
    assert (imported["kind"], imported["input_scale"], imported["output"]) == ("onnx", "imagenet", "logits")
    assert imported["decided"] == {"input_scale": "validation check", "output": "model"}
    assert manifest["model"]["path"] == "../model.onnx"
    assert {a["name"]: a["status"] for a in manifest["artifacts"]} == {"onnx-fp32": "ok", "onnx-int8": "ok"}
    for name in ("tflite-fp32", "tflite-int8", "tflite-qat-int8"):
        assert manifest["auto"][name]["ran"] is False and "imported from ONNX" in manifest["auto"][name]["reason"]
    for artifact in manifest["artifacts"]:
        assert artifact["parity"]["top1_agreement"] == 1.0 and artifact["opset"] == 13

    import onnx

    wrapped = onnx.load_model(str(out / "export" / "onnx-fp32.onnx"))
    dims = [d.dim_param or d.dim_value for d in wrapped.graph.input[0].type.tensor_type.shape.dim]
    assert dims == ["batch", 24, 24, 3] and wrapped.graph.input[0].name == "image"
    classifier = Classifier.load(out / "export" / "onnx-int8.onnx")
    test = json.loads((out / "dataset.json").read_text())["split"]["files"]["test"]
    answers = classifier.predict([str(photos / f) for f in test], batch_size=4)
    assert list(classifier.labels) == ["bright", "dark"]
    assert [a[0].label for a in answers] == [f.split("/")[0] for f in test]

    bench = json.loads((out / "bench" / "bench.json").read_text())
    rows = {r["name"]: r for r in bench["artifacts"]}
    assert set(rows) == {"source", "onnx-fp32", "onnx-int8"} and bench["reference"] == "source"
    assert rows["source"]["accuracy"] == 1.0 and rows["onnx-int8"]["top1_agreement"] == 1.0
    bundle = api.package(out, echo=None)
    assert list(Path(bundle.folder).rglob("*.onnx"))
    again = build(str(path), photos, out, "export.formats=all")
    assert again.skipped == ["train", "export", "bench"]


def test_onnx_sigmoid_channels_last_labels_reordered_then_a_keras_model_replaces_it(photos, tmp_path):
    """A channels-last ONNX model with its preprocessing inside and one sigmoid unit, its labels file in another
    order than the folders: 0-255 and sigmoid found, classes put in the data's order by the wrapper (a labels order
    that makes the model worse than chance is refused). Then a Keras
    model imported into the same folder replaces model.onnx (no model of two runs side by side)."""
    from edge_export.core.errors import EdgeExportError
    from edge_export.core.run_folder import RunFolder
    from edge_export.runtime.classifier import Classifier

    path = brightness_onnx(
        tmp_path / "tf_like.onnx", expects="0-255", output="sigmoid", channels_first=False, batch=None
    )
    labels = tmp_path / "labels.txt"
    labels.write_text("bright\ndark\n")
    out = tmp_path / "run"
    assert build(str(path), photos, out, "export.formats=onnx", stages=["train", "export"], labels=str(labels)).ok
    imported = manifest_of(out)["model"]["imported_from"]
    assert (imported["input_scale"], imported["output"]) == ("0-255", "sigmoid")
    classifier = Classifier.load(out / "export" / "onnx-fp32.onnx")
    dark = sorted(photos.glob("dark/*.png"))[:5]
    assert {a[0].label for a in classifier.predict([str(p) for p in dark])} == {"dark"}

    reversed_labels = tmp_path / "reversed.txt"
    reversed_labels.write_text("dark\nbright\n")
    with pytest.raises(EdgeExportError, match="better than guessing"):  # the unit is p(dark): this order is wrong
        build(
            str(path), photos, out, "export.formats=onnx-fp32", stages=["train", "export"], labels=str(reversed_labels)
        )
    other = brightness_onnx(
        tmp_path / "reversed.onnx", expects="0-255", output="sigmoid", channels_first=False, reverse=True
    )  # its unit is p(bright): the second class of the labels file
    assert build(
        str(other), photos, out, "export.formats=onnx-fp32", stages=["train", "export"], labels=str(reversed_labels)
    ).ok
    classifier = Classifier.load(out / "export" / "onnx-fp32.onnx")
    assert list(classifier.labels) == ["bright", "dark"]  # the data's order
    assert {a[0].label for a in classifier.predict([str(p) for p in dark])} == {"dark"}

    keras_path = tmp_path / "model.keras"
    brightness_model("0-255", "softmax").save(keras_path)
    assert build(str(keras_path), photos, out, "export.formats=onnx-fp32", stages=["train", "export"]).ok
    assert (out / "model.keras").is_file() and not (out / "model.onnx").exists()
    assert RunFolder(out).verify().model_name == "model.keras"


def test_a_keras_model_beside_an_imported_onnx_record_is_refused(photos, tmp_path):
    """model.onnx is the run's model (its run record says so); a model.keras put beside it is another run's."""
    import shutil

    from edge_export.core.errors import EdgeExportError
    from edge_export.core.run_folder import RunFolder

    out = tmp_path / "run"
    assert build(str(brightness_onnx(tmp_path / "m.onnx")), photos, out, stages=["train"]).ok
    assert RunFolder(out).verify().model_name == "model.onnx"
    other = tmp_path / "other.keras"
    brightness_model("0-255", "softmax").save(other)
    shutil.copy(other, out / "model.keras")
    with pytest.raises(EdgeExportError, match="different runs"):
        RunFolder(out).verify()


# ---------------------------------------------------------------------------------------------- the CLI


def test_cli_export_and_bench_take_a_model_file(photos, tmp_path, capsys, monkeypatch):
    path = tmp_path / "model.keras"
    brightness_model("0-255", "softmax").save(path)
    monkeypatch.chdir(tmp_path)
    code, text = cli_main(
        capsys,
        "export",
        str(path),
        "--data",
        str(photos),
        "--formats",
        "tflite-int8",
        "--out",
        "exported",
        "export.representative_images=16",
    )
    assert code == 0, text
    assert "model expects: input 0-255" in text and (tmp_path / "exported/export/tflite-int8.tflite").is_file()
    code, text = cli_main(
        capsys,
        "bench",
        str(path),
        "--data",
        str(photos),
        "--runs",
        "5",
        "--warmup",
        "1",
        "--threads",
        "1",
        "bench.robustness=false",
    )
    assert code == 0, text
    bench = json.loads((tmp_path / "runs/model/bench/bench.json").read_text())
    assert [r["name"] for r in bench["artifacts"]] == ["keras"] and bench["artifacts"][0]["accuracy"] == 1.0


def test_cli_export_takes_an_onnx_file_and_bench_measures_it_as_it_is(photos, tmp_path, capsys, monkeypatch):
    """`export FILE.onnx --data` imports and exports it (ONNX formats); `bench FILE.onnx` measures the file as it is
    (no import: its preprocessing is named by flags, as for any model file without metadata)."""
    path = brightness_onnx(tmp_path / "net.onnx")
    monkeypatch.chdir(tmp_path)
    code, text = cli_main(
        capsys, "export", str(path), "--data", str(photos), "--formats", "onnx", "export.representative_images=16"
    )
    assert code == 0, text
    assert "model expects: input imagenet" in text and (tmp_path / "runs/net/export/onnx-int8.onnx").is_file()
    code, text = cli_main(capsys, "export", str(path), "--data", str(photos), "--formats", "tflite-int8", "--out", "t")
    assert code != 0 and "none of the requested formats can be made" in text and "--formats onnx" in text, text


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
