"""The thin runtime (edge_export.runtime) on real LiteRT and ONNX Runtime, with tiny models built here."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from edge_export.core.errors import EdgeExportError
from edge_export.export.metadata import build_metadata, embed_onnx_metadata, embed_tflite_metadata
from edge_export.runtime.backends import TensorSpec, load_backend
from edge_export.runtime.classifier import Classifier, Prediction
from edge_export.runtime.metadata import read_metadata
from edge_export.runtime.preprocessing import Preprocessing
from edge_export.runtime.quantization import dequantize, quantize

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("EDGE_EXPORT_SHARED", ROOT.parent / "shared"))
REFERENCE = SHARED / "reference-models"
SIZE = (16, 16)
LABELS = ["cat", "dog", "bird"]
ONNX_LABELS = ["red", "green", "blue", "grey"]

needs_reference = pytest.mark.skipif(
    not (REFERENCE / "mobilenet_v2_1.0_224_quant.tflite").is_file(), reason=f"no reference models in {SHARED}"
)


# ----------------------------------------------------------------------------- test models


def _images(n: int = 4) -> list[np.ndarray]:
    """Distinct uint8 RGB images of varied sizes (tinted noise and gradients)."""
    rng = np.random.default_rng(1)
    out = []
    for i in range(n):
        h, w = 20 + 7 * i, 30 - 3 * i
        tint = np.array([(i * 80) % 256, 255 - (i * 60) % 256, (i * 40) % 256])
        noise = rng.integers(0, 90, (h, w, 3))
        out.append(np.clip(tint * 0.7 + noise, 0, 255).astype(np.uint8))
    return out


def _keras_tflite_models() -> dict[str, bytes]:
    """One tiny Keras model (0-255 input, rescaling inside, softmax out) as float, uint8 and int8 TFLite."""
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(0)
    inputs = keras.Input((*SIZE, 3))
    x = keras.layers.Rescaling(1 / 255.0)(inputs)
    x = keras.layers.Conv2D(8, 3, strides=2, activation="relu")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(len(LABELS), activation="softmax")(x)
    model = keras.Model(inputs, outputs)
    model.layers[-1].set_weights([w * 8 for w in model.layers[-1].get_weights()])  # confident outputs
    calibration = [im for im in _images(8)]

    def convert(dtype=None) -> bytes:
        converter = tf.lite.TFLiteConverter.from_keras_model(model)
        if dtype is not None:
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
            converter.representative_dataset = lambda: (
                [np.asarray(Image.fromarray(im).resize(SIZE[::-1]), np.float32)[None]] for im in calibration
            )
            converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
            converter.inference_input_type = dtype
            converter.inference_output_type = dtype
        return converter.convert()

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "Statistics for quantized inputs were expected" and friends
        return {"float": convert(), "uint8": convert(tf.uint8), "int8": convert(tf.int8)}


def _onnx_model():
    """NHWC float pixels -> Transpose -> /255 -> GlobalAveragePool -> Flatten -> Gemm -> Softmax."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    # a colour classifier: mean R, G, B (0-1) -> logits for red, green, blue, grey
    weights = np.array([[8, -4, -4, 0], [-4, 8, -4, 0], [-4, -4, 8, 0]], np.float32)
    bias = np.zeros(len(ONNX_LABELS), np.float32)
    nodes = [
        helper.make_node("Transpose", ["pixels"], ["nchw"], perm=[0, 3, 1, 2]),
        helper.make_node("Mul", ["nchw", "scale"], ["scaled"]),
        helper.make_node("GlobalAveragePool", ["scaled"], ["pooled"]),
        helper.make_node("Flatten", ["pooled"], ["flat"], axis=1),
        helper.make_node("Gemm", ["flat", "W", "b"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["probabilities"], axis=-1),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny",
        [helper.make_tensor_value_info("pixels", TensorProto.FLOAT, ["batch", *SIZE, 3])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["batch", len(ONNX_LABELS)])],
        initializer=[
            numpy_helper.from_array(np.array(1 / 255.0, np.float32), "scale"),
            numpy_helper.from_array(weights, "W"),
            numpy_helper.from_array(bias, "b"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


@pytest.fixture(scope="session")
def models(tmp_path_factory) -> dict[str, Path]:
    """name -> model file: float/uint8/int8 .tflite and .onnx, with and without edge_export metadata."""
    folder = tmp_path_factory.mktemp("models")
    meta = build_metadata(LABELS, Preprocessing(size=SIZE), source="test")
    paths = {}
    for name, data in _keras_tflite_models().items():
        paths[f"{name}_bare"] = folder / f"{name}_bare.tflite"
        paths[f"{name}_bare"].write_bytes(data)
        paths[name] = folder / f"{name}.tflite"
        paths[name].write_bytes(embed_tflite_metadata(data, meta))
    onnx_model = _onnx_model()
    paths["onnx_bare"] = folder / "bare.onnx"
    paths["onnx_bare"].write_bytes(onnx_model.SerializeToString())
    embed_onnx_metadata(onnx_model, build_metadata(ONNX_LABELS, Preprocessing(size=SIZE), source="test"))
    paths["onnx"] = folder / "model.onnx"
    paths["onnx"].write_bytes(onnx_model.SerializeToString())
    return paths


@pytest.fixture(scope="session")
def image_files(tmp_path_factory) -> list[Path]:
    folder = tmp_path_factory.mktemp("images")
    paths = []
    for i, array in enumerate(_images()):
        path = folder / f"image{i}.png"
        Image.fromarray(array).save(path)
        paths.append(path)
    return paths


# ----------------------------------------------------------------------------- TF-free

TF_FREE = """
import importlib.abc, json, sys

class NoTensorFlow(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("tensorflow", "keras", "tf_keras", "onnx"):  # a device has none of them
            raise ImportError(f"{name} is blocked in this test")

sys.meta_path.insert(0, NoTensorFlow())
try:
    import tensorflow
except ImportError:
    pass
else:
    raise SystemExit("tensorflow was not blocked")

from edge_export.runtime.classifier import Classifier
from edge_export.runtime.metadata import read_metadata
import edge_export.commands.predict
from edge_export.cli import main

out = {}
for model in sys.argv[2:]:
    clf = Classifier.load(model)
    out[model] = [[p.label, p.probability] for p in clf.predict(sys.argv[1], top_k=2)[0]]
    assert read_metadata(model)["labels"] == clf.labels
leaked = sorted(m for m in sys.modules if m.split(".")[0] in ("tensorflow", "keras", "tf_keras", "onnx"))
assert not leaked, leaked
print(json.dumps(out))
"""


def test_runtime_runs_without_tensorflow(models, image_files):
    targets = [str(models["float"]), str(models["int8"]), str(models["onnx"])]
    proc = subprocess.run(
        [sys.executable, "-c", TF_FREE, str(image_files[0]), *targets],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert set(out) == set(targets)
    for model in targets:
        assert len(out[model]) == 2
    # same answers as in this (TensorFlow-importing) process
    expected = Classifier.load(models["onnx"]).predict(image_files[0], top_k=2)[0]
    assert [p.label for p in expected] == [label for label, _ in out[str(models["onnx"])]]


# ----------------------------------------------------------------------------- reference models


@needs_reference
@pytest.mark.parametrize(
    "model, image, top1",
    [
        ("mobilenet_v2_1.0_224_quant.tflite", "cat.bmp", "Egyptian cat"),
        ("mobilenet_v2_1.0_224_quant.tflite", "grace_hopper.bmp", "military uniform"),
        ("mobilenet_v1_0.25_128_quant.tflite", "cat.bmp", "Egyptian cat"),
    ],
)
def test_reference_models(model, image, top1):
    clf = Classifier.load(REFERENCE / model, labels=REFERENCE / "imagenet_labels.txt", threads=1)
    assert clf.metadata is None and len(clf.labels) == 1001 and clf.labels[0] == "background"
    predictions = clf.predict(REFERENCE / image, top_k=5)[0]
    assert len(predictions) == 5
    assert predictions[0].label == top1, predictions
    assert predictions[0].probability > 0.05
    assert [p.probability for p in predictions] == sorted((p.probability for p in predictions), reverse=True)


@needs_reference
def test_reference_model_input_is_raw_pixels():
    """An integer model without metadata is fed the raw pixels (scale 1/128, zero point 128 here)."""
    clf = Classifier.load(REFERENCE / "mobilenet_v2_1.0_224_quant.tflite")
    spec = clf.backend.input_spec
    assert (spec.dtype, spec.scale, spec.zero_point) == (np.uint8, 1 / 128, 128)
    assert clf.input_size == (224, 224)
    pixels = np.arange(224 * 224 * 3, dtype=np.int64).reshape(1, 224, 224, 3).astype(np.uint8)
    fed = quantize(clf.preprocessing.normalize(pixels), spec)
    np.testing.assert_array_equal(fed, pixels)


@needs_reference
def test_reference_batch_on_fixed_batch_model():
    """The reference model's batch is fixed at 1: a list runs one by one and matches single runs."""
    clf = Classifier.load(REFERENCE / "mobilenet_v1_0.25_128_quant.tflite")
    images = [REFERENCE / "cat.bmp", REFERENCE / "grace_hopper.bmp"]
    together = clf.predict(images, top_k=3)
    assert together == [clf.predict(image, top_k=3)[0] for image in images]


# ----------------------------------------------------------------------------- inputs


@pytest.mark.parametrize("name", ["float", "uint8", "onnx"])
def test_every_input_kind_gives_the_same_probabilities(models, image_files, name):
    clf = Classifier.load(models[name])
    path = image_files[1]
    array = np.asarray(Image.open(path).convert("RGB"))
    expected = clf.predict(path, top_k=3)[0]
    assert clf.predict(str(path), top_k=3)[0] == expected
    assert clf.predict(Image.open(path), top_k=3)[0] == expected
    assert clf.predict(array, top_k=3)[0] == expected
    assert clf.predict([path, Image.open(path), array], top_k=3) == [expected] * 3
    assert clf.predict(np.stack([array, array]), top_k=3) == [expected] * 2
    assert all(isinstance(p, Prediction) for p in expected)


@pytest.mark.parametrize("name", ["float", "onnx"])
def test_batch_matches_single_images(models, image_files, name):
    """Dynamic batch: LiteRT resizes its input tensor, ONNX Runtime takes any batch."""
    clf = Classifier.load(models[name], threads=1)
    batch = clf.predict(image_files, top_k=10, batch_size=4)
    singles = [clf.predict(p, top_k=10)[0] for p in image_files]
    for got, want in zip(batch, singles):
        assert [p.index for p in got] == [p.index for p in want]
        np.testing.assert_allclose([p.probability for p in got], [p.probability for p in want], atol=1e-5)
    first = {p.index: p.probability for p in batch[0]}
    assert any(abs(first[p.index] - p.probability) > 0.05 for r in batch[1:] for p in r)  # images differ


def _spy_on_decode_and_model(monkeypatch, clf):
    """Record, in order, each decode start (thread name, index) and each model call (batch size)."""
    import threading

    import edge_export.runtime.classifier as classifier_module

    events: list[tuple] = []
    lock = threading.Lock()
    real_load, real_run = classifier_module.load_image, clf.backend.run

    def load(source, *args, **kwargs):
        with lock:
            events.append(("decode", threading.current_thread().name, Path(source).name))
        return real_load(source, *args, **kwargs)

    def run(array):
        with lock:
            events.append(("model", array.shape[0]))
        return real_run(array)

    monkeypatch.setattr(classifier_module, "load_image", load)
    monkeypatch.setattr(clf.backend, "run", run)
    return events


def test_files_are_decoded_ahead_on_another_thread_while_the_model_runs(models, image_files, monkeypatch):
    """predict(paths): the next files decode on a worker thread while the model runs on the current one (the
    model waits for that event, never for a time); one file is decoded on the calling thread."""
    import threading

    import edge_export.runtime.classifier as classifier_module

    clf = Classifier.load(models["uint8"], threads=1)
    expected = [clf.predict(p, top_k=2)[0] for p in image_files]
    events = _spy_on_decode_and_model(monkeypatch, clf)
    second_decoding = threading.Event()
    real_load = classifier_module.load_image  # the spy

    def load(source, *args, **kwargs):
        if Path(source) == image_files[1]:
            second_decoding.set()
        return real_load(source, *args, **kwargs)

    monkeypatch.setattr(classifier_module, "load_image", load)
    run = clf.backend.run
    waited = []

    def model(array):
        if not waited:  # the first model call: the second file must already be decoding, not wait for it
            waited.append(second_decoding.wait(timeout=60))
        return run(array)

    monkeypatch.setattr(clf.backend, "run", model)
    assert clf.predict(image_files, top_k=2) == expected
    assert waited == [True]
    decoders = {e[1] for e in events if e[0] == "decode"}
    assert decoders and all(name.startswith("edge-export-decode") for name in decoders)
    assert [e[1] for e in events if e[0] == "model"] == [1] * len(image_files)  # default batch_size 1

    events.clear()
    clf.predict(image_files[0], top_k=2)
    assert [e[1] for e in events if e[0] == "decode"] == [threading.current_thread().name]


def test_stream_chunks_grow_and_decoding_ahead_is_bounded(models, image_files, monkeypatch):
    clf = Classifier.load(models["onnx"], threads=1)
    files = list(image_files) * 4
    events = _spy_on_decode_and_model(monkeypatch, clf)
    batch = clf.predict(files, top_k=3, batch_size=3)
    sizes = [e[1] for e in events if e[0] == "model"]
    assert sizes[:3] == [1, 2, 3] and set(sizes[2:-1]) == {3} and sum(sizes) == len(files)  # chunking: count only
    from edge_export.runtime.classifier import decode_workers

    decoded = consumed = 0
    for e in events:  # decoded but not yet given to the model: never more than the chunk + the look-ahead
        if e[0] == "decode":
            decoded += 1
            assert decoded - consumed <= 3 + max(2 * 3, decode_workers())
        else:
            consumed += e[1]
    assert [r[0].index for r in batch] == [clf.predict(f, top_k=1)[0][0].index for f in files]
    with pytest.raises(EdgeExportError, match="batch_size"):
        clf.predict(files, batch_size=0)
    with pytest.raises(EdgeExportError, match="batch_size"):
        clf.predict(files, batch_size=True)
    numpy_batch = clf.predict(files[:3], top_k=3, batch_size=np.int64(2))  # a numpy integer is an integer
    assert [[p.index for p in r] for r in numpy_batch] == [[p.index for p in r] for r in batch[:3]]


def test_predict_iter_gives_the_first_result_before_the_last_file_is_decoded(models, image_files, monkeypatch):
    import threading

    import edge_export.runtime.classifier as classifier_module

    clf = Classifier.load(models["uint8"], threads=1)
    files = list(image_files) * 3 + [Path(str(image_files[0]))]  # the last: an object of its own
    expected = clf.predict(files, top_k=2)
    real_load, last_may_decode = classifier_module.load_image, threading.Event()

    def load(source, *args, **kwargs):
        if source is files[-1]:  # held until the caller has its first result
            assert last_may_decode.wait(timeout=60), "the first result did not come before the last file decoded"
        return real_load(source, *args, **kwargs)

    monkeypatch.setattr(classifier_module, "load_image", load)
    results = clf.predict_iter(files, top_k=2)
    first = next(results)
    last_may_decode.set()
    assert [first, *results] == expected
    with pytest.raises(EdgeExportError, match="top_k"):  # bad arguments fail at the call, not at the first next()
        clf.predict_iter(files, top_k=0)


def test_a_bad_file_in_a_stream(models, image_files, tmp_path):
    """predict_each: the bad file's error in its place, the others predicted; predict: the first bad file raises."""
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"not a jpeg")
    clf = Classifier.load(models["uint8"], threads=1)
    files = [image_files[0], bad, image_files[1], tmp_path / "missing.png", image_files[2]]
    results = clf.predict_each(files, top_k=1)
    assert isinstance(results[1], EdgeExportError) and "broken.jpg" in str(results[1])
    assert isinstance(results[3], EdgeExportError) and "missing.png" in str(results[3])
    assert [results[i] for i in (0, 2, 4)] == [clf.predict(image_files[i], top_k=1)[0] for i in range(3)]
    with pytest.raises(EdgeExportError, match="broken.jpg"):
        clf.predict(files, top_k=1)


def test_labels_file_with_bom_and_crlf(models, tmp_path):
    """A labels.txt saved by Windows Notepad (BOM, CRLF, a trailing blank line) reads like a plain one, by the same
    rule as a TFLITE_METADATA labels file."""
    from edge_export.runtime.classifier import read_labels
    from edge_export.runtime.tflite_metadata import parse_labels

    text = "\r\n".join(LABELS) + "\r\n\r\n"
    path = tmp_path / "labels.txt"
    path.write_bytes(text.encode("utf-8-sig"))
    assert read_labels(path) == LABELS == parse_labels(text.encode("utf-8-sig"))
    assert Classifier.load(models["float_bare"], labels=path, mean=0, std=1).labels == LABELS
    (tmp_path / "empty.txt").write_bytes("\ufeff\r\n".encode())
    with pytest.raises(EdgeExportError, match="labels file is empty"):
        read_labels(tmp_path / "empty.txt")


def test_top_k_and_labels(models, image_files):
    clf = Classifier.load(models["float"])
    assert clf.labels == LABELS and clf.input_size == SIZE
    assert len(clf.predict(image_files[0], top_k=1)[0]) == 1
    full = clf.predict(image_files[0], top_k=10)[0]
    assert sorted(p.label for p in full) == sorted(LABELS)
    assert sum(p.probability for p in full) == pytest.approx(1.0, abs=1e-5)
    assert all(p.label == LABELS[p.index] for p in full)
    with pytest.raises(EdgeExportError, match="top_k"):
        clf.predict(image_files[0], top_k=0)


# ----------------------------------------------------------------------------- quantization


def test_quantize_dequantize_functions():
    spec = TensorSpec("x", (None, 4), np.dtype(np.int8), scale=0.5, zero_point=-10)
    x = np.array([-100.0, 0.0, 1.26, 200.0], np.float32)
    q = quantize(x, spec)
    np.testing.assert_array_equal(q, [-128, -10, -7, 127])  # clipped to int8 at both ends
    np.testing.assert_allclose(dequantize(q, spec), [-59.0, 0.0, 1.5, 68.5])
    float_spec = TensorSpec("y", (None, 4), np.dtype(np.float32))
    assert quantize(x, float_spec).dtype == np.float32 and dequantize(x, float_spec) is x


@pytest.mark.parametrize("name", ["uint8", "int8"])
def test_integer_model_agrees_with_float_model(models, image_files, name):
    quantized, reference = Classifier.load(models[name]), Classifier.load(models["float"])
    spec = quantized.backend.input_spec
    assert spec.dtype == np.dtype(name) and spec.is_quantized and quantized.backend.output_spec.is_quantized
    pixels = np.stack([np.asarray(Image.open(p).convert("RGB").resize(SIZE[::-1])) for p in image_files])
    got, want = quantized.predict_proba(pixels), reference.predict_proba(pixels)
    assert got.dtype == np.float32 and got.shape == (len(image_files), len(LABELS))
    np.testing.assert_allclose(got, want, atol=0.05)
    np.testing.assert_allclose(got.sum(axis=1), 1.0, atol=0.02)
    assert (got.argmax(axis=1) == want.argmax(axis=1)).all()


# ----------------------------------------------------------------------------- metadata


@pytest.mark.parametrize("name, labels", [("float", LABELS), ("int8", LABELS), ("onnx", ONNX_LABELS)])
def test_metadata_round_trip(models, name, labels):
    meta = read_metadata(models[name])
    assert meta["format_version"] == 1 and meta["labels"] == labels and meta["source"] == "test"
    assert Preprocessing.from_dict(meta["preprocessing"]) == Preprocessing(size=SIZE)
    assert read_metadata(models[f"{name}_bare"]) is None
    clf = Classifier.load(models[name])
    assert clf.labels == labels and clf.metadata == meta and clf.preprocessing == Preprocessing(size=SIZE)


def test_metadata_is_replaced_not_added(models, tmp_path):
    import onnx

    data = models["float"].read_bytes()
    new = build_metadata(["a", "b", "c"], Preprocessing(size=SIZE, mean=(1, 2, 3)), version="2")
    path = tmp_path / "again.tflite"
    path.write_bytes(embed_tflite_metadata(data, new))
    assert read_metadata(path) == new
    from ai_edge_litert import schema_py_generated as schema

    entries = schema.ModelT.InitFromPackedBuf(bytearray(path.read_bytes()), 0).metadata
    assert [e.name for e in entries].count(b"edge_export") == 1
    clf = Classifier.load(path)
    assert clf.labels == ["a", "b", "c"] and clf.preprocessing.mean == (1.0, 2.0, 3.0)

    model = onnx.load(str(models["onnx"]))
    embed_onnx_metadata(model, new)
    assert [p.key for p in model.metadata_props].count("edge_export") == 1
    onnx_path = tmp_path / "again.onnx"
    onnx_path.write_bytes(model.SerializeToString())
    assert read_metadata(onnx_path) == new


@pytest.mark.parametrize("name", ["float", "int8"])
def test_embedding_metadata_keeps_predictions_and_alignment(models, image_files, name):
    # without metadata an integer model would be fed raw pixels: ask for identity like the metadata does
    before = Classifier.load(models[f"{name}_bare"], mean=0, std=1).predict_proba(_resized(image_files))
    after = Classifier.load(models[name]).predict_proba(_resized(image_files))
    np.testing.assert_array_equal(before, after)
    assert _unaligned_buffers(models[name].read_bytes()) == 0  # the schema's force_align: 16


def _unaligned_buffers(data: bytes) -> int:
    import flatbuffers

    model = flatbuffers.table.Table(data, flatbuffers.encode.Get(flatbuffers.packer.uoffset, data, 0))
    start, count = model.Vector(model.Offset(4 + 2 * 4)), model.VectorLen(model.Offset(4 + 2 * 4))
    buffers = [flatbuffers.table.Table(data, model.Indirect(start + 4 * i)) for i in range(count)]
    return sum(b.Vector(b.Offset(4)) % 16 != 0 for b in buffers if b.Offset(4))


@pytest.mark.parametrize("name", ["float_bare", "onnx_bare"])
def test_model_without_metadata_uses_arguments(models, image_files, tmp_path, name):
    bare = Classifier.load(models[name])
    classes = bare.backend.output_spec.shape[-1]
    assert bare.metadata is None and bare.labels == [str(i) for i in range(classes)]
    assert bare.preprocessing.is_identity and bare.input_size == SIZE

    names = [f"class {i}" for i in range(classes)]
    labels_file = tmp_path / "labels.txt"
    labels_file.write_text("\n".join(names) + "\n\n")
    for labels in (names, labels_file, str(labels_file)):
        assert Classifier.load(models[name], labels=labels).labels == names

    shifted = Classifier.load(models[name], labels=names, mean=(100, 50, 0), std=2.0)
    assert shifted.preprocessing.mean == (100.0, 50.0, 0.0) and shifted.preprocessing.std == (2.0,) * 3
    pixels = _resized(image_files)
    manual = ((pixels.astype(np.float32) - np.float32([100, 50, 0])) / np.float32(2)).astype(np.float32)
    np.testing.assert_allclose(shifted.predict_proba(pixels), bare.backend.run(manual), rtol=1e-5, atol=1e-6)


def test_arguments_override_metadata(models, tmp_path):
    labels_file = tmp_path / "labels.txt"
    labels_file.write_text("x\ny\nz\n")
    clf = Classifier.load(models["float"], labels=labels_file, mean=5, std=(1, 2, 3))
    assert clf.labels == ["x", "y", "z"]
    assert clf.preprocessing.mean == (5.0,) * 3 and clf.preprocessing.std == (1.0, 2.0, 3.0)
    assert clf.metadata["labels"] == LABELS


# ----------------------------------------------------------------------------- errors


@pytest.mark.parametrize("name", ["float", "onnx"])
@pytest.mark.parametrize("damage", ["random", "truncated", "empty"])
def test_corrupt_models_raise_naming_the_file(models, tmp_path, name, damage):
    data = models[name].read_bytes()
    broken = {
        "random": np.random.default_rng(3).integers(0, 256, len(data), dtype=np.uint8).tobytes(),
        "truncated": data[: len(data) // 2],
        "empty": b"",
    }[damage]
    path = tmp_path / f"broken_{damage}{models[name].suffix}"
    path.write_bytes(broken)
    with pytest.raises(EdgeExportError) as info:
        Classifier.load(path)
    assert str(path) in str(info.value)
    with pytest.raises(EdgeExportError) as info:
        read_metadata(path)
    assert str(path) in str(info.value)


def test_missing_and_unknown_files(tmp_path, models):
    with pytest.raises(EdgeExportError, match="not found") as info:
        Classifier.load(tmp_path / "missing.tflite")
    assert "missing.tflite" in str(info.value)
    other = tmp_path / "model.pb"
    other.write_bytes(b"x")
    with pytest.raises(EdgeExportError, match="unknown model format") as info:
        Classifier.load(other)
    assert "model.pb" in str(info.value) and ".onnx" in str(info.value)
    with pytest.raises(EdgeExportError, match="labels file not found"):
        Classifier.load(models["float"], labels=tmp_path / "nope.txt")


def test_labels_count_mismatch(models):
    with pytest.raises(EdgeExportError, match="2 labels .* 3 outputs") as info:
        Classifier.load(models["float"], labels=["a", "b"])
    assert str(models["float"]) in str(info.value)
    with pytest.raises(EdgeExportError, match="3 labels .* 4 outputs"):
        Classifier.load(models["onnx_bare"], labels=LABELS)


@pytest.mark.parametrize("name", ["float", "int8", "onnx"])
def test_predict_proba_rejects_wrong_arrays(models, name):
    clf = Classifier.load(models[name])
    good = np.zeros((2, *SIZE, 3), np.uint8)
    assert clf.predict_proba(good).shape[0] == 2
    assert clf.predict_proba(good[0]).shape[0] == 1
    bad = {
        "shape (2, 32, 32, 3)": np.zeros((2, 32, 32, 3), np.uint8),
        "shape (2, 16, 16, 4)": np.zeros((2, *SIZE, 4), np.uint8),
        "shape (16, 16)": np.zeros(SIZE, np.uint8),
        "dtype float32": good.astype(np.float32),
        "got list": [[0]],
    }
    for expected, array in bad.items():
        with pytest.raises(EdgeExportError, match=r"N x 16 x 16 x 3") as info:
            clf.predict_proba(array)
        assert expected in str(info.value) and str(models[name]) in str(info.value)


def test_size_mismatch_and_providers(models):
    with pytest.raises(EdgeExportError, match="does not match the model's input 16x16"):
        Classifier.load(models["float"], size=(32, 32))
    with pytest.raises(EdgeExportError, match="available: .*CPUExecutionProvider"):
        Classifier.load(models["onnx"], providers=["NoSuchExecutionProvider"])
    clf = Classifier.load(models["onnx"], providers=["cpu"], threads=1)
    assert clf.backend.providers == ["CPUExecutionProvider"]
    with pytest.raises(EdgeExportError, match="ONNX models only"):
        Classifier.load(models["float"], providers=["cpu"])
    with pytest.raises(EdgeExportError, match="threads"):
        Classifier.load(models["float"], threads=0)


def test_load_backend_directly(models):
    backend = load_backend(models["uint8"], threads=1)
    assert backend.name == "litert"
    assert backend.input_spec.shape == (None, *SIZE, 3) and backend.input_spec.dtype == np.uint8
    assert backend.output_spec.shape == (None, len(LABELS)) and backend.output_spec.scale == pytest.approx(1 / 256)
    out = backend.run(np.zeros((3, *SIZE, 3), np.uint8))
    assert out.shape == (3, len(LABELS)) and out.dtype == np.uint8


# ----------------------------------------------------------------------------- CLI


def _cli(*args: str):
    from click.testing import CliRunner

    from edge_export.cli import cli

    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


@needs_reference
def test_predict_cli_plain_and_json():
    model = str(REFERENCE / "mobilenet_v2_1.0_224_quant.tflite")
    images = [str(REFERENCE / "cat.bmp"), str(REFERENCE / "grace_hopper.bmp")]
    labels = str(REFERENCE / "imagenet_labels.txt")

    result = _cli("predict", model, *images, "--labels", labels, "--top-k", "3", "--threads", "1")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert len(lines) == 8 and lines[0] == images[0] and lines[4] == images[1]
    assert lines[1].startswith("  Egyptian cat ") and lines[5].startswith("  military uniform ")
    assert 0 < float(lines[1].split()[-1]) <= 1

    result = _cli("predict", model, images[0], "--labels", labels, "--json", "--top-k", "2")
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload[0]["image"] == images[0] and len(payload[0]["predictions"]) == 2
    top = payload[0]["predictions"][0]
    assert set(top) == {"label", "index", "probability"}
    assert (top["label"], top["index"]) == ("Egyptian cat", 286)


def test_predict_cli_options_and_errors(models, image_files, tmp_path):
    result = _cli(
        "predict",
        str(models["onnx_bare"]),
        str(image_files[0]),
        "--mean",
        "0,0,0",
        "--std",
        "1",
        "--size",
        "16x16",
        "--provider",
        "cpu",
        "--json",
        "--top-k",
        "1",
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)[0]["predictions"][0]["label"] in {"0", "1", "2", "3"}

    assert _cli("predict", str(models["onnx"]), str(image_files[0]), "--mean", "1,2").exit_code == 2
    assert _cli("predict", str(models["onnx"]), str(image_files[0]), "--size", "axb").exit_code == 2

    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"not a model")
    proc = subprocess.run(
        [sys.executable, "-c", "from edge_export.cli import main; main()", "predict", str(broken), str(image_files[0])],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert proc.returncode == 2
    assert str(broken) in proc.stderr and "Traceback" not in proc.stderr


def test_predict_cli_takes_folders(models, image_files, tmp_path, monkeypatch):
    """A folder stands for the image files below it (sorted, hidden ones left out); one without images is an error
    line and exit status 1, the others still predicted."""
    import shutil

    photos = tmp_path / "photos"
    (photos / "sub").mkdir(parents=True)
    shutil.copy(image_files[0], photos / "b.png")
    shutil.copy(image_files[1], photos / "sub" / "a.png")
    shutil.copy(image_files[2], photos / ".hidden.png")
    (tmp_path / "empty").mkdir()
    model = str(models["onnx"])
    result = _cli("predict", model, str(photos), str(image_files[3]), "--json", "--top-k", "1")
    assert result.exit_code == 0, result.output
    listed = [entry["image"] for entry in json.loads(result.stdout)]
    assert listed == [str(photos / "b.png"), str(photos / "sub" / "a.png"), str(image_files[3])]
    result = _cli("predict", model, str(tmp_path / "empty"), str(photos / "b.png"), "--json")
    assert result.exit_code == 1 and "no image files in this folder" in result.stderr
    payload = json.loads(result.stdout)  # in argument order: the folder's error in its place
    assert payload[0] == {"image": str(tmp_path / "empty"), "error": "no image files in this folder"}
    assert len(payload) == 2 and payload[1]["image"] == str(photos / "b.png") and "predictions" in payload[1]
    result = _cli("predict", model, str(tmp_path / "empty"), "--json")  # nothing usable: still one JSON document
    assert result.exit_code == 1 and str(tmp_path / "empty") in result.stderr
    assert json.loads(result.stdout) == [{"image": str(tmp_path / "empty"), "error": "no image files in this folder"}]

    real_access = os.access

    def access(path, mode):  # a folder that can be listed (click checks that) but not entered: faked, as root
        return False if Path(path) == photos and mode & os.X_OK else real_access(path, mode)  # enters any folder

    monkeypatch.setattr(os, "access", access)
    result = _cli("predict", model, str(photos), str(image_files[3]))
    assert result.exit_code == 1 and "cannot read this folder (permission denied)" in result.stderr, result.output
    assert result.stdout.splitlines()[0] == str(image_files[3])


def test_predict_each_keeps_going_past_bad_images(models, image_files, tmp_path):
    from test_bad_images import write_bomb_png

    from edge_export.runtime.images import ImageDecodeError

    clf = Classifier.load(models["onnx"])
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not an image")
    bomb = write_bomb_png(tmp_path / "bomb.png", 30000, 30000)
    expected = clf.predict(image_files[:2], top_k=2)
    results = clf.predict_each([image_files[0], broken, bomb, image_files[1]], top_k=2, batch_size=3)
    assert results[0] == expected[0] and results[3] == expected[1]
    assert isinstance(results[1], ImageDecodeError) and results[1].path == broken
    assert isinstance(results[2], ImageDecodeError) and "over the limit" in results[2].message
    with pytest.raises(ImageDecodeError, match="over the limit"):
        clf.predict([image_files[0], bomb])
    small = Classifier.load(models["onnx"], max_pixels=100)  # the images are at most 41 x 30
    assert small.max_pixels == 100
    with pytest.raises(ImageDecodeError, match="over the limit of 100 pixels"):
        small.predict(image_files[0])
    with pytest.raises(EdgeExportError, match="positive integer"):
        Classifier.load(models["onnx"], max_pixels=-1)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
def test_predict_cli_prints_every_result_and_an_error_per_bad_image(models, image_files, tmp_path):
    from test_bad_images import write_bomb_png

    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff garbage")
    bomb = write_bomb_png(tmp_path / "bomb.png", 30000, 30000)
    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)
    (tmp_path / "empty").mkdir()  # a folder stands for its images: one without any is an error in its place
    bad = [str(broken), str(bomb), str(fifo), "/dev/zero", str(tmp_path / "empty"), str(tmp_path / "missing.png")]
    good = [str(image_files[0]), str(image_files[1])]
    command = [
        sys.executable,
        "-c",
        "from edge_export.cli import main; main()",
        "predict",
        str(models["onnx"]),
        good[0],
        *bad,
        good[1],
        "--top-k",
        "2",
    ]
    # a safety net only: a refused FIFO returns at once; one waited on would never return
    proc = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == good[0] and lines[3] == good[1] and len(lines) == 6
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert [e.split(": ")[1] for e in errors] == bad
    assert "over the limit of 64 megapixels" in errors[1] and "not a regular file" in errors[2]
    assert (
        "not a regular file" in errors[3] and "no image files in this folder" in errors[4] and "not found" in errors[5]
    )
    assert "6 of 8 image(s) and folder(s) (1 folder(s) without a usable image) failed" in proc.stderr

    proc = subprocess.run(
        [*command, "--json", "--max-image-pixels", "1000"], capture_output=True, text=True, timeout=300, cwd=ROOT
    )
    assert proc.returncode == 1
    payload = json.loads(proc.stdout)
    assert [item["image"] for item in payload] == [good[0], *bad, good[1]]
    assert "predictions" in payload[0] and len(payload[-1]["predictions"]) == 2  # test images: under 1000 pixels
    assert "900 megapixels, over the limit of 1000 pixels" in payload[2]["error"]
    assert all("error" in item for item in payload[1:-1])

    proc = subprocess.run(
        [*command[:5], good[0], "--labels", str(fifo)], capture_output=True, text=True, timeout=300, cwd=ROOT
    )  # a labels "file" that is a FIFO is refused, not waited on
    assert proc.returncode == 2 and "not a regular file" in proc.stderr and "Traceback" not in proc.stderr


# ----------------------------------------------------------------------------- helpers


def _resized(paths) -> np.ndarray:
    return np.stack([np.asarray(Image.open(p).convert("RGB").resize(SIZE[::-1], Image.BILINEAR)) for p in paths])
