"""TFLite converters (Keras 3): the model is exported once as a SavedModel (``model.export``) and every
TFLite format is converted from it with ``TFLiteConverter.from_saved_model``, the path that works for
Keras 3 (``from_keras_model`` does not). Dynamic batch; input ``image`` N x S x S x 3, 0-255 RGB."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

import numpy as np

from edge_export.export.context import ExportContext
from edge_export.export.formats import FormatSpec
from edge_export.export.metadata import embed_tflite_metadata


def saved_model(ctx: ExportContext) -> Path:
    """The Keras model as a TF SavedModel (serving signature ``image`` -> probabilities), made once."""

    def make() -> Path:
        path = ctx.workdir / "saved_model"
        ctx.model.export(str(path), format="tf_saved_model", verbose=False)
        return path

    return ctx.memo("saved_model", make)


def _converter(ctx: ExportContext) -> Any:
    import tensorflow as tf

    return tf.lite.TFLiteConverter.from_saved_model(str(saved_model(ctx)))


def write_tflite(ctx: ExportContext, fmt: FormatSpec, data: bytes, out: Path, *, calibration_images: int | None = None,
                 qat: dict[str, Any] | None = None) -> None:
    """Embed the metadata (the ``edge_export`` entry, and the standard ``TFLITE_METADATA`` entry with its
    labels.txt zipped onto the model: export/tflite_metadata.py) and write the model to ``out`` (the
    pipeline's temporary path)."""
    meta = ctx.metadata(fmt, calibration_images=calibration_images, qat=qat)
    out.write_bytes(embed_tflite_metadata(data, meta, standard=True))


def convert_fp32(ctx: ExportContext, fmt: FormatSpec, out: Path) -> None:
    write_tflite(ctx, fmt, _converter(ctx).convert(), out)


def convert_fp16(ctx: ExportContext, fmt: FormatSpec, out: Path) -> None:
    import tensorflow as tf

    converter = _converter(ctx)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.target_spec.supported_types = [tf.float16]
    write_tflite(ctx, fmt, converter.convert(), out)


def convert_dynamic(ctx: ExportContext, fmt: FormatSpec, out: Path) -> None:
    import tensorflow as tf

    converter = _converter(ctx)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]  # no representative data: dynamic range
    write_tflite(ctx, fmt, converter.convert(), out)


def convert_int8(ctx: ExportContext, fmt: FormatSpec, out: Path) -> dict:
    """Full-integer post-training quantization, calibrated on the representative set; with bias correction
    (export/bias_correction.py) where export.int8_bias_correction says so: ``auto`` converts both and keeps the
    one that agrees better with the Keras model on the validation photos (then the smaller mean difference)."""
    pixels = ctx.representative()
    plain = _int8(ctx, saved_model(ctx), pixels)
    details: dict[str, Any] = {"calibration_images": int(len(pixels))}
    mode = ctx.config.int8_bias_correction
    data = plain
    if mode != "off":
        corrected_model, info = _bias_corrected_model(ctx, pixels)
        if corrected_model is None:
            details["bias_correction"] = {"mode": mode, "used": False, **info}
        else:
            corrected = _int8(ctx, _saved_model_of(ctx, corrected_model, "saved_model_bias_corrected"), pixels)
            decision: dict[str, Any] = {"mode": mode, **info}
            if mode == "auto":
                without, with_ = (_agreement(ctx, fmt, candidate) for candidate in (plain, corrected))
                decision["validation"] = {"without": without, "with": with_}
                use = (with_["top1_agreement"], -with_["mean_abs_diff"]) > (without["top1_agreement"], -without["mean_abs_diff"])
            else:
                use = True
            decision["used"] = bool(use)
            details["bias_correction"] = decision
            data = corrected if use else plain
    write_tflite(ctx, fmt, data, out, calibration_images=int(len(pixels)))
    return details


def _int8(ctx: ExportContext, model_dir: Path, pixels: np.ndarray) -> bytes:
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_saved_model(str(model_dir))
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: representative_batches(pixels)
    set_integer_io(converter, ctx.config.int8_io)
    return converter.convert()


def _bias_corrected_model(ctx: ExportContext, pixels: np.ndarray) -> tuple[Any, dict[str, Any]]:
    """A copy of the Keras model with bias correction, or (None, why not)."""
    from edge_export.export.bias_correction import bias_correct
    from edge_export.export.context import load_keras_model

    copy = load_keras_model(ctx.run, ctx.spec)  # a second copy of model.keras: ctx.model stays the reference
    info = bias_correct(copy, pixels)
    if not info["layers"]:
        return None, {"reason": "no convolution with a BatchNormalization or a bias to correct"}
    return copy, info


def _saved_model_of(ctx: ExportContext, model: Any, name: str) -> Path:
    path = ctx.workdir / name
    model.export(str(path), format="tf_saved_model", verbose=False)
    return path


def _agreement(ctx: ExportContext, fmt: FormatSpec, data: bytes) -> dict[str, float]:
    """Top-1 agreement and mean absolute difference with the Keras model on the parity (validation) photos."""
    from edge_export.export.parity import artifact_probabilities

    images = ctx.parity_images()
    reference = ctx.parity_reference()
    path = ctx.workdir / "candidate-int8.tflite"
    write_tflite(ctx, fmt, data, path)
    probs, _ = artifact_probabilities(path, images.pixels)
    path.unlink()
    return {"top1_agreement": round(float(np.mean(probs.argmax(axis=1) == reference.argmax(axis=1))), 6),
            "mean_abs_diff": round(float(np.mean(np.abs(probs - reference))), 6), "images": int(len(reference))}


def set_integer_io(converter: Any, io_type: str, integer_ops_only: bool = True) -> None:
    """int8 or uint8 input/output; with ``integer_ops_only`` conversion fails rather than keep float ops
    (post-training quantization; a quantization-aware model is checked with ``float_tensors`` instead,
    as the converter would ask it for a representative dataset)."""
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
    from edge_export.runtime.backends.litert import interpreter_class

    interpreter = interpreter_class()(model_content=data)
    return [d["name"] for d in interpreter.get_tensor_details() if d["dtype"] == np.float32]
