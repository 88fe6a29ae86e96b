"""Image-folder datasets: ``ROOT/{train,validation,test}/<class>/<image>``.

Class names and their order come from ``train/`` (sorted folder names, as ``image_dataset_from_directory``
does). Without ``validation/``, a seeded, stratified split of ``train/`` is used. Images are decoded with the
runtime's decoder (one implementation for training and inference); unreadable files are skipped with one
warning that lists them.
"""

from __future__ import annotations

import logging
import os
import random
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edge_export.errors import EdgeExportError
from edge_export.runtime.images import ImageDecodeError, is_image_file, load_image

log = logging.getLogger(__name__)

SPLITS = ("train", "validation", "test")


@dataclass
class Split:
    name: str
    files: list[Path]
    labels: np.ndarray  # int class index per file

    def counts(self, num_classes: int) -> list[int]:
        return np.bincount(self.labels, minlength=num_classes).tolist() if len(self.labels) else [0] * num_classes


@dataclass
class Dataset:
    root: Path
    class_names: list[str]
    splits: dict[str, Split]
    validation_from_train: bool = False
    skipped: list[Path] = field(default_factory=list)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def counts_table(self) -> str:
        """Images per class per split, as a plain-text table."""
        names = [s for s in SPLITS if s in self.splits]
        width = max(8, *(len(c) for c in self.class_names))
        lines = [f"{'class':<{width}}" + "".join(f"{n:>12}" for n in names)]
        per_split = {n: self.splits[n].counts(self.num_classes) for n in names}
        for i, c in enumerate(self.class_names):
            lines.append(f"{c:<{width}}" + "".join(f"{per_split[n][i]:>12}" for n in names))
        lines.append(f"{'total':<{width}}" + "".join(f"{sum(per_split[n]):>12}" for n in names))
        if self.validation_from_train:
            lines.append("(validation: a seeded split of train/)")
        return "\n".join(lines)

    def summary(self) -> dict:
        return {
            "root": str(self.root),
            "classes": self.class_names,
            "counts": {n: dict(zip(self.class_names, s.counts(self.num_classes))) for n, s in self.splits.items()},
            "validation_from_train": self.validation_from_train,
        }

    def listing(self) -> list[str]:
        """Every file with its split, class, size and mtime: the dataset's fingerprint input."""
        rows = []
        for name, split in self.splits.items():
            for f, y in zip(split.files, split.labels):
                st = f.stat()
                rows.append(f"{name}\t{self.class_names[y]}\t{f.relative_to(self.root)}\t{st.st_size}\t{int(st.st_mtime)}")
        return rows


def scan_dataset(root: str | Path, validation_split: float = 0.2, seed: int = 1337) -> Dataset:
    root = Path(root)
    if not root.is_dir():
        raise EdgeExportError("dataset folder not found", path=root, hint="pass --data DIR with train/<class>/ images")
    train_dir = root / "train"
    if not train_dir.is_dir():
        raise EdgeExportError(
            "dataset has no train/ folder", path=root, hint="lay the data out as DIR/train/<class>/*.jpg (validation/ and test/ optional)"
        )
    class_names = _class_folders(train_dir)
    if len(class_names) < 2:
        raise EdgeExportError(
            f"train/ needs at least 2 class folders, found {len(class_names)}",
            path=train_dir,
            hint="make one sub-folder per class, each holding its images",
        )
    splits = {"train": _scan_split(train_dir, "train", class_names)}
    for name in ("validation", "test"):
        split_dir = root / name
        if split_dir.is_dir():
            found = _class_folders(split_dir)
            if found != class_names:
                missing = sorted(set(class_names) - set(found))
                extra = sorted(set(found) - set(class_names))
                raise EdgeExportError(
                    f"{name}/ classes differ from train/: missing {missing or 'none'}, extra {extra or 'none'}",
                    path=split_dir,
                    hint="every split needs the same class folders as train/",
                )
            splits[name] = _scan_split(split_dir, name, class_names)
    validation_from_train = "validation" not in splits
    if validation_from_train:
        splits["train"], splits["validation"] = _stratified_split(splits["train"], validation_split, seed)
    for name, split in splits.items():
        empty = [class_names[i] for i, n in enumerate(split.counts(len(class_names))) if n == 0]
        if empty and name == "train":
            raise EdgeExportError(
                f"train split has no images for class(es) {empty}", path=train_dir, hint="add images or remove the empty folders"
            )
    return Dataset(root=root, class_names=class_names, splits=splits, validation_from_train=validation_from_train)


def load_pixels(
    split: Split, size: tuple[int, int], method: str = "bilinear", workers: int | None = None
) -> tuple[np.ndarray, np.ndarray, list[Path]]:
    """Decode and resize a split: (uint8 N x H x W x 3, labels, skipped files). Bad files are skipped."""
    workers = workers or min(8, (os.cpu_count() or 1) * 2)

    def decode(path: Path) -> np.ndarray | None:
        try:
            return load_image(path, size, method)
        except ImageDecodeError:
            return None

    with ThreadPoolExecutor(workers) as pool:
        images = list(pool.map(decode, split.files))
    keep = [i for i, im in enumerate(images) if im is not None]
    skipped = [split.files[i] for i, im in enumerate(images) if im is None]
    if skipped:
        shown = "\n  ".join(str(p) for p in skipped[:20])
        more = f"\n  ... and {len(skipped) - 20} more" if len(skipped) > 20 else ""
        log.warning("skipped %d unreadable image(s) in %s:\n  %s%s", len(skipped), split.name, shown, more)
    if not keep:
        raise EdgeExportError(f"no readable images in the {split.name} split", hint="check the image files")
    pixels = np.stack([images[i] for i in keep])
    return pixels, split.labels[keep], skipped


def _class_folders(split_dir: Path) -> list[str]:
    return sorted(p.name for p in split_dir.iterdir() if p.is_dir() and not p.name.startswith("."))


def _scan_split(split_dir: Path, name: str, class_names: list[str]) -> Split:
    files, labels = [], []
    for index, class_name in enumerate(class_names):
        for path in sorted((split_dir / class_name).rglob("*")):
            if path.is_file() and is_image_file(path):
                files.append(path)
                labels.append(index)
    if not files:
        raise EdgeExportError(
            f"no images in {name}/", path=split_dir, hint="supported: .jpg .jpeg .png .bmp .gif .webp"
        )
    return Split(name, files, np.asarray(labels, dtype=np.int64))


def _stratified_split(split: Split, fraction: float, seed: int) -> tuple[Split, Split]:
    rng = random.Random(seed)
    train_idx, val_idx = [], []
    for label in np.unique(split.labels):
        idx = [i for i, y in enumerate(split.labels) if y == label]
        rng.shuffle(idx)
        n_val = max(1, round(len(idx) * fraction)) if len(idx) > 1 else 0
        val_idx += idx[:n_val]
        train_idx += idx[n_val:]
    train_idx.sort()
    val_idx.sort()
    pick = lambda idx, name: Split(name, [split.files[i] for i in idx], split.labels[idx])  # noqa: E731
    return pick(train_idx, "train"), pick(val_idx, "validation")
