"""The backbone registry: each entry knows its input size, normalization, blocks and weight source.

A backbone's ``build(keras, x, weights)`` adds the convolutional base on ``x`` (the normalized input
tensor) to the current functional graph and returns its feature map. It receives the ``keras`` module
to build with, so one definition serves Keras 3 and tf_keras (needed for quantization-aware training).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from edge_export.core.errors import EdgeExportError


@dataclass(frozen=True)
class BackboneSpec:
    name: str
    default_size: int
    build: Callable[[Any, Any, str], Any]  # (keras, normalized input tensor, weights) -> feature map
    unit_pattern: str  # regex whose first group names the block a layer belongs to (for fine-tuning)
    mean: tuple[float, float, float] = (0.0, 0.0, 0.0)  # normalization applied inside the model
    std: tuple[float, float, float] = (1.0, 1.0, 1.0)
    min_size: int = 32
    fixed_sizes: tuple[int, ...] | None = None  # sizes for which ImageNet weights exist, if restricted
    weights_source: str = ""
    # called on the whole built model with the weights setting: load weights, fix-ups (e.g. BGR -> RGB)
    finish: Callable[[Any, str], None] | None = None
    description: str = ""
    extra: dict = field(default_factory=dict)
    # whether its ImageNet weights load without a network at this size (installed or already cached); None:
    # no pretrained weights at all (random initialization only, e.g. the test backbone)
    offline_weights: Callable[[int], bool] | None = None
    # in ``edge-export tune``'s default space (when its weights load offline); False: only when tune.backbones
    # names it (a backbone whose cost in the search is not measured yet)
    default_search: bool = True

    @property
    def pretrained(self) -> bool:
        return self.offline_weights is not None

    def weights_offline(self, size: int) -> bool:
        """ImageNet weights for ``size`` load without a network (``edge-export tune``'s default space)."""
        if self.offline_weights is None or (self.fixed_sizes and size not in self.fixed_sizes):
            return False
        try:
            return bool(self.offline_weights(size))
        except OSError:
            return False

    def unit_of(self, layer_name: str) -> str | None:
        match = re.match(self.unit_pattern, layer_name)
        return match.group(1) if match else None

    def check_size(self, size: int, weights: str) -> None:
        if size < self.min_size:
            raise EdgeExportError(
                f"{self.name} needs image_size >= {self.min_size}, got {size}", hint="raise --image-size"
            )
        if self.fixed_sizes and weights == "imagenet" and size not in self.fixed_sizes:
            raise EdgeExportError(
                f"{self.name} ImageNet weights exist only for image sizes {list(self.fixed_sizes)}, got {size}",
                hint=f"use --image-size {self.default_size}, or weights=none",
            )


_REGISTRY: dict[str, BackboneSpec] = {}


def register(spec: BackboneSpec) -> BackboneSpec:
    if spec.name in _REGISTRY:
        raise ValueError(f"backbone {spec.name!r} registered twice")
    _REGISTRY[spec.name] = spec
    return spec


def get_backbone(name: str) -> BackboneSpec:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise EdgeExportError(
            f"unknown backbone {name!r}", hint=f"choose one of: {', '.join(sorted(_REGISTRY))}"
        ) from None


def list_backbones() -> list[BackboneSpec]:
    return [_REGISTRY[n] for n in sorted(_REGISTRY)]
