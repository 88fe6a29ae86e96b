"""A fixed, seeded suite of camera-like shifts of test images, and accuracy under it (in the spirit of ImageNet-C).

TF-free (numpy + Pillow). The shifts act on images already decoded and resized to the model's input
(uint8 H x W x 3, what ``runtime.images`` gives), one severity, chosen to look like a different phone
or camera rather than a broken one (parameters relative to the image size, so they mean the same at
160 px and at 320 px):

    jpeg        down-scaled to 1/2 (box filter), re-compressed as JPEG quality 25, scaled back (bilinear)
    crop        a crop of 75% of each side at a random offset (uniform over the image: mostly off-centre), scaled back
    brightness  brightness x0.65 or x1.35 and contrast x0.65 or x1.35 (signs drawn per image)
    blur        Gaussian blur, sigma = 1% of the image side (2.2 px at 224; ImageNet-C blur severity ~2)
    noise       Gaussian sensor noise, sigma = 10% of full scale, per pixel and channel (ImageNet-C
                Gaussian noise between severity 1 and 2)

Each image gets ONE shift, chosen from a hash of (seed, image key), so the suite costs one extra pass
over the test set, not five; accuracy is reported overall and per shift. Everything random about an
image (its shift, the crop offset, the brightness sign, the noise) comes from a generator seeded by
(seed, shift, image key), where the key is the image's path relative to the test folder: the same seed
gives the same pixels whatever the order or number of other images; another seed gives others.

``apply_suite`` (arrays in memory), ``write_shifted`` (a .npy of test pixels to another, in chunks, for
bench's measuring processes) and ``evaluate`` (any predict function: what ``tune`` calls on a candidate).
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageFilter

from edge_export.benchmarks.testset import iter_pixels, pixel_count, read_pixels

SEED = 20261201  # the suite's fixed seed (bench uses it; tune may pass another)
SUITE_VERSION = 1  # bump when a shift's definition changes: results of different versions do not compare


@dataclass(frozen=True)
class Shift:
    name: str
    description: str


SHIFTS: tuple[Shift, ...] = (
    Shift("jpeg", "down-scaled to 1/2, JPEG quality 25, scaled back"),
    Shift("crop", "crop of 75% of each side at a random offset, scaled back"),
    Shift("brightness", "brightness x0.65 or x1.35 and contrast x0.65 or x1.35"),
    Shift("blur", "Gaussian blur, sigma 1% of the image side"),
    Shift("noise", "Gaussian noise, sigma 10% of full scale"),
)
SHIFT_NAMES = tuple(s.name for s in SHIFTS)


def describe(seed: int = SEED) -> dict[str, Any]:
    """What bench.json's settings record about the suite."""
    return {
        "version": SUITE_VERSION,
        "seed": int(seed),
        "per_image": "one shift, chosen by a hash of (seed, image)",
        "shifts": {s.name: s.description for s in SHIFTS},
    }


# ----------------------------------------------------------------------------- seeds


def _digest(*parts: Any) -> int:
    text = "\x00".join(str(p) for p in parts).encode("utf-8", "surrogatepass")
    return int.from_bytes(hashlib.sha256(text).digest()[:8], "little")


def shift_of(key: str, seed: int = SEED) -> int:
    """The index (into ``SHIFTS``) of the shift an image gets."""
    return _digest(seed, "assign", key) % len(SHIFTS)


def rng_for(key: str, shift: str, seed: int = SEED) -> np.random.Generator:
    """The generator of everything random about one image under one shift."""
    return np.random.default_rng(_digest(seed, shift, key))


# ----------------------------------------------------------------------------- shifts


def shift_image(image: np.ndarray, shift: str, rng: np.random.Generator) -> np.ndarray:
    """One uint8 H x W x 3 image under ``shift`` (a name in ``SHIFT_NAMES``): uint8, same shape."""
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected a uint8 H x W x 3 image, got {image.dtype} {image.shape}")
    height, width = image.shape[:2]
    if shift == "jpeg":
        small = Image.fromarray(image).resize((max(1, width // 2), max(1, height // 2)), Image.Resampling.BOX)
        buffer = io.BytesIO()
        small.save(buffer, format="JPEG", quality=25)
        buffer.seek(0)
        with Image.open(buffer) as decoded:
            return np.asarray(decoded.convert("RGB").resize((width, height), Image.Resampling.BILINEAR), dtype=np.uint8)
    if shift == "crop":
        ch, cw = max(1, round(height * 0.75)), max(1, round(width * 0.75))
        top = int(rng.integers(0, height - ch + 1))
        left = int(rng.integers(0, width - cw + 1))
        box = Image.fromarray(image).crop((left, top, left + cw, top + ch))
        return np.asarray(box.resize((width, height), Image.Resampling.BILINEAR), dtype=np.uint8)
    if shift == "brightness":
        brightness = 1.35 if rng.integers(0, 2) else 0.65
        contrast = 1.35 if rng.integers(0, 2) else 0.65
        x = image.astype(np.float32)
        mean = x.mean()
        x = ((x - mean) * contrast + mean) * brightness
        return np.clip(np.rint(x), 0, 255).astype(np.uint8)
    if shift == "blur":
        sigma = max(0.5, 0.01 * min(height, width))
        return np.asarray(Image.fromarray(image).filter(ImageFilter.GaussianBlur(sigma)), dtype=np.uint8)
    if shift == "noise":
        noise = rng.standard_normal(size=image.shape, dtype=np.float32) * np.float32(0.10 * 255.0)
        return np.clip(np.rint(image.astype(np.float32) + noise), 0, 255).astype(np.uint8)
    raise ValueError(f"unknown shift {shift!r} (known: {', '.join(SHIFT_NAMES)})")


def apply_suite(pixels: np.ndarray, keys: Sequence[str], seed: int = SEED) -> tuple[np.ndarray, np.ndarray]:
    """The suite on a batch: (shifted uint8 N x H x W x 3, index of each image's shift in ``SHIFTS``)."""
    pixels = np.asarray(pixels)
    if len(pixels) != len(keys):
        raise ValueError(f"{len(pixels)} images but {len(keys)} keys")
    ids = np.array([shift_of(str(k), seed) for k in keys], dtype=np.int64)
    out = np.empty_like(pixels, dtype=np.uint8)
    for i, (image, key, index) in enumerate(zip(pixels, keys, ids)):
        name = SHIFTS[index].name
        out[i] = shift_image(np.ascontiguousarray(image, dtype=np.uint8), name, rng_for(str(key), name, seed))
    return out, ids


def write_shifted(
    source: str | Path, target: str | Path, keys: Sequence[str], seed: int = SEED, chunk: int = 64
) -> np.ndarray:
    """Shift the images of a pixel .npy (bench's ``testset.save_pixels`` format) into ``target``, in chunks
    (never the whole set in memory). Returns each image's shift index."""
    n = pixel_count(source)
    if n != len(keys):
        raise ValueError(f"{n} images in {source} but {len(keys)} keys")
    shape = read_pixels(source, 0, 1).shape[1:] if n else (0, 0, 3)
    out = np.lib.format.open_memmap(target, mode="w+", dtype=np.uint8, shape=(n, *shape))
    ids = np.zeros(n, dtype=np.int64)
    start = 0
    for batch in iter_pixels(source, chunk):
        stop = start + len(batch)
        out[start:stop], ids[start:stop] = apply_suite(batch, keys[start:stop], seed)
        start = stop
    out.flush()
    del out
    return ids


# ----------------------------------------------------------------------------- accuracy under the suite


def summarize(
    y_true: Sequence[int] | np.ndarray,
    y_pred: Sequence[int] | np.ndarray,
    shift_ids: Sequence[int] | np.ndarray,
    seed: int = SEED,
) -> dict[str, Any]:
    """Accuracy overall and per shift (what bench.json records per artifact under ``robustness``)."""
    true, pred, ids = (np.asarray(a, dtype=np.int64).reshape(-1) for a in (y_true, y_pred, shift_ids))
    if not (len(true) == len(pred) == len(ids)):
        raise ValueError(f"lengths differ: {len(true)} labels, {len(pred)} predictions, {len(ids)} shifts")
    right = true == pred
    by_shift = {}
    for index, shift in enumerate(SHIFTS):
        mask = ids == index
        n = int(mask.sum())
        by_shift[shift.name] = {
            "images": n,
            "correct": int(right[mask].sum()),
            "accuracy": float(right[mask].mean()) if n else None,
        }
    n = len(true)
    return {
        "accuracy": float(right.mean()) if n else 0.0,
        "images": n,
        "correct": int(right.sum()),
        "by_shift": by_shift,
        "seed": int(seed),
        "version": SUITE_VERSION,
    }


def evaluate(
    predict: Callable[[np.ndarray], Any],
    pixels: Any,
    labels: Sequence[int],
    keys: Sequence[str],
    seed: int = SEED,
    batch: int = 32,
) -> dict[str, Any]:
    """Accuracy of ``predict`` under the suite.

    ``predict``: a uint8 N x H x W x 3 batch -> class indices (N) or scores (N x classes; argmax taken),
    in the order of ``labels`` (the true class index of each image). ``pixels``: the clean images at the
    model's input size, as one array (or rows on disk: anything sliceable with a ``shape``) or as an iterable of
    batches (in the order of ``keys``/``labels``).
    ``keys``: a stable name per image (its path relative to the data folder), which seeds its shift.
    """
    chunks: Iterable[np.ndarray]
    if hasattr(pixels, "shape") and hasattr(pixels, "__getitem__"):  # an array, or pixels on disk (runtime.pixel_cache)
        chunks = (pixels[i : i + batch] for i in range(0, len(pixels), batch))
    else:
        chunks = pixels
    predictions: list[int] = []
    ids: list[int] = []
    start = 0
    for chunk in chunks:
        stop = start + len(chunk)
        shifted, chunk_ids = apply_suite(chunk, keys[start:stop], seed)
        out = np.asarray(predict(shifted))
        predictions += (out.argmax(axis=1) if out.ndim == 2 else out.reshape(-1)).astype(np.int64).tolist()
        ids += chunk_ids.tolist()
        start = stop
    if start != len(keys) or len(labels) != len(keys):
        raise ValueError(f"{start} images, {len(keys)} keys and {len(labels)} labels: they must match")
    return summarize(labels, predictions, ids, seed)
