"""A user's ONNX classifier: load it, say what it is, run it raw, and wrap it in the contract of our models.

The contract (as for a Keras model, export/user_model.py): one input ``image`` of RGB pixels 0-255, float32
N x S x S x 3 (channels last), and probabilities N x C out (``probabilities``). The user's graph keeps its
nodes and weights untouched between a few standard ONNX nodes:

    image (0-255, NHWC) -> Transpose to NCHW (a PyTorch-style model)
                        -> Mul/Add: the input scale (0-255, 0-1, -1-1, ImageNet mean/std) -> Cast (float16 model)
                        -> the user's graph
                        -> Flatten -> Softmax (logits) | [1 - p, p] (one sigmoid unit) -> Gather (class order)

The wrapped graph is the run's reference model (``RUN/model.onnx``): onnx-fp32 is it with its metadata,
onnx-int8 its static quantization calibrated on the user's photos. A batch dimension fixed at 1 (common in
exports) is made free when the graph runs a batch of two the same as two batches of one; else it stays 1
(the runtime then runs one image per call).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edge_export.core.errors import EdgeExportError
from edge_export.core.records.model_source import INPUT_SCALES
from edge_export.core.untrusted import printable
from edge_export.export.user_model import input_side

INPUT_NAME, OUTPUT_NAME, BATCH_DIM = "image", "probabilities", "batch"
PREFIX = "edge_export/"  # names of the nodes and tensors the wrapper adds
_FLOAT, _FLOAT16 = 1, 10  # onnx.TensorProto.FLOAT, FLOAT16
# ops the output passes through unchanged in kind (its activation is the node before them)
_PASS_THROUGH = {"Flatten", "Reshape", "Squeeze", "Unsqueeze", "Identity", "Cast", "Dropout"}
_ACTIVATIONS = {
    "Softmax": "softmax",
    "LogSoftmax": "log-softmax",
    "Sigmoid": "sigmoid",
    "Gemm": "linear",
    "MatMul": "linear",
    "Add": "linear",
    "Conv": "linear",
}
_FIX = "pass an ONNX image classifier: one image input (N x 3 x H x W or N x H x W x 3), class scores out"


@dataclass(frozen=True)
class OnnxShape:
    """What the graph says about itself, and what one run of it showed (the output's units)."""

    image_size: int
    outputs: int  # units of the one output (1: a binary sigmoid/logit)
    activation: str | None  # softmax, sigmoid or linear from the node that makes the output (log-softmax: logits)
    channels_first: bool  # N x 3 x H x W (PyTorch) rather than N x H x W x 3
    float16: bool  # the input is float16
    input_name: str
    output_name: str
    fixed_batch: bool  # the batch dimension stays 1 (it could not be made free)


def load_onnx(path: Path) -> Any:
    """The checked ModelProto of ``path`` (external weights beside it load too); a clear error for anything else."""
    import onnx  # lazy: onnx (the train extra); only an ONNX model's import needs it

    try:
        proto = onnx.load_model(str(path))
        onnx.checker.check_model(proto if proto.ByteSize() < 2**31 - 1 else str(path))
    except Exception as exc:  # DecodeError, ValidationError, OSError (missing external data) ...
        detail = printable(str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__, 200)
        raise EdgeExportError(
            f"not a valid ONNX model ({type(exc).__name__}: {detail})",
            path=path,
            hint="export the model again (torch.onnx.export, tf2onnx) and check it with onnx.checker",
        ) from None
    return proto


def _real_inputs(proto: Any) -> list[Any]:
    initialized = {t.name for t in proto.graph.initializer}  # old exports list their weights as inputs too
    return [i for i in proto.graph.input if i.name not in initialized]


def _dims(value: Any) -> list[int | None]:
    return [d.dim_value if d.HasField("dim_value") else None for d in value.type.tensor_type.shape.dim]


def onnx_shape(proto: Any, path: Path, image_size: int | None) -> OnnxShape:
    """Input layout and size from the graph, output units from one run; clear errors for what is not a classifier."""
    inputs = _real_inputs(proto)
    if len(inputs) != 1:
        raise EdgeExportError(
            f"the model has {len(inputs)} inputs; an image classifier has one",
            path=path,
            hint="export a model with a single image input",
        )
    value = inputs[0]
    elem = value.type.tensor_type.elem_type
    if elem not in (_FLOAT, _FLOAT16):
        raise EdgeExportError(
            f"the model's input is not float32 or float16 (ONNX element type {elem})",
            path=path,
            hint="export the float model: edge-export quantizes it itself (onnx-int8)",
        )
    dims = _dims(value)
    if len(dims) != 4 or (dims[1] != 3 and dims[3] != 3):
        raise EdgeExportError(
            f"the model's input {printable(dims, 80)} is not a batch of RGB images (N x 3 x H x W or N x H x W x 3)",
            path=path,
            hint=_FIX,
        )
    if dims[0] is not None and dims[0] != 1:
        raise EdgeExportError(
            f"the model's batch dimension is fixed at {dims[0]}",
            path=path,
            hint="export it with a free batch dimension (dynamic_axes) or a batch of 1",
        )
    channels_first = dims[1] == 3 and dims[3] != 3
    height, width = (dims[2], dims[3]) if channels_first else (dims[1], dims[2])
    side = input_side(height, width, dims, image_size, path)
    if len(proto.graph.output) != 1:
        raise EdgeExportError(
            f"the model has {len(proto.graph.output)} outputs; a classifier has one (class scores)",
            path=path,
            hint="export the classification head only (a detection or multi-task model is not a classifier)",
        )
    shape = OnnxShape(
        image_size=side,
        outputs=0,
        activation=_activation(proto),
        channels_first=channels_first,
        float16=elem == _FLOAT16,
        input_name=value.name,
        output_name=proto.graph.output[0].name,
        fixed_batch=dims[0] is not None,
    )
    raw = RawRunner(proto, shape, path)(np.zeros((1, shape.image_size, shape.image_size, 3), np.float32))
    units = [int(d) for d in raw.shape[1:]]
    if len(raw) != 1 or sum(d > 1 for d in units) > 1 or not units:
        raise EdgeExportError(
            f"the model's output {printable(list(raw.shape), 80)} is not class scores (N x classes): a detection, "
            "segmentation or feature model?",
            path=path,
            hint="end the model in a layer over the classes",
        )
    return OnnxShape(**{**shape.__dict__, "outputs": int(np.prod(units))})


def _activation(proto: Any) -> str | None:
    """The activation of the node that makes the output, looking through reshapes; None when it does not say."""
    makers = {out: node for node in proto.graph.node for out in node.output}
    name = proto.graph.output[0].name
    for _ in range(16):
        node = makers.get(name)
        if node is None:
            return None
        if node.op_type not in _PASS_THROUGH:
            return _ACTIVATIONS.get(node.op_type)
        name = node.input[0]
    return None


def output_from_activation(shape: OnnxShape) -> str | None:
    """The output kind the graph states (as export/user_model.output_from_activation for Keras)."""
    if shape.activation == "log-softmax":
        return "logits"  # softmax(log softmax(z)) = softmax(z)
    if shape.outputs == 1:
        return {"sigmoid": "sigmoid", "linear": "sigmoid-logit"}.get(shape.activation or "")
    if shape.activation == "sigmoid":
        return "sigmoid"  # several sigmoid units: refused by check_output (multi-label)
    return {"softmax": "softmax", "linear": "logits"}.get(shape.activation or "")


class RawRunner:
    """The user's graph as it is, on NHWC float32 arrays already in its input scale: its raw output, N x ..."""

    def __init__(self, proto: Any, shape: OnnxShape, path: Path):
        # lazy: ONNX Runtime is optional (the onnx extra); only an ONNX model's import needs it
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(proto.SerializeToString(), options, providers=["CPUExecutionProvider"])
        except Exception as exc:
            raise EdgeExportError(
                f"ONNX Runtime cannot load the model: {printable(str(exc).strip()[:300])}",
                path=path,
                hint="export it with an opset ONNX Runtime supports (onnxruntime's docs list them)",
            ) from None
        self.shape, self.path = shape, path

    def __call__(self, x: np.ndarray) -> np.ndarray:
        shape = self.shape
        step = 1 if shape.fixed_batch else 32
        out = []
        for i in range(0, len(x), step):
            batch = x[i : i + step]
            batch = batch.transpose(0, 3, 1, 2) if shape.channels_first else batch
            batch = np.ascontiguousarray(batch, np.float16 if shape.float16 else np.float32)
            try:
                raw = self.session.run([shape.output_name], {shape.input_name: batch})[0]
            except Exception as exc:
                raise EdgeExportError(
                    f"the model fails on a photo: {printable(str(exc).strip()[:300])}", path=self.path, hint=_FIX
                ) from None
            out.append(np.asarray(raw, np.float32).reshape(len(batch), *np.asarray(raw).shape[1:]))
        return np.concatenate(out)


def free_batch(proto: Any, shape: OnnxShape, path: Path) -> tuple[Any, OnnxShape]:
    """``proto`` with its batch dimension free when it was fixed at 1 and a batch of two runs as two of one;
    else as it was (the runtime runs such a model one image per call)."""
    if not shape.fixed_batch:
        return proto, shape
    import onnx  # lazy: onnx (the train extra); only an ONNX model's import needs it

    candidate = onnx.ModelProto()
    candidate.CopyFrom(proto)
    for value in (*_real_inputs(candidate), *candidate.graph.output):
        dims = value.type.tensor_type.shape.dim
        if dims:
            dims[0].dim_param = BATCH_DIM
    del candidate.graph.value_info[:]  # inferred shapes with the fixed batch would contradict the free one
    free = OnnxShape(**{**shape.__dict__, "fixed_batch": False})
    x = np.random.default_rng(0).uniform(0, 1, (2, shape.image_size, shape.image_size, 3)).astype(np.float32)
    try:
        together = RawRunner(candidate, free, path)(x)
        alone = RawRunner(proto, shape, path)(x)
        if together.shape == alone.shape and np.allclose(together, alone, rtol=1e-4, atol=1e-5):
            return candidate, free
    except EdgeExportError:
        pass
    return proto, shape


def wrap_onnx(proto: Any, shape: OnnxShape, input_scale: str, output: str, order: np.ndarray) -> Any:
    """The user's graph inside our contract (module docstring): a new ModelProto; ``proto`` is not changed."""
    import onnx  # lazy: onnx (the train extra); only an ONNX model's import needs it
    from onnx import TensorProto, helper, numpy_helper  # lazy: as above

    model = onnx.ModelProto()
    model.CopyFrom(proto)
    graph = model.graph
    _rename_everywhere(graph, {INPUT_NAME: PREFIX + "user_" + INPUT_NAME, OUTPUT_NAME: PREFIX + "user_" + OUTPUT_NAME})
    user_in = _renamed(shape.input_name)
    user_out = _renamed(shape.output_name)
    size = shape.image_size
    batch: Any = 1 if shape.fixed_batch else BATCH_DIM
    constants: list[Any] = []
    pre: list[Any] = []
    post: list[Any] = []

    def const(name: str, value: np.ndarray) -> str:
        constants.append(numpy_helper.from_array(value, PREFIX + name))
        return PREFIX + name

    x = INPUT_NAME
    if shape.channels_first:  # first: a per-channel scale then broadcasts over whole planes (fast in ONNX Runtime)
        pre.append(helper.make_node("Transpose", [x], [PREFIX + "nchw"], name=PREFIX + "to_nchw", perm=[0, 3, 1, 2]))
        x = PREFIX + "nchw"
    mean, std = INPUT_SCALES[input_scale]
    if input_scale != "0-255":
        scale = 1.0 / np.asarray(std, np.float32)
        offset = -np.asarray(mean, np.float32) / np.asarray(std, np.float32)
        # one number where the channels agree (0-1, -1-1); else per channel, on the channel axis. Measured on a
        # MobileNet 0.25 at 180 px: a [3] Mul and Add over the last axis of N x H x W x 3 take 0.36 ms each in
        # ONNX Runtime, a fifth of the model
        per_channel = (1, 3, 1, 1) if shape.channels_first else (3,)
        as_shape = (lambda v: v.reshape(per_channel)) if np.ptp(scale) or np.ptp(offset) else (lambda v: v[:1])
        pre += [
            helper.make_node(
                "Mul", [x, const("input_scale", as_shape(scale))], [PREFIX + "scaled"], name=PREFIX + "scale"
            ),
            helper.make_node(
                "Add",
                [PREFIX + "scaled", const("input_offset", as_shape(offset))],
                [PREFIX + "shifted"],
                name=PREFIX + "shift",
            ),
        ]
        x = PREFIX + "shifted"
    if shape.float16:
        pre.append(helper.make_node("Cast", [x], [PREFIX + "half"], name=PREFIX + "to_float16", to=TensorProto.FLOAT16))
        x = PREFIX + "half"
    pre.append(helper.make_node("Identity", [x], [user_in], name=PREFIX + "model_input"))

    y = user_out
    if shape.float16:
        post.append(helper.make_node("Cast", [y], [PREFIX + "float"], name=PREFIX + "to_float32", to=TensorProto.FLOAT))
        y = PREFIX + "float"
    post.append(helper.make_node("Flatten", [y], [PREFIX + "scores"], name=PREFIX + "flatten", axis=1))
    y = PREFIX + "scores"
    if output == "logits":
        post.append(helper.make_node("Softmax", [y], [PREFIX + "softmax"], name=PREFIX + "softmax", axis=1))
        y = PREFIX + "softmax"
    elif output in ("sigmoid", "sigmoid-logit"):
        if output == "sigmoid-logit":
            post.append(helper.make_node("Sigmoid", [y], [PREFIX + "p"], name=PREFIX + "sigmoid"))
            y = PREFIX + "p"
        one = const("one", np.ones((1, 1), np.float32))
        post += [
            helper.make_node("Sub", [one, y], [PREFIX + "q"], name=PREFIX + "one_minus_p"),
            helper.make_node("Concat", [PREFIX + "q", y], [PREFIX + "two"], name=PREFIX + "two_classes", axis=1),
        ]
        y = PREFIX + "two"
    if not np.array_equal(order, np.arange(len(order))):  # output j (data class j) = model output order[j]
        indices = const("class_order", np.asarray(order, np.int64))
        post.append(helper.make_node("Gather", [y, indices], [PREFIX + "ordered"], name=PREFIX + "class_order", axis=1))
        y = PREFIX + "ordered"
    post.append(helper.make_node("Identity", [y], [OUTPUT_NAME], name=PREFIX + "probabilities"))

    classes = len(order)
    nodes = [*pre, *graph.node, *post]
    del graph.node[:]
    graph.node.extend(nodes)
    graph.initializer.extend(constants)
    kept_inputs = [i for i in graph.input if i.name != user_in]  # initializers listed as inputs (old IR)
    del graph.input[:]
    graph.input.extend(
        [helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, [batch, size, size, 3]), *kept_inputs]
    )
    del graph.output[:]
    graph.output.extend([helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, [batch, classes])])
    if model.ByteSize() < 2**31 - 1:  # (a larger one cannot be checked in memory; ONNX Runtime loads it next)
        onnx.checker.check_model(model)
    return model


def _renamed(name: str) -> str:
    return PREFIX + "user_" + name if name in (INPUT_NAME, OUTPUT_NAME) else name


def _rename_everywhere(graph: Any, names: dict[str, str]) -> None:
    """Rename tensors (the user's own ``image`` or ``probabilities``) in every node, subgraph and list."""
    for node in graph.node:
        node.input[:] = [names.get(n, n) for n in node.input]
        node.output[:] = [names.get(n, n) for n in node.output]
        for attribute in node.attribute:
            for sub in ([attribute.g] if attribute.HasField("g") else []) + list(attribute.graphs):
                _rename_everywhere(sub, names)
    for value in (*graph.input, *graph.output, *graph.value_info, *graph.initializer):
        value.name = names.get(value.name, value.name)


def runner_of(model: Any, path: Path) -> Callable[[np.ndarray], np.ndarray]:
    """The wrapped model as a function of NHWC pixels 0-255 (float32) -> probabilities."""
    shape = OnnxShape(
        image_size=0,
        outputs=0,
        activation=None,
        channels_first=False,
        float16=False,
        input_name=INPUT_NAME,
        output_name=OUTPUT_NAME,
        fixed_batch=_dims(model.graph.input[0])[0] is not None,
    )
    return RawRunner(model, shape, path)


__all__ = [
    "OnnxShape",
    "load_onnx",
    "onnx_shape",
    "output_from_activation",
    "RawRunner",
    "free_batch",
    "wrap_onnx",
    "runner_of",
]
