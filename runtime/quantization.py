"""Affine (de)quantization of model inputs and outputs: real = (q - zero_point) * scale."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from edge_export.core.errors import EdgeExportError
from edge_export.runtime.backends.base import TensorSpec


MIN_SCALE = 1e-8  # a real scale is ~1e-5..1; below this every input saturates (0 means "not quantized")


def check_quantization(spec: TensorSpec, what: str = "input", path: str | Path | None = None) -> None:
    """Scale and zero point as read from a model file: a finite scale, 0 or at least MIN_SCALE, and a zero
    point within the dtype's range; else a clear error naming the model."""
    if not spec.is_integer:
        return
    info = np.iinfo(spec.dtype)
    if (not math.isfinite(spec.scale) or spec.scale < 0 or 0 < spec.scale < MIN_SCALE
            or not info.min <= spec.zero_point <= info.max):
        raise EdgeExportError(
            f"the model's {what} quantization is degenerate (scale {spec.scale!r}, zero point {spec.zero_point!r})",
            path=path, hint="the model file is damaged or was quantized wrongly: re-export it",
        )


def quantize(x: np.ndarray, spec: TensorSpec) -> np.ndarray:
    """Real values -> the input's dtype: round(x / scale) + zero_point, clipped to the dtype's range."""
    if not spec.is_integer:
        return x.astype(spec.dtype, copy=False)
    if spec.is_quantized:
        x = np.round(x / np.float32(spec.scale)) + spec.zero_point
    else:
        x = np.round(x)
    info = np.iinfo(spec.dtype)
    return np.clip(x, info.min, info.max).astype(spec.dtype)


def dequantize(q: np.ndarray, spec: TensorSpec) -> np.ndarray:
    """Raw output -> float32 real values: (q - zero_point) * scale for quantized outputs."""
    if spec.is_quantized:
        return (q.astype(np.float32) - np.float32(spec.zero_point)) * np.float32(spec.scale)
    return q.astype(np.float32, copy=False)


def raw_pixel_mean_std(spec: TensorSpec) -> tuple[float, float]:
    """(mean, std) that make quantize(normalize(pixels)) feed the raw pixels (uint8) or pixels - 128 (int8).

    The usual convention for integer models without metadata (e.g. the Coral/TF Hub classifiers).
    """
    offset = 128 if spec.dtype == np.int8 else 0
    return float(spec.zero_point + offset), 1.0 / spec.scale
