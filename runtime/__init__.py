"""The thin runtime: what a device installs (numpy, Pillow, LiteRT or ONNX Runtime; no TensorFlow).

    from edge_export.runtime import Classifier
    classifier = Classifier.load("model.tflite")
    classifier.predict("cat.jpg", top_k=2)

The public names are imported on first use, so ``import edge_export.runtime`` loads no backend.
"""

from __future__ import annotations

import importlib
from typing import Any

# public name -> the module that defines it
_PUBLIC = {
    "Classifier": "edge_export.runtime.classifier",
    "Prediction": "edge_export.runtime.classifier",
    "read_labels": "edge_export.runtime.classifier",
    "Preprocessing": "edge_export.runtime.preprocessing",
    "read_metadata": "edge_export.runtime.metadata",
    "ModelMetadata": "edge_export.runtime.metadata",
    "read_model_metadata": "edge_export.runtime.metadata",
    "load_backend": "edge_export.runtime.backends",
}

__all__ = sorted(_PUBLIC)


def __getattr__(name: str) -> Any:
    module = _PUBLIC.get(name)
    if module is None:
        raise AttributeError(f"module 'edge_export.runtime' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_PUBLIC))
