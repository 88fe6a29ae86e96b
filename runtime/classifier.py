"""``Classifier``: load a .tflite/.onnx image classifier and predict labels, TF-free.

Labels and preprocessing come from the model's ``edge_export`` metadata, or from arguments (arguments
win). Models without metadata take their input size from the model; float ones get identity mean/std,
integer ones get the raw pixels (see ``quantization.raw_pixel_mean_std``).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, NamedTuple, Sequence, Union

import numpy as np

from edge_export.core.errors import EdgeExportError
from edge_export.runtime.backends import Backend, load_backend
from edge_export.runtime.images import ImageInput, load_image, max_pixels_value
from edge_export.runtime.metadata import ModelMetadata, parse_model_metadata
from edge_export.runtime.preprocessing import Preprocessing
from edge_export.runtime.quantization import dequantize, quantize, raw_pixel_mean_std
from edge_export.core.untrusted import finite_array, is_regular_file

Triple = Union[float, Sequence[float]]


class Prediction(NamedTuple):
    label: str
    index: int
    probability: float


class Classifier:
    """A loaded model plus its labels and preprocessing. Build with ``Classifier.load``."""

    def __init__(
        self,
        backend: Backend,
        labels: list[str] | None,
        preprocessing: Preprocessing,
        metadata: ModelMetadata | None = None,
        max_pixels: int | None = None,
    ):
        self.backend = backend
        self.path = backend.path
        self._labels = labels
        self._preprocessing = preprocessing
        self._metadata = metadata
        self.max_pixels = max_pixels_value(max_pixels)  # image files larger than this are refused, not decoded

    @classmethod
    def load(
        cls,
        path: str | Path,
        *,
        labels: Sequence[str] | str | Path | None = None,
        preprocessing: Preprocessing | dict[str, Any] | None = None,
        mean: Triple | None = None,
        std: Triple | None = None,
        size: int | Sequence[int] | None = None,
        threads: int | None = None,
        providers: Sequence[str] | None = None,
        max_pixels: int | None = None,
    ) -> "Classifier":
        """Open ``path`` (.tflite or .onnx); ``labels`` is a list or a labels.txt path.

        ``max_pixels``: image files (and PIL images) larger than this many pixels (width x height, from the
        header) are refused before decoding; default ``runtime.images.DEFAULT_MAX_PIXELS`` (64 megapixels).
        """
        max_pixels = max_pixels_value(max_pixels)
        backend = load_backend(path, threads=threads, providers=providers)
        path = backend.path
        metadata = parse_model_metadata(backend.metadata_text(), path)
        prep = _choose_preprocessing(backend, metadata, preprocessing, mean, std, size)
        _check_input(backend, prep)
        names = _choose_labels(labels, metadata, path)
        classes = backend.output_spec.shape[-1] if backend.output_spec.shape else None
        if names is not None and classes is not None and len(names) != classes:
            source = f"labels file {labels}" if isinstance(labels, (str, Path)) else "labels"
            raise EdgeExportError(
                f"{len(names)} labels given ({source}) but the model has {classes} outputs",
                path=path,
                hint="pass the labels file that belongs to this model",
            )
        if names is None and classes is not None:
            names = [str(i) for i in range(classes)]
        return cls(backend, names, prep, metadata, max_pixels)

    @property
    def input_size(self) -> tuple[int, int]:
        """(height, width) the images are resized to."""
        return tuple(self._preprocessing.size)

    @property
    def labels(self) -> list[str] | None:
        return None if self._labels is None else list(self._labels)

    @property
    def preprocessing(self) -> Preprocessing:
        return self._preprocessing

    @property
    def metadata(self) -> dict[str, Any] | None:
        """The model's embedded ``edge_export`` metadata document (None for models without it)."""
        return None if self._metadata is None else self._metadata.to_dict()

    @property
    def model_metadata(self) -> ModelMetadata | None:
        """The model's embedded ``edge_export`` metadata as a typed record (None for models without it)."""
        return self._metadata

    def __repr__(self) -> str:
        return f"Classifier({str(self.path)!r}, backend={self.backend.name}, input_size={self.input_size})"

    def predict(self, images: Any, top_k: int = 5, batch_size: int = 32) -> list[list[Prediction]]:
        """Images (path, PIL image, uint8 array, a list of them, or an NxHxWx3 batch) -> top-k per image.

        An image that cannot be used raises its EdgeExportError (see ``predict_each`` to go on past it)."""
        return self._predict(images, top_k, batch_size, keep_errors=False)

    def predict_each(
        self, images: Any, top_k: int = 5, batch_size: int = 32
    ) -> list[list[Prediction] | EdgeExportError]:
        """Like ``predict``, but an image that cannot be used (unreadable, not a regular file, over the
        pixel limit, a bad array) gives its EdgeExportError in its place; the others are still predicted."""
        return self._predict(images, top_k, batch_size, keep_errors=True)

    def _predict(self, images: Any, top_k: int, batch_size: int, keep_errors: bool) -> list:
        if not isinstance(top_k, int) or top_k < 1:
            raise EdgeExportError(f"top_k must be a positive integer, got {top_k!r}")
        items = _as_list(images)
        results: list = [None] * len(items)
        size, method, step = self.input_size, self._preprocessing.resize, max(1, batch_size)
        for start in range(0, len(items), step):
            decoded: dict[int, np.ndarray] = {}
            for i in range(start, min(start + step, len(items))):
                try:
                    decoded[i] = load_image(items[i], size, method, self.max_pixels)
                except EdgeExportError as exc:
                    if not keep_errors:
                        raise
                    results[i] = exc
            if decoded:
                rows = self.predict_proba(np.stack(list(decoded.values())))
                for i, row in zip(decoded, rows):
                    results[i] = self._top_k(row, top_k)
        return results

    def predict_proba(self, pixels: np.ndarray) -> np.ndarray:
        """Already resized uint8 pixels, N x H x W x 3 (or one H x W x 3) -> float32 N x classes."""
        pixels = self._check_pixels(pixels)
        x = quantize(self._preprocessing.normalize(pixels), self.backend.input_spec)
        out = dequantize(self.backend.run(x), self.backend.output_spec)
        out = finite_array(out, what="model output", source=self.path)  # a nan is never a score
        return out.reshape(out.shape[0], -1).astype(np.float32, copy=False)

    def _top_k(self, row: np.ndarray, k: int) -> list[Prediction]:
        order = np.argsort(-row, kind="stable")[:k]
        return [Prediction(self._label(int(i)), int(i), float(row[i])) for i in order]

    def _label(self, index: int) -> str:
        if self._labels is not None and index < len(self._labels):
            return self._labels[index]
        return str(index)

    def _check_pixels(self, pixels: Any) -> np.ndarray:
        h, w = self.input_size
        expected = f"uint8 pixels of shape N x {h} x {w} x 3"
        if not isinstance(pixels, np.ndarray):
            raise EdgeExportError(
                f"predict_proba expects {expected}, got {type(pixels).__name__}",
                path=self.path,
                hint="use predict() for paths and PIL images",
            )
        if pixels.ndim == 3:
            pixels = pixels[np.newaxis]
        if pixels.ndim != 4 or pixels.shape[1:] != (h, w, 3) or pixels.shape[0] == 0:
            raise EdgeExportError(
                f"predict_proba expects {expected}, got shape {pixels.shape}",
                path=self.path,
                hint="resize with edge_export.runtime.images.load_image, or use predict()",
            )
        if pixels.dtype != np.uint8:
            raise EdgeExportError(
                f"predict_proba expects {expected}, got dtype {pixels.dtype}",
                path=self.path,
                hint="pass pixel values 0-255 as uint8 (normalization happens inside)",
            )
        return pixels


def _as_list(images: Any) -> list[ImageInput]:
    if isinstance(images, np.ndarray) and images.ndim == 4:
        return list(images)
    if isinstance(images, (list, tuple)):
        if not images:
            raise EdgeExportError("no images given")
        return list(images)
    return [images]


def _choose_preprocessing(
    backend: Backend,
    metadata: ModelMetadata | None,
    preprocessing: Preprocessing | dict[str, Any] | None,
    mean: Triple | None,
    std: Triple | None,
    size: int | Sequence[int] | None,
) -> Preprocessing:
    """Arguments win over the metadata, which wins over what the model's input implies."""
    overrides: dict[str, Any] = {}
    if size is not None:
        overrides["size"] = _pair(size)
    if mean is not None:
        overrides["mean"] = _triple(mean, "mean")
    if std is not None:
        overrides["std"] = _triple(std, "std")
    if isinstance(preprocessing, dict):
        preprocessing = Preprocessing.from_dict(preprocessing)
    if preprocessing is None and metadata is not None:
        preprocessing = metadata.preprocessing
    if preprocessing is None:
        preprocessing = _default_preprocessing(backend, overrides.get("size"))
    try:
        return dataclasses.replace(preprocessing, **overrides)
    except EdgeExportError as exc:
        raise EdgeExportError(exc.message, path=backend.path, hint=exc.hint) from None


def _default_preprocessing(backend: Backend, size: tuple[int, int] | None) -> Preprocessing:
    spec = backend.input_spec
    if size is None:
        if len(spec.shape) != 4 or spec.shape[1] is None or spec.shape[2] is None:
            raise EdgeExportError(
                f"the model's input shape {_shape_text(spec.shape)} does not fix the image size",
                path=backend.path,
                hint="pass size=(height, width) (--size HxW)",
            )
        size = (spec.shape[1], spec.shape[2])
    if spec.is_quantized:
        mean, std = raw_pixel_mean_std(spec)
        return Preprocessing(size=size, mean=(mean,) * 3, std=(std,) * 3)
    return Preprocessing(size=size)


def _check_input(backend: Backend, prep: Preprocessing) -> None:
    shape = backend.input_spec.shape
    if len(shape) != 4 or shape[3] not in (None, 3):
        raise EdgeExportError(
            f"the model's input shape {_shape_text(shape)} is not N x H x W x 3 (RGB, channels last)",
            path=backend.path,
            hint="export the model with NHWC input",
        )
    model_hw = tuple(shape[1:3])
    if None not in model_hw and model_hw != tuple(prep.size):
        raise EdgeExportError(
            f"image size {prep.size[0]}x{prep.size[1]} does not match the model's input "
            f"{model_hw[0]}x{model_hw[1]}",
            path=backend.path,
            hint="leave out size (--size) or pass the model's own input size",
        )


def _choose_labels(labels: Any, metadata: ModelMetadata | None, path: Path) -> list[str] | None:
    if isinstance(labels, (str, Path)):
        return read_labels(labels)
    if labels is not None:
        return [str(label) for label in labels]
    if metadata is not None and metadata.labels is not None:
        return list(metadata.labels)
    return None


def read_labels(path: str | Path) -> list[str]:
    """A labels.txt: one label per line (surrounding spaces and trailing blank lines dropped)."""
    path = Path(path)
    if path.exists() and not is_regular_file(path):  # a FIFO or device would block or never end
        raise EdgeExportError("labels file is not a regular file (a FIFO, device or folder): not read", path=path,
                              hint="pass a labels.txt file")
    try:
        lines = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
    except FileNotFoundError:
        raise EdgeExportError("labels file not found", path=path, hint="check the path") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise EdgeExportError(f"cannot read labels file ({exc})", path=path) from None
    while lines and not lines[-1]:
        lines.pop()
    if not lines:
        raise EdgeExportError("labels file is empty", path=path, hint="write one label per line")
    return lines


def _pair(size: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(size, int):
        return (size, size)
    values = tuple(int(v) for v in size)
    if len(values) != 2:
        raise EdgeExportError(f"size must be (height, width), got {size!r}")
    return values


def _triple(value: Triple, name: str) -> tuple[float, float, float]:
    if isinstance(value, (int, float)):
        return (float(value),) * 3
    values = tuple(float(v) for v in value)
    if len(values) == 1:
        values = values * 3
    if len(values) != 3:
        raise EdgeExportError(f"{name} must have 1 or 3 values (R, G, B), got {value!r}")
    return values


def _shape_text(shape: Sequence[int | None]) -> str:
    return "x".join("?" if d is None else str(d) for d in shape) or "()"
