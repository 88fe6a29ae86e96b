"""Typed records that cross layers: what one layer writes and another reads.

Each record is a dataclass with ``to_dict()`` (what goes into its JSON file) and ``from_dict(data,
source=...)`` (the one reader: it checks the format version, types, names and paths, and raises
``EdgeExportError`` naming the file), and carries a format version. Consumers use attributes, never
``.get()`` chains on raw dicts.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edge_export.core.errors import EdgeExportError


def check_format_version(data: Any, key: str, supported: int, *, what: str, source: str | Path | None) -> int:
    """``data[key]`` if it is a format version this code reads (1..supported), else a clear error."""
    if not isinstance(data, dict):
        raise EdgeExportError(f"{what} is not a JSON object", path=source, hint="re-create it with edge-export")
    version = data.get(key, 1)
    if isinstance(version, bool) or not isinstance(version, int) or not 1 <= version <= supported:
        raise EdgeExportError(
            f"{what} has format version {version!r}; this edge-export reads 1..{supported}",
            path=source,
            hint="re-create it with this edge-export, or upgrade edge-export",
        )
    return version
