"""Data from files we did not just write: names and paths stay inside their folder, sizes and counts are
checked before anything is allocated, non-finite or degenerate numbers are errors, never scores."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from edge_export.core.errors import EdgeExportError

from conftest import cli_main

NAN = float("nan")


# ----------------------------------------------------------------------------- manifests (item 1)


def _manifest_run(tmp_path: Path, **entry) -> RunFolder:  # noqa: F821
    from edge_export.core.run_folder import RunFolder

    run = RunFolder(tmp_path / "run")
    (run.export_dir).mkdir(parents=True)
    (run.export_dir / "tflite-int8.tflite").write_bytes(b"model")
    artifact = {
        "name": "tflite-int8",
        "path": "tflite-int8.tflite",
        "status": "ok",
        "format": "tflite",
        "precision": "int8",
        "size_bytes": 5,
        "sha256": "ab" * 32,
        **entry,
    }
    (run.export_dir / "manifest.json").write_text(json.dumps({"artifacts": [artifact]}))
    return run


def test_read_manifest_accepts_what_export_writes(tmp_path):
    from edge_export.export.manifest import read_manifest

    (entry,) = read_manifest(_manifest_run(tmp_path)).artifacts
    assert entry.name == "tflite-int8" and entry.path == "tflite-int8.tflite" and entry.ok
    (entry,) = read_manifest(
        _manifest_run(tmp_path / "failed", status="failed", path=None, sha256=None, size_bytes=None)
    ).artifacts
    assert entry.status == "failed" and not entry.ok


@pytest.mark.parametrize(
    "entry, message",
    [
        ({"name": "../../victim"}, "not a safe name"),
        ({"name": "a/b"}, "not a safe name"),
        ({"name": ".hidden"}, "not a safe name"),
        ({"name": "x\x1b[2Jy"}, "not a safe name"),
        ({"name": 7}, "not a safe name"),
        ({"path": "../../victim.tflite"}, "points outside"),
        ({"path": "/etc/passwd"}, "points outside"),
        ({"path": "C:\\windows\\x.tflite"}, "points outside"),
        ({"path": ""}, "not a relative path"),
        ({"sha256": "../../x"}, "64 hex digits"),
        ({"size_bytes": -1}, "non-negative integer"),
        ({"size_bytes": 1e300}, "non-negative integer"),
        ({"status": ["ok"]}, "not a string"),
    ],
)
def test_read_manifest_refuses_unsafe_entries(tmp_path, entry, message):
    from edge_export.export.manifest import read_manifest

    with pytest.raises(EdgeExportError, match=message) as info:
        read_manifest(_manifest_run(tmp_path, **entry))
    assert "manifest.json" in str(info.value) and "\x1b" not in str(info.value)


def test_read_manifest_refuses_a_link_out_and_bad_documents(tmp_path):
    from edge_export.export.manifest import read_manifest

    run = _manifest_run(tmp_path, path="link.tflite")
    (tmp_path / "outside.tflite").write_bytes(b"x")
    (run.export_dir / "link.tflite").symlink_to(tmp_path / "outside.tflite")
    with pytest.raises(EdgeExportError, match="resolves outside"):
        read_manifest(run)
    for text in ("[]", '{"artifacts": {}}', "{", "[" * 100000, '{"artifacts": [1]}'):
        (run.export_dir / "manifest.json").write_text(text)
        with pytest.raises(EdgeExportError):
            read_manifest(run)
    twice = {"name": "a", "status": "failed"}
    (run.export_dir / "manifest.json").write_text(json.dumps({"artifacts": [twice, twice]}))
    with pytest.raises(EdgeExportError, match="listed twice"):
        read_manifest(run)


def test_manifest_record_round_trips_the_document_and_keeps_unknown_keys(tmp_path):
    from edge_export.core.records.manifest import ArtifactRecord, Manifest

    entry = {
        "name": "tflite-int8",
        "format": "tflite",
        "precision": "int8",
        "path": "tflite-int8.tflite",
        "size_bytes": 5,
        "sha256": "ab" * 32,
        "status": "ok",
        "parity": {"accuracy": 0.5},
        "input": None,
        "seconds": 1.5,
        "calibration_images": 8,
        "settings": {"int8_io": "uint8"},
    }
    document = {
        "manifest_version": 1,
        "edge_export": "0.1",
        "created": "now",
        "model": {
            "path": "../model.keras",
            "sha256": "cd" * 32,
            "run_id": "r",
            "backbone": "tiny_cnn",
            "image_size": 32,
            "num_classes": 2,
        },
        "labels": "labels.txt",
        "settings": {"formats": ["tflite-int8"]},
        "keras": {"accuracy": 1.0},
        "artifacts": [entry, {"name": "onnx-fp32", "status": "failed", "error": "boom"}],
        "ok": False,
        "failed": ["onnx-fp32"],
        "seconds": 2.0,
    }
    manifest = Manifest.from_dict(document, folder=tmp_path)
    assert manifest.artifact("tflite-int8").details == {"calibration_images": 8, "settings": {"int8_io": "uint8"}}
    assert manifest.artifact("tflite-int8").accuracy == 0.5 and manifest.failed == ["onnx-fp32"] and not manifest.ok
    assert manifest.model.sha256 == "cd" * 32 and manifest.formats == ["tflite-int8"]
    failed = document["artifacts"][1]
    assert manifest.to_dict()["artifacts"][0] == entry and list(manifest.to_dict()["artifacts"][0]) == list(entry)
    assert {k: v for k, v in manifest.to_dict()["artifacts"][1].items() if v is not None or k in failed} == failed
    assert list(manifest.to_dict()) == list(document)
    with pytest.raises(EdgeExportError, match="format version 2"):
        Manifest.from_dict({**document, "manifest_version": 2}, folder=tmp_path)
    with pytest.raises(EdgeExportError, match="model is not an object"):
        Manifest.from_dict({**document, "model": []}, folder=tmp_path)
    with pytest.raises(EdgeExportError, match="not 64 hex digits"):
        Manifest.from_dict({**document, "model": {"sha256": "x"}}, folder=tmp_path)
    with pytest.raises(EdgeExportError, match="parity is not an object"):
        ArtifactRecord.from_dict({**entry, "parity": [1]}, folder=tmp_path)


@pytest.mark.parametrize(
    "change, message",
    [
        ({"backbone": "../x"}, "not a safe name"),
        ({"image_size": 32.5}, "image_size"),
        ({"image_size": True}, "image_size"),
        ({"num_classes": 0}, "num_classes"),
        ({"dropout": 1.5}, "dropout"),
        ({"preprocessing": [1]}, "preprocessing"),
        ({"format_version": 9}, "format version 9"),
    ],
)
def test_model_spec_reader_refuses_malformed_files(tmp_path, change, message):
    from edge_export.core.records.model_spec import DEFAULT_DROPOUT, ModelSpec

    path = tmp_path / "model_spec.json"
    good = {"backbone": "tiny_cnn", "image_size": 32, "num_classes": 2}
    path.write_text(json.dumps(good))
    assert ModelSpec.read(path) == ModelSpec("tiny_cnn", 32, 2) and ModelSpec.read(path).dropout == DEFAULT_DROPOUT
    path.write_text(json.dumps({**good, **change}))
    with pytest.raises(EdgeExportError, match=message) as info:
        ModelSpec.read(path)
    assert "model_spec.json" in str(info.value)
    with pytest.raises(EdgeExportError, match="missing"):
        ModelSpec.read(tmp_path / "nothing.json")


def test_model_metadata_checks_each_declared_field():
    from edge_export.runtime.metadata import parse_model_metadata

    base = {"format_version": 1, "labels": ["a", "b"], "preprocessing": {"size": [32, 32]}}
    meta = parse_model_metadata(json.dumps({**base, "precision": "int8", "opset": 13, "future_key": 1}))
    assert meta.precision == "int8" and meta.opset == 13 and meta.extra == {"future_key": 1}
    assert meta.to_dict()["future_key"] == 1  # kept as it was
    for key, value in (("precision", 8), ("format", ["x"]), ("opset", -1), ("calibration_images", True), ("qat", "x")):
        with pytest.raises(EdgeExportError, match=key):
            parse_model_metadata(json.dumps({**base, key: value}), "m.tflite")


# ----------------------------------------------------------------------------- config YAML (item 2)


BILLION_LAUGHS = """\
a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]
i: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]
"""
NESTED_MAPPINGS = "".join(
    f"k{i}: &k{i} {{" + ", ".join(f"x{j}: *k{i - 1}" for j in range(9)) + "}\n" for i in range(1, 12)
)


@pytest.mark.parametrize(
    "text, message",
    [
        (BILLION_LAUGHS, "anchors or aliases"),
        ("k0: &k0 {x: 1}\n" + NESTED_MAPPINGS, "anchors or aliases"),
        ("train: " + "[" * 10000 + "]" * 10000 + "\n", "nests deeper"),
        ("train: {seed: 2024-02-30}\n", "invalid YAML value"),
        ("train: !!python/object/apply:os.system ['true']\n", "invalid YAML"),
    ],
    ids=["billion-laughs", "nested-mapping-aliases", "deep-nesting", "bad-date", "python-tag"],
)
def test_config_yaml_bombs_and_oddities_are_clean_errors(tmp_path, text, message):
    from edge_export.core.config import load_config

    path = tmp_path / "config.yaml"
    path.write_text(text)
    with pytest.raises(EdgeExportError, match=message) as info:
        load_config(path)
    assert str(path) in str(info.value)


def test_config_file_size_and_encoding_are_bounded(tmp_path):
    from edge_export.core.config import load_config
    from edge_export.core.untrusted import MAX_YAML_BYTES

    big = tmp_path / "big.yaml"
    big.write_text("# " + "x" * MAX_YAML_BYTES + "\n")
    with pytest.raises(EdgeExportError, match="over the"):
        load_config(big)
    latin = tmp_path / "latin.yaml"
    latin.write_bytes(b"data: {path: caf\xe9}\n")
    with pytest.raises(EdgeExportError, match="not UTF-8"):
        load_config(latin)


# ----------------------------------------------------------------------------- preprocessing and quantization (item 5)


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("mean", (NAN, 0.0, 0.0), "mean"),
        ("mean", (math.inf, 0.0, 0.0), "mean"),
        ("mean", (1e300, 0.0, 0.0), "mean"),
        ("std", (1.0, 1.0, NAN), "std"),
        ("std", (1e-9, 1.0, 1.0), "std"),
        ("std", (0.0, 1.0, 1.0), "std"),
        ("std", (-1.0, 1.0, 1.0), "std"),
        ("std", (math.inf, 1.0, 1.0), "std"),
        ("size", (224, 10**6), "size"),
        ("size", (224.5, 224), "size"),
        ("input_range", (0.0, NAN), "input_range"),
        ("input_range", (255.0, 0.0), "input_range"),
        ("color", "BGR", "color"),
    ],
)
def test_preprocessing_refuses_non_finite_and_degenerate_values(field, value, message):
    from edge_export.runtime.preprocessing import Preprocessing

    if field not in ("input_range", "color"):  # those two are only read from older documents (no longer fields)
        with pytest.raises(EdgeExportError, match=message):
            Preprocessing(**{"size": (32, 32), field: value})
    d = {**Preprocessing(size=(32, 32)).to_dict(), field: list(value) if isinstance(value, tuple) else value}
    with pytest.raises(EdgeExportError, match=message):
        Preprocessing.from_dict(d)
    with pytest.raises(EdgeExportError):
        Preprocessing.from_dict({"size": [1e400, 3]})


@pytest.mark.parametrize("scale, zero_point", [(NAN, 0), (math.inf, 0), (-0.5, 0), (1e-30, 0), (0.1, 300)])
def test_degenerate_quantization_is_refused(scale, zero_point):
    from edge_export.runtime.backends.base import TensorSpec
    from edge_export.runtime.quantization import check_quantization

    check_quantization(TensorSpec("x", (1, 8, 8, 3), np.dtype(np.uint8), 0.5, 10))
    with pytest.raises(EdgeExportError, match="quantization is degenerate"):
        check_quantization(TensorSpec("x", (1, 8, 8, 3), np.dtype(np.uint8), scale, zero_point), "input", "m.tflite")


def _with_metadata(tiny_export, tmp_path: Path, name: str, change) -> Path:
    """A copy of the tiny run's artifact ``name`` whose edge_export metadata went through ``change``."""
    from edge_export.export.metadata import embed_onnx_metadata, embed_tflite_metadata
    from edge_export.runtime.metadata import read_metadata

    source = Path(tiny_export["run"]) / "export" / name
    meta = read_metadata(source)
    change(meta)
    path = tmp_path / f"changed-{name}"
    if source.suffix == ".tflite":
        path.write_bytes(embed_tflite_metadata(source.read_bytes(), meta))
    else:
        import onnx

        model = onnx.load(str(source))
        embed_onnx_metadata(model, meta)
        onnx.save(model, str(path))
    return path


@pytest.mark.parametrize("name", ["onnx-fp32.onnx", "tflite-int8.tflite"])
@pytest.mark.parametrize("field, value", [("mean", [NAN] * 3), ("std", [1e-12] * 3), ("std", [math.inf] * 3)])
def test_metadata_with_nan_mean_or_zero_std_is_an_error_not_nan_scores(
    tiny_export, tmp_path, capsys, name, field, value
):
    from edge_export.runtime.classifier import Classifier
    from edge_export.runtime.metadata import read_metadata

    path = _with_metadata(tiny_export, tmp_path, name, lambda meta: meta["preprocessing"].__setitem__(field, value))
    with pytest.raises(EdgeExportError, match=f"metadata: {field}") as info:
        read_metadata(path)
    assert str(path) in str(info.value)
    with pytest.raises(EdgeExportError, match=field):
        Classifier.load(path)
    image = next((Path(tiny_export["data"]) / "test").rglob("*.png"))
    code, output = cli_main(capsys, "predict", str(path), str(image))
    assert code != 0 and "error:" in output and "nan" not in output.split("error:")[0].lower(), output


@pytest.mark.parametrize(
    "flags", [["--mean", "nan,nan,nan"], ["--std", "0.0000001"], ["--std", "inf"], ["--mean", "1e39"]]
)
def test_predict_flags_go_through_the_same_check(tiny_export, capsys, flags):
    model = Path(tiny_export["run"]) / "export" / "tflite-int8.tflite"
    image = next((Path(tiny_export["data"]) / "test").rglob("*.png"))
    code, output = cli_main(capsys, "predict", str(model), str(image), *flags)
    assert code == 2, output
    assert output.startswith("error:") and ("mean" in output or "std" in output), output


def test_metadata_labels_are_bounded_and_kept_as_stored(tiny_export, tmp_path):
    from edge_export.runtime.classifier import Classifier
    from edge_export.runtime.metadata import MAX_LABELS, parse_metadata

    assert parse_metadata(json.dumps({"format_version": 1, "labels": ["a\x1b[31m", "b"]}))["labels"] == [
        "a\x1b[31m",
        "b",
    ]
    with pytest.raises(EdgeExportError, match="labels"):
        parse_metadata(json.dumps({"format_version": 1, "labels": ["x"] * (MAX_LABELS + 1)}))
    with pytest.raises(EdgeExportError, match="format_version"):
        parse_metadata(json.dumps({"format_version": True}))
    with pytest.raises(EdgeExportError, match="nests deeper"):
        parse_metadata('{"format_version": 1, "x": ' + "[" * 100 + "]" * 100 + "}")
    # one label too many for the model's outputs: refused where the model is opened
    path = _with_metadata(tiny_export, tmp_path, "onnx-fp32.onnx", lambda meta: meta["labels"].append("extra"))
    with pytest.raises(EdgeExportError, match="3 labels given .* the model has 2 outputs"):
        Classifier.load(path)


def _nan_model(path: Path) -> Path:
    """A float ONNX classifier (8x8 RGB, 2 classes) that outputs sqrt(-mean pixel): nan for any image."""
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [
            helper.make_node("ReduceMean", ["x"], ["m"], axes=[1, 2], keepdims=0),
            helper.make_node("Slice", ["m", "starts", "ends", "axes"], ["s"]),
            helper.make_node("Neg", ["s"], ["n"]),
            helper.make_node("Sqrt", ["n"], ["y"]),
        ],
        "nan",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 8, 8, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 2])],
        [helper.make_tensor(n, TensorProto.INT64, [1], [v]) for n, v in (("starts", 0), ("ends", 2), ("axes", 1))],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def test_non_finite_outputs_fail_in_bench_and_parity(tmp_path):
    from edge_export.benchmarks.classification import top1_indices
    from edge_export.benchmarks.suite import bench_run
    from edge_export.core.config import BenchConfig
    from edge_export.export.parity import compare

    from conftest import write_image_folder

    assert top1_indices(np.array([[0.2, 0.8], [0.9, 0.1]])) == [1, 0]
    with pytest.raises(EdgeExportError, match="not finite"):
        top1_indices(np.array([[0.2, 0.8], [NAN, NAN]]))
    labels = np.array([0, 1])
    good = np.array([[0.9, 0.1], [0.2, 0.8]], np.float32)
    assert compare(good, good, labels).accuracy == 1.0
    with pytest.raises(EdgeExportError, match="artifact's outputs: 2 of 4 values are not finite"):
        compare(np.array([[0.9, 0.1], [NAN, math.inf]], np.float32), good, labels)

    model = _nan_model(tmp_path / "nan.onnx")
    data = write_image_folder(tmp_path / "data", {"test": 2}, size=(8, 8))
    (tmp_path / "labels.txt").write_text("blue\nred\n")
    outcome = bench_run(
        models=[model],
        data=data / "test",
        labels=tmp_path / "labels.txt",
        out=tmp_path / "bench",
        config=BenchConfig(threads=[1], runs=5, warmup=1),
        isolate=False,
        echo=None,
    )
    (row,) = outcome.report["artifacts"]
    assert not outcome.ok and row["status"] == "failed" and row["accuracy"] is None, row
    assert "not finite" in row["error"]


def test_absurd_input_shapes_from_a_model_are_refused_before_allocating(tmp_path):
    """A model declaring a 100000 x 100000 image (or 2**40 outputs): a clear error, nothing allocated."""
    import onnx
    import tensorflow as tf
    from onnx import TensorProto, helper

    from edge_export.runtime.backends import load_backend

    graph = helper.make_graph(
        [helper.make_node("ReduceMean", ["x"], ["y"], axes=[1, 2], keepdims=0)],
        "huge",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 100000, 100000, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, str(tmp_path / "huge.onnx"))
    with pytest.raises(EdgeExportError, match="input shape 1x100000x100000x3 is too large"):
        load_backend(tmp_path / "huge.onnx")

    keras = tf.keras.Sequential(
        [tf.keras.Input((20000, 20000, 3), batch_size=1), tf.keras.layers.GlobalAveragePooling2D()]
    )
    (tmp_path / "huge.tflite").write_bytes(tf.lite.TFLiteConverter.from_keras_model(keras).convert())
    with pytest.raises(EdgeExportError, match="input shape 1x20000x20000x3 is too large"):
        load_backend(tmp_path / "huge.tflite")
