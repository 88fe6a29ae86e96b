"""Our exports in clients this project did not write (issue 11): MediaPipe Tasks' ImageClassifier, OpenCV DNN
and plain ONNX Runtime, each run in its own virtual environment (benchmarks/scripts/clients.py makes it once
and caches it; these tests skip, with the reason, where it cannot be made, e.g. with no network).
And the other way round: a model whose metadata MediaPipe's own writer wrote, read by our runtime."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import load_script

clients = load_script("clients")

TFLITE = ("tflite-fp32", "tflite-fp16", "tflite-dynamic", "tflite-int8")
ONNX = ("onnx-fp32", "onnx-int8")


def client(name: str) -> Path:
    python, reason = clients.client_python(name)
    if python is None:
        pytest.skip(reason)
    return python


@pytest.fixture(scope="module")
def exports(tiny_export, tmp_path_factory) -> dict:
    """The tiny run exported to every TFLite and ONNX format (a copy: tiny_export keeps its two formats)."""
    from edge_export.core.config import load_config
    from edge_export.core.run_folder import RunFolder
    from edge_export.export.exporter import export_run
    from edge_export.export.layout import ExportFolder

    dest = tmp_path_factory.mktemp("clients") / "run"
    shutil.copytree(tiny_export["run"], dest, ignore=shutil.ignore_patterns("export", "checkpoints"))
    run = RunFolder(dest)
    config = load_config(run.config)
    manifest = export_run(run, config.export, run_config=config, formats=",".join(TFLITE + ONNX), echo=None)
    files = {a.name: ExportFolder(run).root / a.path for a in manifest.artifacts if a.status != "failed"}
    images = sorted(str(p) for p in (tiny_export["data"] / "test").glob("*/*.png"))
    return {
        "run": run,
        "files": files,
        "failed": {a.name: a.error for a in manifest.artifacts if a.status == "failed"},
        "labels": run.read_labels(),
        "images": images,
    }


def artifact(exports: dict, name: str) -> Path:
    if name not in exports["files"]:
        pytest.fail(f"{name} was not exported: {exports['failed'].get(name)}")
    return exports["files"][name]


def ours(model: Path, images: list[str]) -> np.ndarray:
    """Our runtime's probabilities, one row per image."""
    from edge_export.runtime.classifier import Classifier

    classifier = Classifier.load(model)
    classes = len(classifier.labels)
    rows = np.zeros((len(images), classes), np.float32)
    for i, result in enumerate(classifier.predict(images, top_k=classes)):
        for p in result:
            rows[i, p.index] = p.probability
    return rows


def same_top1(theirs: int, row: np.ndarray, tolerance: float) -> bool:
    """Their top-1 is ours, or ties with ours within ``tolerance`` (a quantized output's step)."""
    return theirs == int(row.argmax()) or row.max() - row[theirs] <= tolerance


# ------------------------------------------------------------------------------------------ MediaPipe Tasks


@pytest.mark.parametrize("env", ["mediapipe", "mediapipe-0.10"])
@pytest.mark.parametrize("fmt", TFLITE)
def test_mediapipe_image_classifier(exports, env, fmt):
    """MediaPipe Tasks loads the export, names the classes as our labels and agrees with our runtime's top-1.
    (Before standard metadata: fp32/fp16/dynamic refused, "requires specifying NormalizationOptions";
    int8 loaded with every category name empty.)"""
    python = client(env)
    model = artifact(exports, fmt)
    images, labels = exports["images"], exports["labels"]
    answer = clients.run_client(python, "mediapipe-classify", str(model), *images)
    assert answer["loaded"], f"MediaPipe {answer['mediapipe']} refuses {fmt}: {answer['error']}"
    probabilities = ours(model, images)
    for image, categories, row in zip(images, answer["results"], probabilities):
        assert sorted(c["index"] for c in categories) == list(range(len(labels)))
        names = {c["index"]: c["name"] for c in categories}
        assert [names[i] for i in range(len(labels))] == labels, f"{fmt}: MediaPipe's category names {names}"
        top = categories[0]
        # int8 outputs move in steps of 1/256; MediaPipe resizes the image itself (as our runtime does, bilinear)
        tolerance = 1 / 256 + 1e-6 if fmt == "tflite-int8" else 1e-6
        assert same_top1(top["index"], row, tolerance), (
            f"{fmt} {image}: MediaPipe top-1 {top['name']} {top['score']:.3f}, ours {labels[int(row.argmax())]} "
            f"{row.max():.3f} (ours for MediaPipe's: {row[top['index']]:.3f})"
        )


# ---------------------------------------------------------------------------------- OpenCV DNN, ONNX Runtime


@pytest.mark.parametrize("env", ["mediapipe", "mediapipe-0.10"])  # OpenCV 5.x and 4.x
@pytest.mark.parametrize("fmt", ONNX)
def test_opencv_dnn_gives_one_row_per_image(exports, fmt, env):
    """cv2.dnn.readNetFromONNX: one image -> one row of class scores, N images -> N rows, top-1 as ONNX Runtime
    (plain, in the client environment) on the same pixels, sized from the model's `imgsz` key.
    Issue 11: onnx-int8 gave a 2x2 output for one image (OpenCV 4.x, default build); OpenCV 5.1 cannot load
    an onnx-int8 quantized from the pre-processed (Gemm-fused) graph."""
    python = client(env)
    model = artifact(exports, fmt)
    images, classes = exports["images"], len(exports["labels"])
    answer = clients.run_client(python, "opencv-dnn", str(model), *images)
    assert answer["loaded"], f"OpenCV {answer['opencv']} cannot load {fmt}: {answer['error']}"
    assert answer["shapes"] == [[1, classes]] * len(images), (
        f"{fmt}: OpenCV DNN {answer['opencv']} gives outputs of shape {answer['shapes'][0]} for ONE image "
        f"(expected [1, {classes}])"
    )
    # N images at once: N rows (OpenCV 4.11 gives onnx-fp32 an extra unit axis, N x 1 x C: still a row each)
    batch = answer["batch_shape"]
    assert batch[0] == len(images) and int(np.prod(batch)) == len(images) * classes, batch
    assert np.asarray(answer["ort_scores"]).shape == (len(images), classes)
    opencv, onnxruntime = np.asarray(answer["scores"]), np.asarray(answer["ort_scores"])
    for i, image in enumerate(images):
        assert same_top1(answer["top1"][i], onnxruntime[i], 1e-5), (image, opencv[i], onnxruntime[i])


@pytest.mark.parametrize("fmt", ONNX)
def test_onnx_convention_keys_in_plain_onnxruntime(exports, fmt):
    """Another tool's reader (plain ONNX Runtime, keys decoded as Ultralytics' AutoBackend does) finds the class
    names, input size and layout, and our `edge_export` entry is still there."""
    python = client("mediapipe")
    model = artifact(exports, fmt)
    labels = exports["labels"]
    answer = clients.run_client(python, "onnx-metadata", str(model))
    decoded, props, shape = answer["decoded"], answer["props"], answer["input"]["shape"]
    assert {int(k): v for k, v in decoded["names"].items()} == dict(enumerate(labels))  # JSON made keys text
    assert decoded["labels"] == labels
    assert decoded["imgsz"] == shape[1:3] == [decoded["input_height"], decoded["input_width"]]
    assert props["input_layout"] == "NHWC" and shape[3] == decoded["channels"] == 3
    assert props["input_dtype"] == "float32" and answer["input"]["type"] == "tensor(float)"
    assert props["task"] == "classify" and decoded["stride"] == 1 and decoded["batch"] == 1
    assert "edge_export" in props and props["input_name"] == answer["input"]["name"]
    assert "author" not in props and "license" not in props  # left out unless export.metadata sets them
    assert decoded["mean"] == [0.0, 0.0, 0.0] and decoded["std"] == [1.0, 1.0, 1.0]  # normalization is inside


def test_model_card_documents_the_input_of_every_artifact(exports):
    """model_card.json says layout, dtype, range and normalization; checked against the artifacts' tensors."""
    import json

    from edge_export.export.layout import ExportFolder
    from edge_export.runtime.backends import load_backend

    card = json.loads(ExportFolder(exports["run"]).model_card.read_text())
    spec = card["model"]["input"]
    assert spec["layout"] == "NHWC" and spec["color"] == "RGB" and spec["value_range"] == [0, 255]
    assert spec["mean"] == card["model"]["preprocessing"]["mean"] and "inside the model" in spec["normalization"]
    for entry in card["artifacts"]:
        backend = load_backend(exports["files"][entry["name"]])
        shape = backend.input_spec.shape
        assert shape[1:] == tuple(spec["shape"][1:]), (entry["name"], shape)
        assert np.dtype(backend.input_spec.dtype).name == entry["input_dtype"], entry


def test_onnx_convention_keys_replace_ours_and_keep_others():
    """No client needed: the keys follow the graph (NCHW input, static size), replace an older export's, and
    keep keys another tool wrote."""
    import onnx
    from onnx import TensorProto, helper

    from edge_export.export.metadata import ONNX_CONVENTION_KEYS, build_metadata, embed_onnx_metadata
    from edge_export.runtime.preprocessing import Preprocessing

    graph = helper.make_graph(
        [helper.make_node("GlobalAveragePool", ["x"], ["pooled"]), helper.make_node("Flatten", ["pooled"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 3, 24, 20])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 3])],
    )
    model = helper.make_model(graph)
    entry = model.metadata_props.add()
    entry.key, entry.value = "names", "{0: 'stale'}"
    entry = model.metadata_props.add()
    entry.key, entry.value = "other_tool", "kept"
    prep = Preprocessing(size=(24, 20), mean=(127.5,) * 3, std=(127.5,) * 3)
    meta = build_metadata(
        ["a", "b's", "c"],
        prep,
        description="three classes",
        edge_export="9.9",
        author="A. Person",
        license="Apache-2.0",
    )
    embed_onnx_metadata(model, meta)
    embed_onnx_metadata(model, meta)
    props = {p.key: p.value for p in model.metadata_props}
    assert [p.key for p in model.metadata_props].count("names") == 1 and props["other_tool"] == "kept"
    assert set(ONNX_CONVENTION_KEYS) <= set(props) and props["license"] == "Apache-2.0"
    import ast
    import json

    assert ast.literal_eval(props["names"]) == {0: "a", 1: "b's", 2: "c"}
    assert ast.literal_eval(props["imgsz"]) == [24, 20]
    assert (props["input_layout"], props["input_height"], props["input_width"]) == ("NCHW", "24", "20")
    assert json.loads(props["mean"]) == [127.5] * 3 and props["description"] == "three classes"
    assert props["version"] == "9.9" and json.loads(props["edge_export"])["labels"] == ["a", "b's", "c"]
    onnx.checker.check_model(model)
    # re-embedded without an author and a licence: the earlier ones do not survive
    embed_onnx_metadata(model, build_metadata(["a", "b's", "c"], prep, description="three classes", edge_export="9.9"))
    props = {p.key: p.value for p in model.metadata_props}
    assert "author" not in props and "license" not in props and props["other_tool"] == "kept"


# ----------------------------------------------------------------- metadata written by MediaPipe, read by us

SIZE = 16


def _red_sign_tflite() -> bytes:
    """Float model, input 1x16x16x3: class 0 ("bright") when the mean red value, normalized with
    mean 127.5 / std 127.5, is above 0, else class 1 ("dark"). Without that normalization every image
    (pixels 0..255, all >= 0) would be "bright": the test sees whether the normalization was applied."""
    import tensorflow as tf

    @tf.function(input_signature=[tf.TensorSpec([1, SIZE, SIZE, 3], tf.float32)])
    def model(image):
        red = tf.reduce_mean(image[..., 0], axis=[1, 2])
        return tf.nn.softmax(tf.stack([red, -red], axis=-1) * 8.0)

    converter = tf.lite.TFLiteConverter.from_concrete_functions([model.get_concrete_function()], model)
    return converter.convert()


def test_runtime_reads_metadata_written_by_mediapipe(tmp_path, capsys):
    """MediaPipe's own writer (metadata_writers.image_classifier, 0.10 line: the 1.x wheels' writer cannot
    import) labels a float model and sets NormalizationOptions 127.5/127.5; our runtime and `edge-export
    predict` use both with no flags."""
    from edge_export.runtime.classifier import Classifier

    from conftest import cli_main

    python = client("mediapipe-0.10")
    bare, model = tmp_path / "bare.tflite", tmp_path / "written_by_mediapipe.tflite"
    bare.write_bytes(_red_sign_tflite())
    answer = clients.run_client(
        python, "mediapipe-write", str(bare), str(model), "--labels", "bright,dark", "--mean", "127.5", "--std", "127.5"
    )
    assert answer["metadata"]["subgraph_metadata"][0]["input_tensor_metadata"][0]["process_units"]
    images = {}
    for name, value in (("bright", 200), ("dark", 60)):
        pixels = np.full((SIZE * 2, SIZE * 3, 3), 90, np.uint8)
        pixels[..., 0] = value
        images[name] = tmp_path / f"{name}.png"
        Image.fromarray(pixels).save(images[name])

    classifier = Classifier.load(model)
    assert classifier.labels == ["bright", "dark"]
    assert classifier.preprocessing.mean == (127.5,) * 3 and classifier.preprocessing.std == (127.5,) * 3
    assert [r[0].label for r in classifier.predict([str(images["bright"]), str(images["dark"])])] == ["bright", "dark"]

    code, out = cli_main(capsys, "predict", str(model), str(images["dark"]))
    assert code == 0, out
    assert out.splitlines()[1].split()[0] == "dark", out
    assert "warning" not in out.lower(), out

    # and MediaPipe itself agrees (the writer's output is a model it reads)
    answer = clients.run_client(python, "mediapipe-classify", str(model), str(images["bright"]), str(images["dark"]))
    assert answer["loaded"], answer["error"]
    assert [r[0]["name"] for r in answer["results"]] == ["bright", "dark"]


# ------------------------------------------------------------------------------ the benchmark script itself


def test_clients_check_script_on_a_tiny_build(exports, tmp_path):
    """benchmarks/scripts/clients_check.py (the README's MediaPipe/OpenCV figures) on the tiny build: every
    TFLite export loads with our labels as category names, agreement figures and OpenCV rows are reported."""
    python = client("mediapipe")
    check = load_script("clients_check")
    test_split = Path(exports["images"][0]).parents[1]
    result = check.clients_check(
        exports["run"].root, test_split, envs=("mediapipe",), opencv_images=3, echo=lambda line: None
    )
    assert result["environments"]["mediapipe"]["mediapipe"] == clients.installed_versions(python)["mediapipe"]
    assert [r["artifact"] for r in result["mediapipe"]] == list(check.TFLITE)
    for r in result["mediapipe"]:
        assert r["loads"] and r["names_match_labels"], r
        assert r["images"] == len(exports["images"]) and 0 <= r["top1_agreement"] <= r["top1_agreement_with_ties"] <= 1
        assert 0 <= r["same_pixels_top1_agreement"] <= r["same_pixels_top1_agreement_with_ties"] <= 1
    assert [r["artifact"] for r in result["opencv"]] == list(check.ONNX)
    fp32 = result["opencv"][0]
    assert fp32["loads"] and fp32["one_row_per_image"] and fp32["batch_shape"][0] == 3
    text = check.render(result)
    assert "tflite-int8" in text and "onnx-int8" in text


def test_client_environment_is_made_once_and_skips_with_a_reason(tmp_path, monkeypatch):
    """The builder (no network needed): a ready environment is reused as is; one that cannot be made gives a
    reason (the tests above skip with it), never an exception or a hang."""
    import json
    import sys

    monkeypatch.setattr(clients, "_made", {})
    monkeypatch.setenv("EDGE_EXPORT_CLIENTS_DIR", str(tmp_path / "clients"))
    monkeypatch.delenv("EDGE_EXPORT_CLIENTS", raising=False)
    venv = tmp_path / "clients" / clients.environment_key("mediapipe")
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "python").symlink_to(sys.executable)
    (venv / "ready.json").write_text(json.dumps({"installed": ["mediapipe==0.0.1"]}))
    python, reason = clients.client_python("mediapipe")
    assert (python, reason) == (venv / "bin" / "python", None)  # found, nothing installed
    assert clients.installed_versions(python) == {"mediapipe": "0.0.1"}
    assert clients.environment_key("mediapipe") != clients.environment_key("mediapipe-0.10")

    monkeypatch.setattr(clients, "_made", {})
    monkeypatch.setenv("EDGE_EXPORT_CLIENTS", "off")
    python, reason = clients.client_python("mediapipe")
    assert python is None and reason == "client environments are switched off (EDGE_EXPORT_CLIENTS=off)"

    monkeypatch.delenv("EDGE_EXPORT_CLIENTS")
    (tmp_path / "file").write_text("")
    monkeypatch.setenv("EDGE_EXPORT_CLIENTS_DIR", str(tmp_path / "file" / "clients"))
    python, reason = clients.client_python("mediapipe-0.10")
    assert python is None and reason.startswith("cannot create ")
    with pytest.raises(ValueError, match="unknown client environment"):
        clients.client_python("nope")
