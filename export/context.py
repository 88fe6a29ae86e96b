"""What every converter shares during one export: the run, the loaded Keras model, the data, a work folder.

Expensive things (the SavedModel, decoded images, the ONNX graph) are made once, on first use.
"""

from __future__ import annotations

import importlib
import shutil
import tempfile
from collections.abc import Callable
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from edge_export.core import __version__
from edge_export.core.config import Config, ExportConfig
from edge_export.core.echo import Echo
from edge_export.core.errors import EdgeExportError
from edge_export.core.records.model_spec import ModelSpec
from edge_export.core.records.preprocessing import Preprocessing
from edge_export.core.run_folder import RunFolder, RunRecord
from edge_export.core.tf_env import import_keras
from edge_export.export.data import Images, load_images, open_dataset, representative_pixels, sample
from edge_export.export.formats import FormatSpec
from edge_export.export.layout import ExportFolder
from edge_export.export.parity import keras_probabilities, onnx_probabilities
from edge_export.export.source import ConversionSource
from edge_export.export.tflite_metadata import model_identity
from edge_export.runtime.metadata import ModelMetadata

# A format's converter: ``convert(ctx, fmt, out_path)`` -> extra manifest details (or None)
# (an ExportContext for every format; tune hands the TFLite converters its random-weight model, a ConversionSource)
Converter = Callable[[ConversionSource, FormatSpec, Path], "dict | None"]


def load_converter(fmt: FormatSpec) -> Converter:
    """The format's converter (``FormatSpec.converter``, "module:function"), imported only when its format runs:
    the converters import TensorFlow."""
    module, attr = fmt.converter.split(":")
    converter: Converter = getattr(importlib.import_module(module), attr)
    return converter


class ExportContext:
    """A run folder as a ``ConversionSource`` (export/source.py), plus what the exporter needs beside it: the run,
    its record, labels, data splits and the QAT worker's settings."""

    def __init__(
        self,
        run: RunFolder,
        config: ExportConfig,
        run_config: Config,
        echo: Echo | None = None,
        record: RunRecord | None = None,
    ):
        self.run = run
        self.record = record or run.verify()  # every file read below belongs to the run that made model.keras
        self.echo = echo or (lambda line: None)  # progress lines (e.g. the QAT worker's epochs)
        self.config = config
        self.run_config = run_config
        self.folder = ExportFolder(run)
        self.labels = run.read_labels()
        self.spec = ModelSpec.read(run.model_spec)
        self.preprocessing: Preprocessing = self.spec.preprocessing_record()
        if len(self.labels) != self.spec.num_classes:
            raise EdgeExportError(
                f"labels.txt has {len(self.labels)} labels but the model has {self.spec.num_classes} classes",
                path=run.labels,
                hint="the run folder is inconsistent; re-run `edge-export train`",
            )
        self._workdir: Path | None = None
        self._memo: dict[str, Any] = {}

    # ------------------------------------------------------------------ model and work folder

    @property
    def has_keras(self) -> bool:
        """The run's model is model.keras (trained, or imported from Keras); else model.onnx (an imported ONNX)."""
        return self.record.model_name == RunFolder.MODEL

    @cached_property
    def model(self) -> Any:
        if not self.has_keras:
            raise EdgeExportError(
                "this run's model is an imported ONNX model (model.onnx): it has no Keras model",
                path=self.run.model_onnx,
                hint="export it to the ONNX formats (--formats onnx)",
            )
        return load_keras_model(self.run, self.spec)

    def onnx_graph(self) -> Any:
        """The run's ONNX model (a ModelProto) for an imported ONNX model: what the ONNX formats start from;
        None for a Keras model (they convert it with tf2onnx)."""
        if self.has_keras:
            return None
        return self.memo("onnx-source", lambda: load_onnx_reference(self.run))

    def check_model(self) -> None:
        """Load the reference model once, before the export folder is touched: a corrupt one fails here."""
        if self.has_keras:
            _ = self.model  # loaded (and cached) now
        else:
            self.parity_reference()

    @property
    def workdir(self) -> Path:
        if self._workdir is None:
            # the temp folder of the command holding the run folder (RUN/.tmp, see run_lock), else the system's
            self._workdir = Path(tempfile.mkdtemp(prefix="edge-export-"))
        return self._workdir

    def close(self) -> None:
        if self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)
            self._workdir = None

    def memo(self, key: str, make: Callable[[], Any]) -> Any:
        """``make()`` once per export, e.g. the SavedModel that several TFLite formats convert from."""
        if key not in self._memo:
            self._memo[key] = make()
        return self._memo[key]

    @property
    def input_shape(self) -> tuple[None, int, int, int]:
        return (None, self.spec.image_size, self.spec.image_size, 3)

    # ------------------------------------------------------------------ data

    @cached_property
    def dataset(self):
        data = self.run_config.data
        return open_dataset(data.path, data.validation_split, self.run_config.train.seed, self.labels, data.split)

    def _load(self, split_name: str, count: int | None, seed: int) -> Images:
        split = self.dataset.splits[split_name]
        height, width = self.preprocessing.size  # as a tuple, whatever sequence the record holds
        return load_images(
            sample(split, count, seed),
            (height, width),
            self.preprocessing.pixel_method,
            self.run_config.data.max_image_pixels,
        )

    def representative(self) -> np.ndarray:
        """uint8 calibration images from the training split (seeded, export.representative_images)."""
        return self.memo(
            "representative",
            lambda: representative_pixels(
                self._load("train", self.config.representative_images, self.config.representative_seed)
            ),
        )

    def parity_images(self) -> Images:
        """The validation split, or a seeded sample of export.parity_images of it."""
        return self.validation_images(self.config.parity_images)

    def model_copy(self) -> Any:
        """A second copy of model.keras, for a converter to change (``model`` stays the reference)."""
        return load_keras_model(self.run, self.spec) if self.has_keras else None

    def judging_photos(self) -> tuple[Any, np.ndarray]:
        """The parity (validation) photos and the Keras model's probabilities on them."""
        return self.parity_images().pixels, self.parity_reference()

    def parity_reference(self) -> np.ndarray:
        """The Keras model's probabilities on ``parity_images()``: what every artifact is checked against."""
        if not self.has_keras:
            return self.memo("parity_reference", lambda: onnx_probabilities(self.run, self.parity_images().pixels))
        return self.memo("parity_reference", lambda: keras_probabilities(self.model, self.parity_images().pixels))

    def validation_images(self, max_images: int | None) -> Images:
        """A seeded sample of at most ``max_images`` of the validation split (all of it for None)."""
        return self.memo(
            f"validation-{max_images}", lambda: self._load("validation", max_images, self.config.representative_seed)
        )

    def training_images(self, max_images: int | None) -> Images:
        return self.memo(
            f"train-{max_images}", lambda: self._load("train", max_images, self.config.representative_seed)
        )

    # ------------------------------------------------------------------ metadata

    def metadata(
        self,
        fmt: FormatSpec,
        *,
        opset: int | None = None,
        calibration_images: int | None = None,
        qat: dict[str, Any] | None = None,
    ) -> ModelMetadata:
        """The ``edge_export`` metadata embedded in every artifact (the runtime's record, filled here)."""
        info = self.config.metadata  # export.metadata: what the model says about itself
        name, description, version = model_identity(
            info.name, info.description, info.version, self.labels, self.spec.backbone, fmt.name, __version__
        )
        return ModelMetadata(
            name=name,
            description=description,
            version=version,
            author=info.author or None,
            license=info.license or None,
            labels=tuple(self.labels),
            preprocessing=self.preprocessing,
            backbone=self.spec.backbone,
            format=fmt.name,
            precision=fmt.precision,
            int8_io=self.config.int8_io if fmt.integer_io else None,
            edge_export=__version__,
            opset=opset,
            calibration_images=calibration_images,
            qat=qat,
        )


def load_keras_model(run: RunFolder, spec: ModelSpec) -> Any:
    """The run's model.keras, or an EdgeExportError naming the file and what to do."""
    path = run.require_model()

    keras = import_keras()
    try:
        model = keras.models.load_model(path, compile=False, safe_mode=not spec.loads_external_code)
    except Exception as exc:  # zipfile.BadZipFile, ValueError, OSError, h5 errors ...
        detail = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        raise EdgeExportError(
            f"cannot load the trained model, the file is corrupt or truncated ({type(exc).__name__}: {detail})",
            path=path,
            hint="re-run `edge-export train` for this run folder (an interrupted training leaves no model.keras)",
        ) from None
    expected = (None, spec.image_size, spec.image_size, 3)
    shape = tuple(model.inputs[0].shape) if getattr(model, "inputs", None) else None
    if len(model.inputs) != 1 or shape != expected or tuple(model.outputs[0].shape) != (None, spec.num_classes):
        raise EdgeExportError(
            f"model.keras does not match model_spec.json: input {shape}, expected {expected}",
            path=path,
            hint="re-run `edge-export train` for this run folder",
        )
    return model


def load_onnx_reference(run: RunFolder) -> Any:
    """The run's model.onnx (an imported ONNX model, wrapped), or an EdgeExportError naming it."""
    import onnx  # lazy: onnx (the train extra); only a run imported from an ONNX model needs it

    path = run.model_onnx
    try:
        return onnx.load_model(str(path))
    except Exception as exc:
        raise EdgeExportError(
            f"cannot load the imported ONNX model, the file is corrupt or truncated ({type(exc).__name__})",
            path=path,
            hint="re-run the build with --model FILE.onnx",
        ) from None
