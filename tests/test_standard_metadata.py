"""Standard TFLite Model Metadata (TFLITE_METADATA, schema M001): written by export into every TFLite
artifact, read by the TF-free runtime from any model (ours, or one whose metadata another writer made),
with the file treated as untrusted. Real LiteRT on tiny models; the published models of shared/."""

from __future__ import annotations

import io
import json
import shutil
import warnings
import zipfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from edge_export.core.errors import EdgeExportError
from edge_export.export.metadata import build_metadata, embed_tflite_metadata, set_tflite_metadata
from edge_export.export.tflite_metadata import LABELS_FILE, STANDARD_METADATA_NAME, min_parser_version
from edge_export.runtime import tflite_metadata_schema_py_generated as fb
from edge_export.runtime.classifier import Classifier, NormalizationUnknownWarning
from edge_export.runtime.metadata import METADATA_NAME, read_model_metadata, tflite_metadata_buffer
from edge_export.runtime.preprocessing import Preprocessing
from edge_export.runtime.tflite_metadata import parse_standard_metadata, read_standard_metadata

from conftest import SHARED

SIZE = (16, 16)
LABELS = ["cat", "dog", "bird"]
REFERENCE = SHARED / "reference-models"
needs_reference = pytest.mark.skipif(
    not (REFERENCE / "mobilenet_v1_0.25_128_quant.tflite").is_file(), reason=f"no reference models in {SHARED}"
)
# a model we did not make is decoded by OpenCV where it is installed (runtime/images.py)
FOREIGN_DECODER = "opencv" if __import__("importlib.util").util.find_spec("cv2") else "pillow"
MINUS_ONE_TO_ONE = Preprocessing(size=SIZE, mean=(127.5,) * 3, std=(127.5,) * 3, decoder=FOREIGN_DECODER)


# ----------------------------------------------------------------------------- models


@pytest.fixture(scope="module")
def bare() -> dict[str, bytes]:
    """A tiny classifier that expects [-1, 1] input (no normalization inside, as many published float
    models), as float and uint8 TFLite, without any metadata."""
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(0)
    inputs = keras.Input((*SIZE, 3))
    x = keras.layers.Conv2D(8, 3, strides=2, activation="relu")(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(len(LABELS), activation="softmax")(x)
    model = keras.Model(inputs, outputs)
    model.layers[-1].set_weights([w * 8 for w in model.layers[-1].get_weights()])  # confident outputs
    rng = np.random.default_rng(0)
    calibration = [rng.uniform(-1, 1, (1, *SIZE, 3)).astype(np.float32) for _ in range(8)]

    def convert(dtype=None) -> bytes:
        converter = tf.lite.TFLiteConverter.from_keras_model(model)
        if dtype is not None:
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
            converter.representative_dataset = lambda: ([c] for c in calibration)
            converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
            converter.inference_input_type = dtype
            converter.inference_output_type = dtype
        return converter.convert()

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return {"float": convert(), "uint8": convert(tf.uint8)}


def _standard_only(data: bytes, preprocessing: Preprocessing = MINUS_ONE_TO_ONE, labels=LABELS, **values) -> bytes:
    """``data`` with standard metadata only (no edge_export entry), as a model made elsewhere has it."""
    meta = build_metadata(labels, preprocessing, backbone="tiny", format="tflite-fp32", **values)
    return embed_tflite_metadata(data, meta, standard=True, edge_export_entry=False)


@pytest.fixture()
def standard_model(bare, tmp_path) -> Path:
    path = tmp_path / "standard.tflite"
    path.write_bytes(_standard_only(bare["float"], name="Tiny birds", author="Jane Doe", license="Apache-2.0"))
    return path


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> list[Path]:
    folder = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(3)
    paths = []
    for i in range(4):
        pixels = rng.integers(0, 256, (20 + 3 * i, 24, 3), dtype=np.uint8)
        pixels[..., i % 3] = 255 - i * 20
        paths.append(folder / f"image{i}.png")
        Image.fromarray(pixels).save(paths[-1])
    return paths


def _metadata_object(data: bytes) -> fb.ModelMetadataT:
    buffer = tflite_metadata_buffer(data, STANDARD_METADATA_NAME)
    assert buffer is not None and fb.ModelMetadata.ModelMetadataBufferHasIdentifier(buffer, 0)
    return fb.ModelMetadataT.InitFromPackedBuf(bytearray(buffer), 0)


def _with_metadata_object(data: bytes, change, files: dict[str, bytes] | None = None) -> bytes:
    """``data`` whose TFLITE_METADATA went through ``change`` (a ModelMetadataT edited in place)."""
    import flatbuffers

    meta = _metadata_object(data)
    change(meta)
    builder = flatbuffers.Builder(1024)
    builder.Finish(meta.Pack(builder), file_identifier=b"M001")
    return set_tflite_metadata(data, {STANDARD_METADATA_NAME: bytes(builder.Output())}, files)


# ----------------------------------------------------------------------------- the writer


def test_written_metadata_parses_back_with_the_schema(bare):
    data = _standard_only(
        bare["float"],
        name="Tiny birds",
        description="Birds and pets.",
        version="7",
        author="Jane Doe",
        license="Apache-2.0",
    )
    meta = _metadata_object(data)
    assert (meta.name, meta.description, meta.version, meta.author, meta.license) == (
        b"Tiny birds",
        b"Birds and pets.",
        b"7",
        b"Jane Doe",
        b"Apache-2.0",
    )
    assert meta.minParserVersion == b"1.0.0"
    (subgraph,) = meta.subgraphMetadata
    (image,), (scores,) = subgraph.inputTensorMetadata, subgraph.outputTensorMetadata
    assert image.content.contentPropertiesType == fb.ContentProperties.ImageProperties
    assert image.content.contentProperties.colorSpace == fb.ColorSpaceType.RGB
    assert (
        image.content.contentProperties.defaultSize.height,
        image.content.contentProperties.defaultSize.width,
    ) == SIZE
    (unit,) = image.processUnits
    assert unit.optionsType == fb.ProcessUnitOptions.NormalizationOptions
    assert list(unit.options.mean) == [127.5] * 3 and list(unit.options.std) == [127.5] * 3
    assert list(image.stats.min) == [-1.0] * 3 and list(image.stats.max) == [1.0] * 3
    assert scores.content.contentPropertiesType == fb.ContentProperties.FeatureProperties
    assert list(scores.stats.min) == [0.0] and list(scores.stats.max) == [1.0]
    (labels,) = scores.associatedFiles
    assert labels.name == LABELS_FILE.encode() and labels.type == fb.AssociatedFileType.TENSOR_AXIS_LABELS
    archive = zipfile.ZipFile(io.BytesIO(data))  # zipped onto the end, stored (MediaPipe reads only that)
    (entry,) = archive.infolist()
    assert (entry.filename, entry.compress_type, entry.date_time) == (
        LABELS_FILE,
        zipfile.ZIP_STORED,
        (1980, 1, 1, 0, 0, 0),
    )
    assert archive.read(LABELS_FILE).decode().splitlines() == LABELS
    assert tflite_metadata_buffer(data, METADATA_NAME) is None  # no edge_export entry: standard metadata only


def test_quantized_input_gets_its_integer_range_and_the_float_normalization(bare):
    meta = _metadata_object(_standard_only(bare["uint8"]))
    (image,), (scores,) = meta.subgraphMetadata[0].inputTensorMetadata, meta.subgraphMetadata[0].outputTensorMetadata
    assert list(image.processUnits[0].options.mean) == [127.5] * 3  # the float model's values (the schema's rule)
    assert list(image.stats.min) == [0.0] and list(image.stats.max) == [255.0]
    assert list(scores.stats.min) == [0.0] and list(scores.stats.max) == [255.0]


def test_min_parser_version_follows_the_schema_history():
    meta = fb.ModelMetadataT()
    assert min_parser_version(meta) == "1.0.0"
    vocabulary = fb.AssociatedFileT()
    vocabulary.type = fb.AssociatedFileType.VOCABULARY
    meta.associatedFiles = [vocabulary]
    assert min_parser_version(meta) == "1.0.1"
    subgraph = fb.SubGraphMetadataT()
    subgraph.inputProcessUnits = []
    meta.subgraphMetadata = [subgraph]
    assert min_parser_version(meta) == "1.1.0"
    subgraph.customMetadata = []
    assert min_parser_version(meta) == "1.5.0"


def test_writing_is_byte_reproducible_and_replaces_not_adds(bare, monkeypatch):
    import time

    first = _standard_only(bare["float"])
    monkeypatch.setattr(time, "time", lambda: 2_000_000_000.0)  # another day: the zip must not notice
    monkeypatch.setattr(time, "localtime", lambda *a: time.struct_time((2033, 5, 18, 3, 33, 20, 2, 138, 0)))
    assert _standard_only(bare["float"]) == first
    again = _standard_only(first, labels=["a", "b", "c"])  # written onto a model that has it already
    from ai_edge_litert import schema_py_generated as schema

    names = [e.name for e in schema.ModelT.InitFromPackedBuf(bytearray(again), 0).metadata]
    assert names.count(STANDARD_METADATA_NAME.encode()) == 1
    assert zipfile.ZipFile(io.BytesIO(again)).namelist() == [LABELS_FILE]
    assert parse_standard_metadata(again).labels == ("a", "b", "c")


def test_edge_export_entry_alone_keeps_the_standard_entry_and_its_files(bare):
    data = _standard_only(bare["float"])
    meta = build_metadata(["x", "y", "z"], Preprocessing(size=SIZE))
    both = embed_tflite_metadata(data, meta)  # the edge_export entry only: the zip must survive the repack
    assert parse_standard_metadata(both).labels == tuple(LABELS)
    assert json.loads(tflite_metadata_buffer(both, METADATA_NAME))["labels"] == ["x", "y", "z"]


# ----------------------------------------------------------------------------- exported artifacts


@pytest.fixture(scope="module")
def exported(tiny_export, tmp_path_factory) -> Path:
    """The tiny run's export folder with tflite-fp32 added (a copy: tiny_export keeps its own formats)."""
    from edge_export.core.config import load_config
    from edge_export.export.exporter import export_run

    dest = tmp_path_factory.mktemp("standard") / "run"
    shutil.copytree(tiny_export["run"], dest)
    config = load_config(dest / "config.yaml", ["export.metadata.author=Edge Tests", "export.metadata.license=MIT"])
    manifest = export_run(dest, config.export, run_config=config, formats="tflite-fp32", echo=None)
    assert manifest.ok, [(a.name, a.error) for a in manifest.artifacts]
    return dest / "export"


@pytest.mark.parametrize("name", ["tflite-fp32.tflite", "tflite-int8.tflite"])
def test_exported_tflite_files_carry_standard_metadata(exported, name):
    from edge_export.core import __version__

    path = exported / name
    labels = (exported.parent / "labels.txt").read_text().split()
    standard = read_standard_metadata(path)
    assert standard.labels == tuple(labels) and standard.labels_file == LABELS_FILE
    assert standard.mean == (0.0,) * 3 and standard.std == (1.0,) * 3  # normalization is inside the model
    assert standard.name == "tiny_cnn classifier" and standard.version == __version__
    assert f"{len(labels)} classes ({', '.join(labels)})" in standard.description
    assert standard.color_space == "RGB" and standard.min_parser_version == "1.0.0"
    edge = read_model_metadata(path)
    assert edge.labels == tuple(labels) and edge.version == __version__  # the edge_export entry stays
    if name == "tflite-fp32.tflite":  # written by this export: export.metadata.* from the config
        assert (standard.author, standard.license) == ("Edge Tests", "MIT") == (edge.author, edge.license)
    if name == "tflite-int8.tflite":  # the ramp in the calibration set pins the input to the pixels' range:
        spec = Classifier.load(path).backend.input_spec  # uint8 input = the raw pixel, what MediaPipe feeds
        assert (spec.dtype, spec.scale, spec.zero_point) == (np.uint8, 1.0, 0)
    scores = _metadata_object(path.read_bytes()).subgraphMetadata[0].outputTensorMetadata[0]
    assert scores.associatedFiles[0].type == fb.AssociatedFileType.TENSOR_AXIS_LABELS
    assert zipfile.ZipFile(path).getinfo(LABELS_FILE).compress_type == zipfile.ZIP_STORED


def test_exported_float_model_predicts_the_same_from_either_metadata(exported, images):
    path = exported / "tflite-fp32.tflite"
    data = path.read_bytes()
    from ai_edge_litert import schema_py_generated as schema

    model = schema.ModelT.InitFromPackedBuf(bytearray(data), 0)
    assert {e.name for e in model.metadata} >= {METADATA_NAME.encode(), STANDARD_METADATA_NAME.encode()}
    ours = Classifier.load(path)
    assert ours.sources == {"labels": "edge_export", "preprocessing": "edge_export"} and ours.standard_metadata is None
    copy = path.parent.parent / "standard-only.tflite"  # the same file without its edge_export entry
    copy.write_bytes(set_tflite_metadata(data, {METADATA_NAME: None}))
    with warnings.catch_warnings():
        warnings.simplefilter("error", NormalizationUnknownWarning)
        theirs = Classifier.load(copy)
    assert theirs.sources == {"labels": STANDARD_METADATA_NAME, "preprocessing": STANDARD_METADATA_NAME}
    assert theirs.labels == ours.labels
    # the standard metadata has no field for the decoder: a model read through it alone is decoded by OpenCV where
    # it is installed (as ours was trained), else by Pillow; everything else it says is ours
    assert ours.preprocessing.decoder == "opencv" and theirs.preprocessing == replace(
        ours.preprocessing, decoder=FOREIGN_DECODER
    )
    assert theirs.predict(images, top_k=2) == ours.predict(images, top_k=2)


# ----------------------------------------------------------------------------- the runtime on standard metadata


def test_runtime_takes_labels_and_normalization_from_standard_metadata(standard_model, bare, images):
    with warnings.catch_warnings():
        warnings.simplefilter("error", NormalizationUnknownWarning)
        clf = Classifier.load(standard_model)
    assert clf.metadata is None and clf.labels == LABELS and clf.warnings == ()
    assert clf.preprocessing == MINUS_ONE_TO_ONE
    assert clf.sources == {"labels": STANDARD_METADATA_NAME, "preprocessing": STANDARD_METADATA_NAME}
    assert (clf.standard_metadata.name, clf.standard_metadata.author) == ("Tiny birds", "Jane Doe")
    from edge_export.runtime.images import load_image

    pixels = np.stack([load_image(p, SIZE, clf.preprocessing.pixel_method) for p in images])
    expected = clf.backend.run((pixels.astype(np.float32) - 127.5) / 127.5)
    np.testing.assert_allclose(clf.predict_proba(pixels), expected, rtol=1e-5, atol=1e-6)
    raw = clf.backend.run(pixels.astype(np.float32))  # what the old silent guess fed
    assert not np.allclose(expected, raw, atol=1e-3)
    assert clf.predict(images[0], top_k=1)[0][0].label == LABELS[int(expected[0].argmax())]
    # arguments still win, and labels from arguments skip the model's zip
    assert Classifier.load(standard_model, labels=["a", "b", "c"], mean=0, std=1).preprocessing.is_identity


def test_runtime_feeds_a_quantized_input_as_the_clients_do(bare, tmp_path, images):
    path = tmp_path / "uint8.tflite"
    path.write_bytes(_standard_only(bare["uint8"]))
    clf = Classifier.load(path)
    assert clf.labels == LABELS and clf.sources["preprocessing"] == STANDARD_METADATA_NAME
    from edge_export.runtime.images import load_image
    from edge_export.runtime.quantization import quantize

    pixels = load_image(images[0], SIZE)[None]
    fed = quantize(clf.preprocessing.normalize(pixels), clf.backend.input_spec)
    np.testing.assert_array_equal(fed, pixels)  # uint8: the raw pixels (MediaPipe, the Task Library)


def test_predict_cli_needs_no_flags_on_a_standard_metadata_model(standard_model, images, capsys):
    from conftest import cli_main

    code, out = cli_main(capsys, "predict", str(standard_model), str(images[0]), "--top-k", "3")
    assert code == 0, out
    rows = [line.split()[0] for line in out.splitlines() if line.startswith("  ")]
    assert "warning" not in out and sorted(rows) == sorted(LABELS)


@needs_reference
@pytest.mark.parametrize(
    "model, image, top1",
    [
        ("mobilenet_v1_0.25_128_quant.tflite", "cat.bmp", "Egyptian cat"),
        ("mobilenet_v2_1.0_224_quant.tflite", "grace_hopper.bmp", "military uniform"),
    ],
)
def test_published_models_with_standard_metadata_need_no_flags(model, image, top1, capsys):
    """shared/'s published models carry TFLITE_METADATA written by another writer (name "ImageClassifier",
    labels in imagenet_labels.txt zipped onto the model): predict names the classes with no flags."""
    from conftest import cli_main

    standard = read_standard_metadata(REFERENCE / model)
    assert standard.name == "ImageClassifier" and standard.labels_file == "imagenet_labels.txt"
    assert standard.mean == (127.5,) * 3 and len(standard.labels) == 1001
    code, out = cli_main(capsys, "predict", str(REFERENCE / model), str(REFERENCE / image), "--top-k", "1")
    assert code == 0, out
    assert out.splitlines()[1].split("  ")[1].strip() == top1 and "warning" not in out


# ----------------------------------------------------------------------------- no metadata: a warning, not a guess


def test_float_model_without_metadata_warns_and_names_the_flags(bare, tmp_path, images, capsys):
    from conftest import cli_main

    path = tmp_path / "bare.tflite"
    path.write_bytes(bare["float"])
    with pytest.warns(NormalizationUnknownWarning, match="--mean and --std"):
        clf = Classifier.load(path)
    assert clf.preprocessing.is_identity and clf.sources == {"labels": None, "preprocessing": "model"}
    assert "--mean" in clf.warnings[0] and "bare.tflite" in clf.warnings[0]
    code, out = cli_main(capsys, "predict", str(path), str(images[0]))
    assert code == 0 and "warning: bare.tflite: the float model's input normalization is unknown" in out
    code, out = cli_main(capsys, "predict", str(path), str(images[0]), "--mean", "127.5", "--std", "127.5")
    assert code == 0 and "warning" not in out
    with warnings.catch_warnings():
        warnings.simplefilter("error", NormalizationUnknownWarning)
        Classifier.load(path, mean=127.5, std=127.5)
        uint8 = tmp_path / "bare-uint8.tflite"
        uint8.write_bytes(bare["uint8"])
        Classifier.load(uint8)  # an integer input: the raw pixels, the clients' convention, no warning


def test_standard_metadata_without_normalization_warns(bare, tmp_path):
    def drop(meta):
        meta.subgraphMetadata[0].inputTensorMetadata[0].processUnits = None

    path = tmp_path / "no-norm.tflite"
    path.write_bytes(_with_metadata_object(_standard_only(bare["float"]), drop))
    with pytest.warns(NormalizationUnknownWarning, match="has no NormalizationOptions"):
        clf = Classifier.load(path)
    assert clf.labels == LABELS and clf.preprocessing.is_identity


# ----------------------------------------------------------------------------- hostile files


def _set(path: str, value):
    def change(meta):
        obj = meta
        *parents, last = path.split(".")
        for part in parents:
            obj = obj[int(part)] if part.isdigit() else getattr(obj, part)
        setattr(obj, last, value)

    return change


INPUT = "subgraphMetadata.0.inputTensorMetadata.0"
OUTPUT = "subgraphMetadata.0.outputTensorMetadata.0"


@pytest.mark.parametrize(
    "change, message",
    [
        (_set(f"{INPUT}.processUnits.0.options.mean", [1.0, 2.0]), "mean has 2 values"),
        (_set(f"{INPUT}.processUnits.0.options.std", [0.0]), "std"),
        (_set(f"{INPUT}.processUnits.0.options.std", [float("nan")]), "not finite"),
        (_set(f"{INPUT}.content.contentProperties.colorSpace", fb.ColorSpaceType.GRAYSCALE), "GRAYSCALE"),
        (_set(f"{INPUT}.content.contentPropertiesType", fb.ContentProperties.FeatureProperties), "not an image"),
        (_set("minParserVersion", "2.0.0"), "parser of version 2.0.0"),
        (_set("minParserVersion", "one"), "not a version number"),
        (_set(f"{OUTPUT}.associatedFiles.0.name", "missing.txt"), "no such file"),
        (_set(f"{OUTPUT}.associatedFiles.0.name", ""), "has no name"),
        (_set(f"{INPUT}.processUnits", [fb.ProcessUnitT()] * 65), "at most 64"),
    ],
    ids=[
        "mean-2",
        "std-0",
        "std-nan",
        "grayscale",
        "not-image",
        "major-version",
        "bad-version",
        "missing-file",
        "empty-name",
        "many-units",
    ],
)
def test_malformed_standard_metadata_is_a_clean_error(bare, tmp_path, change, message):
    path = tmp_path / "bad.tflite"
    path.write_bytes(_with_metadata_object(_standard_only(bare["float"]), change))
    with pytest.raises(EdgeExportError, match=message) as info:
        Classifier.load(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize(
    "labels_text, message",
    [
        (b"\xff\xfe not utf-8", "not UTF-8"),
        (b"\n\n", "has 0 labels"),
        (b"a\nb\n", "2 labels given"),
    ],
    ids=["not-utf8", "empty", "wrong-count"],
)
def test_bad_labels_files_are_clean_errors(bare, tmp_path, labels_text, message):
    data = _standard_only(bare["float"])
    path = tmp_path / "bad-labels.tflite"
    path.write_bytes(set_tflite_metadata(data, {}, {LABELS_FILE: labels_text}))
    with pytest.raises(EdgeExportError, match=message) as info:
        Classifier.load(path)
    assert str(path) in str(info.value)


def _flatbuffer_end(data: bytes) -> int:
    return data.index(b"PK\x03\x04")


def test_damaged_huge_and_crowded_zips_are_clean_errors(bare, tmp_path):
    data = _standard_only(bare["float"])
    end = _flatbuffer_end(data)
    model = data[:end]
    cases = {
        "no zip": model,
        "truncated zip": data[:-10],
        "damaged entry": data[: end + 40] + bytes(b ^ 0xFF for b in data[end + 40 : end + 44]) + data[end + 44 :],
    }
    # a labels file that inflates past the limit (a zip bomb: 17 MB of newlines in a few KB)
    bomb = io.BytesIO()
    bomb.write(model)
    with zipfile.ZipFile(bomb, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(LABELS_FILE, b"\n" * (17 * 1024 * 1024))
    cases["zip bomb"] = bomb.getvalue()
    assert len(cases["zip bomb"]) < len(model) + 100_000
    crowded = io.BytesIO()
    crowded.write(model)
    with zipfile.ZipFile(crowded, "w") as archive:
        for i in range(1100):
            archive.writestr(f"f{i}", b"")
        archive.writestr(LABELS_FILE, "\n".join(LABELS))
    cases["crowded zip"] = crowded.getvalue()
    messages = {}
    for name, blob in cases.items():
        path = tmp_path / f"{name.replace(' ', '-')}.tflite"
        path.write_bytes(blob)
        with pytest.raises(EdgeExportError) as info:
            Classifier.load(path)
        assert str(path) in str(info.value), name
        messages[name] = info.value.message
    assert "over the" in messages["zip bomb"] and "1101 files" in messages["crowded zip"]
    assert "no zip" in messages["no zip"]
    # the labels from elsewhere: the model's damaged zip is never opened
    assert Classifier.load(tmp_path / "truncated-zip.tflite", labels=LABELS).labels == LABELS


def test_wrong_identifier_and_oversized_entries_are_clean_errors(bare, tmp_path):
    data = _standard_only(bare["float"])
    buffer = tflite_metadata_buffer(data, STANDARD_METADATA_NAME)
    for blob, message in (
        (buffer[:4] + b"XXXX" + buffer[8:], "not TFLite Model Metadata"),
        (b"{}", "not TFLite Model Metadata"),
        (b"\x00" * (17 * 1024 * 1024), "over the"),
    ):
        path = tmp_path / "wrong.tflite"
        path.write_bytes(set_tflite_metadata(data, {STANDARD_METADATA_NAME: blob}))
        with pytest.raises(EdgeExportError, match=message):
            Classifier.load(path)


def test_random_damage_to_the_metadata_is_a_clean_error_or_a_result(bare):
    """Flipped bytes in the TFLITE_METADATA flatbuffer: an EdgeExportError naming the file, or metadata whose
    values are all checked; never another exception, never a hang."""
    data = _standard_only(bare["float"])
    buffer = tflite_metadata_buffer(data, STANDARD_METADATA_NAME)
    start = data.index(buffer)
    rng = np.random.default_rng(11)
    outcomes = {"error": 0, "read": 0}
    for _ in range(300):
        blob = bytearray(data)
        for position in rng.integers(start, start + len(buffer), rng.integers(1, 6)):
            blob[position] = int(rng.integers(0, 256))
        try:
            meta = parse_standard_metadata(bytes(blob), "m.tflite")
        except EdgeExportError as exc:
            assert "m.tflite" in str(exc)
            outcomes["error"] += 1
            continue
        outcomes["read"] += 1
        if meta is not None and meta.mean is not None:
            assert len(meta.mean) == 3 and all(np.isfinite(meta.mean + meta.std))
        if meta is not None and meta.labels is not None:
            assert all(isinstance(label, str) for label in meta.labels)
    assert outcomes["error"] > 0 and outcomes["read"] > 0, outcomes
