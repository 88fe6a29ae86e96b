"""edge-export: train, quantize, export and verify small image classifiers for edge devices."""

from edge_export.core import __version__

__all__ = ["__version__"]
