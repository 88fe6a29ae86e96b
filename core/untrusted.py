"""Data from files we did not just write: checked here, in one place, before anything uses it.

Every name or path read from a JSON of ours (manifest, report, bundle, recommendation), every number
read from model metadata, and every text that reaches the screen from a file or folder name goes
through these helpers. They raise :class:`EdgeExportError` naming the file and the fix, never anything
else.
"""

from __future__ import annotations

import json
import math
import os
import re
import stat
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import yaml

from edge_export.core.errors import EdgeExportError

# An artifact, format or bundle name: letters, digits, '.', '_', '-'; no leading dot; bounded length.
SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")

# JSON documents of ours are small; anything larger than this is not one of ours.
MAX_JSON_BYTES = 64 * 1024 * 1024
MAX_JSON_DEPTH = 64
# An image whose header declares more pixels than this is refused before decoding (data.max_image_pixels).
DEFAULT_MAX_IMAGE_PIXELS = 64_000_000


def safe_name(value: Any, *, what: str, source: str | Path | None = None) -> str:
    """``value`` if it is a safe file-name component, else a clear error naming ``source``."""
    if not isinstance(value, str) or not SAFE_NAME.match(value) or value in (".", ".."):
        raise EdgeExportError(
            f"{what} {printable(repr(value))} is not a safe name (letters, digits, '.', '_', '-'; no path separators)",
            path=source,
            hint="the file was edited or comes from elsewhere: re-create it with edge-export",
        )
    return value


def path_inside(folder: str | Path, relative: Any, *, what: str, source: str | Path | None = None) -> Path:
    """``folder / relative`` when it stays inside ``folder`` (no absolute path, no '..', no link out)."""
    if not isinstance(relative, str) or not relative or "\x00" in relative:
        raise EdgeExportError(
            f"{what} {printable(repr(relative))} is not a relative path",
            path=source,
            hint="the file was edited or comes from elsewhere: re-create it with edge-export",
        )
    parts = PurePosixPath(relative.replace("\\", "/")).parts
    if relative.startswith(("/", "\\")) or ".." in parts or (parts and ":" in parts[0]):
        raise EdgeExportError(
            f"{what} {printable(repr(relative))} points outside {folder}",
            path=source,
            hint="the file was edited or comes from elsewhere: re-create it with edge-export",
        )
    root = Path(folder).resolve()
    target = (root / Path(*parts)).resolve() if parts else root
    if target != root and root not in target.parents:
        raise EdgeExportError(
            f"{what} {printable(repr(relative))} resolves outside {folder} (a link?)",
            path=source,
            hint="remove the link, or re-create the folder with edge-export",
        )
    return Path(folder) / Path(*parts)


_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2066-\u2069]")


def printable(text: Any, limit: int = 300) -> str:
    """``text`` safe for a terminal: control, bidi and zero-width characters escaped, length bounded."""
    text = str(text)
    if len(text) > limit:
        text = text[:limit] + f"...(+{len(text) - limit} chars)"
    return _CONTROL.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), text)


def printable_strings(document: Any, limit: int = 4096) -> Any:
    """A JSON document read from a device, a model file or a run folder, with every text in it (keys and values,
    at any depth) through ``printable``: what reaches a terminal, Markdown or HTML from it cannot hold a control
    or bidi character. Numbers, booleans and null are kept as they are."""
    if isinstance(document, str):
        return printable(document, limit)
    if isinstance(document, dict):
        return {
            printable(k, limit) if isinstance(k, str) else k: printable_strings(v, limit) for k, v in document.items()
        }
    if isinstance(document, list):
        return [printable_strings(v, limit) for v in document]
    return document


def finite_number(
    value: Any, *, what: str, source: str | Path | None = None, positive: bool = False, minimum: float | None = None
) -> float:
    """``value`` as a finite float (and > ``minimum`` or > 0 with ``positive``), else a clear error."""
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        number = math.nan
    if isinstance(value, bool) or not math.isfinite(number):
        raise EdgeExportError(
            f"{what} is {printable(repr(value))}, expected a finite number",
            path=source,
            hint="fix the value (or the file it came from)",
        )
    floor = minimum if minimum is not None else (0.0 if positive else None)
    if floor is not None and number <= floor:
        raise EdgeExportError(
            f"{what} is {number!r}, expected a number above {floor:g}",
            path=source,
            hint="a standard deviation or scale must be clearly above zero",
        )
    return number


def finite_array(array: Any, *, what: str, source: str | Path | None = None) -> np.ndarray:
    """``array`` (numpy) when every value is finite, else a clear error: a nan is never a score."""
    checked = np.asarray(array)
    if checked.dtype.kind in "fc" and not np.isfinite(checked).all():
        bad = int(checked.size - np.isfinite(checked).sum())
        raise EdgeExportError(
            f"{what}: {bad} of {checked.size} values are not finite (nan or inf)",
            path=source,
            hint="the model or its preprocessing (mean/std, quantization scale) is broken: re-export it",
        )
    return checked


def json_depth_ok(obj: Any, limit: int = MAX_JSON_DEPTH) -> bool:
    stack = [(obj, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > limit:
            return False
        if isinstance(node, dict):
            stack.extend((v, depth + 1) for v in node.values())
        elif isinstance(node, list):
            stack.extend((v, depth + 1) for v in node)
    return True


def loads_json(text: str | bytes, *, what: str, source: str | Path | None = None) -> Any:
    """Parse a JSON document from elsewhere: bounded size and depth, a clear error on anything bad."""
    if len(text) > MAX_JSON_BYTES:
        raise EdgeExportError(
            f"{what} is {len(text)} bytes, over the {MAX_JSON_BYTES} limit",
            path=source,
            hint="the file is not one edge-export wrote",
        )
    try:
        obj = json.loads(text)
    except (ValueError, RecursionError, UnicodeDecodeError) as exc:
        raise EdgeExportError(
            f"{what} is not valid JSON ({printable(str(exc), 120)})",
            path=source,
            hint="the file is damaged or not one edge-export wrote: re-create it",
        ) from None
    if not json_depth_ok(obj):
        raise EdgeExportError(
            f"{what} nests deeper than {MAX_JSON_DEPTH} levels",
            path=source,
            hint="the file is not one edge-export wrote",
        )
    return obj


def read_json(path: str | Path, *, what: str | None = None) -> Any:
    """Read and parse a JSON file with :func:`loads_json`'s limits; a missing file is a clear error."""
    path = Path(path)
    what = what or path.name
    try:
        size = path.stat().st_size
        if size > MAX_JSON_BYTES:
            raise EdgeExportError(
                f"{what} is {size} bytes, over the {MAX_JSON_BYTES} limit",
                path=path,
                hint="the file is not one edge-export wrote",
            )
        data = path.read_bytes()
    except FileNotFoundError:
        raise EdgeExportError(f"{what} not found", path=path, hint="re-run the command that writes it") from None
    except IsADirectoryError:
        raise EdgeExportError(f"{what} is a folder, not a file", path=path) from None
    except PermissionError:
        raise EdgeExportError(
            f"{what} cannot be read (permission denied)", path=path, hint="check its permissions"
        ) from None
    return loads_json(data, what=what, source=path)


# A config file of ours is a few KB of plain mappings: no anchors or aliases (&a / *a: a "billion laughs"
# document expands 1 KB into billions of nodes), bounded size, nesting and node count.
MAX_YAML_BYTES = 1024 * 1024
MAX_YAML_DEPTH = 32
MAX_YAML_NODES = 100_000


def read_yaml(path: str | Path, *, what: str = "config file") -> Any:
    """Parse a YAML file from elsewhere (plain data, bounded) or raise a clear error naming it."""
    path = Path(path)
    try:
        size = path.stat().st_size
        if size > MAX_YAML_BYTES:
            raise EdgeExportError(
                f"{what} is {size} bytes, over the {MAX_YAML_BYTES} limit",
                path=path,
                hint="a config file is a few sections of settings",
            )
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise EdgeExportError(
            f"{what} is not UTF-8 text ({exc.reason} at byte {exc.start})", path=path, hint="save it as UTF-8"
        ) from None
    except OSError as exc:
        raise EdgeExportError(f"cannot read the {what} ({printable(exc.strerror or exc, 120)})", path=path) from None
    try:
        depth = nodes = 0
        for event in yaml.parse(text, Loader=yaml.SafeLoader):
            if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None) is not None:
                raise EdgeExportError(
                    f"{what} uses YAML anchors or aliases (&name / *name), which are not allowed",
                    path=path,
                    hint="write each value out in full",
                )
            if isinstance(event, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
                depth += 1
            elif isinstance(event, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
                depth -= 1
            nodes += isinstance(event, yaml.NodeEvent)
            if depth > MAX_YAML_DEPTH or nodes > MAX_YAML_NODES:
                raise EdgeExportError(
                    f"{what} nests deeper than {MAX_YAML_DEPTH} levels or has over {MAX_YAML_NODES} values",
                    path=path,
                    hint="a config file is a few sections of settings",
                )
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise EdgeExportError(f"invalid YAML: {printable(exc, 500)}", path=path) from None
    except (ValueError, TypeError, OverflowError, RecursionError) as exc:  # e.g. a date like 2024-02-30
        raise EdgeExportError(f"invalid YAML value ({printable(exc, 200)})", path=path) from None
    stack = [document]
    while stack:  # every key a name: `false:`, `1:` or `? [a]` are not settings
        node = stack.pop()
        if isinstance(node, dict):
            bad = next((k for k in node if not isinstance(k, str)), None)
            if bad is not None:
                raise EdgeExportError(
                    f"{what}: key {printable(repr(bad), 80)} is not a name",
                    path=path,
                    hint="keys are setting names (quote a key such as 'yes' or 'on')",
                )
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return document


def is_regular_file(path: str | Path) -> bool:
    """True for a regular file (following links); False for FIFOs, devices, sockets, folders."""
    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except OSError:
        return False
