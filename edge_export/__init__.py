"""edge-export: train, quantize, export and verify small image classifiers for edge devices.

The public Python API (``edge_export.api``) is re-exported here lazily, so ``import edge_export`` stays
cheap (no TensorFlow) and ``from edge_export import build, train, export, bench, package, tune`` works.
"""

from __future__ import annotations

import importlib
from typing import Any

from edge_export.core import __version__

_API = ("build", "train", "export", "bench", "package", "tune", "resolve_config", "check_settings", "FLAGS")

__all__ = ["__version__", *_API]


def __getattr__(name: str) -> Any:
    if name in _API:
        return getattr(importlib.import_module("edge_export.api"), name)
    raise AttributeError(f"module 'edge_export' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_API))
