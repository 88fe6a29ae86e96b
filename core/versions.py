"""Versions of installed distributions, for model cards and benchmark reports."""

from __future__ import annotations

from collections.abc import Iterable
from importlib import metadata

from edge_export.core import __version__


def installed_version(distribution: str) -> str | None:
    """The installed version of ``distribution``, or None when it is not installed."""
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def installed_versions(names: Iterable[str]) -> dict[str, str | None]:
    """``{"edge_export": ..., name: version or None (not installed)}``."""
    return {"edge_export": __version__, **{name: installed_version(name) for name in names}}
