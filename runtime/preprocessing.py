"""Preprocessing at run time: the record (``core.records.preprocessing.Preprocessing``, re-exported here) applied
to pixels, and the cheap way from uint8 pixels to an integer model input."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from edge_export.core.records.preprocessing import (  # the record, where the runtime's readers look
    MAX_NORMALIZATION,
    MIN_STD,
    Preprocessing,
)
from edge_export.runtime.quantization import quantize
from edge_export.runtime.tensors import TensorSpec

__all__ = ["MAX_NORMALIZATION", "MIN_STD", "Preprocessing", "direct_input"]


def direct_input(prep: Preprocessing, spec: TensorSpec) -> Callable[[np.ndarray], np.ndarray] | None:
    """For an integer model input, the cheap way from uint8 pixels to it, with no float copy: the pixels as they
    are (uint8 0-255), shifted by 128 (int8, pixel - 128), else a lookup in a table of ``quantize(prep.normalize(
    v), spec)`` for every pixel value v of every channel, made once per model, so it is bit-identical to the
    float path. None for a float input (normalize applies)."""
    if not spec.is_integer:
        return None
    grid = np.repeat(np.arange(256, dtype=np.uint8)[:, np.newaxis], 3, axis=1)  # every value in every channel
    table = quantize(prep.normalize(grid), spec)  # 256 x 3, the input's dtype
    if table.dtype == np.uint8 and np.array_equal(table, grid):
        return _pixels_as_they_are
    if table.dtype == np.int8 and np.array_equal(table, grid.astype(np.int16) - 128):
        return _pixels_minus_128
    columns = [np.ascontiguousarray(table[:, c]) for c in range(3)]
    if all(np.array_equal(columns[0], column) for column in columns[1:]):
        return columns[0].take  # one table for the three channels: table[pixels]

    def per_channel(pixels: np.ndarray) -> np.ndarray:
        out = np.empty(pixels.shape, table.dtype)
        for c, column in enumerate(columns):
            out[..., c] = column.take(pixels[..., c])
        return out

    return per_channel


def _pixels_as_they_are(pixels: np.ndarray) -> np.ndarray:
    return pixels


def _pixels_minus_128(pixels: np.ndarray) -> np.ndarray:
    return (pixels ^ np.uint8(128)).view(np.int8)  # 0..255 -> -128..127 in one integer pass
