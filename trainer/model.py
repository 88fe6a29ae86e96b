"""The classifier: normalization inside, a registered backbone, a small softmax head.

Contract of every model edge-export saves or exports: input ``image`` is RGB pixel values 0-255
(float32, N x H x W x 3, H = W = image_size); output is softmax probabilities N x C in labels.txt order.
The same function builds on Keras 3 and on tf_keras (pass the module), with the same layer names.
"""

from __future__ import annotations

from typing import Any

from edge_export.core.records.model_spec import ModelSpec
from edge_export.core.records.preprocessing import Preprocessing
from edge_export.trainer.backbones import BackboneSpec, get_backbone

INPUT_NAME = "image"
NORMALIZE = "normalize"
POOL, DROPOUT, CLASSIFIER = "classifier_pool", "classifier_dropout", "classifier"
HEAD_LAYERS = (POOL, DROPOUT, CLASSIFIER)

__all__ = ["ModelSpec", "build_classifier", "model_preprocessing", "base_layers", "base_units"]


def model_preprocessing(spec: ModelSpec, resize: str | None = None, decoder: str | None = None) -> Preprocessing:
    """What the model's input expects: normalization is inside the model, so plain 0-255 RGB at its size,
    decoded by ``decoder`` and resized by ``resize`` (default: what the spec recorded):
    ``ModelSpec.preprocessing_record``."""
    return spec.preprocessing_record(resize, decoder)


def build_classifier(keras: Any, spec: ModelSpec, weights: str = "imagenet") -> Any:
    backbone = get_backbone(spec.backbone)
    backbone.check_size(spec.image_size, weights)
    inputs = keras.Input((spec.image_size, spec.image_size, 3), name=INPUT_NAME)
    x = inputs
    if backbone.mean != (0.0, 0.0, 0.0) or backbone.std != (1.0, 1.0, 1.0):
        x = keras.layers.Normalization(
            mean=list(backbone.mean), variance=[s * s for s in backbone.std], name=NORMALIZE
        )(x)
    features = backbone.build(keras, x, weights)
    x = keras.layers.GlobalAveragePooling2D(name=POOL)(features)
    x = keras.layers.Dropout(spec.dropout, name=DROPOUT)(x)
    # float32 even under mixed precision (train.mixed_precision): a float16 softmax saturates and its log underflows
    outputs = keras.layers.Dense(spec.num_classes, activation="softmax", name=CLASSIFIER, dtype="float32")(x)
    model = keras.Model(inputs, outputs, name=f"{spec.backbone}_classifier")
    if backbone.finish is not None:
        backbone.finish(model, weights)
    return model


def base_layers(model: Any) -> list[Any]:
    """The backbone's layers in graph order (no input, normalization or head)."""
    skip = {INPUT_NAME, NORMALIZE, *HEAD_LAYERS}
    return [layer for layer in model.layers if layer.name not in skip and not _is_input(layer)]


def base_units(model: Any, spec: BackboneSpec) -> list[tuple[str, list[Any]]]:
    """Base layers grouped into the backbone's blocks, in order. Unnamed layers join the block before."""
    units: list[tuple[str, list[Any]]] = []
    for layer in base_layers(model):
        unit = spec.unit_of(layer.name)
        if unit is None and units:
            units[-1][1].append(layer)
        elif units and units[-1][0] == unit:
            units[-1][1].append(layer)
        else:
            units.append((unit or layer.name, [layer]))
    return units


def _is_input(layer: Any) -> bool:
    return type(layer).__name__ == "InputLayer"
