"""The runtime's way from uint8 pixels to an integer model input without float math: bit-identical to
normalize + quantize, for every kind of integer input."""

from __future__ import annotations

import numpy as np
import pytest

from edge_export.runtime.backends.base import TensorSpec
from edge_export.runtime.preprocessing import Preprocessing, direct_input
from edge_export.runtime.quantization import quantize


@pytest.mark.parametrize(
    "dtype, scale, zero_point, mean, std, kind",
    [
        (np.uint8, 1.0, 0, (0, 0, 0), (1, 1, 1), "_pixels_as_they_are"),  # edge-export int8 models, uint8 io
        (np.int8, 1.0, -128, (0, 0, 0), (1, 1, 1), "_pixels_minus_128"),  # int8 io
        (np.uint8, 0.0078125, 128, (127.5,) * 3, (127.5,) * 3, "take"),  # a TF Hub model's metadata: one table
        (np.int8, 0.0186, -14, (123.7, 116.3, 103.5), (58.4, 57.1, 57.4), "per_channel"),  # ImageNet mean/std
        (np.float32, 0.0, 0, (0, 0, 0), (1, 1, 1), None),  # float input: normalize applies
    ],
)
def test_integer_input_is_filled_without_float_math_and_bit_identical(dtype, scale, zero_point, mean, std, kind):
    spec = TensorSpec("x", (None, 16, 16, 3), np.dtype(dtype), scale, zero_point)
    prep = Preprocessing(size=(16, 16), mean=mean, std=std)
    direct = direct_input(prep, spec)
    if kind is None:
        assert direct is None
        return
    assert direct.__name__ == kind
    pixels = np.random.default_rng(0).integers(0, 256, (2, 16, 16, 3), dtype=np.uint8)
    pixels[0].reshape(-1)[:768] = np.repeat(np.arange(256, dtype=np.uint8), 3)  # every value in every channel
    expected = quantize(prep.normalize(pixels), spec)
    got = direct(pixels)
    assert got.dtype == expected.dtype == np.dtype(dtype) and got.shape == pixels.shape
    np.testing.assert_array_equal(got, expected)
    assert pixels.dtype == np.uint8 and pixels[0].reshape(-1)[767] == 255  # the caller's pixels are untouched


def test_classifier_feeds_the_same_input_as_the_float_path(shared):
    from edge_export.runtime.classifier import Classifier

    path = shared / "reference-models" / "mobilenet_v2_1.0_224_quant.tflite"
    if not path.is_file():
        pytest.skip("no reference model")
    clf = Classifier.load(path, threads=1)
    pixels = np.random.default_rng(1).integers(0, 256, (1, *clf.input_size, 3), dtype=np.uint8)
    expected = quantize(clf.preprocessing.normalize(pixels), clf.backend.input_spec)
    np.testing.assert_array_equal(clf._model_input(pixels), expected)
    from edge_export.runtime.quantization import dequantize

    np.testing.assert_array_equal(
        clf.predict_proba(pixels), dequantize(clf.backend.run(expected), clf.backend.output_spec)
    )
