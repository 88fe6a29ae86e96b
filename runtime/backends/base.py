"""The one interface every runtime backend implements: load a model file, describe its tensors, run it."""

from __future__ import annotations

import abc
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from edge_export.runtime.tensors import TensorSpec, check_quantization, check_shape

__all__ = ["Backend", "TensorSpec", "check_shape"]  # TensorSpec and check_shape: where every backend looks


class Backend(abc.ABC):
    """A loaded model. ``run`` takes and returns raw arrays (already quantized, not dequantized)."""

    name: str = ""

    def __init__(self, path: Path, input_spec: TensorSpec, output_spec: TensorSpec) -> None:
        for what, spec in (("input", input_spec), ("output", output_spec)):
            check_shape(spec.shape, what, path)
            check_quantization(spec, what, path)
        self.path = path
        self.input_spec = input_spec
        self.output_spec = output_spec

    @classmethod
    @abc.abstractmethod
    def load(cls, path: str | Path, threads: int | None = None, providers: Sequence[str] | None = None) -> Backend:
        """Open ``path``; raise EdgeExportError naming it when it is missing or not a valid model."""

    @abc.abstractmethod
    def run(self, array: np.ndarray) -> np.ndarray:
        """One batch in (input dtype, NHWC), the raw first output out."""

    @abc.abstractmethod
    def metadata_text(self) -> str | None:
        """The ``edge_export`` metadata JSON embedded in the model, or None."""

    def _run_one_by_one(self, array: np.ndarray, run_fixed: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
        """For models whose batch dimension is fixed at 1: run each sample and stack."""
        return np.concatenate([run_fixed(array[i : i + 1]) for i in range(array.shape[0])], axis=0)
