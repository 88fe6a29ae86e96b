"""The ``edge_export`` metadata document of a .tflite or .onnx file: the typed record ``ModelMetadata``
(the contract between export, which fills it, and the runtime and bench, which read it) and its reader.

TF-free: the entry is read out of a TFLite file by ``runtime.metadata_entry`` (the ``flatbuffers`` package's
low-level Table API, a dependency of both ai-edge-litert and onnxruntime), out of an ONNX file by onnxruntime.
The writers (embedding the document into a model file) live in ``edge_export.export.metadata``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from edge_export.core.errors import EdgeExportError
from edge_export.core.untrusted import loads_json, printable
from edge_export.runtime.backends import load_backend
from edge_export.runtime.metadata_entry import (
    METADATA_NAME,
    TFLITE_IDENTIFIER,
    read_tflite_metadata_text,
    tflite_metadata_buffer,
)
from edge_export.runtime.preprocessing import Preprocessing

# re-exported: the metadata's names where export and the readers of TFLITE_METADATA look for them
__all__ = [
    "FORMAT_VERSION",
    "MAX_LABELS",
    "MAX_METADATA_BYTES",
    "METADATA_NAME",
    "TFLITE_IDENTIFIER",
    "ModelMetadata",
    "label_lines",
    "parse_metadata",
    "parse_model_metadata",
    "read_metadata",
    "read_model_metadata",
    "read_tflite_metadata_text",
    "tflite_metadata_buffer",
]

FORMAT_VERSION = 1
MAX_METADATA_BYTES = 16 * 1024 * 1024  # labels of 100k classes take about 2 MB
MAX_LABELS = 100_000


def label_lines(text: str) -> list[str]:
    """The labels of a labels file's text: one per line (a leading BOM dropped, \\r\\n or \\n), surrounding spaces
    and trailing blank lines dropped. The one rule for a ``--labels`` file and a TFLITE_METADATA labels file."""
    lines = [line.strip() for line in text.removeprefix("\ufeff").split("\n")]
    while lines and not lines[-1]:
        lines.pop()
    return lines


_TEXT_FIELDS = (
    "backbone",
    "format",
    "precision",
    "int8_io",
    "edge_export",
    "name",
    "description",
    "version",
    "author",
    "license",
)
_COUNT_FIELDS = ("opset", "calibration_images")


@dataclass(frozen=True)
class ModelMetadata:
    """Every field an edge-export artifact carries (JSON keys = field names; ``None`` fields are not written).

    Read from any model file (``from_dict`` checks each value: the file may come from anywhere) and built
    by export. Keys this runtime does not know are kept in ``extra`` (a newer writer, another tool).
    """

    labels: tuple[str, ...] | None = None  # output order
    preprocessing: Preprocessing | None = None  # what the runtime does to an image before the model
    backbone: str | None = None
    format: str | None = None  # the export format's name (tflite-int8, onnx-fp32 ...)
    precision: str | None = None  # fp32 | fp16 | dynamic-int8 | int8
    int8_io: str | None = None  # int8 | uint8: input/output type of integer models
    edge_export: str | None = None  # the version that wrote it
    opset: int | None = None  # ONNX opset
    calibration_images: int | None = None  # images the quantization was calibrated on
    # what the model is, for people and other tools (config export.metadata; also in TFLITE_METADATA)
    name: str | None = None
    description: str | None = None
    version: str | None = None  # the model's version (default: the edge-export version that made it)
    author: str | None = None
    license: str | None = None
    qat: dict[str, Any] | None = field(default=None, compare=False)  # quantization-aware training: images, epochs ...
    extra: dict[str, Any] = field(default_factory=dict, compare=False)
    format_version: int = FORMAT_VERSION

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"format_version": self.format_version}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in ("format_version", "extra") or value is None:
                continue
            if f.name == "labels":
                value = [str(label) for label in value]
            elif f.name == "preprocessing":
                value = value.to_dict()
            d[f.name] = value
        return {**d, **{k: v for k, v in self.extra.items() if k not in d}}

    @classmethod
    def create(cls, labels: Sequence[str], preprocessing: Preprocessing, **values: Any) -> ModelMetadata:
        """A record to embed: ``values`` are fields; other keywords go to ``extra`` (tests, other tools)."""
        known = {f.name for f in fields(cls)} - {"extra", "labels", "preprocessing"}
        return cls(
            labels=tuple(str(label) for label in labels),
            preprocessing=preprocessing,
            **{k: v for k, v in values.items() if k in known},
            extra={k: v for k, v in values.items() if k not in known},
        )

    @classmethod
    def from_dict(cls, meta: Any, *, source: str | Path | None = None) -> ModelMetadata:
        """The document, checked value by value (bounded labels; preprocessing checked by ``Preprocessing``)."""
        if not isinstance(meta, dict):
            raise EdgeExportError(f"malformed {METADATA_NAME} metadata: not a JSON object", path=source)
        version = meta.get("format_version")
        if not isinstance(version, int) or isinstance(version, bool) or version < 1:
            raise EdgeExportError(f"{METADATA_NAME} metadata has no valid format_version", path=source)
        if version > FORMAT_VERSION:
            raise EdgeExportError(
                f"metadata format_version {version} is newer than this runtime understands ({FORMAT_VERSION})",
                path=source,
                hint="upgrade edge-export",
            )
        labels = meta.get("labels")
        if labels is not None and not (isinstance(labels, list) and all(isinstance(x, str) for x in labels)):
            raise EdgeExportError(f"{METADATA_NAME} metadata: labels must be a list of strings", path=source)
        if labels is not None and not 0 < len(labels) <= MAX_LABELS:
            raise EdgeExportError(
                f"{METADATA_NAME} metadata: {len(labels)} labels (expected 1 to {MAX_LABELS})", path=source
            )
        preprocessing = None
        if "preprocessing" in meta:
            if not isinstance(meta["preprocessing"], dict):
                raise EdgeExportError(f"{METADATA_NAME} metadata: preprocessing must be an object", path=source)
            try:
                preprocessing = Preprocessing.from_dict(meta["preprocessing"])
            except EdgeExportError as exc:
                raise EdgeExportError(
                    f"{METADATA_NAME} metadata: {exc.message}",
                    path=source,
                    hint="the model's metadata is damaged or not edge-export's: re-export the model",
                ) from None
        values: dict[str, Any] = {}
        for key in _TEXT_FIELDS:
            if meta.get(key) is not None:
                if not isinstance(meta[key], str):
                    raise EdgeExportError(
                        f"{METADATA_NAME} metadata: {key} {printable(repr(meta[key]), 80)} is not a string", path=source
                    )
                values[key] = meta[key]
        for key in _COUNT_FIELDS:
            value = meta.get(key)
            if value is not None:
                if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                    raise EdgeExportError(
                        f"{METADATA_NAME} metadata: {key} {printable(repr(value), 80)} is not a count", path=source
                    )
                values[key] = value
        if meta.get("qat") is not None:
            if not isinstance(meta["qat"], dict):
                raise EdgeExportError(f"{METADATA_NAME} metadata: qat must be an object", path=source)
            values["qat"] = meta["qat"]
        known = {f.name for f in fields(cls)} - {"extra"}
        return cls(
            labels=None if labels is None else tuple(labels),
            preprocessing=preprocessing,
            format_version=version,
            extra={k: v for k, v in meta.items() if k not in known},
            **values,
        )


def read_model_metadata(path: str | Path) -> ModelMetadata | None:
    """The model's ``edge_export`` metadata, checked, or None when it has none."""
    path = Path(path)
    if not path.is_file():
        raise EdgeExportError("model file not found", path=path, hint="check the path")
    suffix = path.suffix.lower()
    if suffix == ".tflite":
        text = read_tflite_metadata_text(path.read_bytes(), path)
    elif suffix == ".onnx":
        text = _read_onnx_metadata_text(path)
    else:
        raise EdgeExportError(f"unknown model format {path.suffix!r}", path=path, hint="use a .tflite or .onnx file")
    return parse_model_metadata(text, path)


def parse_model_metadata(text: str | bytes | None, path: str | Path | None = None) -> ModelMetadata | None:
    """Decode and check the JSON document (None stays None).

    The document comes from a model file made anywhere: bounded size and nesting, labels a list of at most
    ``MAX_LABELS`` strings (kept as stored: print them with ``untrusted.printable``), preprocessing
    checked value by value (finite mean, std clearly above zero, a sane size), each known field its type.
    """
    if text is None:
        return None
    if len(text) > MAX_METADATA_BYTES:
        raise EdgeExportError(
            f"{METADATA_NAME} metadata is {len(text)} bytes, over the {MAX_METADATA_BYTES} limit",
            path=path,
            hint="the model was not made by edge-export, or is damaged",
        )
    return ModelMetadata.from_dict(loads_json(text, what=f"{METADATA_NAME} metadata", source=path), source=path)


def read_metadata(path: str | Path) -> dict[str, Any] | None:
    """``read_model_metadata`` as its JSON document (a dict), or None when the model has none."""
    meta = read_model_metadata(path)
    return None if meta is None else meta.to_dict()


def parse_metadata(text: str | bytes | None, path: str | Path | None = None) -> dict[str, Any] | None:
    """``parse_model_metadata`` as its JSON document (a dict)."""
    meta = parse_model_metadata(text, path)
    return None if meta is None else meta.to_dict()


def _read_onnx_metadata_text(path: Path) -> str | None:
    """The metadata entry as ONNX Runtime reads it (the runtime never needs the onnx package)."""
    return load_backend(path).metadata_text()
