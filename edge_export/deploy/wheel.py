"""A wheel of edge-export itself, for a bundle: ``pip wheel --no-deps`` of the source tree this code runs from.

From a source checkout (pyproject.toml next to the ``edge_export`` folder) the wheel is built by pip
from a copy of the package folders (so no ``build/`` lands in the checkout; no network: no build
isolation, no dependencies). From a regular install (no source tree) the installed files are packed
into a wheel again. Either way the wheel is pure Python and its base requirements are TF-free.
"""

from __future__ import annotations

import base64
import hashlib
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from importlib import metadata as importlib_metadata
from pathlib import Path

import edge_export
from edge_export.core.atomic import copy_file
from edge_export.core.errors import EdgeExportError

DISTRIBUTION = "edge-export"
_SKIP_DIST_INFO = {"RECORD", "INSTALLER", "REQUESTED", "direct_url.json"}


def wheel_name(version: str = edge_export.__version__) -> str:
    return f"edge_export-{version}-py3-none-any.whl"


def source_tree() -> Path | None:
    """The checkout edge_export is imported from, or None (an installed copy)."""
    root = Path(edge_export.__file__).resolve().parent.parent
    pyproject = root / "pyproject.toml"
    if pyproject.is_file() and re.search(r'^name\s*=\s*"edge-export"', pyproject.read_text(), re.M):
        return root
    return None


def build_wheel(dest_dir: str | Path) -> Path:
    """Write ``edge_export-VERSION-py3-none-any.whl`` into ``dest_dir`` (atomically) and return its path."""
    dest = Path(dest_dir) / wheel_name()
    with tempfile.TemporaryDirectory(prefix="edge-export-wheel-") as tmp:
        root = source_tree()
        if root is not None:
            built = _pip_wheel(root, Path(tmp))
        else:
            built = _repack_installed(importlib_metadata.distribution(DISTRIBUTION), Path(tmp))
        copy_file(built, dest)
    return dest


def _pip_wheel(root: Path, tmp: Path) -> Path:
    src, out = tmp / "src", tmp / "dist"
    src.mkdir()
    shutil.copy2(root / "pyproject.toml", src / "pyproject.toml")
    for name in ("README.md", "LICENSE"):
        if (root / name).is_file():
            shutil.copy2(root / name, src / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".*.partial*")
    # the package folder, its linked layers (edge_export/core -> ../core, ...) copied as the folders they point to
    shutil.copytree(root / "edge_export", src / "edge_export", ignore=ignore, symlinks=False)
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "wheel",
        "--no-deps",
        "--no-build-isolation",
        "--no-index",
        "--disable-pip-version-check",
        "-q",
        "-w",
        str(out),
        str(src),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wheels = sorted(out.glob("edge_export-*.whl")) if out.is_dir() else []
    if proc.returncode != 0 or not wheels:
        tail = " | ".join((proc.stderr or proc.stdout).strip().splitlines()[-6:])
        raise EdgeExportError(
            f"could not build the edge-export wheel (pip wheel exited {proc.returncode}): {tail}",
            path=root,
            hint="pip install setuptools wheel (the build runs without network, with the installed setuptools)",
        )
    return wheels[0]


def _repack_installed(dist: importlib_metadata.Distribution, tmp: Path) -> Path:
    """A wheel from an installed (non-editable) distribution's files, with a fresh RECORD."""
    files = [f for f in (dist.files or []) if not f.name.endswith(".pyc") and "__pycache__" not in f.parts]
    info = next((f.parts[0] for f in files if f.parts[0].endswith(".dist-info")), None)
    code = [f for f in files if f.parts[0] == "edge_export" and f.suffix in (".py", ".fbs")]  # .fbs: package data
    if info is None or not any(f.as_posix() == "edge_export/__init__.py" for f in code):
        raise EdgeExportError(
            "cannot find edge-export's files to build a wheel (an editable install without its source tree?)",
            hint="run from an edge-export source checkout, or reinstall edge-export with pip",
        )
    meta = [f for f in files if f.parts[0] == info and len(f.parts) == 2 and f.name not in _SKIP_DIST_INFO]
    path = tmp / wheel_name(dist.version)
    record = []
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for f in sorted(code + meta, key=lambda f: f.as_posix()):
            data = Path(str(dist.locate_file(f))).read_bytes()
            arcname = f.as_posix()
            zf.writestr(arcname, data)
            digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
            record.append(f"{arcname},sha256={digest},{len(data)}")
        record.append(f"{info}/RECORD,,")
        zf.writestr(f"{info}/RECORD", "\n".join(record) + "\n")
    return path
