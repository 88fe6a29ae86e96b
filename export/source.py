"""What a converter is given: one small interface, whoever holds the model.

A converter (``convert(source, fmt, out_path)`` in export/tflite.py and export/onnx.py) needs a Keras model that
takes RGB pixels 0-255 and returns probabilities (or, for the ONNX formats, an ONNX graph with that contract: an
imported ONNX model), the preprocessing record of its input, calibration photos,
a work folder and the metadata to embed, and, for a choice made during conversion (int8 bias correction),
a copy of the model to change and validation photos to judge by. Three holders provide it:

- ``export.context.ExportContext``: a run folder (a model edge-export trained, or a user's model imported
  into one: export/import_model.py);
- ``tuning.latency.RandomWeightExport``: a random-weight model the tune times (no photos: no choices);
- tests, with anything that has these members.

Quantization-aware training (export/qat.py) retrains the model and needs its run folder: it is the one
format that asks for more (``FormatSpec.rebuilds_model``).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from edge_export.core.config import ExportConfig
from edge_export.core.records.preprocessing import Preprocessing
from edge_export.runtime.metadata import ModelMetadata


@runtime_checkable
class ConversionSource(Protocol):
    preprocessing: Preprocessing  # the one record of the model's input, embedded in every artifact
    config: ExportConfig  # export settings (int8_io, onnx_opset, int8_bias_correction ...)

    @property
    def model(self) -> Any: ...  # keras.Model: N x S x S x 3 pixels 0-255 in, N x C probabilities out

    @property
    def workdir(self) -> Path: ...  # a temporary folder of this export, removed at its end

    @property
    def input_shape(self) -> tuple[None, int, int, int]: ...

    def memo(self, key: str, make: Callable[[], Any]) -> Any: ...  # make() once per export (the SavedModel)

    def representative(self) -> np.ndarray: ...  # uint8 calibration photos N x S x S x 3

    def metadata(
        self,
        fmt: Any,
        *,
        opset: int | None = None,
        calibration_images: int | None = None,
        qat: dict[str, Any] | None = None,
    ) -> ModelMetadata: ...

    def model_copy(self) -> Any | None: ...  # a fresh copy of the model to change, or None: no changes

    def judging_photos(self) -> tuple[np.ndarray, np.ndarray] | None: ...  # (pixels, model's probabilities)

    def onnx_graph(self) -> Any | None: ...  # an imported ONNX model's graph (ONNX formats start from it), or None
