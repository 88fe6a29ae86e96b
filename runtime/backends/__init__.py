"""Backends registry: model file suffix -> backend name -> class (imported only when used)."""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from pathlib import Path

from edge_export.core.errors import EdgeExportError
from edge_export.runtime.backends.base import Backend, TensorSpec

# backend name -> "module:class"; adding a runtime is adding a module and one entry here.
BACKENDS = {
    "litert": "edge_export.runtime.backends.litert:LiteRTBackend",
    "onnxruntime": "edge_export.runtime.backends.onnx_runtime:OnnxRuntimeBackend",
}
SUFFIXES = {".tflite": "litert", ".onnx": "onnxruntime"}
FAMILIES = {".tflite": "tflite", ".onnx": "onnx"}  # model file suffix -> format family (as export names them)

__all__ = ["BACKENDS", "FAMILIES", "SUFFIXES", "Backend", "TensorSpec", "backend_class", "backend_for", "load_backend"]


def backend_class(name: str) -> type[Backend]:
    target = BACKENDS.get(name)
    if target is None:
        raise EdgeExportError(f"unknown backend {name!r}", hint=f"use one of {sorted(BACKENDS)}")
    module, attr = target.split(":")
    cls: type[Backend] = getattr(importlib.import_module(module), attr)  # a Backend subclass, as BACKENDS says
    return cls


def backend_for(path: str | Path) -> type[Backend]:
    """The backend class for a model file, chosen by its suffix."""
    path = Path(path)
    name = SUFFIXES.get(path.suffix.lower())
    if name is None:
        raise EdgeExportError(
            f"unknown model format {path.suffix or '(no suffix)'!r}",
            path=path,
            hint=f"use a model file ending in {', '.join(sorted(SUFFIXES))}",
        )
    return backend_class(name)


def load_backend(path: str | Path, threads: int | None = None, providers: Sequence[str] | None = None) -> Backend:
    """Open a model file with the backend its suffix selects."""
    path = Path(path)
    if not path.exists():
        raise EdgeExportError("model file not found", path=path, hint="check the path")
    if not path.is_file():
        raise EdgeExportError("not a model file (a folder?)", path=path, hint="pass a .tflite or .onnx file")
    if threads is not None and (not isinstance(threads, int) or threads < 1):
        raise EdgeExportError(f"threads must be a positive integer, got {threads!r}")
    cls = backend_for(path)
    return cls.load(path, threads=threads, providers=providers)
