"""Affine (de)quantization of model inputs and outputs: real = (q - zero_point) * scale."""

from __future__ import annotations

import numpy as np

from edge_export.runtime.tensors import TensorSpec, check_quantization

__all__ = ["check_quantization", "dequantize", "quantize", "raw_pixel_mean_std"]


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
