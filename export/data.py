"""The images an export needs: a calibration (representative) set and QAT data from the training split,
parity images from the validation split. Seeded samples; only the chosen files are decoded, into the
on-disk pixel cache (``runtime.pixel_cache``): the validation split that training decoded is read back, not
decoded again, and parity reads it in batches."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from edge_export.core.errors import EdgeExportError
from edge_export.trainer.datasets import Dataset, Split, scan_dataset, stream_pixels
from edge_export.trainer.named_datasets import resolve_data


@dataclass
class Images:
    pixels: Any  # uint8 N x H x W x 3: a runtime.pixel_cache.CachedPixels (slices read from disk) or an ndarray
    labels: np.ndarray  # int class indices
    split: str

    def __len__(self) -> int:
        return len(self.labels)


def open_dataset(
    data_path: str,
    validation_split: float,
    seed: int,
    labels: list[str],
    split: list[float] | tuple[float, ...] = (0.8, 0.1, 0.1),
) -> Dataset:
    """The run's dataset, as training saw it (same split and seed); never downloads."""
    try:
        root = resolve_data(data_path, download=False)
        dataset = scan_dataset(root, validation_split, seed, split)
    except EdgeExportError as exc:
        raise EdgeExportError(
            f"the training data is needed for calibration and the accuracy check, but: {exc.message}",
            path=exc.path,
            hint=f"point at it with data.path=DIR (the run used {data_path!r})",
        ) from None
    if dataset.class_names != list(labels):
        raise EdgeExportError(
            f"the dataset's classes {dataset.class_names} differ from the run's labels {list(labels)}",
            path=dataset.root,
            hint="use the dataset this run was trained on (data.path=DIR)",
        )
    return dataset


def sample(split: Split, count: int | None, seed: int) -> Split:
    """A seeded random subset of ``count`` files (all of them when ``count`` is None or large enough)."""
    n = len(split.files)
    if count is None or count >= n:
        return split
    index = np.sort(np.random.default_rng(seed).choice(n, size=count, replace=False))
    return Split(split.name, [split.files[i] for i in index], split.labels[index])


def load_images(split: Split, size: tuple[int, int], resize: str, max_pixels: int | None = None) -> Images:
    """Decode ``split`` into the pixel cache, or find it there (unreadable or over-``max_pixels`` images
    skipped with a warning naming them); the pixels stay on disk and are read in slices."""
    pixels, labels, _ = stream_pixels(split, size, resize, max_pixels=max_pixels)
    return Images(pixels, labels, split.name)


def representative_pixels(images: Images) -> np.ndarray:
    """Calibration images with the full 0..255 input range present, so an integer model's input
    quantization becomes exactly scale 1 (raw pixels) instead of depending on the sample's extremes."""
    pixels = np.array(images.pixels, dtype=np.uint8)  # export.representative_images of them: read into memory
    pixels[0, 0, 0, :] = 0
    pixels[0, 0, 1, :] = 255
    return pixels
