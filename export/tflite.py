"""TFLite converters (Keras 3): the model is exported once as a SavedModel (``model.export``) and every
TFLite format is converted from it with ``TFLiteConverter.from_saved_model``, the path that works for
Keras 3 (``from_keras_model`` does not). Dynamic batch; input ``image`` N x S x S x 3, 0-255 RGB."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from edge_export.export.bias_correction import bias_correct
from edge_export.export.formats import FormatSpec
from edge_export.export.metadata import embed_tflite_metadata
from edge_export.export.parity import artifact_probabilities
from edge_export.export.source import ConversionSource
from edge_export.runtime.backends.litert import interpreter_class


def saved_model(ctx: ConversionSource) -> Path:
    """The Keras model as a TF SavedModel (serving signature ``image`` -> probabilities), made once."""

    return ctx.memo("saved_model", lambda: _saved_model_of(ctx, ctx.model, "saved_model"))


def _saved_model_of(ctx: ConversionSource, model: Any, name: str) -> Path:
    path = ctx.workdir / name
    model.export(str(path), format="tf_saved_model", verbose=False)
    return path


def _converter(ctx: ConversionSource, model_dir: Path | None = None) -> Any:
    """A TFLite converter of ``model_dir`` (default: the model's SavedModel)."""
    # lazy: TensorFlow (seconds to import, the train extra); only the TFLite conversion needs it
    import tensorflow as tf

    return tf.lite.TFLiteConverter.from_saved_model(str(model_dir or saved_model(ctx)))


def write_tflite(
    ctx: ConversionSource,
    fmt: FormatSpec,
    data: bytes,
    out: Path,
    *,
    calibration_images: int | None = None,
    qat: dict[str, Any] | None = None,
) -> None:
    """Embed the metadata (the ``edge_export`` entry, and the standard ``TFLITE_METADATA`` entry with its
    labels.txt zipped onto the model: export/tflite_metadata.py) and write the model to ``out`` (the
    pipeline's temporary path)."""
    meta = ctx.metadata(fmt, calibration_images=calibration_images, qat=qat)
    out.write_bytes(embed_tflite_metadata(data, meta, standard=True))


def convert_fp32(ctx: ConversionSource, fmt: FormatSpec, out: Path) -> None:
    write_tflite(ctx, fmt, _converter(ctx).convert(), out)


def convert_fp16(ctx: ConversionSource, fmt: FormatSpec, out: Path) -> None:
    # lazy: TensorFlow (seconds to import, the train extra); only the TFLite conversion needs it
    import tensorflow as tf

    converter = _converter(ctx)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.target_spec.supported_types = [tf.float16]
    write_tflite(ctx, fmt, converter.convert(), out)


def convert_dynamic(ctx: ConversionSource, fmt: FormatSpec, out: Path) -> None:
    # lazy: TensorFlow (seconds to import, the train extra); only the TFLite conversion needs it
    import tensorflow as tf

    converter = _converter(ctx)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]  # no representative data: dynamic range
    write_tflite(ctx, fmt, converter.convert(), out)


def convert_int8(ctx: ConversionSource, fmt: FormatSpec, out: Path) -> dict:
    """Full-integer post-training quantization, calibrated on the representative set; with bias correction
    (export/bias_correction.py) where export.int8_bias_correction says so: ``auto`` converts with and without it
    and keeps the one that agrees better with the Keras model on the validation photos (then the one with the
    smaller mean difference); ``always`` uses it, ``never`` does not."""
    pixels = ctx.representative()
    plain = _int8(ctx, saved_model(ctx), pixels)
    details: dict[str, Any] = {"calibration_images": int(len(pixels))}
    data = plain
    mode = ctx.config.int8_bias_correction
    judge = ctx.judging_photos() if mode == "auto" else None
    copy = ctx.model_copy() if mode == "always" or judge is not None else None
    if mode != "never":
        info = bias_correct(copy, pixels) if copy is not None else {"layers": 0}
        decision: dict[str, Any] = {"mode": mode, **info, "used": False}
        if copy is None:
            decision["reason"] = "no photos to judge by (a random-weight latency model)"
        elif not info["layers"]:
            decision["reason"] = "no convolution with a BatchNormalization or a bias to correct"
        else:
            corrected = _int8(ctx, _saved_model_of(ctx, copy, "saved_model_bias_corrected"), pixels)
            if judge is not None:
                without, with_ = (_agreement(ctx, fmt, candidate, judge) for candidate in (plain, corrected))
                decision["validation"] = {"without": without, "with": with_}
                better = (with_["top1_agreement"], -with_["mean_abs_diff"]) > (
                    without["top1_agreement"],
                    -without["mean_abs_diff"],
                )
                decision["used"] = bool(better)
            else:
                decision["used"] = True
            data = corrected if decision["used"] else plain
        details["bias_correction"] = decision
    write_tflite(ctx, fmt, data, out, calibration_images=int(len(pixels)))
    return details


def _int8(ctx: ConversionSource, model_dir: Path, pixels: np.ndarray) -> bytes:
    # lazy: TensorFlow (seconds to import, the train extra); only the TFLite conversion needs it
    import tensorflow as tf

    converter = _converter(ctx, model_dir)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: representative_batches(pixels)
    set_integer_io(converter, ctx.config.int8_io)
    return converter.convert()


def _agreement(ctx: ConversionSource, fmt: FormatSpec, data: bytes, judge: tuple[Any, np.ndarray]) -> dict[str, float]:
    """Top-1 agreement and mean absolute difference with the Keras model on the judging (validation) photos."""
    pixels, reference = judge
    path = ctx.workdir / "candidate-int8.tflite"
    write_tflite(ctx, fmt, data, path)
    probs, _ = artifact_probabilities(path, pixels)
    path.unlink()
    return {
        "top1_agreement": round(float(np.mean(probs.argmax(axis=1) == reference.argmax(axis=1))), 6),
        "mean_abs_diff": round(float(np.mean(np.abs(probs - reference))), 6),
        "images": int(len(reference)),
    }


def set_integer_io(converter: Any, io_type: str, integer_ops_only: bool = True) -> None:
    """int8 or uint8 input/output; with ``integer_ops_only`` conversion fails rather than keep float ops
    (post-training quantization; a quantization-aware model is checked with ``float_tensors`` instead,
    as the converter would ask it for a representative dataset)."""
    # lazy: TensorFlow (seconds to import, the train extra); only the TFLite conversion needs it
    import tensorflow as tf

    dtype = {"uint8": tf.uint8, "int8": tf.int8}[io_type]
    if integer_ops_only:
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = dtype
    converter.inference_output_type = dtype


def representative_batches(pixels: np.ndarray) -> Iterator[list[np.ndarray]]:
    """The calibration images one by one, then one grey ramp from 0 to 255: it pins the input's range to
    the pixels' whole range (a calibration set whose brightest value is 254 would make the uint8 input's
    scale 254/255), so the integer input is exactly the pixel: uint8 scale 1 and zero point 0, int8 the
    pixel - 128. That is what MediaPipe Tasks and the Task Library feed a quantized input, whatever its
    scale; our runtime quantizes with the tensor's own parameters, and the two now agree exactly."""
    for i in range(len(pixels)):
        yield [pixels[i : i + 1].astype(np.float32)]
    if len(pixels):
        _, height, width, channels = pixels.shape
        ramp = np.linspace(0.0, 255.0, width, dtype=np.float32)[None, None, :, None]
        yield [np.ascontiguousarray(np.broadcast_to(ramp, (1, height, width, channels)))]


def float_tensors(data: bytes) -> list[str]:
    """Names of float32 activation tensors in a TFLite model (none in a full-integer model)."""
    interpreter = interpreter_class()(model_content=data)
    return [d["name"] for d in interpreter.get_tensor_details() if d["dtype"] == np.float32]
