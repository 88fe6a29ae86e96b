"""Write standard TFLite Model Metadata (TFLite Support's schema: the ``TFLITE_METADATA`` entry, file
identifier ``M001``) into a TFLite model, so MediaPipe Tasks (``vision.ImageClassifier``), the Android
Task Library and LiteRT's metadata tools read our exports as they are.

What is written, as MediaPipe's image-classifier writer does it:
- the model: name, description, version, author, licence, and ``min_parser_version`` (computed with
  the rules of MediaPipe's ``metadata_version.cc``: the newest schema feature used; "1.0.0" here);
- the input: ``ImageProperties`` (RGB, default size), one ``NormalizationOptions`` with the model's
  mean/std in pixel units (edge-export models normalize inside, so mean 0 / std 1: the float input
  takes 0-255 pixels). Quantized inputs carry the same values as their float model (the schema's rule:
  normalize, then quantize with the tensor's parameters; MediaPipe feeds a uint8 input raw pixels);
  ``Stats``: the input's value range (0..255 mapped through normalization and quantization);
- the output: ``FeatureProperties``, its value range, and the labels as an associated file
  ``labels.txt`` of type ``TENSOR_AXIS_LABELS``, zipped (stored, not compressed: MediaPipe's reader
  refuses compressed entries) onto the end of the flatbuffer, as the standard populators do.

Bytes are reproducible: the zip has fixed timestamps and attributes. The reader is
``edge_export.runtime.tflite_metadata``; the flatbuffer plumbing (entries, alignment) is
``edge_export.export.metadata``.
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Sequence
from typing import Any

from edge_export.core.errors import EdgeExportError
from edge_export.runtime import tflite_metadata_schema_py_generated as fb
from edge_export.runtime.metadata import ModelMetadata
from edge_export.runtime.tflite_metadata import (
    LABELS_FILE,
    METADATA_IDENTIFIER,
    STANDARD_METADATA_NAME,
    associated_file_names,
    read_associated_file,
)

__all__ = [
    "STANDARD_METADATA_NAME",
    "LABELS_FILE",
    "standard_metadata",
    "min_parser_version",
    "append_zip",
    "carried_files",
    "describe_model",
    "model_identity",
]

ZIP_DATE = (1980, 1, 1, 0, 0, 0)  # the earliest a zip can hold: fixed, so exports are byte-reproducible

INPUT_NAME = "image"
OUTPUT_NAME = "probability"
LABELS_DESCRIPTION = "Labels for categories that the model can recognize."  # MediaPipe's writer's words


def describe_model(labels: Sequence[str], backbone: str | None, fmt: str | None, version: str | None) -> str:
    """The default model description: what it classifies, from what, made how."""
    shown = ", ".join(str(label) for label in labels[:8]) + (", ..." if len(labels) > 8 else "")
    parts = [f"Image classifier: the most likely of {len(labels)} classes ({shown}) for an RGB image."]
    made = [f"backbone {backbone}" if backbone else "", f"format {fmt}" if fmt else ""]
    made = [m for m in made if m]
    parts.append(f"Made by edge-export{' ' + version if version else ''}" + (f" ({', '.join(made)})." if made else "."))
    return " ".join(parts)


def model_identity(
    name: str | None,
    description: str | None,
    version: str | None,
    labels: Sequence[str],
    backbone: str | None,
    fmt: str | None,
    made_by: str | None,
) -> tuple[str, str, str]:
    """A model's name, description and version: the ones given (``export.metadata.*``), else the defaults. The
    one rule for the edge_export entry (``ExportContext.metadata``), TFLITE_METADATA and ONNX's convention keys."""
    return (
        name or f"{backbone or 'image'} classifier",
        description or describe_model(labels, backbone, fmt, made_by),
        version or made_by or "",
    )


def standard_metadata(model: Any, meta: ModelMetadata) -> tuple[bytes, dict[str, bytes]]:
    """The ``TFLITE_METADATA`` flatbuffer for ``model`` (the TFLite schema's ``ModelT``, as parsed by
    ``export.metadata``) and ``meta``, and the associated files to zip onto the model."""
    if not meta.labels:
        raise EdgeExportError("standard TFLite metadata needs the labels", hint="the metadata record has none")
    if meta.preprocessing is None:
        raise EdgeExportError("standard TFLite metadata needs the preprocessing (size, mean, std)")
    if any("\n" in label or "\r" in label for label in meta.labels):
        raise EdgeExportError(
            "a label contains a line break: the labels file has one label per line",
            hint="rename the class (its folder) without line breaks",
        )
    subgraphs = list(model.subgraphs or [])
    if len(subgraphs) != 1 or len(subgraphs[0].inputs) != 1 or len(subgraphs[0].outputs) != 1:
        raise EdgeExportError("standard TFLite metadata is written for models with one subgraph, one input, one output")
    graph = subgraphs[0]
    image, scores = graph.tensors[int(graph.inputs[0])], graph.tensors[int(graph.outputs[0])]
    prep = meta.preprocessing

    normalization = fb.ProcessUnitT()
    normalization.optionsType = fb.ProcessUnitOptions.NormalizationOptions
    normalization.options = fb.NormalizationOptionsT()
    normalization.options.mean = [float(v) for v in prep.mean]
    normalization.options.std = [float(v) for v in prep.std]
    properties = fb.ImagePropertiesT()
    properties.colorSpace = fb.ColorSpaceType.RGB
    properties.defaultSize = fb.ImageSizeT()
    properties.defaultSize.height, properties.defaultSize.width = (int(v) for v in prep.size)
    low = [(0.0 - m) / s for m, s in zip(prep.mean, prep.std)]
    high = [(255.0 - m) / s for m, s in zip(prep.mean, prep.std)]
    inp = _tensor(
        INPUT_NAME,
        _input_description(prep, image),
        fb.ContentProperties.ImageProperties,
        properties,
        _stats(image, low, high),
    )
    inp.processUnits = [normalization]

    labels = fb.AssociatedFileT()
    labels.name, labels.description, labels.type = (
        LABELS_FILE,
        LABELS_DESCRIPTION,
        fb.AssociatedFileType.TENSOR_AXIS_LABELS,
    )
    out = _tensor(
        OUTPUT_NAME,
        f"Probability of each of the {len(meta.labels)} classes, in the order of {LABELS_FILE}.",
        fb.ContentProperties.FeatureProperties,
        fb.FeaturePropertiesT(),
        _stats(scores, [0.0], [1.0]),
    )
    out.associatedFiles = [labels]

    subgraph = fb.SubGraphMetadataT()
    subgraph.inputTensorMetadata = [inp]
    subgraph.outputTensorMetadata = [out]
    root = fb.ModelMetadataT()
    root.name, root.description, root.version = model_identity(
        meta.name, meta.description, meta.version, meta.labels, meta.backbone, meta.format, meta.edge_export
    )
    root.author = meta.author or None
    root.license = meta.license or None
    root.subgraphMetadata = [subgraph]
    root.minParserVersion = min_parser_version(root)
    builder = _builder()
    builder.Finish(root.Pack(builder), file_identifier=METADATA_IDENTIFIER)
    text = "\n".join(meta.labels) + "\n"
    return bytes(builder.Output()), {LABELS_FILE: text.encode("utf-8")}


def _builder() -> Any:
    import flatbuffers  # lazy: not in the base install (it comes with ai-edge-litert / onnxruntime)

    return flatbuffers.Builder(1024)


def _tensor(name: str, description: str, kind: int, properties: Any, stats: Any) -> Any:
    tensor = fb.TensorMetadataT()
    tensor.name, tensor.description = name, description
    tensor.content = fb.ContentT()
    tensor.content.contentPropertiesType = kind
    tensor.content.contentProperties = properties
    tensor.stats = stats
    return tensor


def _input_description(prep: Any, tensor: Any) -> str:
    h, w = prep.size
    norm = (
        "pixel values 0-255"
        if prep.is_identity
        else (
            f"pixel values 0-255, normalized as (x - mean) / std with mean {list(prep.mean)} and std {list(prep.std)}"
        )
    )
    kind = _DTYPES.get(int(tensor.type), "?")
    if int(tensor.type) in _INTEGER_RANGES:  # normalization and quantization cancel out (the schema's example)
        lo, hi = _INTEGER_RANGES[int(tensor.type)]
        return f"RGB image, {h}x{w}, {kind} tensor: pixel values {'0..255' if lo == 0 else 'minus 128 (-128..127)'}."
    return f"RGB image, {h}x{w}, {norm} ({kind} tensor)."


_DTYPES = {0: "float32", 1: "float16", 3: "uint8", 9: "int8"}
_INTEGER_RANGES = {3: (0, 255), 9: (-128, 127)}


def _stats(tensor: Any, low: list[float], high: list[float]) -> Any:
    """The tensor's value range: ``low``..``high`` for a float tensor; the integer type's range for a
    quantized one (0..255 for uint8, as MediaPipe's writer puts it; -128..127 for int8): what a client
    feeds it, the normalization and the quantization cancelling out (the schema's own example)."""
    stats = fb.StatsT()
    kind = int(tensor.type)
    if kind in _INTEGER_RANGES:
        lo, hi = _INTEGER_RANGES[kind]
        low, high = [float(lo)], [float(hi)]
    elif kind not in _DTYPES:
        return None
    stats.min, stats.max = [float(v) for v in low], [float(v) for v in high]
    return stats


def min_parser_version(meta: Any) -> str:
    """The oldest metadata parser that understands every field of ``meta`` (a ``ModelMetadataT``):
    MediaPipe's ``metadata_version.cc`` rules, on the object API."""
    version = (1, 0, 0)

    def bump(v: tuple[int, int, int]) -> None:
        nonlocal version
        version = max(version, v)

    def files(entries: Any) -> None:
        for f in entries or []:
            if f.type == fb.AssociatedFileType.VOCABULARY:
                bump((1, 0, 1))
            if f.type == fb.AssociatedFileType.SCANN_INDEX_FILE:
                bump((1, 4, 0))
            if f.version is not None:
                bump((1, 4, 1))

    def units(entries: Any) -> None:
        for u in entries or []:
            if u.optionsType in (
                fb.ProcessUnitOptions.BertTokenizerOptions,
                fb.ProcessUnitOptions.SentencePieceTokenizerOptions,
            ):
                bump((1, 1, 0))
            if u.optionsType == fb.ProcessUnitOptions.RegexTokenizerOptions:
                bump((1, 2, 1))

    for subgraph in meta.subgraphMetadata or []:
        for tensor in [*(subgraph.inputTensorMetadata or []), *(subgraph.outputTensorMetadata or [])]:
            files(tensor.associatedFiles)
            units(tensor.processUnits)
            if (
                tensor.content is not None
                and tensor.content.contentPropertiesType == fb.ContentProperties.AudioProperties
            ):
                bump((1, 3, 0))
        files(subgraph.associatedFiles)
        for present, v in (
            (subgraph.inputProcessUnits, (1, 1, 0)),
            (subgraph.outputProcessUnits, (1, 1, 0)),
            (subgraph.inputTensorGroups, (1, 2, 0)),
            (subgraph.outputTensorGroups, (1, 2, 0)),
            (subgraph.customMetadata, (1, 5, 0)),
        ):
            if present is not None:
                bump(v)
        units(subgraph.inputProcessUnits)
        units(subgraph.outputProcessUnits)
    files(meta.associatedFiles)
    return ".".join(str(n) for n in version)


def append_zip(model: bytes, files: dict[str, bytes]) -> bytes:
    """``model`` with ``files`` zipped onto its end (stored, fixed dates: the same bytes every time).
    Offsets in the zip count from the start of the model, as the standard populators write them."""
    if not files:
        return model
    out = io.BytesIO()
    out.write(model)
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_STORED) as archive:
        for name in sorted(files):
            info = zipfile.ZipInfo(name, date_time=ZIP_DATE)
            info.compress_type = zipfile.ZIP_STORED
            info.create_system = 3
            info.external_attr = 0o644 << 16
            archive.writestr(info, files[name])
    return out.getvalue()


def carried_files(model: bytes) -> dict[str, bytes]:
    """The associated files already zipped onto ``model`` (kept when only the edge_export entry changes)."""
    return {name: read_associated_file(model, name) for name in associated_file_names(model)}
