"""ONNX converters. fp32: tf2onnx from a frozen ``tf.function`` with a fixed input signature
(``from_keras`` does not support Keras 3, and ``from_function`` turns captured constants such as the
normalization's mean into extra graph inputs, so the function is frozen first). int8: ONNX Runtime static
quantization (QDQ) of the fp32 graph, calibrated on the representative set
(percentile ranges: plain min/max lost 0.5 points on EfficientNet-Lite0).
Input ``image`` float32 N x S x S x 3 (NHWC, 0-255), output ``probabilities`` N x C."""

from __future__ import annotations

import contextlib
import io
import logging
from pathlib import Path
from typing import Any

import numpy as np

from edge_export.core.errors import EdgeExportError
from edge_export.export.context import ExportContext
from edge_export.export.formats import FormatSpec
from edge_export.export.metadata import embed_onnx_metadata
from edge_export.trainer.model import INPUT_NAME

OUTPUT_NAME = "probabilities"


def fp32_model(ctx: ExportContext) -> Any:
    """The float32 ONNX ModelProto (no metadata), converted once per export."""
    return ctx.memo("onnx-fp32", lambda: _convert(ctx))


def _convert(ctx: ExportContext) -> Any:
    import onnx
    import tensorflow as tf
    import tf2onnx
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    model = ctx.model
    signature = [tf.TensorSpec(ctx.input_shape, tf.float32, name=INPUT_NAME)]
    function = tf.function(lambda image: model(image, training=False), input_signature=signature)
    frozen = convert_variables_to_constants_v2(function.get_concrete_function())
    inputs = [t.name for t in frozen.inputs if t.dtype != tf.resource]
    outputs = [t.name for t in frozen.outputs]
    if len(inputs) != 1 or len(outputs) != 1:
        raise EdgeExportError(f"expected one input and one output after freezing, got {inputs} -> {outputs}")
    tf2onnx_log = logging.getLogger("tf2onnx")
    level = tf2onnx_log.level
    tf2onnx_log.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            proto, _ = tf2onnx.convert.from_graph_def(
                frozen.graph.as_graph_def(),
                input_names=inputs,
                output_names=outputs,
                opset=ctx.config.onnx_opset,
                tensors_to_rename={inputs[0]: INPUT_NAME, outputs[0]: OUTPUT_NAME},
            )
    finally:
        tf2onnx_log.setLevel(level)
    unsupported = sorted({n.op_type for n in proto.graph.node if n.domain not in ("", "ai.onnx", "ai.onnx.ml")})
    if unsupported:  # tf2onnx continues past ops it cannot convert
        raise EdgeExportError(f"tf2onnx left unconverted ops: {', '.join(unsupported)}")
    onnx.checker.check_model(proto)
    _canonicalize(proto)
    return proto


def _canonicalize(proto: Any) -> None:
    """Make the same model always give the same bytes. tf2onnx makes up numbered names (`Relu6_min__10`) and
    shares equal constants under whichever name it met first, walking sets, so both vary with PYTHONHASHSEED.
    Rename every made-up tensor after the first node (in graph order) that uses or makes it, then sort the
    initializers (their order carries no meaning in ONNX)."""
    import re

    generated = re.compile(r"^(.*)__\d+$")
    renamed: dict[str, str] = {}
    graph = proto.graph
    for node in graph.node:
        match = generated.match(node.name)
        if match:
            node.name = f"{match.group(1)}__n{len(renamed)}"
            renamed[node.name] = node.name
        for field, role in ((node.input, "in"), (node.output, "out")):
            for i, name in enumerate(field):
                if generated.match(name) and name not in renamed:
                    renamed[name] = f"{node.name}/{role}{i}"
            field[:] = [renamed.get(n, n) for n in field]
    for tensor in list(graph.initializer) + list(graph.value_info) + list(graph.input) + list(graph.output):
        tensor.name = renamed.get(tensor.name, tensor.name)
    for field in ("initializer", "value_info"):
        items = sorted(getattr(graph, field), key=lambda t: t.name)
        del getattr(graph, field)[:]
        getattr(graph, field).extend(items)


def _save(proto: Any, out: Path) -> None:
    import onnx

    onnx.save_model(proto, str(out))


def convert_fp32(ctx: ExportContext, fmt: FormatSpec, out: Path) -> dict:
    import onnx

    proto = onnx.ModelProto()
    proto.CopyFrom(fp32_model(ctx))
    embed_onnx_metadata(proto, ctx.metadata(fmt, opset=ctx.config.onnx_opset))
    _save(proto, out)
    return {"opset": ctx.config.onnx_opset}


def convert_int8(ctx: ExportContext, fmt: FormatSpec, out: Path) -> dict:
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    work = ctx.workdir / "onnx-int8"
    work.mkdir(exist_ok=True)
    source = work / "fp32.onnx"
    _save(fp32_model(ctx), source)
    prepared = work / "prepared.onnx"
    try:  # shape inference + graph optimization, as ONNX Runtime recommends before quantizing
        from onnxruntime.quantization.shape_inference import quant_pre_process

        with _quiet_root_logger():
            quant_pre_process(str(source), str(prepared), skip_symbolic_shape=False)
    except Exception:  # optional; quantize the plain graph when it fails
        prepared = source
    pixels = ctx.representative()
    quantized = work / "int8.onnx"
    # the calibrator prints its progress; the quantizer logs a line per adjusted weight scale on the root logger
    with contextlib.redirect_stdout(io.StringIO()), _quiet_root_logger():
        quantize_static(
            str(prepared),
            str(quantized),
            _reader(pixels),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.Percentile,  # measured on EfficientNet-Lite0 / cats vs dogs:
            # accuracy drop 0.2 points, vs 0.5 with MinMax and 0.3 with moving-average MinMax
            extra_options={"CalibPercentile": 99.999, "CalibStridedMinMax": _stride(len(pixels))},
        )
    proto = onnx.load_model(str(quantized))
    embed_onnx_metadata(proto, ctx.metadata(fmt, opset=ctx.config.onnx_opset, calibration_images=int(len(pixels))))
    _save(proto, out)
    return {"opset": ctx.config.onnx_opset, "calibration_images": int(len(pixels))}


@contextlib.contextmanager
def _quiet_root_logger():
    """ONNX Runtime's quantization tools log routine INFO lines through the root logger."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(max(level, logging.WARNING))
    try:
        yield
    finally:
        root.setLevel(level)


CALIBRATION_CHUNK = 16


def _stride(count: int) -> int:
    """Images per calibration chunk. The calibrator keeps every intermediate tensor of every image of a chunk
    before folding them into its histograms (all 200 images at once held 20+ GB for EfficientNet-Lite0 at
    288 px), so it is fed in chunks with ONNX Runtime's strided collection."""
    return min(CALIBRATION_CHUNK, count)


def _reader(pixels: np.ndarray) -> Any:
    """An ONNX Runtime CalibrationDataReader: one float32 image per call, then None; ``set_range`` restricts
    it to a chunk (ONNX Runtime's ``CalibStridedMinMax`` collection, which also serves the histogram methods)."""
    from onnxruntime.quantization import CalibrationDataReader

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._next, self._end = 0, len(pixels)

        def __len__(self) -> int:  # rounded up to whole chunks, as the strided collection requires; the
            stride = _stride(len(pixels))  # last chunk is clamped to the images there are (set_range)
            return -(-len(pixels) // stride) * stride

        def set_range(self, start_index: int, end_index: int) -> None:
            self._next, self._end = start_index, min(end_index, len(pixels))

        def get_next(self) -> dict | None:
            if self._next >= self._end:
                return None
            i, self._next = self._next, self._next + 1
            return {INPUT_NAME: pixels[i : i + 1].astype(np.float32)}

        def rewind(self) -> None:
            self._next, self._end = 0, len(pixels)

    return Reader()
