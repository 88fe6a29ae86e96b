"""Preprocessing as data: stored with every model and artifact so training and runtime cannot drift.

Models built by edge-export take RGB pixel values 0-255 at ``size`` (normalization is inside the
model), so their spec has mean 0 and std 1. Models made elsewhere (e.g. a float MobileNet that
expects (x - 127.5) / 127.5) carry other values; the runtime applies them before the model.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from edge_export.errors import EdgeExportError
from edge_export.runtime.images import RESIZE_METHODS


@dataclass(frozen=True)
class Preprocessing:
    size: tuple[int, int]  # (height, width)
    resize: str = "bilinear"
    color: str = "RGB"
    mean: tuple[float, float, float] = (0.0, 0.0, 0.0)
    std: tuple[float, float, float] = (1.0, 1.0, 1.0)
    # what the model's input expects after normalization: float pixels
    input_range: tuple[float, float] = field(default=(0.0, 255.0))

    def __post_init__(self) -> None:
        if self.resize not in RESIZE_METHODS:
            raise EdgeExportError(
                f"unknown resize method {self.resize!r}", hint=f"use one of {sorted(RESIZE_METHODS)}"
            )
        if len(self.size) != 2 or min(self.size) < 8:
            raise EdgeExportError(f"bad input size {self.size}", hint="give (height, width), each >= 8")
        if any(s == 0 for s in self.std):
            raise EdgeExportError("std must not contain 0")

    @property
    def is_identity(self) -> bool:
        return all(m == 0 for m in self.mean) and all(s == 1 for s in self.std)

    def normalize(self, pixels: np.ndarray) -> np.ndarray:
        """uint8 NxHxWx3 -> float32 model input."""
        x = pixels.astype(np.float32)
        if not self.is_identity:
            x = (x - np.asarray(self.mean, np.float32)) / np.asarray(self.std, np.float32)
        return x

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["size"] = list(self.size)
        d["mean"] = list(self.mean)
        d["std"] = list(self.std)
        d["input_range"] = list(self.input_range)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Preprocessing":
        try:
            return cls(
                size=tuple(int(v) for v in d["size"]),
                resize=d.get("resize", "bilinear"),
                color=d.get("color", "RGB"),
                mean=tuple(float(v) for v in d.get("mean", (0, 0, 0))),
                std=tuple(float(v) for v in d.get("std", (1, 1, 1))),
                input_range=tuple(float(v) for v in d.get("input_range", (0, 255))),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise EdgeExportError(f"malformed preprocessing description {d!r}: {exc}") from None
