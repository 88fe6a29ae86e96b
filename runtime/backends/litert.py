"""LiteRT (TFLite) backend: ai-edge-litert, else tflite-runtime, else TensorFlow's interpreter."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from edge_export.core.errors import EdgeExportError
from edge_export.core.untrusted import printable
from edge_export.runtime.backends.base import Backend, TensorSpec, check_shape
from edge_export.runtime.metadata_entry import TFLITE_IDENTIFIER, read_tflite_metadata_text


class Interpreter(Protocol):
    """What this module uses of a TFLite interpreter (ai-edge-litert and tflite-runtime have no type
    information). Tensor details are dicts: name, index, shape, shape_signature, dtype, quantization ..."""

    def get_input_details(self) -> list[dict[str, Any]]: ...

    def get_output_details(self) -> list[dict[str, Any]]: ...

    def get_tensor_details(self) -> list[dict[str, Any]]: ...

    def allocate_tensors(self) -> None: ...

    def resize_tensor_input(self, input_index: int, tensor_size: Sequence[int], strict: bool = False) -> None: ...

    def set_tensor(self, tensor_index: int, value: np.ndarray) -> None: ...

    def invoke(self) -> None: ...

    def get_tensor(self, tensor_index: int) -> np.ndarray: ...


def interpreter_class() -> Callable[..., Interpreter]:
    """LiteRT's interpreter, else tflite_runtime's (never TensorFlow's: the runtime is TF-free)."""
    try:
        # lazy: LiteRT is optional (the tflite extra) and loads native code; only a .tflite model needs it
        from ai_edge_litert.interpreter import Interpreter as interpreter
    except ImportError:
        try:
            # lazy: tflite-runtime, the older optional interpreter, only where LiteRT is not installed
            from tflite_runtime.interpreter import (  # type: ignore[import-not-found]  # optional, untyped
                Interpreter as interpreter,
            )
        except ImportError:
            raise EdgeExportError(
                "no TFLite interpreter installed", hint="pip install 'edge-export[tflite]' (ai-edge-litert)"
            ) from None
    return interpreter  # type: ignore[no-any-return]  # the classes have no type information


class LiteRTBackend(Backend):
    name = "litert"

    def __init__(self, path: Path, threads: int | None) -> None:
        self._threads = threads
        self._interpreter = self._open(path, threads)
        (inp,) = self._interpreter.get_input_details()
        (out,) = self._interpreter.get_output_details()
        signature = inp.get("shape_signature", inp["shape"])
        self._dynamic_batch = len(signature) > 0 and signature[0] == -1
        self._batch = int(inp["shape"][0])
        self._input_index, self._output_index = inp["index"], out["index"]  # stable across resizes
        super().__init__(path, _spec(inp), _spec(out))

    @classmethod
    def load(
        cls, path: str | Path, threads: int | None = None, providers: Sequence[str] | None = None
    ) -> LiteRTBackend:
        if providers:
            raise EdgeExportError("execution providers apply to ONNX models only", path=path)
        return cls(Path(path), threads)

    @staticmethod
    def _open(path: Path, threads: int | None) -> Interpreter:
        with open(path, "rb") as f:
            head = f.read(8)
        if head[4:8] != TFLITE_IDENTIFIER:
            raise EdgeExportError("not a TFLite model (no 'TFL3' identifier)", path=path, hint="re-export the model")
        try:
            interpreter = interpreter_class()(model_path=str(path), num_threads=threads)
            inputs, outputs = interpreter.get_input_details(), interpreter.get_output_details()
            if len(inputs) != 1 or len(outputs) != 1:
                raise EdgeExportError(
                    f"expected a model with 1 input and 1 output, found {len(inputs)} and {len(outputs)}", path=path
                )
            check_shape(list(inputs[0]["shape"]), "input", path)  # before allocate_tensors: shapes are the file's word
            for tensor in interpreter.get_tensor_details():
                check_shape(list(tensor["shape"]), f"tensor {printable(tensor['name'], 80)!r}", path)
            interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as exc:
            raise EdgeExportError(
                f"cannot load TFLite model, corrupt or truncated? ({exc})", path=path, hint="re-export the model"
            ) from None
        return interpreter

    def run(self, array: np.ndarray) -> np.ndarray:
        n = array.shape[0]
        if n != self._batch:
            if not self._dynamic_batch or not self._resize(n):
                return self._run_one_by_one(array, self._invoke)
        return self._invoke(array)

    def _resize(self, n: int) -> bool:
        """Resize the input to batch ``n``; on failure reopen at batch 1 and return False."""
        details = self._interpreter.get_input_details()[0]
        try:
            self._interpreter.resize_tensor_input(details["index"], [n, *details["shape"][1:]], strict=False)
            self._interpreter.allocate_tensors()
        except (ValueError, RuntimeError):
            self._interpreter = self._open(self.path, self._threads)
            self._batch = int(self._interpreter.get_input_details()[0]["shape"][0])
            self._dynamic_batch = False
            return False
        self._batch = n
        return True

    def _invoke(self, array: np.ndarray) -> np.ndarray:
        interpreter = self._interpreter
        interpreter.set_tensor(self._input_index, array)
        interpreter.invoke()
        return interpreter.get_tensor(self._output_index)

    def metadata_text(self) -> str | None:
        return read_tflite_metadata_text(self.path.read_bytes(), self.path)


def _spec(details: dict[str, Any]) -> TensorSpec:
    scale, zero_point = details.get("quantization", (0.0, 0))
    shape = tuple(int(d) if d >= 0 else None for d in details.get("shape_signature", details["shape"]))
    return TensorSpec(details["name"], shape, np.dtype(details["dtype"]), float(scale), int(zero_point))
