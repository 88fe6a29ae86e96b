"""Bias correction for full-integer post-training quantization (Nagel et al. 2019, "Data-Free Quantization
Through Weight Equalization and Bias Correction", section 4.2; Finkelstein et al. 2019).

Rounding a layer's weights to int8 shifts the mean of its outputs: E[W_q x] - E[W x] = (W_q - W) E[x], a
systematic error per output channel that the layers after it carry on. The converter quantizes each
convolution's weights after folding the BatchNormalization that follows it (per output channel, symmetric,
scale max|w| / 127); this module rounds the folded weights the same way, measures E[x] (each convolution's
mean input per channel) on the calibration photos in float, and moves the BatchNormalization's beta (or the
convolution's bias) by the shift, so the quantized model's outputs keep their float means. The float model
changes by exactly the shift; its quantized conversion comes out closer to the original model.

Measured on the Keras tutorial's cats-vs-dogs model (MobileNet alpha 0.25 base, 180 px): rounding the
weights alone made it disagree with the float model on 1.9% of the test photos, and on 0.5% with the
correction (benchmarks/scripts/byom_tutorial.py). Whether a model's int8 export uses it is decided on its
validation photos (export/tflite.py): the conversion agreeing better with the Keras model is kept.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

BATCH = 8  # photos per probe pass: activations of every corrected layer are summed, never kept
# photos the input means are measured on (the first of the calibration set): means over every position of 64
# photos moved EfficientNet-Lite0's corrections by at most 5% of the largest against 200, in a third of the time
IMAGES = 64


@dataclass
class Correctable:
    conv: Any  # Conv2D, DepthwiseConv2D, or Dense (on N x C: a classifier head)
    bn: Any | None  # the BatchNormalization applied to its output (folded by the converter), or None


def correctable_layers(model: Any) -> list[Correctable]:
    """The convolutions of ``model`` itself (not of models nested in it) that the correction applies to, each with
    the BatchNormalization applied to its output, in graph order. Layers called more than once are left out."""
    import keras  # lazy: Keras (the train extra, imports TensorFlow); only an int8 export needs it

    if not hasattr(model, "inputs") or not _operations(model):
        return []
    bn_of: dict[int, Any] = {}
    for layer in _operations(model):
        if isinstance(layer, keras.layers.BatchNormalization) and len(layer._inbound_nodes) == 1:
            producer = _producer(layer)
            if producer is not None:
                bn_of[id(producer)] = layer
    items = []
    for layer in _operations(model):
        plain = type(layer) is keras.layers.Conv2D and layer.groups == 1
        depthwise = type(layer) is keras.layers.DepthwiseConv2D and layer.depth_multiplier == 1
        dense = type(layer) is keras.layers.Dense and len(layer.input.shape) == 2
        if not (plain or depthwise or dense) or len(layer._inbound_nodes) != 1:
            continue
        bn = bn_of.get(id(layer))
        if bn is not None:
            if bn.center:  # the shift goes into its beta; without one (center=False) there is nowhere to put it
                items.append(Correctable(layer, bn))
        elif layer.use_bias:
            items.append(Correctable(layer, None))
    return items


def _operations(model: Any) -> list[Any]:
    """The layers of a functional model in graph order; of a Sequential, its layers."""
    operations = getattr(model, "operations", None)
    return list(operations if operations is not None else getattr(model, "layers", []))


def _producer(layer: Any) -> Any | None:
    try:
        history = layer.input._keras_history
        return history[0] if history else None
    except (AttributeError, ValueError):
        return None


def int8_per_channel(weights: np.ndarray, axis: int) -> np.ndarray:
    """Weights rounded as the TFLite converter rounds them: symmetric int8 per ``axis`` channel, max|w| / 127."""
    reduce = tuple(a for a in range(weights.ndim) if a != axis)
    scale = np.abs(weights).max(axis=reduce, keepdims=True) / 127.0
    scale[scale == 0] = 1.0
    return np.round(weights / scale) * scale


def _shift(item: Correctable, tap_means: np.ndarray) -> np.ndarray:
    """(W_q - W) E[x] per output channel, for the folded weights the converter quantizes. ``tap_means``: the mean
    input each kernel tap sees (KH x KW x C, zero padding included), or the mean input (C) of a Dense layer."""
    import keras  # lazy: Keras (the train extra, imports TensorFlow); only an int8 export needs it

    conv, bn = item.conv, item.bn
    kernel = np.asarray(conv.get_weights()[0], np.float64)
    if isinstance(conv, keras.layers.Dense):  # Cin x Cout, no BatchNormalization folded
        delta = int8_per_channel(kernel, 1) - kernel
        return np.einsum("io,i->o", delta, tap_means)
    if bn is not None:
        gamma = np.asarray(bn.gamma.numpy() if bn.gamma is not None else np.ones(bn.moving_variance.shape), np.float64)
        g = gamma / np.sqrt(np.asarray(bn.moving_variance.numpy(), np.float64) + bn.epsilon)
    else:
        g = np.ones(kernel.shape[2] if isinstance(conv, keras.layers.DepthwiseConv2D) else kernel.shape[3])
    if isinstance(conv, keras.layers.DepthwiseConv2D):  # kernel KH x KW x C x 1: output channel c reads input c
        folded = kernel * g[None, None, :, None]
        delta = int8_per_channel(folded, 2) - folded
        return np.einsum("hwc,hwc->c", delta[..., 0], tap_means)
    folded = kernel * g[None, None, None, :]  # KH x KW x Cin x Cout
    delta = int8_per_channel(folded, 3) - folded
    return np.einsum("hwio,hwi->o", delta, tap_means)


def _tap_sums(layer, values: np.ndarray) -> np.ndarray:
    """Sum over photos and output positions of what each kernel tap of ``layer`` reads (KH x KW x C), with the
    layer's zero padding ('same' pads as TensorFlow does: the extra pixel after)."""
    kh, kw = layer.kernel_size
    sh, sw = layer.strides
    dh, dw = layer.dilation_rate
    n, height, width, channels = values.shape
    if layer.padding == "same":
        out_h, out_w = -(-height // sh), -(-width // sw)
        pad_h = max((out_h - 1) * sh + (kh - 1) * dh + 1 - height, 0)
        pad_w = max((out_w - 1) * sw + (kw - 1) * dw + 1 - width, 0)
        values = np.pad(values, ((0, 0), (pad_h // 2, pad_h - pad_h // 2), (pad_w // 2, pad_w - pad_w // 2), (0, 0)))
    else:
        out_h, out_w = (height - (kh - 1) * dh - 1) // sh + 1, (width - (kw - 1) * dw - 1) // sw + 1
    sums = np.zeros((kh, kw, channels), np.float64)
    for i in range(kh):
        for j in range(kw):
            window = values[
                :, i * dh : i * dh + (out_h - 1) * sh + 1 : sh, j * dw : j * dw + (out_w - 1) * sw + 1 : sw, :
            ]
            sums[i, j] = window.sum(axis=(0, 1, 2), dtype=np.float64)
    return sums / max(out_h * out_w, 1)


def _input_means(model: Any, items: list[Correctable], inputs: list[np.ndarray]) -> list[np.ndarray]:
    """For each layer, the mean input of each kernel tap (a Dense layer: of each input), from float activations."""
    import keras  # lazy: Keras (the train extra, imports TensorFlow); only an int8 export needs it

    probe = keras.Model(model.inputs, [item.conv.input for item in items])
    sums: list[Any] = [0.0] * len(items)
    count = 0
    for batch in _batches(inputs):
        outs = probe(batch if len(batch) > 1 else batch[0], training=False)
        outs = outs if isinstance(outs, (list, tuple)) else [outs]
        for i, (item, out) in enumerate(zip(items, outs)):
            values = np.asarray(out, np.float64)
            if isinstance(item.conv, keras.layers.Dense):
                sums[i] = sums[i] + values.sum(axis=0)
            else:
                sums[i] = sums[i] + _tap_sums(item.conv, values)
        count += len(batch[0])
    return [np.asarray(total) / max(count, 1) for total in sums]


def nested_inputs(parent: Any, nested: Any, parent_inputs: list[np.ndarray]) -> list[np.ndarray] | None:
    """What ``nested`` (a model called inside ``parent``) receives for ``parent_inputs``: None when unknown."""
    import keras  # lazy: Keras (the train extra, imports TensorFlow); only an int8 export needs it

    for node in nested._inbound_nodes:
        tensors = list(getattr(node, "input_tensors", []) or [])
        if not tensors:
            continue
        try:
            probe = keras.Model(parent.inputs, tensors)
        except Exception:  # a node of another graph (the nested model's own construction)
            continue
        outs = [probe(x if len(parent_inputs) > 1 else x[0], training=False) for x in _batches(parent_inputs)]
        outs = [o if isinstance(o, (list, tuple)) else [o] for o in outs]
        return [np.concatenate([np.asarray(o[i]) for o in outs]) for i in range(len(tensors))]
    return None


def _batches(inputs: list[np.ndarray]):
    for start in range(0, len(inputs[0]), BATCH):
        yield [x[start : start + BATCH] for x in inputs]


def bias_correct(model: Any, pixels: np.ndarray) -> dict[str, Any]:
    """Correct ``model`` in place (a copy the caller owns) on the first ``IMAGES`` calibration ``pixels`` (uint8
    N x S x S x 3, the model's 0-255 input). Returns what was done: layers corrected and the largest shift."""
    import keras  # lazy: Keras (the train extra, imports TensorFlow); only an int8 export needs it

    corrected, largest = 0, 0.0
    todo: list[tuple[Any, list[np.ndarray] | None]] = [(model, [np.asarray(pixels[:IMAGES], np.float32)])]
    seen: set[int] = set()
    while todo:
        current, inputs = todo.pop(0)
        if id(current) in seen or inputs is None:
            continue
        seen.add(id(current))
        items = correctable_layers(current)
        if items:
            for item, mean in zip(items, _input_means(current, items, inputs)):
                shift = _shift(item, mean)
                largest = max(largest, float(np.abs(shift).max(initial=0.0)))
                target = item.bn.beta if item.bn is not None else item.conv.bias  # folded bias: BN's beta, else its own
                target.assign((np.asarray(target.numpy(), np.float64) - shift).astype(target.dtype))
                corrected += 1
        for layer in _operations(current):
            if isinstance(layer, keras.Model) and layer is not current:
                todo.append((layer, nested_inputs(current, layer, inputs)))
    return {"layers": corrected, "largest_shift": round(largest, 6)}
