"""Bring your own model: a user's Keras, SavedModel or ONNX classifier into a run folder, in place of training.

``import_run(config, run, dataset)`` writes what ``train`` writes (model.keras, labels.txt, config.yaml,
model_spec.json, dataset.json, metrics.json, history.json, then the run record last), so export, bench,
report, recommendation and package run on it unchanged. What was inferred (input size from the model, the
labels, the input scale and output kind from a check on validation photos: export/input_check.py) is
recorded in model_spec.json's ``source`` with the file's path and sha256; model.keras is the user's model
wrapped in our contract (export/user_model.py), so the preprocessing record is the plain one of our own
models: RGB 0-255 at the model's size, resized by model.resize.

An ONNX model is wrapped in ONNX nodes to the same contract (export/onnx_source.py) and written as model.onnx
in model.keras's place: the run's reference model, which the ONNX formats start from; the formats that convert a
Keras model (TFLite, QAT) are skipped for it, with the reason in the manifest.
"""

from __future__ import annotations

import logging
import platform
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from edge_export.core import __version__
from edge_export.core.atomic import atomic_path, write_json, write_text
from edge_export.core.config import Config
from edge_export.core.errors import EdgeExportError
from edge_export.core.records.model_source import INPUT_SCALES, ModelSource
from edge_export.core.records.model_spec import ModelSpec
from edge_export.core.records.preprocessing import Preprocessing
from edge_export.core.run_folder import RunFolder, forget_record, write_record
from edge_export.core.tf_env import import_keras
from edge_export.core.untrusted import printable
from edge_export.export import input_check, onnx_source
from edge_export.export.data import sample
from edge_export.export.metadata import embed_onnx_metadata
from edge_export.export.user_model import (
    IMPORTED_BACKBONE,
    ModelShape,
    check_memory,
    check_output,
    classes_of,
    load_user_model,
    model_shape,
    output_from_activation,
    read_labels_file,
    source_kind,
    source_sha256,
    wrap_model,
)
from edge_export.runtime.metadata import ModelMetadata
from edge_export.trainer.datasets import Dataset, load_pixels, stream_pixels
from edge_export.trainer.run import recorded_config

log = logging.getLogger(__name__)

Echo = Callable[[str], None]
SOURCE_FORMAT = "source"  # the metadata's format of RUN/model.onnx: the user's ONNX model, wrapped, as the reference


def source_path(config: Config) -> Path:
    return Path(config.model.source).expanduser()


def import_run(config: Config, run: RunFolder, dataset: Dataset, echo: Echo | None = None) -> dict:
    """Import ``config.model.source`` into ``run`` (see the module docstring); returns metrics.json's content."""
    echo = echo or log.info
    started = time.perf_counter()
    path = source_path(config)
    kind = source_kind(path)
    source: _KerasSource | _OnnxSource = (
        _OnnxSource(path, config.model.image_size) if kind == "onnx" else _KerasSource(path, config)
    )
    shape = source.shape
    labels, order = _labels(config, dataset, shape, path)
    echo(
        f"model: {printable(path)} ({kind}): input {shape.image_size}x{shape.image_size}x3"
        f"{' (channels first)' if getattr(shape, 'channels_first', False) else ''}, "
        f"{shape.outputs} output unit(s){f' ({shape.activation})' if shape.activation else ''}, classes "
        f"{', '.join(printable(c, 40) for c in labels)}"
    )

    size = (shape.image_size, shape.image_size)
    resize = config.model.resize
    check = sample(dataset.splits["validation"], input_check.CHECK_IMAGES, config.train.seed)
    pixels, check_labels, _ = load_pixels(check, size, resize, max_pixels=config.data.max_image_pixels)
    model_labels = order[check_labels]  # the model's own output index of each photo's class

    scales = list(INPUT_SCALES) if config.model.input_scale == "auto" else [config.model.input_scale]
    stated = source.stated_output()
    outputs = [config.model.output] if config.model.output != "auto" else ([stated] if stated else None)
    for output in outputs or ():
        check_output(output, shape, path)
    decision = input_check.decide(
        source.run_raw,
        pixels,
        model_labels,
        units=shape.outputs,
        input_scales=scales,
        outputs=outputs,
        echo=echo,
        source=path,
    )
    check_output(decision.output, shape, path)
    decided = {
        "input_scale": "flag" if config.model.input_scale != "auto" else "validation check",
        "output": "flag" if config.model.output != "auto" else ("model" if stated else "validation check"),
    }
    echo(
        f"model expects: input {decision.input_scale} ({decided['input_scale']}), output {decision.output} "
        f"({decided['output']}), photos resized ({resize}) to {size[0]}x{size[1]}"
    )

    reference = source.wrap(decision.input_scale, decision.output, order)
    record = ModelSource(
        path=str(path.resolve()),
        sha256=source_sha256(path),
        kind=kind,
        input_scale=decision.input_scale,
        output=decision.output,
        decided=decided,
        check=decision.rows,
    )
    preprocessing = Preprocessing(size=size, resize=resize)
    metrics = _metrics(source.predictor(reference), dataset, size, resize, config)
    metrics["timing_seconds"] = {"total": round(time.perf_counter() - started, 2)}

    spec = ModelSpec(
        backbone=IMPORTED_BACKBONE,
        image_size=shape.image_size,
        num_classes=len(labels),
        preprocessing=preprocessing.to_dict(),
        weights=None,
        versions={"edge_export": __version__, **source.versions(), "python": platform.python_version()},
        source=record,
    )

    run.create()
    forget_record(run)  # until the new record is written last, no reader pairs old and new files
    for other in RunFolder.MODEL_FILES:  # an earlier model of the other kind (model.keras / model.onnx)
        if other != source.file_name:
            (run.root / other).unlink(missing_ok=True)
    write_text(run.config, recorded_config(config).to_yaml())
    write_text(run.labels, "\n".join(dataset.class_names) + "\n")
    write_json(run.dataset, dataset.summary())
    write_json(run.history, {})  # nothing trained
    write_json(run.model_spec, spec.to_dict())
    write_json(run.metrics, metrics)
    with atomic_path(run.root / source.file_name) as tmp:
        source.save(reference, tmp, dataset.class_names, preprocessing)
    write_record(run, source.file_name)
    return metrics


class _KerasSource:
    """A .keras, .h5 or SavedModel: wrapped in Keras layers, saved as model.keras."""

    file_name = RunFolder.MODEL

    def __init__(self, path: Path, config: Config):
        self.model, self.kind = load_user_model(path, config.model.custom_objects)
        self.shape: ModelShape = model_shape(self.model, path, config.model.image_size)
        self.keras = import_keras()

    def stated_output(self) -> str | None:
        return output_from_activation(self.shape)

    def run_raw(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(self.model.predict(x, batch_size=32, verbose=0))

    def wrap(self, input_scale: str, output: str, order: np.ndarray) -> Any:
        wrapped = wrap_model(self.keras, self.model, self.shape.image_size, input_scale, output)
        return _in_data_order(self.keras, wrapped, order)

    def predictor(self, wrapped: Any) -> Callable[[np.ndarray], np.ndarray]:
        return lambda x: np.asarray(wrapped.predict(x, verbose=0))

    def versions(self) -> dict[str, str]:
        return {"keras": self.keras.__version__}

    def save(self, wrapped: Any, tmp: Path, labels: list[str], preprocessing: Preprocessing) -> None:
        wrapped.save(tmp)


class _OnnxSource:
    """An .onnx file: wrapped in ONNX nodes (export/onnx_source.py), saved as model.onnx with our metadata."""

    file_name = RunFolder.MODEL_ONNX

    def __init__(self, path: Path, image_size: int | None):
        check_memory(path)
        self.path = path
        proto = onnx_source.load_onnx(path)
        shape = onnx_source.onnx_shape(proto, path, image_size)
        self.proto, self.shape = onnx_source.free_batch(proto, shape, path)
        self.run_raw = onnx_source.RawRunner(self.proto, self.shape, path)

    def stated_output(self) -> str | None:
        return onnx_source.output_from_activation(self.shape)

    def wrap(self, input_scale: str, output: str, order: np.ndarray) -> Any:
        return onnx_source.wrap_onnx(self.proto, self.shape, input_scale, output, order)

    def predictor(self, wrapped: Any) -> Callable[[np.ndarray], np.ndarray]:
        return onnx_source.runner_of(wrapped, self.path)

    def versions(self) -> dict[str, str]:
        import onnx  # lazy: onnx (the train extra); only an ONNX model's import needs it
        import onnxruntime  # lazy: ONNX Runtime is optional (the onnx extra); only an ONNX model's import needs it

        return {"onnx": onnx.__version__, "onnxruntime": onnxruntime.__version__}

    def save(self, wrapped: Any, tmp: Path, labels: list[str], preprocessing: Preprocessing) -> None:
        import onnx  # lazy: onnx (the train extra); only an ONNX model's import needs it

        embed_onnx_metadata(
            wrapped,
            ModelMetadata(
                labels=tuple(labels),
                preprocessing=preprocessing,
                backbone=IMPORTED_BACKBONE,
                format=SOURCE_FORMAT,
                precision="fp32",
                edge_export=__version__,
                name=self.path.stem,
            ),
        )
        onnx.save_model(wrapped, str(tmp))


def _labels(config: Config, dataset: Dataset, shape: Any, path: Path) -> tuple[list[str], np.ndarray]:
    """(the model's labels in its output order, and for each data class its index in that order)."""
    classes = classes_of(shape)
    if config.model.labels:
        labels_path = Path(config.model.labels).expanduser()
        labels = read_labels_file(labels_path)
        if len(labels) != classes:
            raise EdgeExportError(
                f"the labels file names {len(labels)} classes but the model outputs {classes}",
                path=labels_path,
                hint="one line per class, in the model's output order",
            )
        missing = sorted(set(dataset.class_names) - set(labels))
        extra = sorted(set(labels) - set(dataset.class_names))
        if missing or extra:
            raise EdgeExportError(
                f"the labels file and the data's class folders differ: folders not in it {missing or 'none'}, "
                f"labels with no folder {extra or 'none'}",
                path=labels_path,
                hint="name the class folders like the labels (one folder per class)",
            )
    else:
        labels = list(dataset.class_names)
        if len(labels) != classes:
            raise EdgeExportError(
                f"the data has {len(labels)} class folders ({', '.join(printable(c, 40) for c in labels[:10])}) "
                f"but the model outputs {classes} classes",
                path=path,
                hint="use the data the model was trained for, or pass --labels FILE in the model's output order",
            )
    order = np.asarray([labels.index(c) for c in dataset.class_names], np.int64)
    return labels, order


def _in_data_order(keras, wrapped, order: np.ndarray):
    """The wrapped model with its outputs in the data's (sorted) class order, when a labels file ordered them
    otherwise: a fixed permutation (a Dense layer with a 0/1 kernel), exact."""
    if np.array_equal(order, np.arange(len(order))):
        return wrapped
    log.info(
        "the labels file orders the classes otherwise than the data folders: outputs reordered to %s",
        ", ".join(map(str, order)),
    )
    n = len(order)
    kernel = np.zeros((n, n), np.float32)
    kernel[order, np.arange(n)] = 1.0  # output j (data class j) = model output order[j]
    dense = keras.layers.Dense(n, use_bias=False, name="class_order", dtype="float32")
    y = dense(wrapped.outputs[0])
    dense.set_weights([kernel])
    return keras.Model(wrapped.inputs, y, name=wrapped.name)


def _metrics(
    predict: Callable[[np.ndarray], np.ndarray], dataset: Dataset, size: tuple[int, int], resize: str, config: Config
) -> dict:
    """Accuracy and loss of the wrapped model on the validation and test splits (as train's metrics.json)."""
    metrics: dict = {"imported": True}
    for name in ("validation", "test"):
        split = dataset.splits.get(name)
        if split is None:
            continue
        pixels, labels, _ = stream_pixels(split, size, resize, max_pixels=config.data.max_image_pixels)
        probs = np.concatenate(
            [np.asarray(predict(np.asarray(pixels[i : i + 64], np.float32))) for i in range(0, len(labels), 64)]
        )
        loss = float(np.mean(-np.log(np.clip(probs[np.arange(len(labels)), labels], 1e-7, 1.0))))
        metrics[name] = {
            "accuracy": float(np.mean(probs.argmax(axis=1) == labels)),
            "loss": loss,
            "images": int(len(labels)),
        }
    return metrics


__all__ = ["import_run", "source_path"]
