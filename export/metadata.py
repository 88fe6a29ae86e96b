"""Embed the ``edge_export`` metadata (``runtime.metadata.ModelMetadata``, which export fills) into
exported models; the runtime reads it back with ``runtime.metadata.read_model_metadata``."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Sequence

import flatbuffers
import numpy as np

from edge_export.core.errors import EdgeExportError
from edge_export.runtime.metadata import FORMAT_VERSION, METADATA_NAME, TFLITE_IDENTIFIER, ModelMetadata
from edge_export.runtime.preprocessing import Preprocessing

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


def embed_tflite_metadata(model_bytes: bytes, meta: ModelMetadata | dict[str, Any]) -> bytes:
    """A copy of the TFLite flatbuffer with its ``edge_export`` metadata entry set (replaced if present)."""
    schema = _tflite_schema()
    data = metadata_json(meta).encode("utf-8")
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
    buffer = schema.BufferT()
    buffer.data = np.frombuffer(data, dtype=np.uint8)
    model.buffers = list(model.buffers or [])
    entries = list(model.metadata or [])
    existing = [e for e in entries if _name(e) == METADATA_NAME]
    if existing and 0 < existing[0].buffer < len(model.buffers):  # reuse its slot, leave no orphan
        index = existing[0].buffer
        model.buffers[index] = buffer
    else:
        model.buffers.append(buffer)
        index = len(model.buffers) - 1
    entry = schema.MetadataT()
    entry.name = METADATA_NAME
    entry.buffer = index
    model.metadata = [e for e in entries if _name(e) != METADATA_NAME] + [entry]
    builder = _AlignedBuilder(len(model_bytes) + len(data) + 1024)
    builder.Finish(model.Pack(builder), file_identifier=TFLITE_IDENTIFIER)
    return bytes(builder.Output())


def embed_onnx_metadata(model: "onnx.ModelProto", meta: ModelMetadata | dict[str, Any]) -> None:
    """Set ``model.metadata_props[edge_export]`` in place (replacing an existing entry)."""
    text = metadata_json(meta)
    props = [p for p in model.metadata_props if p.key != METADATA_NAME]
    del model.metadata_props[:]
    model.metadata_props.extend(props)
    entry = model.metadata_props.add()
    entry.key, entry.value = METADATA_NAME, text


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
        from ai_edge_litert import schema_py_generated as schema
    except ImportError:
        try:
            from tensorflow.lite.python import schema_py_generated as schema
        except ImportError:
            raise EdgeExportError(
                "writing TFLite metadata needs ai-edge-litert or TensorFlow", hint="pip install ai-edge-litert"
            ) from None
    return schema
