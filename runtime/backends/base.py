"""The one interface every runtime backend implements: load a model file, describe its tensors, run it."""

from __future__ import annotations

import abc
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

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
    shape: tuple[Optional[int], ...]
    dtype: np.dtype
    scale: float = 0.0
    zero_point: int = 0

    @property
    def is_integer(self) -> bool:
        return np.issubdtype(self.dtype, np.integer)

    @property
    def is_quantized(self) -> bool:
        return self.is_integer and self.scale > 0


class Backend(abc.ABC):
    """A loaded model. ``run`` takes and returns raw arrays (already quantized, not dequantized)."""

    name: str = ""

    def __init__(self, path: Path, input_spec: TensorSpec, output_spec: TensorSpec):
        from edge_export.runtime.quantization import check_quantization

        for what, spec in (("input", input_spec), ("output", output_spec)):
            check_shape(spec.shape, what, path)
            check_quantization(spec, what, path)
        self.path = path
        self.input_spec = input_spec
        self.output_spec = output_spec

    @classmethod
    @abc.abstractmethod
    def load(
        cls, path: str | Path, threads: int | None = None, providers: Sequence[str] | None = None
    ) -> "Backend":
        """Open ``path``; raise EdgeExportError naming it when it is missing or not a valid model."""

    @abc.abstractmethod
    def run(self, array: np.ndarray) -> np.ndarray:
        """One batch in (input dtype, NHWC), the raw first output out."""

    @abc.abstractmethod
    def metadata_text(self) -> str | None:
        """The ``edge_export`` metadata JSON embedded in the model, or None."""

    def _run_one_by_one(self, array: np.ndarray, run_fixed) -> np.ndarray:
        """For models whose batch dimension is fixed at 1: run each sample and stack."""
        return np.concatenate([run_fixed(array[i : i + 1]) for i in range(array.shape[0])], axis=0)


def check_shape(shape: Sequence[Optional[int]], what: str, path: Path | str | None) -> None:
    """Refuse a tensor shape from a model file that no image classifier has, before anything is allocated."""
    known = [int(d) for d in shape if d is not None]
    elements = 1
    for d in known:
        elements *= max(d, 1)
    sides = list(shape[1:3]) if what == "input" and len(shape) == 4 else []
    if any(d < 0 for d in known) or elements > MAX_TENSOR_ELEMENTS or any(s is not None and s > MAX_INPUT_SIDE for s in sides):
        text = "x".join("?" if d is None else str(d) for d in shape)
        raise EdgeExportError(
            f"the model's {what} shape {text} is too large for an image classifier "
            f"(limits: {MAX_TENSOR_ELEMENTS} elements, {MAX_INPUT_SIDE} pixels a side)",
            path=path, hint="check the model file: it is damaged, or not an image classifier",
        )
