"""Where a model file keeps edge-export's metadata document (an entry called ``METADATA_NAME``: a TFLite
flatbuffer's metadata buffer, an ONNX ``metadata_props`` key), and the reading of a TFLite flatbuffer's metadata
entries with the ``flatbuffers`` package's low-level Table API (a dependency of both ai-edge-litert and
onnxruntime). The backends read entries through this module; ``runtime.metadata`` checks the document."""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any

from edge_export.core.errors import EdgeExportError

METADATA_NAME = "edge_export"
TFLITE_IDENTIFIER = b"TFL3"

# TFLite schema: vtable slot of field N is 4 + 2 * N.
_MODEL_BUFFERS, _MODEL_METADATA = 4, 6
_METADATA_NAME, _METADATA_BUFFER = 0, 1
_BUFFER_DATA, _BUFFER_OFFSET, _BUFFER_SIZE = 0, 1, 2


def read_tflite_metadata_text(data: bytes, path: str | Path | None = None) -> str | None:
    """The UTF-8 text of the ``edge_export`` metadata entry of a TFLite flatbuffer, or None."""
    blob = tflite_metadata_buffer(data, METADATA_NAME, path)
    if blob is None:
        return None
    try:
        return blob.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise EdgeExportError(
            f"{METADATA_NAME} metadata is not UTF-8 text ({exc})",
            path=path,
            hint="the model's metadata is damaged or not edge-export's: re-export the model",
        ) from None


def tflite_metadata_buffer(data: bytes, name: str, path: str | Path | None = None) -> bytes | None:
    """The bytes of the first metadata entry called ``name`` of a TFLite flatbuffer (``edge_export``,
    ``TFLITE_METADATA`` ...), or None when it has none; a damaged model is an EdgeExportError."""
    try:
        return _tflite_metadata(data, name)
    except EdgeExportError:
        raise
    except (struct.error, IndexError, ValueError, TypeError, OverflowError, UnicodeDecodeError) as exc:
        raise EdgeExportError(
            f"corrupt or truncated TFLite model ({type(exc).__name__}: {exc})",
            path=path,
            hint="re-export the model",
        ) from None


def _tflite_metadata(data: bytes, name: str) -> bytes | None:
    import flatbuffers  # lazy: not in the base install (a dependency of ai-edge-litert and onnxruntime)

    if len(data) < 8 or data[4:8] != TFLITE_IDENTIFIER:
        raise ValueError("not a TFLite flatbuffer (no 'TFL3' identifier)")
    root = flatbuffers.encode.Get(flatbuffers.packer.uoffset, data, 0)
    model = flatbuffers.table.Table(data, root)
    entries = _vector_tables(model, _MODEL_METADATA)
    for entry in entries:
        o = entry.Offset(4 + 2 * _METADATA_NAME)
        if not o or entry.String(entry.Pos + o) != name.encode("utf-8"):
            continue
        o = entry.Offset(4 + 2 * _METADATA_BUFFER)
        index = entry.Get(flatbuffers.number_types.Uint32Flags, entry.Pos + o) if o else 0
        buffers = _vector_tables(model, _MODEL_BUFFERS)
        if index >= len(buffers):
            raise ValueError(f"metadata buffer index {index} out of range")
        return _buffer_bytes(buffers[index], data)
    return None


def _vector_tables(table: Any, field: int) -> list[Any]:
    import flatbuffers  # lazy: not in the base install (it comes with ai-edge-litert / onnxruntime)

    o = table.Offset(4 + 2 * field)
    if not o:
        return []
    start = table.Vector(o)
    count = table.VectorLen(o)
    if start + 4 * count > len(table.Bytes):
        raise ValueError("vector runs past the end of the file")
    return [flatbuffers.table.Table(table.Bytes, table.Indirect(start + 4 * i)) for i in range(count)]


def _buffer_bytes(buffer: Any, data: bytes) -> bytes:
    import flatbuffers  # lazy: not in the base install (it comes with ai-edge-litert / onnxruntime)

    o = buffer.Offset(4 + 2 * _BUFFER_DATA)
    if o:
        start, length = buffer.Vector(o), buffer.VectorLen(o)
        if start + length > len(data):
            raise ValueError("buffer runs past the end of the file")
        return bytes(data[start : start + length])
    # large models keep buffer data after the flatbuffer: absolute offset and size
    fields = [buffer.Offset(4 + 2 * f) for f in (_BUFFER_OFFSET, _BUFFER_SIZE)]
    offset, size = (buffer.Get(flatbuffers.number_types.Uint64Flags, buffer.Pos + f) if f else 0 for f in fields)
    if offset > 1 and size:
        if offset + size > len(data):
            raise ValueError("buffer runs past the end of the file")
        return bytes(data[offset : offset + size])
    return b""
