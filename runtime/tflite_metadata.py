"""Standard TFLite Model Metadata, read TF-free: the ``TFLITE_METADATA`` entry of a .tflite file
(TFLite Support's ``metadata_schema.fbs``, file identifier ``M001``) and the associated files zipped
onto the end of the model, as MediaPipe Tasks and the Android Task Library read them.

What the runtime takes from it (``StandardMetadata``): the labels (the output tensor's first
``TENSOR_AXIS_LABELS`` file), the normalization (the input tensor's ``NormalizationOptions``: applied
to 0-255 RGB pixels, then quantized with the input tensor's own parameters, as the schema says for
quantized models), the image's colour space and default size, and the descriptive fields (name,
description, version, author, licence). The input size and quantization come from the model's tensors.

The file may come from anywhere: every vector is bounded before it is walked, only the first subgraph,
input and output are read, the zip's central directory is checked before Python's zipfile reads it,
the labels file is read with a size limit (a zip bomb stops there), and any damage is an
``EdgeExportError`` naming the file. The writer is ``edge_export.export.tflite_metadata``.
"""

from __future__ import annotations

import dataclasses
import io
import math
import struct
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge_export.core.errors import EdgeExportError
from edge_export.core.untrusted import printable
from edge_export.runtime.metadata import MAX_LABELS, MAX_METADATA_BYTES, label_lines, tflite_metadata_buffer

STANDARD_METADATA_NAME = "TFLITE_METADATA"  # the model's metadata entry (MediaPipe's kMetadataBufferName)
METADATA_IDENTIFIER = b"M001"  # the schema's file_identifier
SCHEMA_VERSION = "1.5.0"  # the vendored schema's semantic version (tflite_metadata_schema.fbs)
LABELS_FILE = "labels.txt"  # the name the standard writers give the labels file

MAX_VECTOR = 64  # process units or associated files of one tensor: real models have 1 or 2
MAX_ZIP_ENTRIES = 1024
MAX_ZIP_DIRECTORY = 4 * 1024 * 1024
MAX_TEXT = 64 * 1024  # name, description, ... (characters kept)

_COLOR_SPACES = {0: "UNKNOWN", 1: "RGB", 2: "GRAYSCALE"}
_HINT = "the model's TFLITE_METADATA is damaged: write it again (edge-export export), or pass --labels/--mean/--std"


@dataclass(frozen=True)
class StandardMetadata:
    """What a model's standard metadata says (None: not given)."""

    name: str | None = None
    description: str | None = None
    version: str | None = None
    author: str | None = None
    license: str | None = None
    min_parser_version: str | None = None
    input_content: str | None = None  # "ImageProperties", "FeatureProperties", ... (None: no content)
    color_space: str | None = None  # RGB | GRAYSCALE | UNKNOWN (ImageProperties only)
    default_size: tuple[int, int] | None = None  # (height, width) of ImageProperties.default_size
    mean: tuple[float, float, float] | None = None  # NormalizationOptions, one value per channel
    std: tuple[float, float, float] | None = None
    labels_file: str | None = None  # the output's first TENSOR_AXIS_LABELS file
    labels: tuple[str, ...] | None = None  # its lines (None when not read)

    @property
    def has_normalization(self) -> bool:
        return self.mean is not None and self.std is not None

    def to_dict(self) -> dict[str, Any]:
        d = {k: v for k, v in self.__dict__.items() if v is not None}
        for key in ("default_size", "mean", "std", "labels"):
            if key in d:
                d[key] = list(d[key])
        return d


def read_standard_metadata(path: str | Path, *, labels: bool = True) -> StandardMetadata | None:
    """The standard metadata of the .tflite file at ``path``, or None when it has none."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise EdgeExportError(f"cannot read the model ({exc.strerror or exc})", path=path) from None
    return parse_standard_metadata(data, path, labels=labels)


def parse_standard_metadata(
    data: bytes, path: str | Path | None = None, *, labels: bool = True
) -> StandardMetadata | None:
    """The standard metadata of the model ``data`` (a whole .tflite file, its zip included), or None.

    ``labels``: also read the labels file from the model's zip (skip it when the caller has labels).
    """
    buffer = tflite_metadata_buffer(data, STANDARD_METADATA_NAME, path)
    if buffer is None:
        return None
    if len(buffer) > MAX_METADATA_BYTES:
        raise EdgeExportError(
            f"{STANDARD_METADATA_NAME} is {len(buffer)} bytes, over the {MAX_METADATA_BYTES} limit",
            path=path,
            hint=_HINT,
        )
    if len(buffer) < 8 or buffer[4:8] != METADATA_IDENTIFIER:
        raise EdgeExportError(
            f"{STANDARD_METADATA_NAME} is not TFLite Model Metadata "
            f"(file identifier {printable(repr(bytes(buffer[4:8])), 40)}, "
            f"expected {METADATA_IDENTIFIER.decode()})",
            path=path,
            hint=_HINT,
        )
    try:
        meta = _parse(buffer)
    except EdgeExportError as exc:
        raise EdgeExportError(f"{STANDARD_METADATA_NAME}: {exc.message}", path=path, hint=exc.hint or _HINT) from None
    except (struct.error, IndexError, ValueError, TypeError, OverflowError, AttributeError, RecursionError) as exc:
        raise EdgeExportError(
            f"{STANDARD_METADATA_NAME} is damaged ({type(exc).__name__}: {printable(str(exc), 200)})",
            path=path,
            hint=_HINT,
        ) from None
    if labels and meta.labels_file is not None:
        text = read_associated_file(data, meta.labels_file, path)
        meta = _replace(meta, labels=tuple(parse_labels(text, meta.labels_file, path)))
    return meta


def _replace(meta: StandardMetadata, **values: Any) -> StandardMetadata:
    return dataclasses.replace(meta, **values)


def _parse(buffer: bytes) -> StandardMetadata:
    # lazy: the generated schema imports flatbuffers (not in the base install); only standard metadata needs it
    from edge_export.runtime import tflite_metadata_schema_py_generated as fb

    root = fb.ModelMetadata.GetRootAs(buffer, 0)  # type: ignore[no-untyped-call]  # flatc's code has no types
    values: dict[str, Any] = {
        "name": _text(root.Name()),
        "description": _text(root.Description()),
        "version": _text(root.Version()),
        "author": _text(root.Author()),
        "license": _text(root.License()),
        "min_parser_version": _text(root.MinParserVersion()),
    }
    _check_parser_version(values["min_parser_version"])
    if _length(root.SubgraphMetadataLength(), "subgraph_metadata", limit=None) == 0:
        return StandardMetadata(**values)
    subgraph = root.SubgraphMetadata(0)
    if _length(subgraph.InputTensorMetadataLength(), "input_tensor_metadata", limit=None):
        values.update(_input(fb, subgraph.InputTensorMetadata(0)))
    if _length(subgraph.OutputTensorMetadataLength(), "output_tensor_metadata", limit=None):
        values["labels_file"] = _labels_file(fb, subgraph.OutputTensorMetadata(0))
    return StandardMetadata(**values)


def _input(fb: Any, tensor: Any) -> dict[str, Any]:
    values: dict[str, Any] = {}
    content = tensor.Content()
    kind = content.ContentPropertiesType() if content is not None else fb.ContentProperties.NONE
    if kind != fb.ContentProperties.NONE:
        names = {v: k for k, v in vars(fb.ContentProperties).items() if not k.startswith("_")}
        values["input_content"] = names.get(kind, f"unknown ({kind})")
    if kind == fb.ContentProperties.ImageProperties:
        table = content.ContentProperties()
        if table is not None:
            image = fb.ImageProperties()
            image.Init(table.Bytes, table.Pos)
            values["color_space"] = _COLOR_SPACES.get(image.ColorSpace(), f"unknown ({image.ColorSpace()})")
            size = image.DefaultSize()
            if size is not None and size.Width() and size.Height():
                values["default_size"] = (int(size.Height()), int(size.Width()))
    normalization = None
    for i in range(_length(tensor.ProcessUnitsLength(), "input process_units")):
        unit = tensor.ProcessUnits(i)
        if unit.OptionsType() != fb.ProcessUnitOptions.NormalizationOptions:
            continue
        if normalization is not None:
            raise EdgeExportError("the input has more than one NormalizationOptions (the standard allows one)")
        table = unit.Options()
        if table is None:
            raise EdgeExportError("the input's NormalizationOptions has no values")
        normalization = fb.NormalizationOptions()
        normalization.Init(table.Bytes, table.Pos)
    if normalization is not None:
        values["mean"] = _channels(normalization.Mean, normalization.MeanLength(), "mean")
        values["std"] = _channels(normalization.Std, normalization.StdLength(), "std")
    return values


def _labels_file(fb: Any, tensor: Any) -> str | None:
    """The name of the output's first TENSOR_AXIS_LABELS file (the schema: "the first one is used by default")."""
    for i in range(_length(tensor.AssociatedFilesLength(), "output associated_files")):
        entry = tensor.AssociatedFiles(i)
        if entry.Type() == fb.AssociatedFileType.TENSOR_AXIS_LABELS:
            name = _text(entry.Name())
            if not name:
                raise EdgeExportError("the output's TENSOR_AXIS_LABELS file has no name")
            return name
    return None


def _channels(get: Any, count: int, what: str) -> tuple[float, float, float]:
    """1 value (for every channel) or 3 (R, G, B), finite, as MediaPipe accepts them."""
    if count not in (1, 3):
        raise EdgeExportError(f"NormalizationOptions {what} has {count} values (expected 1 or 3)")
    values = tuple(float(get(i)) for i in range(count))
    if not all(math.isfinite(v) for v in values):
        raise EdgeExportError(f"NormalizationOptions {what} {printable(values, 80)} is not finite")
    return values * 3 if count == 1 else values  # type: ignore[return-value]


def _length(count: int, what: str, limit: int | None = MAX_VECTOR) -> int:
    if count < 0 or (limit is not None and count > limit):
        raise EdgeExportError(f"{what} has {count} entries (at most {limit} are read)")
    return count


def _text(value: bytes | None) -> str | None:
    if value is None:
        return None
    return bytes(value[: 4 * MAX_TEXT]).decode("utf-8", "replace")[:MAX_TEXT]


def _check_parser_version(version: str | None) -> None:
    """Minor versions only add fields (the schema's rules): a newer major version is refused."""
    if version is None:
        return
    parts = version.split(".")
    if not 1 <= len(parts) <= 3 or not all(p.isdigit() and len(p) <= 6 for p in parts):
        raise EdgeExportError(f"min_parser_version {printable(repr(version), 40)} is not a version number")
    if int(parts[0]) > int(SCHEMA_VERSION.split(".")[0]):
        raise EdgeExportError(
            f"the metadata needs a parser of version {printable(version, 40)}; "
            f"this runtime reads schema {SCHEMA_VERSION}",
            hint="upgrade edge-export, or pass --labels/--mean/--std",
        )


# ------------------------------------------------------------------------------------ associated files


def read_associated_file(
    data: bytes, name: str, path: str | Path | None = None, limit: int = MAX_METADATA_BYTES
) -> bytes:
    """The file ``name`` from the zip appended to the model ``data`` (at most ``limit`` bytes)."""
    where = f"associated file {printable(repr(name), 120)}"
    try:
        with _open_zip(data, path) as archive:
            try:
                info = archive.getinfo(name)
            except KeyError:
                raise EdgeExportError(
                    f"the metadata names {where} but the model's zip has no such file", path=path, hint=_HINT
                ) from None
            if info.file_size > limit:
                raise EdgeExportError(
                    f"{where} is {info.file_size} bytes, over the {limit} limit", path=path, hint=_HINT
                )
            if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
                raise EdgeExportError(
                    f"{where} uses zip compression method {info.compress_type} (stored or deflated expected)",
                    path=path,
                    hint=_HINT,
                )
            with archive.open(info) as f:
                blob = f.read(limit + 1)  # a zip bomb stops here, whatever its header says
    except EdgeExportError:
        raise
    except (
        zipfile.BadZipFile,
        zipfile.LargeZipFile,
        NotImplementedError,
        RuntimeError,
        EOFError,
        OSError,
        ValueError,
        zlib.error,
        struct.error,
        OverflowError,
    ) as exc:
        raise EdgeExportError(
            f"cannot read {where} from the model's zip ({type(exc).__name__}: {printable(str(exc), 200)})",
            path=path,
            hint=_HINT,
        ) from None
    if len(blob) > limit:
        raise EdgeExportError(f"{where} is over the {limit} bytes limit", path=path, hint=_HINT)
    return blob


def associated_file_names(data: bytes, path: str | Path | None = None) -> list[str]:
    """The names in the zip appended to the model (empty when there is none)."""
    if _end_of_directory(data) is None:
        return []
    try:
        with _open_zip(data, path) as archive:
            return archive.namelist()
    except EdgeExportError:
        raise
    except (
        zipfile.BadZipFile,
        zipfile.LargeZipFile,
        NotImplementedError,
        RuntimeError,
        EOFError,
        OSError,
        ValueError,
        struct.error,
        OverflowError,
    ) as exc:
        raise EdgeExportError(
            f"the model's zip of associated files is damaged ({type(exc).__name__})", path=path, hint=_HINT
        ) from None


def _end_of_directory(data: bytes) -> int | None:
    """Where the zip's end-of-central-directory record starts (None: the model has no zip)."""
    start = max(0, len(data) - (22 + 0xFFFF))
    position = bytes(data[start:]).rfind(b"PK\x05\x06")
    return None if position < 0 or start + position + 22 > len(data) else start + position


def _open_zip(data: bytes, path: str | Path | None) -> zipfile.ZipFile:
    """The model's zip, after checking the sizes its end record declares (Python's zipfile would read a
    central directory of any size into memory)."""
    end = _end_of_directory(data)
    if end is None:
        raise EdgeExportError(
            "the metadata names associated files but the model has no zip of them", path=path, hint=_HINT
        )
    entries, directory_size = struct.unpack_from("<HI", data, end + 10)
    if entries == 0xFFFF or directory_size == 0xFFFFFFFF:
        raise EdgeExportError(
            "the model's zip of associated files is a ZIP64 archive (not needed for labels; refused)",
            path=path,
            hint=_HINT,
        )
    if entries > MAX_ZIP_ENTRIES or directory_size > MAX_ZIP_DIRECTORY:
        raise EdgeExportError(
            f"the model's zip declares {entries} files in a {directory_size}-byte directory "
            f"(at most {MAX_ZIP_ENTRIES} files are read)",
            path=path,
            hint=_HINT,
        )
    return zipfile.ZipFile(io.BytesIO(data))


def parse_labels(blob: bytes, name: str = LABELS_FILE, path: str | Path | None = None) -> list[str]:
    """A labels file: one label per line, UTF-8; surrounding spaces and trailing blank lines dropped."""
    try:
        lines = label_lines(blob.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise EdgeExportError(
            f"labels file {printable(repr(name), 120)} is not UTF-8 text ({exc.reason})", path=path, hint=_HINT
        ) from None
    if not 0 < len(lines) <= MAX_LABELS:
        raise EdgeExportError(
            f"labels file {printable(repr(name), 120)} has {len(lines)} labels (expected 1 to {MAX_LABELS})",
            path=path,
            hint=_HINT,
        )
    return lines
