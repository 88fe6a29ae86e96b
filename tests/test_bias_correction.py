"""Bias correction (export/bias_correction.py): the mean shift that int8 weight rounding causes is removed."""

from __future__ import annotations

import numpy as np
import pytest


def _model(nested: bool):
    """conv -> BN -> depthwise -> BN -> mean -> dense, with random weights and BN statistics; optionally inside a
    nested functional model (as a Keras applications base sits inside a classifier)."""
    import keras

    keras.utils.set_random_seed(0)  # the layers' initial weights too
    rng = np.random.default_rng(0)
    x = keras.Input((24, 24, 3))
    y = keras.layers.Conv2D(8, 3, padding="same", use_bias=False)(x)
    y = keras.layers.BatchNormalization()(y)
    y = keras.layers.DepthwiseConv2D(3, padding="same", use_bias=False)(y)
    y = keras.layers.BatchNormalization()(y)
    y = keras.layers.GlobalAveragePooling2D()(y)
    y = keras.layers.Dense(3)(y)
    model = keras.Model(x, y)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            n = layer.gamma.shape[0]
            layer.set_weights(
                [rng.uniform(0.2, 3, n), rng.normal(0, 1, n), rng.normal(0, 1, n), rng.uniform(0.1, 4, n)]
            )
        elif layer.weights:
            # weights of very different sizes per channel: their int8 rounding steps differ a lot
            layer.set_weights(
                [w + rng.normal(0, 1, w.shape) * rng.choice([0.01, 1.0], w.shape) for w in layer.get_weights()]
            )
    if not nested:
        return model
    outer_in = keras.Input((24, 24, 3))
    return keras.Model(outer_in, keras.layers.Rescaling(0.5)(model(outer_in)))


def _rounded(model):
    """``model`` with every conv's BN-folded weights (and the dense weights) rounded as the converter rounds them."""
    import keras

    from edge_export.export.bias_correction import correctable_layers, int8_per_channel

    inner = [m for m in [model, *model.layers] if isinstance(m, keras.Model) and correctable_layers(m)]
    for m in inner:
        for item in correctable_layers(m):
            kernel, *rest = item.conv.get_weights()
            if item.bn is None:
                item.conv.set_weights([int8_per_channel(kernel, 1 if kernel.ndim == 2 else 3), *rest])
                continue
            gamma, _, _, var = item.bn.get_weights()
            g = gamma / np.sqrt(var + item.bn.epsilon)
            axis, shape = (
                (2, (1, 1, -1, 1)) if isinstance(item.conv, keras.layers.DepthwiseConv2D) else (3, (1, 1, 1, -1))
            )
            folded = kernel * g.reshape(shape)
            item.conv.set_weights([int8_per_channel(folded, axis) / g.reshape(shape), *rest])
    return model


@pytest.mark.parametrize("nested", [False, True])
def test_rounded_weights_keep_the_float_mean_after_correction(nested, tmp_path):
    import keras

    from edge_export.export.bias_correction import bias_correct

    model = _model(nested)
    path = tmp_path / "m.keras"
    model.save(path)
    pixels = np.random.default_rng(1).integers(0, 256, (32, 24, 24, 3), dtype=np.uint8)
    x = pixels.astype(np.float32)
    reference = np.asarray(model(x))
    plain = np.asarray(_rounded(keras.models.load_model(path))(x))
    corrected_model = keras.models.load_model(path)
    info = bias_correct(corrected_model, pixels)
    assert info["layers"] == 3  # conv + BN, depthwise + BN, dense
    corrected = np.asarray(_rounded(corrected_model)(x))
    mean_error_plain = np.abs((plain - reference).mean(axis=0)).max()
    mean_error_corrected = np.abs((corrected - reference).mean(axis=0)).max()
    assert mean_error_plain > 1e-4  # the rounding does shift the outputs of this model
    assert mean_error_corrected < mean_error_plain / 10


def test_a_model_with_nothing_to_correct_is_left_alone():
    import keras

    from edge_export.export.bias_correction import bias_correct

    x = keras.Input((8, 8, 3))
    model = keras.Model(x, keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(2, 1, use_bias=False)(x)))
    before = [w.copy() for w in model.get_weights()]
    assert bias_correct(model, np.zeros((4, 8, 8, 3), np.uint8))["layers"] == 0
    assert all(np.array_equal(a, b) for a, b in zip(before, model.get_weights()))


def test_a_run_folder_and_the_tune_probe_are_one_conversion_source(tiny_export, tmp_path):
    """The converters' one interface (export/source.py): a run folder's context and the tune's random-weight
    probe both provide it; only the run folder has photos to judge a conversion choice by."""
    from edge_export.core.config import load_config
    from edge_export.core.run_folder import RunFolder
    from edge_export.export.context import ExportContext
    from edge_export.export.source import ConversionSource
    from edge_export.tuning.latency import RandomWeightExport

    run = RunFolder(tiny_export["run"])
    config = load_config(run.config)
    ctx = ExportContext(run, config.export, config)
    probe = RandomWeightExport(ctx.model, "tiny_cnn", 32, ["a", "b"], config.export, tmp_path)
    try:
        assert isinstance(ctx, ConversionSource) and isinstance(probe, ConversionSource)
        pixels, reference = ctx.judging_photos()
        assert len(pixels) == len(reference) and reference.shape[1] == 2
        assert ctx.model_copy() is not ctx.model
        assert probe.judging_photos() is None and probe.model_copy() is None
    finally:
        ctx.close()


@pytest.mark.parametrize("mode", ["never", "always", "auto"])
def test_export_setting_decides_and_the_manifest_says_what_was_done(tiny_export, tmp_path, mode):
    import shutil

    from edge_export import api

    run = tmp_path / "run"
    shutil.copytree(tiny_export["run"], run, ignore=shutil.ignore_patterns("export"))
    result = api.export(run, formats="tflite-int8", echo=None, overrides=[f"export.int8_bias_correction={mode}"])
    assert result.ok
    details = result.manifest.artifact("tflite-int8").details
    if mode == "never":
        assert "bias_correction" not in details
        return
    decision = details["bias_correction"]
    assert decision["mode"] == mode and decision["layers"] >= 1
    if mode == "always":
        assert decision["used"] is True and "validation" not in decision
    else:  # chosen on the validation photos: the one agreeing better (ties: the smaller mean difference)
        without, with_ = decision["validation"]["without"], decision["validation"]["with"]
        better = (with_["top1_agreement"], -with_["mean_abs_diff"]) > (
            without["top1_agreement"],
            -without["mean_abs_diff"],
        )
        assert decision["used"] is better
