"""Embed the ``edge_export`` metadata (``runtime.metadata.ModelMetadata``, which export fills) into
exported models; the runtime reads it back with ``runtime.metadata.read_model_metadata``."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import flatbuffers
import numpy as np

from edge_export.core.errors import EdgeExportError
from edge_export.core.records.preprocessing import Preprocessing
from edge_export.export.tflite_metadata import (
    STANDARD_METADATA_NAME,
    append_zip,
    carried_files,
    model_identity,
    standard_metadata,
)
from edge_export.runtime.metadata import FORMAT_VERSION, METADATA_NAME, TFLITE_IDENTIFIER, ModelMetadata

if TYPE_CHECKING:  # pragma: no cover
    import onnx


def build_metadata(labels: Sequence[str], preprocessing: Preprocessing, **values: Any) -> dict[str, Any]:
    """The metadata document of ``ModelMetadata.create(labels, preprocessing, **values)``, as a dict."""
    return ModelMetadata.create(labels, preprocessing, **values).to_dict()


def metadata_json(meta: ModelMetadata | dict[str, Any]) -> str:
    """Compact JSON for ``meta``: a ``ModelMetadata``, or a document as is (format_version added when missing)."""
    if isinstance(meta, ModelMetadata):
        meta = meta.to_dict()
    if not isinstance(meta, dict):
        raise EdgeExportError(f"metadata must be a dict, got {type(meta).__name__}")
    meta = {"format_version": FORMAT_VERSION, **meta}
    try:
        return json.dumps(meta, ensure_ascii=False, separators=(",", ":"))
    except (TypeError, ValueError) as exc:
        raise EdgeExportError(f"metadata is not JSON serializable: {exc}") from None


def embed_tflite_metadata(
    model_bytes: bytes, meta: ModelMetadata | dict[str, Any], *, standard: bool = False, edge_export_entry: bool = True
) -> bytes:
    """A copy of the TFLite model with its ``edge_export`` metadata entry set (replaced if present).

    ``standard``: also the standard TFLite Model Metadata entry (``TFLITE_METADATA``, what MediaPipe Tasks
    and the Android Task Library read) and its labels file zipped onto the end (export/tflite_metadata.py).
    Without it, a standard entry and the files zipped onto the model are kept as they are.
    ``edge_export_entry=False`` (with ``standard``): the standard entry only, as a model made elsewhere has it.
    """
    data = metadata_json(meta).encode("utf-8")
    model = _parse_tflite(model_bytes)
    entries: dict[str, bytes | None] = {METADATA_NAME: data} if edge_export_entry else {}
    files = None
    if standard:
        record = meta if isinstance(meta, ModelMetadata) else ModelMetadata.from_dict(json.loads(data))
        entries[STANDARD_METADATA_NAME], files = standard_metadata(model, record)
    return _pack_tflite(model, model_bytes, entries, files)


def set_tflite_metadata(
    model_bytes: bytes, entries: dict[str, bytes | None], files: dict[str, bytes] | None = None
) -> bytes:
    """A copy of the TFLite model with the metadata ``entries`` (name -> bytes; None removes the entry) set,
    replacing entries of the same name, and ``files`` zipped onto its end (None: the files already zipped
    onto it are kept)."""
    return _pack_tflite(_parse_tflite(model_bytes), model_bytes, entries, files)


def _parse_tflite(model_bytes: bytes) -> Any:
    schema = _tflite_schema()
    if len(model_bytes) < 8 or model_bytes[4:8] != TFLITE_IDENTIFIER:
        raise EdgeExportError("not a TFLite flatbuffer (no 'TFL3' identifier)")
    try:
        model = schema.ModelT.InitFromPackedBuf(bytearray(model_bytes), 0)
    except Exception as exc:  # generated code on a damaged buffer: struct.error, IndexError, ...
        raise EdgeExportError(f"cannot parse the TFLite model ({type(exc).__name__}: {exc})") from None
    if any((b.offset or 0) > 1 for b in model.buffers or []):
        raise EdgeExportError(
            "cannot add metadata to a TFLite model whose buffers are stored after the flatbuffer (> 2 GB)"
        )
    return model


def _pack_tflite(
    model: Any, model_bytes: bytes, entries: dict[str, bytes | None], files: dict[str, bytes] | None
) -> bytes:
    if files is None:  # the Pack below drops what follows the flatbuffer: the standard entry's files
        has_standard = any(_name(e) == STANDARD_METADATA_NAME for e in model.metadata or [])
        files = carried_files(model_bytes) if has_standard else {}
    schema = _tflite_schema()
    for name, blob in entries.items():
        _set_entry(schema, model, name, blob)
    builder = _AlignedBuilder(len(model_bytes) + sum(len(b or b"") for b in entries.values()) + 1024)
    builder.Finish(model.Pack(builder), file_identifier=TFLITE_IDENTIFIER)
    return append_zip(bytes(builder.Output()), files)


def _set_entry(schema: Any, model: Any, name: str, blob: bytes | None) -> None:
    """Set the metadata entry ``name`` of ``model`` (a ``ModelT``) to ``blob``, reusing its buffer slot
    (None: remove the entry; its buffer slot stays, empty, so no other index moves)."""
    buffer = schema.BufferT()
    model.buffers = list(model.buffers or [])
    entries = list(model.metadata or [])
    existing = [e for e in entries if _name(e) == name]
    if blob is None:
        for entry in existing:
            if 0 < entry.buffer < len(model.buffers):
                model.buffers[entry.buffer] = buffer
        model.metadata = [e for e in entries if _name(e) != name]
        return
    buffer.data = np.frombuffer(blob, dtype=np.uint8)
    if existing and 0 < existing[0].buffer < len(model.buffers):  # reuse its slot, leave no orphan
        index = existing[0].buffer
        model.buffers[index] = buffer
    else:
        model.buffers.append(buffer)
        index = len(model.buffers) - 1
    entry = schema.MetadataT()
    entry.name = name
    entry.buffer = index
    model.metadata = [e for e in entries if _name(e) != name] + [entry]


def embed_onnx_metadata(model: onnx.ModelProto, meta: ModelMetadata | dict[str, Any]) -> None:
    """Set ``model.metadata_props`` in place: the ``edge_export`` entry (the full document) and the plain
    string keys other tools read (``ONNX_CONVENTION_KEYS``, as Ultralytics' exports write them: ``names`` a
    Python-literal dict, ``imgsz`` ``[h, w]``, ``task``, ``stride``, ``batch``, ...; plus ``labels`` as a JSON
    list and the input's layout, dtype, range, mean/std and size as separate keys). Entries with these keys
    are replaced; other tools' entries are kept."""
    text = metadata_json(meta)
    doc = json.loads(text)
    values = {**_onnx_conventions(model, doc), METADATA_NAME: text}
    ours = {*ONNX_CONVENTION_KEYS, METADATA_NAME}  # all of them: a key left unset this time must not survive
    props = [p for p in model.metadata_props if p.key not in values and p.key not in ours]
    del model.metadata_props[:]
    model.metadata_props.extend(props)
    for key, value in values.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value


# Keys of ``embed_onnx_metadata`` besides ``edge_export`` (all values are strings, as ONNX requires).
ONNX_CONVENTION_KEYS = (
    "description",
    "author",
    "version",
    "license",
    "task",
    "stride",
    "batch",
    "channels",
    "imgsz",
    "names",
    "labels",
    "input_name",
    "input_layout",
    "input_dtype",
    "input_range",
    "input_color",
    "input_height",
    "input_width",
    "mean",
    "std",
    "resize",
    "output_name",
)
_ONNX_DTYPES = {1: "float32", 2: "uint8", 3: "int8", 10: "float16", 11: "float64"}


def _onnx_conventions(model: onnx.ModelProto, doc: dict[str, Any]) -> dict[str, str]:
    """The convention keys for ``doc`` (an edge_export document) on ``model``; layout and dtype are read
    from the graph's first input, the size from it when static, else from the preprocessing."""
    # the document may be anything (tests embed damaged ones for the reader to refuse): use what is well formed
    found_labels = doc.get("labels")
    labels = [str(label) for label in found_labels] if isinstance(found_labels, list) else []
    found_prep = doc.get("preprocessing")
    prep: dict[str, Any] = found_prep if isinstance(found_prep, dict) else {}
    layout, dtype, height, width = "NHWC", "float32", None, None
    if len(model.graph.input):
        tensor = model.graph.input[0].type.tensor_type
        dims = [d.dim_value if d.HasField("dim_value") else None for d in tensor.shape.dim]
        dtype = _ONNX_DTYPES.get(tensor.elem_type, str(tensor.elem_type))
        if len(dims) == 4:
            layout = "NCHW" if dims[1] == 3 and dims[3] != 3 else "NHWC"
            height, width = (dims[2], dims[3]) if layout == "NCHW" else (dims[1], dims[2])
    found_size = prep.get("size")
    size = found_size if isinstance(found_size, list) and len(found_size) == 2 else [None, None]
    height, width = height or size[0], width or size[1]

    def text(key: str) -> str | None:
        return str(doc[key]) if doc.get(key) else None

    _, description, version = model_identity(
        None,
        text("description"),
        text("version"),
        labels,
        text("backbone"),
        text("format") or "onnx",
        text("edge_export"),
    )
    values = {
        "description": description,
        "author": str(doc.get("author") or ""),  # author and license only when the config sets them
        "version": version,
        "license": str(doc.get("license") or doc.get("licence") or ""),
        "task": "classify",
        "stride": "1",  # no stride constraint (Ultralytics' classifiers write 1)
        "batch": "1",  # the batch dimension is dynamic; 1 is what a client may always feed
        "channels": "3",
        "imgsz": str([height, width]),
        "names": str(dict(enumerate(labels))),
        "labels": json.dumps(labels, ensure_ascii=False),
        "input_name": model.graph.input[0].name if len(model.graph.input) else "",
        "input_layout": layout,
        "input_dtype": dtype,
        "input_range": "[0, 255]",  # RGB pixel values; normalization (mean/std below) first when not identity
        "input_color": "RGB",
        "input_height": str(height),
        "input_width": str(width),
        "mean": _onnx_numbers(prep.get("mean", (0, 0, 0))),
        "std": _onnx_numbers(prep.get("std", (1, 1, 1))),
        "resize": str(prep.get("resize", "bilinear")),
        "output_name": model.graph.output[0].name if len(model.graph.output) else "",
    }
    return {k: v for k, v in values.items() if v != ""}


def _onnx_numbers(values: Any) -> str:
    try:
        return json.dumps([float(v) for v in values])
    except (TypeError, ValueError):
        return ""


class _AlignedBuilder(flatbuffers.Builder):
    """Starts byte vectors (tensor data) on 16-byte boundaries, as the schema's force_align asks;
    the generated object API would otherwise pack them unaligned."""

    def StartVector(self, elemSize, numElems, alignment):  # noqa: N802, N803 (flatbuffers' names)
        return super().StartVector(elemSize, numElems, max(alignment, 16) if elemSize == 1 else alignment)


def _name(entry: Any) -> str:
    return entry.name.decode("utf-8") if isinstance(entry.name, bytes) else str(entry.name)


def _tflite_schema():
    """The generated TFLite schema (object API): LiteRT's copy, else TensorFlow's."""
    try:
        # lazy: LiteRT is optional (the tflite extra); only a .tflite model's metadata needs it
        from ai_edge_litert import schema_py_generated as schema
    except ImportError:
        try:
            # lazy: TensorFlow (seconds to import): the schema's fallback where LiteRT is missing
            from tensorflow.lite.python import schema_py_generated as schema
        except ImportError:
            raise EdgeExportError(
                "writing TFLite metadata needs ai-edge-litert or TensorFlow", hint="pip install ai-edge-litert"
            ) from None
    return schema
