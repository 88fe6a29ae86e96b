"""keras.applications families, built on the caller's input tensor so the model stays flat.

Weights: ``imagenet`` (Keras's own download and cache in ``$KERAS_HOME/models``), a local ``.h5`` /
``.weights.h5`` file, or ``none``.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from edge_export.core.errors import EdgeExportError
from edge_export.core.untrusted import printable
from edge_export.trainer.backbones.registry import BackboneSpec, register


def _application(constructor: str, **kwargs: Any):
    def build(keras: Any, x: Any, weights: str) -> Any:
        local = weights not in ("imagenet", "none")
        if local and not Path(weights).is_file():
            raise EdgeExportError(
                "weights file not found", path=weights, hint="pass imagenet, none, or an existing .h5 file"
            )
        try:
            base = getattr(keras.applications, constructor)(
                include_top=False,
                weights=None if weights == "none" else weights,
                input_tensor=x,
                **kwargs,
            )
        except Exception as exc:  # keras.utils.get_file raises a bare Exception("URL fetch failure on URL: ...")
            if "URL fetch failure" not in str(exc):
                raise
            raise _download_failed(str(exc)) from None
        return base.output

    return build


def _download_failed(message: str) -> EdgeExportError:
    match = re.search(r"URL fetch failure on (\S+?):? ", message)
    url = match.group(1) if match else "the ImageNet weights"
    file = url.rsplit("/", 1)[-1] if match else "the weights file"
    cache = Path(os.environ.get("KERAS_HOME") or Path.home() / ".keras") / "models"
    return EdgeExportError(
        f"could not download the ImageNet weights {printable(url)}: {printable(message.split(' -- ', 1)[-1])}",
        hint=f"download {printable(file)} elsewhere and copy it into {printable(cache)}, or pass model.weights=PATH "
        "(a local .h5 file), or model.weights=none (no pretrained weights)",
    )


def _bgr_first_conv(layer_name: str):
    """Caffe-style models expect BGR; flip the first conv's input channels so the model takes RGB."""

    def fix(model: Any, weights: str) -> None:
        if weights == "none":
            return
        layer = model.get_layer(layer_name)
        kernel, bias = layer.get_weights()
        layer.set_weights([kernel[:, :, ::-1, :], bias])

    return fix


KERAS_WEIGHTS = "keras.applications ImageNet weights (downloaded once into $KERAS_HOME/models)"


def keras_cache() -> Path:
    """Where Keras keeps downloaded weights: ``$KERAS_HOME/models`` (default ``~/.keras/models``)."""
    return Path(os.environ.get("KERAS_HOME") or Path.home() / ".keras") / "models"


def _cached(pattern: str):
    """``offline_weights`` of a keras.applications family: its no-top weights file (``{size}``: the input
    size, for families with one file per size) is already in the Keras cache."""

    def available(size: int) -> bool:
        return any(keras_cache().glob(pattern.format(size=size)))

    return available


register(
    BackboneSpec(
        name="vgg16",
        default_size=224,
        build=_application("VGG16"),
        unit_pattern=r"^(block\d+)_",
        mean=(123.68, 116.779, 103.939),  # caffe means, RGB order (channels flipped in the first conv)
        weights_source=KERAS_WEIGHTS,
        finish=_bgr_first_conv("block1_conv1"),
        offline_weights=_cached("vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5"),
        description="VGG16, the classic recipe's backbone (large, slow)",
    )
)

register(
    BackboneSpec(
        name="mobilenet_v1_025",
        default_size=224,
        build=_application("MobileNet", alpha=0.25),
        unit_pattern=r"^conv_(?:dw|pw)_(\d+)",
        mean=(127.5, 127.5, 127.5),
        std=(127.5, 127.5, 127.5),
        fixed_sizes=(128, 160, 192, 224),
        weights_source=KERAS_WEIGHTS,
        offline_weights=_cached("mobilenet_2_5_{size}_tf_no_top.h5"),
        description="MobileNet v1, width 0.25 (tiny)",
    )
)

register(
    BackboneSpec(
        name="mobilenet_v2",
        default_size=224,
        build=_application("MobileNetV2"),
        unit_pattern=r"^(expanded_conv|block_\d+|Conv_1)(?:_|$)",
        mean=(127.5, 127.5, 127.5),
        std=(127.5, 127.5, 127.5),
        fixed_sizes=(96, 128, 160, 192, 224),
        weights_source=KERAS_WEIGHTS,
        offline_weights=_cached("mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_{size}_no_top.h5"),
        description="MobileNetV2 1.0",
    )
)

for _name, _ctor in (("mobilenet_v3_small", "MobileNetV3Small"), ("mobilenet_v3_large", "MobileNetV3Large")):
    register(
        BackboneSpec(
            name=_name,
            default_size=224,
            build=_application(_ctor, include_preprocessing=True),  # takes 0-255 itself
            unit_pattern=r"^(expanded_conv(?:_\d+)?|conv_1)(?:_|$)",
            weights_source=KERAS_WEIGHTS,
            offline_weights=_cached(f"weights_{_name}_*_no_top_v2.h5"),
            description=f"{_ctor} (includes its own rescaling)",
        )
    )

register(
    BackboneSpec(
        name="efficientnet_b0",
        default_size=224,
        build=_application("EfficientNetB0"),  # includes its own rescaling/normalization: takes 0-255
        unit_pattern=r"^(stem|block\d+[a-z]|top)_",
        weights_source=KERAS_WEIGHTS,
        offline_weights=_cached("efficientnetb0_notop.h5"),
        description="EfficientNet-B0 (Keras applications)",
    )
)
