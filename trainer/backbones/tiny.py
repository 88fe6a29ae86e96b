"""A tiny random-weight CNN for tests and smoke runs: seconds to train, same contract as the others."""

from __future__ import annotations

from typing import Any

from edge_export.core.errors import EdgeExportError
from edge_export.trainer.backbones.registry import BackboneSpec, register


def tiny_cnn_features(keras: Any, x: Any, weights: str) -> Any:
    if weights not in ("none", "imagenet"):
        raise EdgeExportError("tiny_cnn has no weights file", hint="use weights=none")
    layers = keras.layers
    for i, filters in enumerate((8, 16, 32)):
        x = layers.Conv2D(filters, 3, strides=2, padding="same", use_bias=False, name=f"block{i}_conv")(x)
        x = layers.BatchNormalization(epsilon=1e-3, name=f"block{i}_bn")(x)
        x = layers.ReLU(6.0, name=f"block{i}_relu")(x)
    return x


register(
    BackboneSpec(
        name="tiny_cnn",
        default_size=32,
        build=tiny_cnn_features,
        unit_pattern=r"^(block\d+)_",
        mean=(127.5, 127.5, 127.5),
        std=(127.5, 127.5, 127.5),
        min_size=16,
        weights_source="random initialization (no pretrained weights)",
        description="3-layer CNN with random weights, for tests and smoke runs",
    )
)
