"""Read the ``edge_export`` metadata document (labels, preprocessing) from a .tflite or .onnx file.

TF-free: TFLite files are parsed with the ``flatbuffers`` package's low-level Table API (a dependency
of both ai-edge-litert and onnxruntime); ONNX files with onnxruntime.
The writers live in ``edge_export.export.metadata``.
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any

from edge_export.core.errors import EdgeExportError
from edge_export.runtime.preprocessing import Preprocessing
from edge_export.core.untrusted import loads_json

METADATA_NAME = "edge_export"
FORMAT_VERSION = 1
TFLITE_IDENTIFIER = b"TFL3"
MAX_METADATA_BYTES = 16 * 1024 * 1024  # labels of 100k classes take about 2 MB
MAX_LABELS = 100_000

# TFLite schema: vtable slot of field N is 4 + 2 * N.
_MODEL_BUFFERS, _MODEL_METADATA = 4, 6
_METADATA_NAME, _METADATA_BUFFER = 0, 1
_BUFFER_DATA, _BUFFER_OFFSET, _BUFFER_SIZE = 0, 1, 2


def read_metadata(path: str | Path) -> dict[str, Any] | None:
    """The model's ``edge_export`` metadata as a dict, or None when it has none."""
    path = Path(path)
    if not path.is_file():
        raise EdgeExportError("model file not found", path=path, hint="check the path")
    suffix = path.suffix.lower()
    if suffix == ".tflite":
        text = read_tflite_metadata_text(path.read_bytes(), path)
    elif suffix == ".onnx":
        text = _read_onnx_metadata_text(path)
    else:
        raise EdgeExportError(
            f"unknown model format {path.suffix!r}", path=path, hint="use a .tflite or .onnx file"
        )
    return parse_metadata(text, path)


def parse_metadata(text: str | bytes | None, path: str | Path | None = None) -> dict[str, Any] | None:
    """Decode and check the JSON document (None stays None).

    The document comes from a model file made anywhere: bounded size and nesting, labels a list of at most
    ``MAX_LABELS`` strings (returned as stored: print them with ``untrusted.printable``), preprocessing
    checked value by value (finite mean, std clearly above zero, a sane size) right here.
    """
    if text is None:
        return None
    if len(text) > MAX_METADATA_BYTES:
        raise EdgeExportError(f"{METADATA_NAME} metadata is {len(text)} bytes, over the {MAX_METADATA_BYTES} limit",
                              path=path, hint="the model was not made by edge-export, or is damaged")
    meta = loads_json(text, what=f"{METADATA_NAME} metadata", source=path)
    if not isinstance(meta, dict):
        raise EdgeExportError(f"malformed {METADATA_NAME} metadata: not a JSON object", path=path)
    version = meta.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise EdgeExportError(f"{METADATA_NAME} metadata has no valid format_version", path=path)
    if version > FORMAT_VERSION:
        raise EdgeExportError(
            f"metadata format_version {version} is newer than this runtime understands ({FORMAT_VERSION})",
            path=path,
            hint="upgrade edge-export",
        )
    labels = meta.get("labels")
    if labels is not None and not (isinstance(labels, list) and all(isinstance(x, str) for x in labels)):
        raise EdgeExportError(f"{METADATA_NAME} metadata: labels must be a list of strings", path=path)
    if labels is not None and not 0 < len(labels) <= MAX_LABELS:
        raise EdgeExportError(f"{METADATA_NAME} metadata: {len(labels)} labels (expected 1 to {MAX_LABELS})", path=path)
    if "preprocessing" in meta:
        if not isinstance(meta["preprocessing"], dict):
            raise EdgeExportError(f"{METADATA_NAME} metadata: preprocessing must be an object", path=path)
        try:
            Preprocessing.from_dict(meta["preprocessing"])
        except EdgeExportError as exc:
            raise EdgeExportError(f"{METADATA_NAME} metadata: {exc.message}", path=path,
                                  hint="the model's metadata is damaged or not edge-export's: re-export the model") from None
    return meta


def read_tflite_metadata_text(data: bytes, path: str | Path | None = None) -> str | None:
    """The UTF-8 text of the ``edge_export`` metadata entry of a TFLite flatbuffer, or None."""
    try:
        return _tflite_metadata(data, METADATA_NAME)
    except EdgeExportError:
        raise
    except (struct.error, IndexError, ValueError, TypeError, OverflowError, UnicodeDecodeError) as exc:
        raise EdgeExportError(
            f"corrupt or truncated TFLite model ({type(exc).__name__}: {exc})",
            path=path,
            hint="re-export the model",
        ) from None


def _tflite_metadata(data: bytes, name: str) -> str | None:
    import flatbuffers  # a dependency of ai-edge-litert and onnxruntime

    if len(data) < 8 or data[4:8] != TFLITE_IDENTIFIER:
        raise ValueError("not a TFLite flatbuffer (no 'TFL3' identifier)")
    root = flatbuffers.encode.Get(flatbuffers.packer.uoffset, data, 0)
    model = flatbuffers.table.Table(data, root)
    entries = _vector_tables(model, _MODEL_METADATA)
    for entry in entries:
        o = entry.Offset(4 + 2 * _METADATA_NAME)
        if not o or entry.String(entry.Pos + o).decode("utf-8") != name:
            continue
        o = entry.Offset(4 + 2 * _METADATA_BUFFER)
        index = entry.Get(flatbuffers.number_types.Uint32Flags, entry.Pos + o) if o else 0
        buffers = _vector_tables(model, _MODEL_BUFFERS)
        if index >= len(buffers):
            raise ValueError(f"metadata buffer index {index} out of range")
        return _buffer_bytes(buffers[index], data).decode("utf-8")
    return None


def _vector_tables(table: Any, field: int) -> list[Any]:
    import flatbuffers

    o = table.Offset(4 + 2 * field)
    if not o:
        return []
    start = table.Vector(o)
    count = table.VectorLen(o)
    if start + 4 * count > len(table.Bytes):
        raise ValueError("vector runs past the end of the file")
    return [flatbuffers.table.Table(table.Bytes, table.Indirect(start + 4 * i)) for i in range(count)]


def _buffer_bytes(buffer: Any, data: bytes) -> bytes:
    import flatbuffers

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


def _read_onnx_metadata_text(path: Path) -> str | None:
    """The metadata entry as ONNX Runtime reads it (the runtime never needs the onnx package)."""
    from edge_export.runtime.backends import load_backend

    return load_backend(path).metadata_text()
