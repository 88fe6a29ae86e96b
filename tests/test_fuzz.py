"""Fuzz the parsers that read files from elsewhere: a clean EdgeExportError or a valid result, never another
exception, never unbounded memory.

Targets: model metadata (TFLite flatbuffer, ONNX protobuf, the JSON document), export manifests, config
YAML, the torch checkpoint reader (legacy and zip) and image decoding. Inputs are mutations of real files
(the tiny run's exported models, hand-made checkpoints, small images) and generated documents.

Budget (fixed, derandomized, the same in CI and here): ``MAX_EXAMPLES`` examples per target, no deadline,
no example database. The targets run in one child pytest whose address space is limited to
``MEMORY_LIMIT`` (RLIMIT_AS): an allocation sized by a hostile field fails there with MemoryError, which
the checks below count as a bug even when a reader turns it into an EdgeExportError.
"""

from __future__ import annotations

import functools
import io
import json
import math
import os
import struct
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge_export.core.errors import EdgeExportError

CHILD = os.environ.get("EDGE_EXPORT_FUZZ_CHILD") == "1"
MODELS = os.environ.get("EDGE_EXPORT_FUZZ_MODELS")  # the tiny run's export folder, from the parent test
MEMORY_LIMIT = 2 << 30  # bytes of address space for the child (numpy, Pillow, onnx loaded: ~0.6 GB)
MAX_EXAMPLES = int(os.environ.get("EDGE_EXPORT_FUZZ_EXAMPLES", "300"))  # a deeper local run: =3000 (about 1 min)
RANDOM = os.environ.get("EDGE_EXPORT_FUZZ_RANDOM") == "1"  # new examples each run instead of the fixed ones

settings.register_profile(
    "edge-export-fuzz",
    max_examples=MAX_EXAMPLES,
    derandomize=not RANDOM,
    deadline=None,
    database=None,
    print_blob=False,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.filter_too_much,
        HealthCheck.function_scoped_fixture,
    ],
)
FUZZ = settings.get_profile("edge-export-fuzz")
child_only = pytest.mark.skipif(not CHILD, reason="runs in the memory-limited child of test_fuzz_under_a_memory_limit")


def test_fuzz_under_a_memory_limit(tiny_export, tmp_path):
    """Every fuzz target below, in a child pytest limited to MEMORY_LIMIT bytes of address space."""
    limited = (
        "import resource, sys, pytest\n"
        f"resource.setrlimit(resource.RLIMIT_AS, ({MEMORY_LIMIT}, {MEMORY_LIMIT}))\n"
        f"sys.exit(pytest.main([{__file__!r}, '-q', '-x', '-p', 'no:cacheprovider', "
        "'-k', 'fuzz_ and not memory_limit']))\n"
    )
    env = {
        **os.environ,
        "EDGE_EXPORT_FUZZ_CHILD": "1",
        "EDGE_EXPORT_FUZZ_MODELS": str(Path(tiny_export["run"]) / "export"),
        "OPENBLAS_NUM_THREADS": "1",
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
    }
    proc = subprocess.run(
        [sys.executable, "-c", limited], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-3000:]
    assert " passed" in proc.stdout and "skipped" not in proc.stdout.splitlines()[-1], proc.stdout[-2000:]


# ----------------------------------------------------------------------------- helpers


def _clean(exc: EdgeExportError) -> None:
    """An EdgeExportError is clean unless it hides an allocation the memory limit stopped."""
    text = str(exc)
    assert "MemoryError" not in text, f"an allocation sized by the file: {text}"
    assert "\x1b" not in text and "\x00" not in text, f"control characters reach the screen: {text!r}"


INTERESTING = [0, 1, 2, 7, 0x7F, 0x80, 0xFF, 0x7FFF, 0xFFFF, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF, 0x7FFFFFFFFFFFFFFF]


@st.composite
def mutated(draw, base: bytes) -> bytes:
    """``base`` with 1-8 edits: a byte set, bytes inserted or deleted, a cut, a little-endian integer written."""
    data = bytearray(base)
    for _ in range(draw(st.integers(1, 8))):
        kind = draw(st.sampled_from(["set", "insert", "delete", "cut", "int32", "int64"]))
        at = draw(st.integers(0, max(len(data) - 1, 0)))
        if kind == "set":
            data[at : at + 1] = bytes([draw(st.integers(0, 255))])
        elif kind == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=16))
        elif kind == "delete":
            del data[at : at + draw(st.integers(1, 64))]
        elif kind == "cut":
            del data[at:]
        else:
            value = draw(st.sampled_from(INTERESTING)) & (0xFFFFFFFF if kind == "int32" else 0xFFFFFFFFFFFFFFFF)
            data[at : at + (4 if kind == "int32" else 8)] = struct.pack("<I" if kind == "int32" else "<Q", value)
    return bytes(data)


NASTY_TEXT = st.sampled_from(
    [
        "",
        ".",
        "..",
        "../x",
        "../../victim",
        "/etc/passwd",
        "a/b",
        "a\\b",
        "C:x",
        "x\x00y",
        "\x1b[2J",
        "tflite-int8",
        "onnx-fp32",
        "é",
        "a" * 200,
        "~",
        "link",
        "NaN",
    ]
)
JSON_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=20)
    | NASTY_TEXT
)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


def _model(name: str) -> Path:
    if not MODELS:
        pytest.skip("needs the tiny run's models (EDGE_EXPORT_FUZZ_MODELS)")
    return Path(MODELS) / name


# ----------------------------------------------------------------------------- model metadata


def _check_metadata(meta) -> None:
    from edge_export.runtime.preprocessing import Preprocessing

    if meta is None:
        return
    assert isinstance(meta, dict) and isinstance(meta["format_version"], int)
    labels = meta.get("labels")
    assert labels is None or (isinstance(labels, list) and all(isinstance(x, str) for x in labels))
    if "preprocessing" in meta:
        prep = Preprocessing.from_dict(meta["preprocessing"])
        assert all(math.isfinite(v) for v in (*prep.mean, *prep.std)) and min(prep.std) > 0


@child_only
@FUZZ
@given(data=st.data())
def test_fuzz_tflite_metadata(data):
    from edge_export.runtime.metadata import parse_metadata, read_tflite_metadata_text

    model = _model("tflite-int8.tflite").read_bytes()
    if data.draw(st.booleans()):
        blob = data.draw(mutated(model))
    else:  # the metadata document and the vector length before it
        start = model.index(b'{"format_version"') - 4
        end = start + 4 + struct.unpack("<I", model[start : start + 4])[0]
        blob = model[:start] + data.draw(mutated(model[start:end])) + model[end:]
    try:
        _check_metadata(parse_metadata(read_tflite_metadata_text(blob, "m.tflite"), "m.tflite"))
    except EdgeExportError as exc:
        _clean(exc)


@child_only
@FUZZ
@given(data=st.data())
def test_fuzz_onnx_metadata(work, data):
    from edge_export.runtime.metadata import read_metadata

    path = _write(work / "m.onnx", data.draw(mutated(_model("onnx-fp32.onnx").read_bytes())))
    try:
        _check_metadata(read_metadata(path))
    except EdgeExportError as exc:
        _clean(exc)


def _metadata_documents():
    preprocessing = st.fixed_dictionaries(
        {},
        optional={
            "size": st.lists(JSON_SCALARS, max_size=3) | JSON_SCALARS,
            "mean": st.lists(JSON_SCALARS, max_size=4) | JSON_SCALARS,
            "std": st.lists(JSON_SCALARS, max_size=4) | JSON_SCALARS,
            "resize": JSON_SCALARS | st.sampled_from(["bilinear", "nearest", "bicubic"]),
            "color": JSON_SCALARS | st.just("RGB"),
            "input_range": st.lists(JSON_SCALARS, max_size=3),
        },
    )
    document = st.fixed_dictionaries(
        {"format_version": st.sampled_from([1, 1, 0, 2, True, "1", None])},
        optional={
            "labels": st.lists(st.text(max_size=10), max_size=5) | JSON_VALUES,
            "preprocessing": preprocessing | JSON_VALUES,
        },
    )
    return st.one_of(
        document.map(json.dumps),
        JSON_VALUES.map(json.dumps),
        st.text(max_size=100),
        document.map(json.dumps).flatmap(
            lambda text: mutated(text.encode()).map(lambda b: b.decode("utf-8", "replace"))
        ),
    )


@child_only
@FUZZ
@given(text=_metadata_documents())
def test_fuzz_metadata_json(text):
    from edge_export.runtime.metadata import parse_metadata

    try:
        _check_metadata(parse_metadata(text, "m.tflite"))
    except EdgeExportError as exc:
        _clean(exc)


# ----------------------------------------------------------------------------- export manifests


def _manifests():
    entry = st.fixed_dictionaries(
        {},
        optional={
            "name": NASTY_TEXT | JSON_SCALARS,
            "path": NASTY_TEXT | JSON_SCALARS | st.just("tflite-int8.tflite"),
            "status": st.sampled_from(["ok", "failed"]) | JSON_SCALARS,
            "sha256": st.just("ab" * 32) | JSON_SCALARS,
            "size_bytes": st.integers(-5, 2**70) | JSON_SCALARS,
            "format": JSON_SCALARS,
            "precision": JSON_SCALARS,
        },
    )
    document = st.fixed_dictionaries({"artifacts": st.lists(entry | JSON_VALUES, max_size=4) | JSON_VALUES})
    return st.one_of(
        document.map(json.dumps),
        JSON_VALUES.map(json.dumps),
        document.map(json.dumps).flatmap(lambda text: mutated(text.encode())),
    )


@child_only
@FUZZ
@given(text=_manifests())
def test_fuzz_manifest(work, text):
    from edge_export.core.run_folder import RunFolder
    from edge_export.core.untrusted import SAFE_NAME
    from edge_export.export.manifest import read_manifest

    run = RunFolder(work / "run")
    export = run.export_dir
    if not export.is_dir():
        export.mkdir(parents=True)
        (export / "tflite-int8.tflite").write_bytes(b"model")
        (work / "outside").write_bytes(b"secret")
        (export / "link").symlink_to(work / "outside")
    _write(export / "manifest.json", text.encode() if isinstance(text, str) else text)
    try:
        entries = read_manifest(run)
    except EdgeExportError as exc:
        _clean(exc)
        return
    root = export.resolve()
    for entry in entries.artifacts:
        assert SAFE_NAME.match(entry.name), entry
        if entry.path is not None:
            target = (export / entry.path).resolve()
            assert root in target.parents, entry


def _bundles():
    artifact = st.fixed_dictionaries(
        {},
        optional={
            "name": NASTY_TEXT | JSON_SCALARS,
            "path": NASTY_TEXT | JSON_SCALARS | st.just("models/m.tflite"),
            "sha256": st.just("ab" * 32) | JSON_SCALARS,
            "size_bytes": JSON_SCALARS,
        },
    )
    paths = NASTY_TEXT | JSON_SCALARS
    document = st.fixed_dictionaries(
        {"artifacts": st.lists(artifact | JSON_VALUES, max_size=3) | JSON_VALUES},
        optional={
            "wheel": paths | st.just("wheels/w.whl"),
            "requirements": paths | st.just("requirements.txt"),
            "labels": paths | st.just("labels.txt"),
            "model_card": paths,
        },
    )
    return st.one_of(document.map(json.dumps), document.map(json.dumps).flatmap(lambda text: mutated(text.encode())))


@child_only
@FUZZ
@given(text=_bundles())
def test_fuzz_bundle_json(work, text):
    """bundle.json, read by `edge-export` (BundleLayout.read_info) and by run.py on the device (read_info)."""
    from edge_export.deploy import bundle_main
    from edge_export.deploy.bundle import BundleLayout

    folder = work / "bundle"
    if not folder.is_dir():
        (folder / "models").mkdir(parents=True)
        (folder / "models/m.tflite").write_bytes(b"model")
        (folder / "link").symlink_to(work)
    _write(folder / "bundle.json", text.encode() if isinstance(text, str) else text)
    root = folder.resolve()
    try:
        info = BundleLayout(folder).read_info()
    except EdgeExportError as exc:
        _clean(exc)
        info = None
    if info is not None:
        for relative in [a["path"] for a in info["artifacts"]] + [info[k] for k in ("wheel", "requirements")]:
            assert root in (folder / relative).resolve().parents, relative
    here, bundle_main.HERE = bundle_main.HERE, root
    try:
        device = bundle_main.read_info()
    except bundle_main.BadBundle:
        device = None
    finally:
        bundle_main.HERE = here
    if device is not None:
        for relative in [a["path"] for a in device["artifacts"]] + [device[k] for k in ("wheel", "requirements")]:
            assert root in (root / relative).resolve().parents, relative


# ----------------------------------------------------------------------------- config YAML


YAML_TEXT = st.lists(
    st.sampled_from(list("{}[]:,-&*!|>'\"#?%@` \n\tabc019.eE+_") + ["train", "seed", "data", "bench", "threads", "!!"]),
    max_size=80,
).map("".join)


def _configs():
    from edge_export.core.config import Config

    sections = {
        "data": ["path", "validation_split", "max_image_pixels"],
        "train": ["seed", "batch_size", "backbone", "epochs"],
        "bench": ["threads", "runs", "warmup"],
        "export": ["formats", "accuracy_budget"],
        "build": ["stages"],
    }
    values = JSON_VALUES | st.sampled_from(["1e-5", ".nan", ".inf", "2024-02-30", "0x10", "1_000", "yes", "~"])
    section = st.sampled_from(list(sections)).flatmap(
        lambda s: st.tuples(
            st.just(s), st.dictionaries(st.sampled_from(sections[s]) | st.text(max_size=5), values, max_size=3)
        )
    )
    document = st.lists(section, max_size=4).map(dict) | st.dictionaries(
        JSON_SCALARS.filter(lambda k: k is not None), values, max_size=3
    )

    def dump(doc):
        import yaml

        return yaml.safe_dump(doc, allow_unicode=True)

    base = Config().to_yaml() if hasattr(Config(), "to_yaml") else ""
    return st.one_of(document.map(dump), YAML_TEXT, mutated(base.encode()).map(lambda b: b.decode("utf-8", "replace")))


@child_only
@FUZZ
@given(text=_configs())
def test_fuzz_config_yaml(work, text):
    from edge_export.core.config import Config, load_config

    path = _write(work / "config.yaml", text.encode("utf-8", "surrogatepass"))
    try:
        config = load_config(path)
    except EdgeExportError as exc:
        _clean(exc)
        return
    assert isinstance(config, Config)


# ----------------------------------------------------------------------------- torch checkpoints


@functools.lru_cache(maxsize=1)
def _checkpoints() -> dict[str, bytes]:
    """The sample state dict of test_torch_pickle, legacy and zip, plus its bare zip data.pkl."""
    import collections
    import tempfile

    from test_torch_pickle import FakeStorage, FakeTensor, TorchPickler, write_legacy, write_zip

    floats = FakeStorage("1001", np.arange(30, dtype=np.float32))
    steps = FakeStorage("7", np.array([42], dtype=np.int64))
    state = collections.OrderedDict(
        whole=FakeTensor(floats, 0, (30,), (1,)),
        transposed=FakeTensor(floats, 2, (3, 4), (1, 3)),
        weight=FakeTensor(floats, 5, (2, 2), (2, 1), parameter=True),
        steps=FakeTensor(steps, 0, (), ()),
    )
    with tempfile.TemporaryDirectory() as tmp:
        write_legacy(Path(tmp) / "a.pth", state, [floats, steps])
        write_zip(Path(tmp) / "b.pt", state, [floats, steps])
        files = {"legacy": (Path(tmp) / "a.pth").read_bytes(), "zip": (Path(tmp) / "b.pt").read_bytes()}
    buffer = io.BytesIO()
    TorchPickler(buffer, legacy=False).dump(state)
    files["pickle"] = buffer.getvalue()
    files["storages"] = {"1001": floats.data.tobytes(), "7": steps.data.tobytes()}
    return files


@child_only
@FUZZ
@given(data=st.data())
def test_fuzz_torch_checkpoint(work, data):
    from edge_export.trainer.weights.torch_pickle import load_torch_state_dict

    files = _checkpoints()
    kind = data.draw(st.sampled_from(["legacy", "zip", "pickle-in-zip"]))
    path = work / "model.pth"
    if kind == "pickle-in-zip":  # a hostile data.pkl inside a well-formed zip
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr("archive/data.pkl", data.draw(mutated(files["pickle"])))
            for key, raw in files["storages"].items():
                archive.writestr(f"archive/data/{key}", raw)
    else:
        _write(path, data.draw(mutated(files[kind])))
    try:
        state = load_torch_state_dict(path)
    except EdgeExportError as exc:
        _clean(exc)
        return
    assert all(isinstance(k, str) and isinstance(v, np.ndarray) for k, v in state.items())
    assert sum(v.nbytes for v in state.values()) <= 16 * path.stat().st_size + (1 << 20)


# ----------------------------------------------------------------------------- image decoding


@functools.lru_cache(maxsize=1)
def _images() -> dict[str, bytes]:
    from PIL import Image

    rng = np.random.default_rng(0)
    rgb = Image.fromarray(rng.integers(0, 256, (12, 16, 3), dtype=np.uint8))
    out = {}
    for name, image, kwargs in [
        ("png", rgb, {}),
        ("jpeg", rgb, {"quality": 80}),
        ("gif", rgb.convert("P"), {}),
        ("bmp", rgb, {}),
        ("webp", rgb, {}),
        ("png", rgb.convert("LA"), {}),
        ("tiff", rgb, {}),
    ]:
        buffer = io.BytesIO()
        image.save(buffer, format=name.upper(), **kwargs)
        out[f"{name}-{image.mode}"] = buffer.getvalue()
    return out


@child_only
@FUZZ
@given(data=st.data())
def test_fuzz_image_decoding(work, data):
    from edge_export.runtime.images import DEFAULT_MAX_PIXELS, open_rgb

    images = _images()
    base = images[data.draw(st.sampled_from(sorted(images)))]
    path = _write(work / "image", data.draw(mutated(base)))
    try:
        image = open_rgb(path)
    except EdgeExportError as exc:
        _clean(exc)
        return
    assert image.mode == "RGB" and image.width * image.height <= DEFAULT_MAX_PIXELS
    assert np.asarray(image).shape == (image.height, image.width, 3)
    try:  # the opencv decoder's own header walk and OpenCV's decoder, on the same bytes
        from edge_export.runtime.images import load_image

        pixels = load_image(path, (8, 8), "opencv:bilinear")
    except EdgeExportError as exc:
        _clean(exc)
        return
    assert pixels.shape == (8, 8, 3) and pixels.dtype == np.uint8
