"""The test images of a benchmark: a folder of ``<class>/<image>`` files, decoded once per input size.

TF-free (numpy, Pillow via the runtime's one decoder). ``TEST_DIR`` is either the class folders
themselves or a dataset root holding ``test/`` (then ``test/`` is used). Class names map onto a model's
labels by name; a class the model does not know is an error naming it. Which files count is the
dataset rule (``runtime.images.find_images``: sub-folders count as their class; hidden names and
non-regular files are left out); images over ``max_pixels`` are unreadable ones.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from edge_export.core.errors import EdgeExportError
from edge_export.core.untrusted import path_inside, printable, read_json
from edge_export.runtime.images import find_images, max_pixels_value, skipped_text
from edge_export.runtime.pixel_cache import DiskArray, decoded_pixels

log = logging.getLogger(__name__)

SPLIT_NAMES = ("train", "validation", "test")


@dataclass
class TestSet:
    root: Path  # the folder holding the class folders
    class_names: list[str]  # sorted folder names that hold at least one image
    files: list[Path]
    labels: np.ndarray  # class index per file
    skipped: list[Path] = field(default_factory=list)  # unreadable images, left out everywhere
    max_pixels: int | None = None  # images larger than this are unreadable ones (None: the default limit)

    __test__ = False  # not a pytest class

    @property
    def counts(self) -> dict[str, int]:
        counts = np.bincount(self.labels, minlength=len(self.class_names)).tolist() if len(self.labels) else []
        return dict(zip(self.class_names, counts))

    def summary(self) -> dict:
        return {
            "path": str(self.root),
            "classes": self.class_names,
            "counts": self.counts,
            "images": len(self.files),
            "skipped": [str(p) for p in self.skipped],
        }

    def typical_image(self) -> Path:
        """The file of median size (width x height from its header; ties by path): the image the end-to-end
        timing starts from. Decode and resize grow with the photo, so the first file (in cats vs dogs a
        150 x 149 thumbnail) would understate them."""
        return typical_image(self.files)

    def drop(self, bad: Sequence[Path]) -> None:
        """Leave out files that could not be decoded (for every model alike)."""
        bad_set = set(bad)
        if not bad_set:
            return
        keep = [i for i, f in enumerate(self.files) if f not in bad_set]
        self.skipped += [f for f in self.files if f in bad_set]
        self.files = [self.files[i] for i in keep]
        self.labels = self.labels[keep]
        if not self.files:
            raise EdgeExportError("no readable test images", path=self.root, hint="check the image files")


def scan_test_folder(path: str | Path, max_pixels: int | None = None) -> TestSet:
    """``path/<class>/*`` (or ``path/test/<class>/*``) -> the files and their class indices."""
    max_pixels_value(max_pixels)  # a bad limit is an error before any work
    path = Path(path)
    if not path.exists():
        raise EdgeExportError(
            "test data folder not found", path=path, hint="pass --data DIR with <class>/ image folders"
        )
    if not path.is_dir():
        raise EdgeExportError(
            "test data is not a folder", path=path, hint="pass --data DIR with <class>/ image folders"
        )
    root = path
    if (path / "test").is_dir():
        root = path / "test"
    else:
        subdirs = {p.name for p in path.iterdir() if p.is_dir()}
        if subdirs and subdirs <= set(SPLIT_NAMES):
            raise EdgeExportError(
                "dataset folder has no test/ split",
                path=path,
                hint="benchmark on held-out images: pass DIR/test, or a folder of <class>/ images",
            )
    class_names, files, labels = [], [], []
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        images = find_images(folder).files
        if not images:
            continue
        class_names.append(folder.name)
        files += images
        labels += [len(class_names) - 1] * len(images)
    if not files:
        raise EdgeExportError(
            "no images in class folders",
            path=root,
            hint="lay the test data out as DIR/<class>/*.jpg (supported: .jpg .jpeg .png .bmp .gif .webp)",
        )
    return TestSet(root, class_names, files, np.asarray(labels, dtype=np.int64), max_pixels=max_pixels)


def recorded_split(dataset_json: Path, data: str | Path, max_pixels: int | None = None) -> TestSet | None:
    """The held-out photos of a run whose data folder had no split folders and was split by the tool (the run's
    dataset.json records every file by split): its test list (validation where the split made no test), when
    ``data`` is that same folder. None otherwise (``data`` is then scanned as it is)."""
    if not dataset_json.is_file():
        return None
    summary = read_json(dataset_json, what="dataset.json")
    split = summary.get("split") if isinstance(summary, dict) else None
    if not isinstance(split, dict) or not isinstance(summary.get("root"), str):
        return None
    root = Path(summary["root"])
    try:
        if not Path(data).is_dir() or not root.is_dir() or not Path(data).resolve() == root.resolve():
            return None
    except OSError:
        return None
    found = split.get("files")
    files_by_split: dict[str, Any] = found if isinstance(found, dict) else {}
    name = "test" if files_by_split.get("test") else "validation"
    listed = files_by_split.get(name)
    classes = summary.get("classes")
    if not isinstance(listed, list) or not listed or not isinstance(classes, list):
        raise EdgeExportError(
            "dataset.json's split has no test or validation list",
            path=dataset_json,
            hint="re-run the build: it records the split again",
        )
    index = {c: i for i, c in enumerate(classes)}
    files, labels = [], []
    for relative in listed:
        path = path_inside(root, relative, what="a file of the recorded split", source=dataset_json)
        cls = str(relative).split("/", 1)[0]
        if cls not in index:
            raise EdgeExportError(
                f"the recorded split names {printable(relative)}, not in a class folder",
                path=dataset_json,
                hint="re-run the build: it records the split again",
            )
        if not path.is_file():
            raise EdgeExportError(
                f"a photo of the recorded {name} split is gone: {printable(path)}",
                path=dataset_json,
                hint="restore it, or re-run the build to split the folder again",
            )
        files.append(path)
        labels.append(index[cls])
    log.info(
        "test data: the %s list the tool split from %s (%d photos, recorded in %s)",
        name,
        printable(root),
        len(files),
        printable(dataset_json),
    )
    return TestSet(root, [str(c) for c in classes], files, np.asarray(labels, dtype=np.int64), max_pixels=max_pixels)


def map_classes(class_names: Sequence[str], model_labels: Sequence[str], model: str | Path) -> list[int]:
    """Index into ``model_labels`` of each test class, matched by name (exact, else ignoring case/spaces)."""
    exact = {label: i for i, label in enumerate(model_labels)}
    loose: dict[str, int] = {}
    for i, label in enumerate(model_labels):
        loose.setdefault(_loose(label), i)
    mapping, missing = [], []
    for name in class_names:
        index = exact.get(name, loose.get(_loose(name)))
        if index is None:
            missing.append(name)
        else:
            mapping.append(index)
    if missing:
        shown = ", ".join(repr(m) for m in missing[:10])
        known = ", ".join(repr(label) for label in list(model_labels)[:10])
        more = ", ..." if len(model_labels) > 10 else ""
        raise EdgeExportError(
            f"test class(es) {shown} are not among the model's labels ({known}{more})",
            path=model,
            hint="name the test class folders like the model's labels, or pass the right --labels file",
        )
    if len(set(mapping)) != len(mapping):
        raise EdgeExportError(f"two test classes map onto the same model label: {list(class_names)}", path=model)
    return mapping


def _loose(name: str) -> str:
    return " ".join(name.replace("_", " ").split()).casefold()


def decode_all(
    files: Sequence[Path], size: tuple[int, int], method: str, max_pixels: int | None = None
) -> tuple[DiskArray, list[Path]]:
    """Decode and resize every file (threads, in chunks) into the pixel cache (``runtime.pixel_cache``):
    (uint8 N x H x W x 3 of the readable ones, on disk; unreadable files). A test split that training or an
    earlier bench decoded at this size is read back, not decoded again.

    Images over ``max_pixels`` (width x height, from the header) are unreadable ones, never decoded."""
    decoded = decoded_pixels(list(files), size, method, max_pixels)
    if decoded.errors:
        log.warning(
            "skipped %d unreadable test image(s):\n%s", len(decoded.errors), skipped_text(list(files), decoded.errors)
        )
    return decoded, [files[i] for i in decoded.errors]


# ----------------------------------------------------------------------------- pixels on disk
# The parent decodes once per input size into the pixel cache (a .npy); a measuring process reads it in
# chunks (plain reads, no mmap) so the test set never sits whole in its memory and its peak RSS stays the model's.


def save_pixels(path: Path, pixels: np.ndarray | DiskArray) -> Path:
    """The .npy holding ``pixels``: the cache's own file for pixels on disk (nothing copied), else ``path``."""
    if isinstance(pixels, DiskArray):
        return pixels.path
    np.save(path, np.ascontiguousarray(pixels, dtype=np.uint8), allow_pickle=False)
    return path


def pixel_count(path: str | Path) -> int:
    with open(path, "rb") as f:
        shape, _ = _header(f)
    return int(shape[0])


def read_pixels(path: str | Path, start: int = 0, stop: int | None = None) -> np.ndarray:
    """Images ``start:stop`` of a .npy written by ``save_pixels``."""
    with open(path, "rb") as f:
        shape, offset = _header(f)
        n = shape[0]
        stop = n if stop is None else min(stop, n)
        per = int(np.prod(shape[1:]))
        f.seek(offset + start * per)
        data = np.fromfile(f, dtype=np.uint8, count=max(0, stop - start) * per)
    return data.reshape(-1, *shape[1:])


def iter_pixels(path: str | Path, chunk: int) -> Iterator[np.ndarray]:
    n = pixel_count(path)
    for start in range(0, n, chunk):
        yield read_pixels(path, start, start + chunk)


def _header(f) -> tuple[tuple[int, ...], int]:
    version = np.lib.format.read_magic(f)
    if version == (1, 0):
        shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
    else:
        shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
    if dtype != np.uint8 or fortran:
        raise ValueError("pixel file must hold C-ordered uint8 images")
    return tuple(shape), f.tell()


def typical_image(files: Sequence[Path]) -> Path:
    """The file of median pixel count among ``files`` (headers only, nothing decoded; an unreadable header
    counts as 0 pixels); ties broken by path, so the choice is the same on every run."""

    def pixels(path: Path) -> int:
        try:
            with Image.open(path) as image:
                return image.size[0] * image.size[1]
        except Exception:  # noqa: BLE001 - an unreadable file was dropped or will fail loudly elsewhere
            return 0

    if not files:
        raise EdgeExportError("no test images to time")
    ranked = sorted(files, key=lambda f: (pixels(f), str(f)))
    return ranked[(len(ranked) - 1) // 2]
