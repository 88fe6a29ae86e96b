"""Named datasets: resolved from a local folder first, downloaded from their public URL only as a last resort.

Look-up order for a name: ``$EDGE_EXPORT_DATA_DIR/<folder>``, then the cache folder
(``$EDGE_EXPORT_CACHE`` or ``~/.cache/edge-export``)``/datasets/<folder>``, then the download.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path

import click

from edge_export.core.errors import EdgeExportError


@dataclass(frozen=True)
class NamedDataset:
    name: str
    folders: tuple[str, ...]  # local folder names accepted, first is where a download goes
    url: str
    archive_root: str  # folder inside the archive that holds train/ and validation/


KNOWN = {
    "cats_vs_dogs": NamedDataset(
        name="cats_vs_dogs",
        folders=("cats_vs_dogs_small", "cats_vs_dogs", "cats_and_dogs_filtered"),
        url="https://storage.googleapis.com/mledu-datasets/cats_and_dogs_filtered.zip",
        archive_root="cats_and_dogs_filtered",
    ),
}


def cache_dir() -> Path:
    return Path(os.environ.get("EDGE_EXPORT_CACHE", Path.home() / ".cache" / "edge-export"))


def resolve_data(spec: str, download: bool = True) -> Path:
    """A folder path as given, or a known dataset's local folder (downloading it if allowed and needed)."""
    path = Path(spec).expanduser()
    if path.exists() or spec not in KNOWN:
        if not path.is_dir():
            raise EdgeExportError(
                f"data folder {spec!r} not found and not a known dataset name",
                hint=f"pass a folder with train/<class>/ images, or one of: {', '.join(KNOWN)}",
            )
        return path
    known = KNOWN[spec]
    roots = [Path(os.environ["EDGE_EXPORT_DATA_DIR"])] if os.environ.get("EDGE_EXPORT_DATA_DIR") else []
    roots.append(cache_dir() / "datasets")
    for root in roots:
        for folder in known.folders:
            if (root / folder / "train").is_dir():
                return root / folder
    if not download:
        raise EdgeExportError(
            f"dataset {spec!r} is not available locally", hint="set EDGE_EXPORT_DATA_DIR to its parent folder"
        )
    return _download(known, cache_dir() / "datasets")


def _download(known: NamedDataset, root: Path) -> Path:
    target = root / known.folders[0]
    root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=root, prefix=".download-") as tmp:
        archive = Path(tmp) / "data.zip"
        try:
            with urllib.request.urlopen(known.url, timeout=60) as response:
                total = int(response.headers.get("Content-Length") or 0) or None
                bar: click.termui.ProgressBar[int]
                with (
                    open(archive, "wb") as f,
                    click.progressbar(length=total, label=f"downloading {known.name}", file=None) as bar,
                ):
                    while chunk := response.read(1 << 20):
                        f.write(chunk)
                        bar.update(len(chunk))
        except OSError as exc:
            raise EdgeExportError(
                f"could not download {known.name} from {known.url}: {exc}",
                hint="download it yourself and set EDGE_EXPORT_DATA_DIR to the folder holding it, or pass --data DIR",
            ) from None
        with zipfile.ZipFile(archive) as z:
            z.extractall(tmp)
        shutil.move(str(Path(tmp) / known.archive_root), target)  # complete folder appears at once
    return target
