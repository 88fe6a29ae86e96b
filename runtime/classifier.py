"""``Classifier``: load a .tflite/.onnx image classifier and predict labels, TF-free.

Labels and preprocessing come from arguments (they win), else the model's ``edge_export`` metadata,
else (a .tflite file) its standard TFLite Model Metadata (``TFLITE_METADATA``: labels file and
NormalizationOptions, see ``runtime.tflite_metadata``). The input size and quantization come from the
model's tensors. A model with neither takes its input size from the model; integer ones get the raw
pixels (see ``quantization.raw_pixel_mean_std``, the convention MediaPipe follows too); float ones get
pixels 0-255 with a ``NormalizationUnknownWarning`` naming the flags that fix it (never a silent guess).
"""

from __future__ import annotations

import dataclasses
import functools
import operator
import os
import warnings
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, Literal, NamedTuple, overload

import numpy as np

from edge_export.core.errors import EdgeExportError
from edge_export.core.untrusted import finite_array, is_regular_file, printable
from edge_export.runtime.backends import Backend, load_backend
from edge_export.runtime.images import ImageInput, load_image, max_pixels_value, opencv_installed
from edge_export.runtime.metadata import MAX_LABELS, ModelMetadata, label_lines, parse_model_metadata
from edge_export.runtime.preprocessing import Preprocessing, direct_input
from edge_export.runtime.quantization import dequantize, quantize, raw_pixel_mean_std
from edge_export.runtime.tflite_metadata import STANDARD_METADATA_NAME, StandardMetadata, read_standard_metadata

Triple = float | Sequence[float]


CHANNEL_ORDERS = ("RGB", "BGR")  # of image arrays given to predict (files and PIL images carry their own)


def decode_workers() -> int:
    """Threads that decode images ahead of the model in ``predict`` over several images: the cores this process
    may use that the model's call leaves (at least one, at most four). Fewer than ``images.decode_many``'s,
    which decodes a whole split with nothing else running."""
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(4, usable - 1))


class NormalizationUnknownWarning(UserWarning):
    """A float model whose input normalization nobody said: no metadata, no mean/std given."""


class Prediction(NamedTuple):
    label: str
    index: int  # type: ignore[assignment]  # the class's index, a public field: it shadows tuple.index
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
        standard_metadata: StandardMetadata | None = None,
        sources: dict[str, str | None] | None = None,
        notes: Sequence[str] = (),
    ) -> None:
        self.backend = backend
        self.path = backend.path
        self._labels = labels
        self._preprocessing = preprocessing
        self._metadata = metadata
        self._standard = standard_metadata
        # where the labels and the preprocessing came from: "arguments", "edge_export", "TFLITE_METADATA",
        # "model" (input size only, or the integer-input convention) or None (labels: class indices)
        self.sources = dict(sources or {})
        self.warnings = tuple(notes)  # what load() warned about (also issued as Python warnings)
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
    ) -> Classifier:
        """Open ``path`` (.tflite or .onnx); ``labels`` is a list or a labels.txt path.

        ``max_pixels``: image files (and PIL images) larger than this many pixels (width x height, from the
        header) are refused before decoding; default ``runtime.images.DEFAULT_MAX_PIXELS`` (64 megapixels).
        """
        max_pixels = max_pixels_value(max_pixels)
        backend = load_backend(path, threads=threads, providers=providers)
        path = backend.path
        metadata = parse_model_metadata(backend.metadata_text(), path)
        standard = _standard_metadata(backend, metadata, labels, preprocessing, mean, std)
        notes: list[str] = []
        prep, prep_source = _choose_preprocessing(backend, metadata, standard, preprocessing, mean, std, size, notes)
        _check_input(backend, prep)
        names, labels_source = _choose_labels(labels, metadata, standard, path)
        classes = backend.output_spec.shape[-1] if backend.output_spec.shape else None
        if names is not None and classes is not None and len(names) != classes:
            if isinstance(labels, (str, Path)):
                source = f"labels file {labels}"
            elif labels_source == STANDARD_METADATA_NAME and standard is not None:
                source = f"the model's {STANDARD_METADATA_NAME} labels file {standard.labels_file!r}"
            else:
                source = "labels"
            raise EdgeExportError(
                f"{len(names)} labels given ({source}) but the model has {classes} outputs",
                path=path,
                hint="pass the labels file that belongs to this model",
            )
        if names is None and classes is not None:
            names = [str(i) for i in range(classes)]
        for note in notes:
            warnings.warn(note, NormalizationUnknownWarning, stacklevel=2)
        return cls(
            backend,
            names,
            prep,
            metadata,
            max_pixels,
            standard,
            {"labels": labels_source, "preprocessing": prep_source},
            notes,
        )

    @property
    def input_size(self) -> tuple[int, int]:
        """(height, width) the images are resized to."""
        height, width = self._preprocessing.size
        return (height, width)

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

    @property
    def standard_metadata(self) -> StandardMetadata | None:
        """The model's standard TFLite metadata (``TFLITE_METADATA``) when it was read: a .tflite file whose
        ``edge_export`` entry (or the arguments) left labels or preprocessing open; else None."""
        return self._standard

    def __repr__(self) -> str:
        return f"Classifier({str(self.path)!r}, backend={self.backend.name}, input_size={self.input_size})"

    def predict(
        self, images: Any, top_k: int = 5, batch_size: int = 1, channels: str = "RGB"
    ) -> list[list[Prediction]]:
        """Images (path, PIL image, uint8 array, a list of them, or an NxHxWx3 batch) -> top-k per image.

        Arrays are taken as RGB; a frame from OpenCV (``cv2.imread``, ``VideoCapture.read``) is BGR: say so with
        ``channels="BGR"`` (never guessed). Files and PIL images carry their own order; ``channels`` is for arrays.

        Files in a list are decoded ahead on other cores while the model runs, so a folder costs about the
        model's time per image. ``batch_size`` images go to the model per call: on a CPU, 1 is fastest
        (measured: a batch of 32 took 8-23% longer per image than single calls, LiteRT and ONNX Runtime at
        1 thread); larger batches pay off on an accelerator (``providers=``).

        An image that cannot be used raises its EdgeExportError (see ``predict_each`` to go on past it)."""
        return self._predict(images, top_k, batch_size, keep_errors=False, channels=channels)

    def predict_each(
        self, images: Any, top_k: int = 5, batch_size: int = 1, channels: str = "RGB"
    ) -> list[list[Prediction] | EdgeExportError]:
        """Like ``predict``, but an image that cannot be used (unreadable, not a regular file, over the
        pixel limit, a bad array) gives its EdgeExportError in its place; the others are still predicted."""
        return self._predict(images, top_k, batch_size, keep_errors=True, channels=channels)

    @overload
    def predict_iter(
        self, images: Any, top_k: int = ..., batch_size: int = ..., *, keep_errors: Literal[False], channels: str = ...
    ) -> Iterator[list[Prediction]]: ...

    @overload
    def predict_iter(
        self, images: Any, top_k: int = ..., batch_size: int = ..., keep_errors: bool = ..., channels: str = ...
    ) -> Iterator[list[Prediction] | EdgeExportError]: ...

    def predict_iter(
        self, images: Any, top_k: int = 5, batch_size: int = 1, keep_errors: bool = True, channels: str = "RGB"
    ) -> Iterator[list[Prediction] | EdgeExportError]:
        """Like ``predict_each`` (``keep_errors=False``: like ``predict``), one result at a time in input order
        as soon as it is ready: a long list of files prints its first results at once, not after the last."""
        return self._results(images, top_k, batch_size, keep_errors, channels)

    @overload
    def _predict(
        self, images: Any, top_k: int, batch_size: int, keep_errors: Literal[False], channels: str = ...
    ) -> list[list[Prediction]]: ...

    @overload
    def _predict(
        self, images: Any, top_k: int, batch_size: int, keep_errors: bool, channels: str = ...
    ) -> list[list[Prediction] | EdgeExportError]: ...

    def _predict(
        self, images: Any, top_k: int, batch_size: int, keep_errors: bool, channels: str = "RGB"
    ) -> list[list[Prediction]] | list[list[Prediction] | EdgeExportError]:
        return list(self._results(images, top_k, batch_size, keep_errors, channels))

    def _results(
        self, images: Any, top_k: int, batch_size: int, keep_errors: bool, channels: str = "RGB"
    ) -> Iterator[list[Prediction] | EdgeExportError]:
        if not isinstance(top_k, int) or isinstance(top_k, bool) or top_k < 1:
            raise EdgeExportError(f"top_k must be a positive integer, got {top_k!r}")
        batch_size = _positive_count(batch_size, "batch_size")
        items = _as_list(images)
        if channels not in CHANNEL_ORDERS:
            raise EdgeExportError(
                f"channels must be one of {', '.join(CHANNEL_ORDERS)}, got {printable(repr(channels), 40)}",
                hint='"BGR" for frames from OpenCV, "RGB" (the default) for everything else',
            )
        if channels == "BGR":  # arrays only: a view with the channel axis reversed (no copy)
            items = [x[..., ::-1] if isinstance(x, np.ndarray) and x.ndim == 3 else x for x in items]
        return self._stream(items, top_k, batch_size, keep_errors)

    def _stream(
        self, items: list[ImageInput], top_k: int, batch_size: int, keep_errors: bool
    ) -> Iterator[list[Prediction] | EdgeExportError]:
        for chunk, decoded in self._decoded_chunks(items, batch_size):
            pixels: dict[int, np.ndarray] = {}
            errors: dict[int, EdgeExportError] = {}
            for i, d in decoded.items():
                if isinstance(d, EdgeExportError):
                    errors[i] = d
                else:
                    pixels[i] = d
            if not keep_errors:
                for i in chunk:  # the first unusable image, in input order
                    if i in errors:
                        raise errors[i]
            usable = [i for i in chunk if i in pixels]
            rows: dict[int, np.ndarray] = {}
            if usable:
                arrays = [pixels[i] for i in usable]
                rows = dict(
                    zip(usable, self.predict_proba(arrays[0][np.newaxis] if len(arrays) == 1 else np.stack(arrays)))
                )
            for i in chunk:
                yield self._top_k(rows[i], top_k) if i in rows else errors[i]

    def _load(self, item: ImageInput) -> np.ndarray | EdgeExportError:
        try:
            return load_image(item, self.input_size, self._preprocessing.pixel_method, self.max_pixels)
        except EdgeExportError as exc:
            return exc

    def _decoded_chunks(
        self, items: list[ImageInput], batch_size: int
    ) -> Iterator[tuple[list[int], dict[int, np.ndarray | EdgeExportError]]]:
        """(indices, {index: pixels or its EdgeExportError}) per model call, in order. Several images are
        decoded ahead on threads (Pillow releases the GIL) while the model runs on the current chunk, so a
        stream of files costs about the model's time, not the model's plus the decoder's. Chunks grow 1, 2,
        4, ... up to ``batch_size`` so the first result does not wait for a whole batch to decode; the
        chunking depends only on the number of images, never on timing. Only files are decoded on threads (a PIL
        image given twice must not be loaded by two threads at once); one image is decoded here, no thread."""
        if len(items) == 1:
            yield [0], {0: self._load(items[0])}
            return

        def chunks() -> Iterator[list[int]]:  # lazily: a million files need no million-entry plan
            start, size = 0, 1
            while start < len(items):
                yield list(range(start, min(start + size, len(items))))
                start, size = start + size, min(2 * size, batch_size)

        workers = decode_workers()
        ahead = max(2 * batch_size, workers)  # decoded images waiting at most: bounded for any number of files
        with ThreadPoolExecutor(workers, thread_name_prefix="edge-export-decode") as pool:
            futures: dict[int, Future[np.ndarray | EdgeExportError]] = {}
            submitted = 0
            try:
                for chunk in chunks():
                    while submitted < len(items) and submitted < chunk[-1] + 1 + ahead:
                        if isinstance(items[submitted], (str, Path)):
                            futures[submitted] = pool.submit(self._load, items[submitted])
                        submitted += 1
                    yield chunk, {i: futures.pop(i).result() if i in futures else self._load(items[i]) for i in chunk}
            finally:
                for future in futures.values():  # stopped early (an error, Ctrl-C): drop what was not started
                    future.cancel()

    def predict_proba(self, pixels: np.ndarray) -> np.ndarray:
        """Already resized uint8 pixels, N x H x W x 3 (or one H x W x 3) -> float32 N x classes."""
        pixels = self._check_pixels(pixels)
        x = self._model_input(pixels)
        out = dequantize(self.backend.run(x), self.backend.output_spec)
        out = finite_array(out, what="model output", source=self.path)  # a nan is never a score
        return out.reshape(out.shape[0], -1).astype(np.float32, copy=False)

    @functools.cached_property
    def _direct_input(self) -> Callable[[np.ndarray], np.ndarray] | None:
        return direct_input(self._preprocessing, self.backend.input_spec)

    def _model_input(self, pixels: np.ndarray) -> np.ndarray:
        """uint8 pixels -> the backend's input: for an integer input without a float copy (the pixels as they
        are, minus 128, or a per-model lookup table), else normalize and quantize; the same values either way."""
        direct = self._direct_input
        if direct is not None:
            return direct(pixels)
        return quantize(self._preprocessing.normalize(pixels), self.backend.input_spec)

    def _top_k(self, row: np.ndarray, k: int) -> list[Prediction]:
        order = np.argsort(-row, kind="stable")[:k]
        return [Prediction(self._label(int(i)), int(i), float(row[i])) for i in order]

    def _label(self, index: int) -> str:
        if self._labels is not None and index < len(self._labels):
            return self._labels[index]
        return str(index)

    def _check_pixels(self, pixels: object) -> np.ndarray:
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


def _positive_count(value: Any, name: str) -> int:
    """An integer >= 1 (numpy integers too; not a bool), else an error naming the argument."""
    try:
        count = operator.index(value)
    except TypeError:
        count = 0
    if isinstance(value, bool) or count < 1:
        raise EdgeExportError(f"{name} must be a positive integer, got {value!r}")
    return count


def _as_list(images: Any) -> list[ImageInput]:
    if isinstance(images, np.ndarray) and images.ndim == 4:
        return list(images)
    if isinstance(images, (list, tuple)):
        if not images:
            raise EdgeExportError("no images given")
        return list(images)
    return [images]


def _standard_metadata(
    backend: Backend, metadata: ModelMetadata | None, labels: Any, preprocessing: Any, mean: Any, std: Any
) -> StandardMetadata | None:
    """The standard TFLite metadata, read only when the arguments and the edge_export entry leave labels or
    preprocessing open (the edge_export entry comes first; a model of ours has it complete)."""
    if backend.path.suffix.lower() != ".tflite":
        return None
    need_labels = labels is None and (metadata is None or metadata.labels is None)
    need_prep = (
        preprocessing is None and (metadata is None or metadata.preprocessing is None) and (mean is None or std is None)
    )
    if not (need_labels or need_prep):
        return None
    return read_standard_metadata(backend.path, labels=need_labels)


def _choose_preprocessing(
    backend: Backend,
    metadata: ModelMetadata | None,
    standard: StandardMetadata | None,
    preprocessing: Preprocessing | dict[str, Any] | None,
    mean: Triple | None,
    std: Triple | None,
    size: int | Sequence[int] | None,
    notes: list[str],
) -> tuple[Preprocessing, str]:
    """Arguments win over the edge_export metadata, which wins over the standard metadata, which wins over
    what the model's input implies. Returns the preprocessing and where it came from."""
    overrides: dict[str, Any] = {}
    if size is not None:
        overrides["size"] = _pair(size)
    if mean is not None:
        overrides["mean"] = _triple(mean, "mean")
    if std is not None:
        overrides["std"] = _triple(std, "std")
    source = "arguments"
    if isinstance(preprocessing, dict):
        preprocessing = Preprocessing.from_dict(preprocessing)
    if preprocessing is None and metadata is not None and metadata.preprocessing is not None:
        preprocessing, source = metadata.preprocessing, "edge_export"
    if preprocessing is None and standard is not None and standard.has_normalization:
        preprocessing, source = (
            _standard_preprocessing(backend, standard, overrides.get("size")),
            STANDARD_METADATA_NAME,
        )
    if preprocessing is None:
        preprocessing, source = _default_preprocessing(backend, overrides.get("size"), standard), "model"
        if not backend.input_spec.is_integer and "mean" not in overrides and "std" not in overrides:
            notes.append(_unknown_normalization(backend, standard))
    if source in ("model", STANDARD_METADATA_NAME) and opencv_installed():
        overrides["decoder"] = "opencv"  # a model we did not make names no decoder: the faster one, where installed
    if "mean" in overrides or "std" in overrides:
        source = "arguments"
    try:
        return dataclasses.replace(preprocessing, **overrides), source
    except EdgeExportError as exc:
        raise EdgeExportError(exc.message, path=backend.path, hint=exc.hint) from None


def _unknown_normalization(backend: Backend, standard: StandardMetadata | None) -> str:
    if standard is not None:
        has = f"its {STANDARD_METADATA_NAME} has no NormalizationOptions"
    elif backend.path.suffix.lower() == ".tflite":
        has = f"it has no edge_export or {STANDARD_METADATA_NAME} metadata"
    else:
        has = "it has no edge_export metadata"
    return (
        f"{backend.path.name}: the float model's input normalization is unknown ({has}): pixels go in as "
        "0-255 (mean 0, std 1). If the model expects another range, pass --mean and --std (Classifier.load("
        "mean=..., std=...)): e.g. --mean 127.5 --std 127.5 for [-1, 1], --mean 0 --std 255 for [0, 1]"
    )


def _model_size(backend: Backend, size: tuple[int, int] | None, standard: StandardMetadata | None) -> tuple[int, int]:
    """The image size: the argument, else the model's input tensor, else the standard metadata's default."""
    if size is not None:
        return size
    spec = backend.input_spec
    if len(spec.shape) == 4 and spec.shape[1] is not None and spec.shape[2] is not None:
        return (spec.shape[1], spec.shape[2])
    if standard is not None and standard.default_size is not None:
        return standard.default_size
    raise EdgeExportError(
        f"the model's input shape {_shape_text(spec.shape)} does not fix the image size",
        path=backend.path,
        hint="pass size=(height, width) (--size HxW)",
    )


def _standard_preprocessing(
    backend: Backend, standard: StandardMetadata, size: tuple[int, int] | None
) -> Preprocessing:
    """A float input: NormalizationOptions on 0-255 RGB pixels. An integer input: the raw pixels (uint8) or
    pixels - 128 (int8), as MediaPipe Tasks and the Task Library feed it and as the schema means it ("the
    image data will be scaled back to [0, 255]" for uint8, "to [-128, 127]" for int8: the normalization and
    the input's quantization cancel out; applying both literally would be off by one on some pixels)."""
    if standard.color_space not in (None, "RGB", "UNKNOWN"):
        raise EdgeExportError(
            f"the model's {STANDARD_METADATA_NAME} says its input is {standard.color_space}; "
            "this runtime feeds RGB images",
            path=backend.path,
            hint="use an RGB model",
        )
    if standard.input_content not in (None, "ImageProperties"):
        raise EdgeExportError(
            f"the model's {STANDARD_METADATA_NAME} describes its input as {standard.input_content}, not an image",
            path=backend.path,
            hint="this runtime classifies images: use an image model",
        )
    assert standard.mean is not None and standard.std is not None  # the caller checked has_normalization
    try:
        checked = Preprocessing(size=_model_size(backend, size, standard), mean=standard.mean, std=standard.std)
    except EdgeExportError as exc:
        raise EdgeExportError(
            f"{STANDARD_METADATA_NAME} NormalizationOptions: {exc.message}",
            path=backend.path,
            hint="the model's metadata is unusable: pass --mean and --std",
        ) from None
    return _default_preprocessing(backend, checked.size) if backend.input_spec.is_integer else checked


def _default_preprocessing(
    backend: Backend, size: tuple[int, int] | None, standard: StandardMetadata | None = None
) -> Preprocessing:
    spec = backend.input_spec
    size = _model_size(backend, size, standard)
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
            f"image size {prep.size[0]}x{prep.size[1]} does not match the model's input {model_hw[0]}x{model_hw[1]}",
            path=backend.path,
            hint="leave out size (--size) or pass the model's own input size",
        )


def _choose_labels(
    labels: Any, metadata: ModelMetadata | None, standard: StandardMetadata | None, path: Path
) -> tuple[list[str] | None, str | None]:
    """The labels and where they came from: arguments, the edge_export entry, the standard metadata's labels file."""
    if isinstance(labels, (str, Path)):
        return read_labels(labels), "arguments"
    if labels is not None:
        return [str(label) for label in labels], "arguments"
    if metadata is not None and metadata.labels is not None:
        return list(metadata.labels), "edge_export"
    if standard is not None and standard.labels is not None:
        return list(standard.labels), STANDARD_METADATA_NAME
    return None, None


def read_labels(path: str | Path) -> list[str]:
    """A labels.txt: one label per line (see ``metadata.label_lines``: BOM, surrounding spaces and trailing blank
    lines dropped)."""
    path = Path(path)
    if path.exists() and not is_regular_file(path):  # a FIFO or device would block or never end
        raise EdgeExportError(
            "labels file is not a regular file (a FIFO, device or folder): not read",
            path=path,
            hint="pass a labels.txt file",
        )
    try:
        lines = label_lines(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise EdgeExportError("labels file not found", path=path, hint="check the path") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise EdgeExportError(f"cannot read labels file ({exc})", path=path) from None
    if not lines:
        raise EdgeExportError("labels file is empty", path=path, hint="write one label per line")
    if len(lines) > MAX_LABELS:
        raise EdgeExportError(
            f"labels file has {len(lines)} labels, more than {MAX_LABELS}",
            path=path,
            hint="pass the labels file that belongs to this model",
        )
    return lines


def _pair(size: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(size, int):
        return (size, size)
    values = tuple(int(v) for v in size)
    if len(values) != 2:
        raise EdgeExportError(f"size must be (height, width), got {size!r}")
    return values


def _triple(value: Triple, name: str) -> tuple[float, float, float]:
    hint = f"{name}: one number or three (R, G, B), e.g. {name}=127.5 or {name}=(123.7, 116.3, 103.5)"
    if isinstance(value, (str, bytes)):
        raise EdgeExportError(f"{name} must be numbers, got the text {value!r}"[:200], hint=hint)
    try:
        values = (float(value),) if isinstance(value, (int, float)) else tuple(float(v) for v in value)
    except (TypeError, ValueError, OverflowError):
        raise EdgeExportError(f"{name} must be numbers, got {value!r}"[:200], hint=hint) from None
    if not all(np.isfinite(values)) or (name == "std" and any(v == 0 for v in values)):
        raise EdgeExportError(
            f"{name} must be finite numbers{' other than 0' if name == 'std' else ''}, got {value!r}"[:200], hint=hint
        )
    if len(values) == 1:
        values = values * 3
    if len(values) != 3:
        raise EdgeExportError(f"{name} must have 1 or 3 values (R, G, B), got {value!r}")
    return values


def _shape_text(shape: Sequence[int | None]) -> str:
    return "x".join("?" if d is None else str(d) for d in shape) or "()"
