"""The format registry: every export target by name, with its family, precision, file suffix and converter.

Adding a format is one entry here plus a converter ``convert(ctx, fmt, out_path)`` in its family's module.
Converters are imported only when their format runs, so listing formats stays cheap.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from edge_export.core.errors import EdgeExportError


@dataclass(frozen=True)
class FormatSpec:
    name: str
    family: str  # "tflite" | "onnx": the runtime that loads it
    precision: str  # "fp32", "fp16", "dynamic-int8" (int8 weights, float activations), "int8"
    suffix: str
    converter: str  # "module:function" with signature (ctx, fmt, out_path) -> dict | None (extra manifest info)
    description: str
    integer_io: bool = False  # input/output are integer tensors (export.int8_io applies)
    # rebuilds the model from its architecture (model_spec.json) in tf_keras: only for models edge-export built
    rebuilds_model: bool = False
    # converts the run's Keras model (TFLite, QAT): not for an imported ONNX model, whose run holds model.onnx;
    # the ONNX formats start from either (tf2onnx from Keras, or the ONNX graph as given)
    needs_keras: bool = True

    @property
    def filename(self) -> str:
        return f"{self.name}{self.suffix}"


_TFLITE, _ONNX, _QAT = "edge_export.export.tflite", "edge_export.export.onnx", "edge_export.export.qat"

# Order is the order they run in: quick ones first, quantization-aware training (minutes) last.
FORMATS: dict[str, FormatSpec] = {
    f.name: f
    for f in (
        FormatSpec("tflite-fp32", "tflite", "fp32", ".tflite", f"{_TFLITE}:convert_fp32", "float32 TFLite"),
        FormatSpec(
            "tflite-fp16", "tflite", "fp16", ".tflite", f"{_TFLITE}:convert_fp16", "float16 weights, float32 compute"
        ),
        FormatSpec(
            "tflite-dynamic",
            "tflite",
            "dynamic-int8",
            ".tflite",
            f"{_TFLITE}:convert_dynamic",
            "dynamic range: int8 weights, float activations",
        ),
        FormatSpec(
            "tflite-int8",
            "tflite",
            "int8",
            ".tflite",
            f"{_TFLITE}:convert_int8",
            "full-integer post-training quantization, calibrated on training images",
            integer_io=True,
        ),
        FormatSpec(
            "onnx-fp32", "onnx", "fp32", ".onnx", f"{_ONNX}:convert_fp32", "float32 ONNX (tf2onnx)", needs_keras=False
        ),
        FormatSpec(
            "onnx-int8",
            "onnx",
            "int8",
            ".onnx",
            f"{_ONNX}:convert_int8",
            "ONNX Runtime static quantization (QDQ), calibrated on training images",
            needs_keras=False,
        ),
        FormatSpec(
            "tflite-qat-int8",
            "tflite",
            "int8",
            ".tflite",
            f"{_QAT}:convert_qat_int8",
            "quantization-aware training (tfmot), then full-integer conversion",
            integer_io=True,
            rebuilds_model=True,
        ),
    )
}
FAMILIES = tuple(dict.fromkeys(f.family for f in FORMATS.values()))


def get_format(name: str) -> FormatSpec:
    try:
        return FORMATS[name]
    except KeyError:
        raise EdgeExportError(
            f"unknown export format {name!r}",
            hint=f"use all, a family ({', '.join(FAMILIES)}) or: {', '.join(FORMATS)}",
        ) from None


# ``NAME:auto``: the format runs only when its rule says it pays (export/exporter.py). Only quantization-aware
# training has one: it runs when post-training tflite-int8 loses more than export.qat.trigger_points.
AUTO = ":auto"
AUTO_FORMATS = ("tflite-qat-int8",)


def _parts(requested: Iterable[str] | str | None) -> list[tuple[str, bool]]:
    """(name, family or ``all``; True when spelled ``NAME:auto``), split at commas."""
    if requested is None:
        requested = ["all"]
    if isinstance(requested, str):
        requested = [requested]
    parts = []
    for item in requested:
        for part in str(item).split(","):
            part = part.strip()
            if part.endswith(AUTO):
                name = get_format(part[: -len(AUTO)].strip()).name
                if name not in AUTO_FORMATS:
                    raise EdgeExportError(
                        f"export format {part!r}: {name} has no auto mode",
                        hint=f"only {', '.join(a + AUTO for a in AUTO_FORMATS)} has one; name {name} plainly",
                    )
                parts.append((name, True))
            elif part:
                parts.append((part, False))
    return parts


def resolve_formats(requested: Iterable[str] | str | None) -> list[FormatSpec]:
    """Names, families (``tflite``, ``onnx``), ``all`` or ``NAME:auto`` -> format specs in registry order, no
    duplicates (whether an auto one runs is decided during the export: ``auto_formats``)."""
    names: set[str] = set()
    for part, _ in _parts(requested):
        if part == "all":
            names.update(FORMATS)
        elif part in FAMILIES:
            names.update(n for n, f in FORMATS.items() if f.family == part)
        else:
            names.add(get_format(part).name)
    if not names:
        raise EdgeExportError("no export formats requested", hint=f"use --formats all or some of: {', '.join(FORMATS)}")
    return [f for n, f in FORMATS.items() if n in names]


def auto_formats(requested: Iterable[str] | str | None) -> set[str]:
    """The formats requested only as ``NAME:auto`` (named plainly, by family or by ``all`` too: they always run)."""
    parts = _parts(requested)
    plain = [name for name, is_auto in parts if not is_auto]
    return {name for name, is_auto in parts if is_auto} - ({f.name for f in resolve_formats(plain)} if plain else set())
