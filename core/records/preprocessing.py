"""``Preprocessing``: the one record of what a model's input expects, stored with every model and artifact.

Owned here, in the foundation layer, so training, import, export metadata, the runtime, bench and the device
bundle read the same typed record and none re-derives a default: the defaults are this dataclass's fields
(bilinear, mean 0, std 1), and ``ModelSpec.preprocessing_record()`` is the one way from a run's spec to it.

Models built or imported by edge-export take RGB pixel values 0-255 at ``size`` (normalization is inside the
model), so their record has mean 0 and std 1. Models made elsewhere (e.g. a float MobileNet that expects
(x - 127.5) / 127.5) carry other values; the runtime applies them before the model.

Every field is read: ``size``, ``resize`` and ``decoder`` by the image loader (as one ``pixel_method``),
``mean``/``std`` by ``normalize``. Older artifacts also carry ``color`` (always "RGB") and ``input_range``, which
nothing read: they are no longer written, and still checked when present (a model that asks for BGR is refused,
not silently mispredicted).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

import numpy as np

from edge_export.core.errors import EdgeExportError
from edge_export.core.untrusted import finite_number, printable

# how a photo is resized to the input (the runtime maps each name to its resampling filter: runtime/images.py)
RESIZE_METHODS = ("bilinear", "bicubic", "nearest", "area")
# which library decodes and resizes (runtime/images.py): Pillow (every artifact before the field existed, and the
# fallback where OpenCV is not installed) or OpenCV (JPEG decoded by libjpeg-turbo at a reduced DCT scale where
# the photo is at least twice the input, other formats by Pillow; resized by cv2.resize)
DECODERS = ("pillow", "opencv")
DEFAULT_DECODER = "pillow"  # what a record without the field means


def pixel_method(resize: str, decoder: str = DEFAULT_DECODER) -> str:
    """The one key of how pixels are made from a file, passed through the pixel pipeline (decode_many, the pixel
    cache, bench's decode groups): the resize name alone for Pillow (as it always was), else ``decoder:resize``."""
    return resize if decoder == DEFAULT_DECODER else f"{decoder}:{resize}"


def parse_pixel_method(method: str) -> tuple[str, str]:
    """(decoder, resize) of a ``pixel_method`` key; an unknown name is an error naming the choices."""
    decoder, _, resize = method.rpartition(":") if isinstance(method, str) else ("", "", method)
    decoder = decoder or DEFAULT_DECODER
    if decoder not in DECODERS or resize not in RESIZE_METHODS:
        raise EdgeExportError(
            f"unknown pixel method {printable(repr(method), 80)}",
            hint=f"a resize ({', '.join(RESIZE_METHODS)}), optionally after a decoder: "
            f"{', '.join(d + ':' for d in DECODERS)}",
        )
    return decoder, resize


MAX_INPUT_SIDE = 8192  # pixels a side of a model input; larger is refused before allocating anything
# (x - mean) / std on pixels 0-255: a std below this (or any value beyond MAX_NORMALIZATION) is degenerate.
MIN_STD = 1e-3
MAX_NORMALIZATION = 1e6


@dataclass(frozen=True)
class Preprocessing:
    size: tuple[int, int]  # (height, width)
    resize: str = "bilinear"
    mean: tuple[float, float, float] = (0.0, 0.0, 0.0)
    std: tuple[float, float, float] = (1.0, 1.0, 1.0)
    decoder: str = DEFAULT_DECODER  # the library that made the training pixels: the runtime uses the same

    def __post_init__(self) -> None:
        """Every value is checked here, wherever it came from (model metadata, flags, a dict): non-finite,
        degenerate or absurd values are errors, never nan scores."""
        if self.resize not in RESIZE_METHODS:
            raise EdgeExportError(
                f"unknown resize method {printable(repr(self.resize), 80)}", hint=f"use one of {sorted(RESIZE_METHODS)}"
            )
        if self.decoder not in DECODERS:
            raise EdgeExportError(
                f"unknown image decoder {printable(repr(self.decoder), 80)}",
                hint=f"use one of {', '.join(DECODERS)} (a newer edge-export may know more)",
            )
        if (
            len(self.size) != 2
            or not all(isinstance(s, (int, np.integer)) and not isinstance(s, bool) for s in self.size)
            or min(self.size) < 8
            or max(self.size) > MAX_INPUT_SIDE
        ):
            raise EdgeExportError(
                f"bad input size {printable(self.size, 80)}",
                hint=f"give (height, width), integers from 8 to {MAX_INPUT_SIDE}",
            )
        for name, values, low in (("mean", self.mean, None), ("std", self.std, MIN_STD)):
            if len(values) != 3:
                raise EdgeExportError(f"{name} must have 3 values (R, G, B), got {printable(values, 80)}")
            for channel, value in zip("RGB", values):
                number = finite_number(value, what=f"{name} ({channel})")
                if abs(number) > MAX_NORMALIZATION or (low is not None and number < low):
                    raise EdgeExportError(
                        f"{name} ({channel}) is {number!r}: outside {low if low is not None else -MAX_NORMALIZATION:g}"
                        f"..{MAX_NORMALIZATION:g}",
                        hint="mean and std are in pixel units (0-255); a std near zero blows the image up to infinity",
                    )

    @property
    def pixel_method(self) -> str:
        """How pixels are made for this input (decoder and resize), as the pixel pipeline takes it."""
        return pixel_method(self.resize, self.decoder)

    @property
    def is_identity(self) -> bool:
        return all(m == 0 for m in self.mean) and all(s == 1 for s in self.std)

    def normalize(self, pixels: np.ndarray) -> np.ndarray:
        """uint8 NxHxWx3 -> float32 model input."""
        x: np.ndarray = pixels.astype(np.float32)
        if not self.is_identity:
            x = (x - np.asarray(self.mean, np.float32)) / np.asarray(self.std, np.float32)
        return x

    def to_dict(self) -> dict[str, Any]:
        out = {"size": list(self.size), "resize": self.resize, "mean": list(self.mean), "std": list(self.std)}
        if self.decoder != DEFAULT_DECODER:  # absent = Pillow: records written before the field read the same
            out["decoder"] = self.decoder
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Preprocessing:
        try:
            _check_legacy(d.get("color", "RGB"), tuple(float(v) for v in d.get("input_range", (0, 255))))
            # cast: tuples of any length from the document; __post_init__ checks each length and value
            return cls(
                size=cast(tuple[int, int], tuple(_integer(v) for v in d["size"])),
                resize=d.get("resize", "bilinear"),
                mean=cast(tuple[float, float, float], tuple(float(v) for v in d.get("mean", (0, 0, 0)))),
                std=cast(tuple[float, float, float], tuple(float(v) for v in d.get("std", (1, 1, 1)))),
                decoder=d.get("decoder", DEFAULT_DECODER),
            )
        except (KeyError, TypeError, ValueError, OverflowError, AttributeError) as exc:
            raise EdgeExportError(
                f"malformed preprocessing description {printable(repr(d), 200)}: {printable(str(exc), 200)}"
            ) from None


def _check_legacy(color: Any, input_range: tuple[float, ...]) -> None:
    """The two fields older artifacts carry: the runtime feeds RGB 0-255 pixels, so only those are accepted."""
    if color != "RGB":
        raise EdgeExportError(f"unknown color {printable(repr(color), 80)}", hint="use 'RGB'")
    low, high = (finite_number(v, what="input_range") for v in input_range) if len(input_range) == 2 else (0, 0)
    if not low < high:
        raise EdgeExportError(f"input_range must be (low, high) with low < high, got {printable(input_range, 80)}")


def _integer(value: Any) -> int:
    """An integer from a document (224 or 224.0); a fraction, a bool or text is an error, never truncated."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer)) or not float(value).is_integer():
        raise ValueError(f"{printable(repr(value), 40)} is not a whole number")
    return int(value)
