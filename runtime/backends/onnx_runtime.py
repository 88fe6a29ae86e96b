"""ONNX Runtime backend (named so it does not shadow the ``onnxruntime`` package)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from edge_export.core.errors import EdgeExportError
from edge_export.runtime.backends.base import Backend, TensorSpec
from edge_export.runtime.metadata_entry import METADATA_NAME

# short names users may type -> ONNX Runtime provider names
PROVIDER_ALIASES = {
    "cpu": "CPUExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
    "trt": "TensorrtExecutionProvider",
    "coreml": "CoreMLExecutionProvider",
    "openvino": "OpenVINOExecutionProvider",
    "dml": "DmlExecutionProvider",
}

_DTYPES = {
    "tensor(float)": np.float32,
    "tensor(float16)": np.float16,
    "tensor(double)": np.float64,
    "tensor(uint8)": np.uint8,
    "tensor(int8)": np.int8,
    "tensor(int32)": np.int32,
    "tensor(int64)": np.int64,
}


class NodeArg(Protocol):
    """An input or output as ONNX Runtime describes it (onnxruntime has no type information)."""

    name: str
    type: str  # "tensor(float)" ...
    shape: list[int | str | None]  # a name or None for a dynamic dimension


class ModelMetadata(Protocol):
    custom_metadata_map: dict[str, str]


class Session(Protocol):
    """What this module uses of an ``onnxruntime.InferenceSession``."""

    def get_inputs(self) -> list[NodeArg]: ...

    def get_outputs(self) -> list[NodeArg]: ...

    def get_providers(self) -> list[str]: ...

    def get_modelmeta(self) -> ModelMetadata: ...

    def run(self, output_names: list[str] | None, input_feed: dict[str, np.ndarray]) -> list[np.ndarray]: ...


def _ort() -> Any:  # the onnxruntime module, which has no type information
    try:
        import onnxruntime  # lazy: ONNX Runtime is optional (the onnx extra) and large; only .onnx models need it
    except ImportError:
        raise EdgeExportError("ONNX Runtime is not installed", hint="pip install 'edge-export[onnx]'") from None
    return onnxruntime


def resolve_providers(requested: Sequence[str] | None) -> list[str]:
    """Full provider names in order, CPU last as the fallback; error if one is not available."""
    ort = _ort()
    available = ort.get_available_providers()
    names = [PROVIDER_ALIASES.get(p.lower(), p) for p in (requested or ["cpu"])]
    missing = [n for n in names if n not in available]
    if missing:
        raise EdgeExportError(
            f"execution provider(s) {', '.join(missing)} not available in this onnxruntime",
            hint=f"available: {', '.join(available)} (CUDA/TensorRT need the onnxruntime-gpu package)",
        )
    if "CPUExecutionProvider" not in names:
        names.append("CPUExecutionProvider")
    return names


def check_providers(providers: Sequence[str]) -> list[str]:
    """``--provider`` / ``providers=``: the full names (``resolve_providers``); else an error naming the short
    names too."""
    try:
        return resolve_providers(list(providers))
    except EdgeExportError as exc:
        raise EdgeExportError(
            f"--provider: {exc.message}", hint=f"{exc.hint}; short names: {', '.join(PROVIDER_ALIASES)}"
        ) from None


class OnnxRuntimeBackend(Backend):
    name = "onnxruntime"

    def __init__(self, path: Path, session: Session) -> None:
        self._session = session
        inputs, outputs = session.get_inputs(), session.get_outputs()
        if len(inputs) != 1 or len(outputs) != 1:
            raise EdgeExportError(
                f"expected a model with 1 input and 1 output, found {len(inputs)} and {len(outputs)}", path=path
            )
        super().__init__(path, _spec(inputs[0], path), _spec(outputs[0], path))

    @classmethod
    def load(
        cls, path: str | Path, threads: int | None = None, providers: Sequence[str] | None = None
    ) -> OnnxRuntimeBackend:
        ort = _ort()
        path = Path(path)
        names = resolve_providers(providers)
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = int(threads)
        try:
            session = ort.InferenceSession(str(path), sess_options=options, providers=names)
        except Exception as exc:  # ORT's exceptions derive from Exception only
            raise EdgeExportError(
                f"cannot load ONNX model, corrupt or truncated? ({str(exc).strip()[:300]})",
                path=path,
                hint="re-export the model",
            ) from None
        return cls(path, session)

    @property
    def providers(self) -> list[str]:
        return self._session.get_providers()

    def run(self, array: np.ndarray) -> np.ndarray:
        batch = self.input_spec.shape[0] if self.input_spec.shape else None
        if batch is not None and array.shape[0] != batch:
            return self._run_one_by_one(array, self._invoke)
        return self._invoke(array)

    def _invoke(self, array: np.ndarray) -> np.ndarray:
        return self._session.run([self.output_spec.name], {self.input_spec.name: array})[0]

    def metadata_text(self) -> str | None:
        return self._session.get_modelmeta().custom_metadata_map.get(METADATA_NAME)


def _spec(arg: NodeArg, path: Path) -> TensorSpec:
    dtype = _DTYPES.get(arg.type)
    if dtype is None:
        raise EdgeExportError(f"unsupported tensor type {arg.type} for {arg.name!r}", path=path)
    shape = tuple(d if isinstance(d, int) and d > 0 else None for d in arg.shape)
    return TensorSpec(arg.name, shape, np.dtype(dtype))
