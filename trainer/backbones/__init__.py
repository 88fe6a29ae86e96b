"""Backbones: one module per family, each registering its entries (timm style)."""

from edge_export.trainer.backbones import efficientnet_lite, keras_applications, tiny  # noqa: F401  (registration)
from edge_export.trainer.backbones.registry import BackboneSpec, get_backbone, list_backbones, register

__all__ = ["BackboneSpec", "get_backbone", "list_backbones", "register"]
