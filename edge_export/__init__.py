"""edge-export: train, quantize, export and verify small image classifiers for edge devices."""

__version__ = "0.1.0"
