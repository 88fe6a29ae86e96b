"""Atomic writes: a file either does not exist or is complete.

Everything is written to a temporary file in the destination's folder and renamed into place,
so a crash, ``kill -9`` or Ctrl-C never leaves a half-written file under the final name.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np


@contextlib.contextmanager
def atomic_path(path: str | Path, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success rename it onto ``path``.

    The temporary name keeps the final suffix (some writers, e.g. Keras, insist on it).
    On any exception the temporary file or folder is removed and ``path`` is untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = path.suffix if suffix is None else suffix
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f".partial{suffix}", dir=path.parent)
    os.close(fd)
    os.unlink(tmp_name)  # the writer creates it (file or folder)
    tmp = Path(tmp_name)
    try:
        yield tmp
        if not tmp.exists():
            raise RuntimeError(f"writer produced nothing at {tmp}")
        _fsync(tmp)
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        os.replace(tmp, path)
    except BaseException as exc:
        _remove(tmp)
        if isinstance(exc, OSError) and (not exc.filename or os.fsdecode(exc.filename) == str(tmp)):
            exc.filename = str(path)  # e.g. ENOSPC from a write names no file: name the one being written
        raise


def write_bytes(path: str | Path, data: bytes) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_text(path: str | Path, text: str) -> Path:
    return write_bytes(path, text.encode("utf-8"))


def write_json(path: str | Path, obj: Any) -> Path:
    return write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n")


def copy_file(src: str | Path, dst: str | Path) -> Path:
    with atomic_path(dst) as tmp:
        shutil.copyfile(src, tmp)
    return Path(dst)


def remove_partials(folder: str | Path) -> list[Path]:
    """Delete leftovers of interrupted atomic writes in ``folder`` (not recursive)."""
    removed = []
    folder = Path(folder)
    if folder.is_dir():
        for p in folder.glob(".*.partial*"):
            _remove(p)
            removed.append(p)
    return removed


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serializable: {type(obj).__name__}")


def _fsync(path: Path) -> None:
    if path.is_file():
        with open(path, "rb") as f:
            os.fsync(f.fileno())


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
