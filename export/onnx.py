"""ONNX converters. fp32: tf2onnx from a frozen ``tf.function`` with a fixed input signature
(``from_keras`` does not support Keras 3, and ``from_function`` turns captured constants such as the
normalization's mean into extra graph inputs, so the function is frozen first). int8: ONNX Runtime static
quantization (QDQ) of the fp32 graph, calibrated on the representative set, with the classifier head (the
nodes after the last global pooling: Dense and Softmax) left in float (see ``convert_int8``).
Input ``image`` float32 N x S x S x 3 (NHWC, 0-255), output ``probabilities`` N x C (the same N: one row
per image; both dimensions are named ``batch`` in the graph)."""

from __future__ import annotations

import contextlib
import gc
import io
import logging
import re
from pathlib import Path
from typing import Any

import numpy as np

from edge_export.core.errors import EdgeExportError
from edge_export.export.formats import FormatSpec
from edge_export.export.metadata import embed_onnx_metadata
from edge_export.export.onnx_source import PREFIX
from edge_export.export.source import ConversionSource
from edge_export.trainer.model import INPUT_NAME

OUTPUT_NAME = "probabilities"
BATCH_DIM = "batch"


def fp32_model(ctx: ConversionSource) -> Any:
    """The float32 ONNX ModelProto, converted once per export; an imported ONNX model's own graph as given."""
    graph = ctx.onnx_graph()
    if graph is not None:
        return graph

    def make() -> Any:
        proto = _convert(ctx)
        gc.collect()  # tf2onnx leaves its graphs in reference cycles (0.9 GB for EfficientNet-Lite0 at 288 px)
        return proto

    return ctx.memo("onnx-fp32", make)


def _convert(ctx: ConversionSource) -> Any:
    import onnx  # lazy: onnx (the train extra); only the ONNX formats need it
    import tensorflow as tf  # lazy: TensorFlow (seconds to import, the train extra); only the conversion needs it
    import tf2onnx  # lazy: tf2onnx (the train extra, imports TensorFlow); only the conversion needs it
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2  # lazy: as above

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
    generated = re.compile(r"^(.*)__\d+(:\d+)?$")  # node `Relu6_min__10`, tensor `mul_1__6:0`
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
    # dimension names are made up too (`unk__26`): the batch dimension of the input and the output is
    # `batch` (one output row per input image, said in the graph), the others are numbered in graph order
    symbols: dict[str, str] = {}
    for value in list(graph.input) + list(graph.output):
        dims = value.type.tensor_type.shape.dim
        if dims and dims[0].dim_param:
            symbols[dims[0].dim_param] = BATCH_DIM
    for value in list(graph.input) + list(graph.value_info) + list(graph.output):
        for dim in value.type.tensor_type.shape.dim:
            if dim.dim_param:
                dim.dim_param = symbols.setdefault(dim.dim_param, f"d{len(symbols)}")


def _save(proto: Any, out: Path) -> None:
    import onnx  # lazy: onnx (the train extra); only the ONNX formats need it

    onnx.save_model(proto, str(out))


def opset_of(proto: Any) -> int:
    """The graph's ONNX opset (export.onnx_opset for a converted model; an imported model's own)."""
    return next((int(o.version) for o in proto.opset_import if o.domain in ("", "ai.onnx")), 0)


def convert_fp32(ctx: ConversionSource, fmt: FormatSpec, out: Path) -> dict:
    import onnx  # lazy: onnx (the train extra); only the ONNX formats need it

    proto = onnx.ModelProto()
    proto.CopyFrom(fp32_model(ctx))
    opset = opset_of(proto)
    embed_onnx_metadata(proto, ctx.metadata(fmt, opset=opset))
    _save(proto, out)
    return {"opset": opset}


# How onnx-int8 is quantized (recorded in its manifest entry). Chosen on the validation splits of cats vs
# dogs and imagenette_small (benchmarks/scripts/onnx_int8_settings.py; numbers in the README). What cost
# agreement was not a setting but a skipped step: see ``prepare``.
# - MinMax ranges (as the TFLite converter calibrates), from batches of images (MINMAX_BATCH): the same agreement as a
#   99.999 percentile (cats vs dogs 100.0% vs 99.9%, imagenette 99.8% both) in a quarter of the time: the
#   percentile builds a 2048-bin histogram of every activation of every image, one image per run.
# - the classifier head (the nodes after the last global pooling: Dense, Softmax) stays float: quantized,
#   the probabilities came out in uint8 steps of 1/255 (near-ties become ties, which argmax breaks toward
#   the lower class index; max |dp| is no better for it) and OpenCV DNN 4.x ran the int8 Dense wrongly on
#   batches while 5.x refused to load the model. It is a few KB of weights and microseconds of compute.
# - weights int8 per channel, activations uint8 per tensor (ONNX Runtime's CPU defaults), QDQ format.
INT8_SETTINGS: dict[str, Any] = {
    "format": "QDQ",
    "weights": "int8 per channel",
    "activations": "uint8 per tensor",
    "calibration": "MinMax",
    "head": "float",
    "reduce_range": False,
}


def convert_int8(ctx: ConversionSource, fmt: FormatSpec, out: Path) -> dict:
    import onnx  # lazy: onnx (the train extra); only the ONNX formats need it

    work = ctx.workdir / "onnx-int8"
    work.mkdir(exist_ok=True)
    source = work / "fp32.onnx"
    _save(fp32_model(ctx), source)
    pixels = ctx.representative()
    quantized = work / "int8.onnx"
    quantize(source, quantized, pixels, work)
    proto = onnx.load_model(str(quantized))
    opset = opset_of(proto)
    embed_onnx_metadata(proto, ctx.metadata(fmt, opset=opset, calibration_images=int(len(pixels))))
    _save(proto, out)
    return {"opset": opset, "calibration_images": int(len(pixels)), "quantization": dict(INT8_SETTINGS)}


def quantize(source: Path, out: Path, pixels: Any, work: Path, settings: dict[str, Any] | None = None) -> None:
    """Static int8 quantization of the float graph ``source`` into ``out``, calibrated on ``pixels`` (uint8
    N x H x W x 3, an array or anything that slices like one). ``settings``: ``INT8_SETTINGS`` by default
    (benchmarks/scripts/onnx_int8_settings.py passes others to compare them)."""
    import onnx  # lazy: onnx (the train extra); only the ONNX formats need it

    # lazy: ONNX Runtime (the onnx and train extras); only the int8 quantization needs it
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    settings = {**INT8_SETTINGS, **(settings or {})}
    prepared = work / "prepared.onnx"
    prepare(source, prepared)
    graph = onnx.load_model(str(prepared))
    exclude = [*wrapper_stem(graph), *(head_nodes(graph) if settings["head"] == "float" else [])]
    method = settings["calibration"]
    extra: dict[str, Any]
    if method == "MinMax":  # ranges from batches of images in one pass (one: a graph whose batch is fixed at 1)
        batch = 1 if _fixed_batch(prepared) else min(MINMAX_BATCH, len(pixels))
        reader, extra = _reader(pixels, batch=batch), {}
    else:  # histograms: one image per call, in strided chunks (memory)
        reader, extra = _reader(pixels), {"CalibStridedMinMax": _stride(len(pixels))}
    if method == "Percentile":
        extra["CalibPercentile"] = float(settings.get("percentile", 99.999))
    # the calibrator prints its progress; the quantizer logs a line per adjusted weight scale on the root logger
    with contextlib.redirect_stdout(io.StringIO()), _quiet_root_logger():
        quantize_static(
            str(prepared),
            str(out),
            reader,
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            reduce_range=bool(settings["reduce_range"]),
            activation_type=_quant_type(settings["activations"], "per tensor", QuantType),
            weight_type=_quant_type(settings["weights"], "per channel", QuantType),
            calibrate_method=getattr(CalibrationMethod, method),
            nodes_to_exclude=exclude,
            extra_options=extra,
        )


def _fixed_batch(path: Path) -> bool:
    """The graph's input batch dimension is a number (an imported model exported with batch 1), not free."""
    import onnx  # lazy: onnx (the train extra); only the ONNX formats need it

    dims = onnx.load_model(str(path), load_external_data=False).graph.input[0].type.tensor_type.shape.dim
    return bool(dims) and dims[0].HasField("dim_value")


def _quant_type(text: str, granularity: str, quant_type: Any) -> Any:
    """ "uint8 per tensor" -> QuantType.QUInt8 ("int8 ..." -> QInt8): the settings' words, checked."""
    kinds = {f"uint8 {granularity}": quant_type.QUInt8, f"int8 {granularity}": quant_type.QInt8}
    if text not in kinds:
        raise ValueError(f"onnx-int8 setting {text!r}: use one of {sorted(kinds)}")
    return kinds[text]


def prepare(source: Path, out: Path) -> None:
    """ONNX Runtime's recommended pre-processing (graph optimization: BatchNorm folded, MatMul + Add fused to
    Gemm; ONNX shape inference). Symbolic shape inference is skipped: it needs sympy, which onnxruntime no
    longer installs, and a graph with one dynamic (batch) dimension does not need it. It used to run when
    sympy happened to be installed and be skipped silently, with the plain graph quantized instead, when it
    was not: a different artifact (3.81 vs 3.86 MB on the default build) from the same model, and a Dense
    that OpenCV DNN ran as 2 x 2 for one image. Now a failure is an error, never another graph."""
    # lazy: ONNX Runtime (the onnx and train extras); only the int8 quantization needs it
    from onnxruntime.quantization.shape_inference import quant_pre_process

    try:
        with _quiet_root_logger():
            quant_pre_process(str(source), str(out), skip_symbolic_shape=True)
    except Exception as exc:
        raise EdgeExportError(
            f"ONNX Runtime's quantization pre-processing failed: {type(exc).__name__}: {exc}",
            hint="check the installed onnx / onnxruntime versions (`pip install -e .[train]`)",
        ) from exc


def wrapper_stem(proto: Any) -> list[str]:
    """The nodes an imported ONNX model's wrapper put before it (export/onnx_source.py: the input scale, the
    layout): they stay float. Quantized, ONNX Runtime runs a per-channel Mul and Add over the whole input image
    as QLinearMul/QLinearAdd with a slow broadcast: 1.8 ms of a 2.5 ms MobileNet 0.25 at 180 px, measured;
    in float they take microseconds, and the first convolution's input is quantized right after them."""
    head = set(head_nodes(proto))
    return [node.name for node in proto.graph.node if node.name.startswith(PREFIX) and node.name not in head]


def head_nodes(proto: Any) -> list[str]:
    """Names of the nodes after the graph's last global pooling (GlobalAveragePool, or ReduceMean over the
    spatial axes): the classifier head (Squeeze/Reshape, Dense as Gemm or MatMul + Add, Softmax)."""
    nodes = list(proto.graph.node)  # in topological order
    pools = [node for node in nodes if node.op_type in ("GlobalAveragePool", "GlobalMaxPool", "ReduceMean")]
    if not pools:
        return []
    reached, head = set(pools[-1].output), []
    for node in nodes[nodes.index(pools[-1]) + 1 :]:
        if reached.intersection(node.input):
            reached.update(node.output)
            head.append(node.name)
    return head


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
# Images per MinMax calibration run. ONNX Runtime runs the calibration graph (every tensor feeding a ReduceMin and
# a ReduceMax) unoptimized, and its memory grows with the batch: 16 images of EfficientNet-Lite0 at 288 px took
# 3 GB more, 4 take 0.6 GB. The ranges are the same numbers whatever the batch (a min of mins), the same artifact.
MINMAX_BATCH = 4


def _stride(count: int) -> int:
    """Images per calibration chunk. The histogram calibrators (Percentile, Entropy) keep every intermediate
    tensor of every image of a chunk before folding them into their histograms (all 200 images at once held
    20+ GB for EfficientNet-Lite0 at 288 px), so they are fed in chunks with ONNX Runtime's strided collection.
    MinMax keeps two numbers per tensor and run: it gets the images in batches (MINMAX_BATCH) instead."""
    return min(CALIBRATION_CHUNK, count)


def _reader(pixels: Any, batch: int = 1) -> Any:
    """An ONNX Runtime CalibrationDataReader: ``batch`` float32 images per call, then None; ``set_range``
    restricts it to a chunk of calls (ONNX Runtime's ``CalibStridedMinMax`` collection, which also serves the
    histogram methods). A batch's min and max are those of its images: MinMax ranges do not depend on it."""
    # lazy: ONNX Runtime (the onnx and train extras); only the int8 quantization needs it
    from onnxruntime.quantization import CalibrationDataReader

    calls = -(-len(pixels) // batch)

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._next, self._end = 0, calls

        def __len__(self) -> int:  # rounded up to whole chunks, as the strided collection requires; the
            stride = _stride(calls)  # last chunk is clamped to the calls there are (set_range)
            return -(-calls // stride) * stride

        def set_range(self, start_index: int, end_index: int) -> None:
            self._next, self._end = start_index, min(end_index, calls)

        def get_next(self) -> dict | None:
            if self._next >= self._end:
                return None
            i, self._next = self._next, self._next + 1
            return {INPUT_NAME: np.asarray(pixels[i * batch : (i + 1) * batch], dtype=np.float32)}

        def rewind(self) -> None:
            self._next, self._end = 0, calls

    return Reader()
