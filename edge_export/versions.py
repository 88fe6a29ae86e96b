"""Versions of installed distributions, for model cards and benchmark reports."""

from __future__ import annotations

from importlib import metadata
from typing import Iterable

from edge_export import __version__


def installed_versions(names: Iterable[str]) -> dict[str, str | None]:
    """``{"edge_export": ..., name: version or None (not installed)}``."""
    found: dict[str, str | None] = {"edge_export": __version__}
    for name in names:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = None
    return found
