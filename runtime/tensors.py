"""A model's input or output tensor as a file declares it (``TensorSpec``), and the checks every backend applies
to what a model file says about its tensors before anything is allocated: a shape no image classifier has, a
degenerate quantization."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge_export.core.errors import EdgeExportError
from edge_export.core.records.preprocessing import MAX_INPUT_SIDE  # the one limit of an image side

# What a model file may declare for its input before anything is allocated: an image side (pixels) and
# the elements of one input tensor (2**28 float32 = 1 GiB). Real classifiers are far below both.
MAX_TENSOR_ELEMENTS = 2**28


@dataclass(frozen=True)
class TensorSpec:
    """A model input or output: shape (None for dynamic dims), dtype and affine quantization."""

    name: str
    shape: tuple[int | None, ...]
    dtype: np.dtype
    scale: float = 0.0
    zero_point: int = 0

    @property
    def is_integer(self) -> bool:
        return np.issubdtype(self.dtype, np.integer)

    @property
    def is_quantized(self) -> bool:
        return self.is_integer and self.scale > 0


def check_shape(shape: Sequence[int | None], what: str, path: Path | str | None) -> None:
    """Refuse a tensor shape from a model file that no image classifier has, before anything is allocated."""
    known = [int(d) for d in shape if d is not None]
    elements = 1
    for d in known:
        elements *= max(d, 1)
    sides = list(shape[1:3]) if what == "input" and len(shape) == 4 else []
    if (
        any(d < 0 for d in known)
        or elements > MAX_TENSOR_ELEMENTS
        or any(s is not None and s > MAX_INPUT_SIDE for s in sides)
    ):
        text = "x".join("?" if d is None else str(d) for d in shape)
        raise EdgeExportError(
            f"the model's {what} shape {text} is too large for an image classifier "
            f"(limits: {MAX_TENSOR_ELEMENTS} elements, {MAX_INPUT_SIDE} pixels a side)",
            path=path,
            hint="check the model file: it is damaged, or not an image classifier",
        )


MIN_SCALE = 1e-8  # a real scale is ~1e-5..1; below this every input saturates (0 means "not quantized")


def check_quantization(spec: TensorSpec, what: str = "input", path: str | Path | None = None) -> None:
    """Scale and zero point as read from a model file: a finite scale, 0 or at least MIN_SCALE, and a zero
    point within the dtype's range; else a clear error naming the model."""
    if not spec.is_integer:
        return
    info = np.iinfo(spec.dtype)
    if (
        not math.isfinite(spec.scale)
        or spec.scale < 0
        or 0 < spec.scale < MIN_SCALE
        or not info.min <= spec.zero_point <= info.max
    ):
        raise EdgeExportError(
            f"the model's {what} quantization is degenerate (scale {spec.scale!r}, zero point {spec.zero_point!r})",
            path=path,
            hint="the model file is damaged or was quantized wrongly: re-export it",
        )
