"""Image-folder datasets: ``ROOT/{train,validation,test}/<class>/<image>``.

Class names and their order come from ``train/`` (sorted folder names, as ``image_dataset_from_directory``
does). Without ``validation/``, a seeded, stratified split of ``train/`` is used. Images are decoded with the
runtime's decoder (one implementation for training and inference) into the on-disk pixel cache
(``runtime.pixel_cache``: decoded once, reused by later runs and stages, read back in batches); unreadable
files are skipped with one warning that lists them, and the counts are of the images actually used.

Which files count (``runtime.images.find_images``): image files anywhere below a class folder, sub-folders
included as that class (counted and reported: ``nested_folders``; a sub-folder named like another class is
warned about). Hidden files and folders (a name starting with '.') are left out, and so is anything that is
not a regular file (a FIFO or device is never opened). Folder links are followed, each real folder once.
"""

from __future__ import annotations

import hashlib
import logging
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edge_export.core.errors import EdgeExportError
from edge_export.core.untrusted import printable
from edge_export.runtime.images import find_images, skipped_text
from edge_export.runtime.pixel_cache import CachedPixels, decoded_pixels

log = logging.getLogger(__name__)

SPLITS = ("train", "validation", "test")


@dataclass
class Split:
    name: str
    files: list[Path]  # as found (the fingerprint's input: decoding does not change it)
    labels: np.ndarray  # int class index per file
    skipped: list[Path] = field(default_factory=list)  # files that could not be decoded (set by decoding)

    def used_labels(self) -> np.ndarray:
        """The labels of the images used: all files minus the skipped ones."""
        if not self.skipped:
            return self.labels
        bad = set(self.skipped)
        return self.labels[[f not in bad for f in self.files]] if len(self.files) else self.labels

    def used_files(self) -> list[Path]:
        """The files of the images used (all files minus the skipped ones), in order: the rows of the decoded pixels."""
        bad = set(self.skipped)
        return [f for f in self.files if f not in bad] if bad else list(self.files)

    def counts(self, num_classes: int) -> list[int]:
        """Images used per class (after decoding: the readable ones)."""
        return _bincount(self.used_labels(), num_classes)

    def skipped_by_class(self, class_names: list[str]) -> dict[str, list[Path]]:
        bad = set(self.skipped)
        out: dict[str, list[Path]] = {}
        for f, y in zip(self.files, self.labels):
            if f in bad:
                out.setdefault(class_names[y], []).append(f)
        return out


def _bincount(labels: np.ndarray, n: int) -> list[int]:
    return np.bincount(labels, minlength=n).tolist() if len(labels) else [0] * n


@dataclass
class Dataset:
    root: Path
    class_names: list[str]
    splits: dict[str, Split]
    validation_from_train: bool = False
    hidden: list[Path] = field(default_factory=list)  # hidden files/folders below class folders: not used
    irregular: list[Path] = field(default_factory=list)  # image-named FIFOs, devices, broken links: not used
    made_split: dict | None = None  # a folder with no split folders: how the tool split it (seed, fractions)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def skipped(self) -> list[Path]:
        """Every file that could not be decoded (empty before decoding)."""
        return [f for s in self.splits.values() for f in s.skipped]

    def nested_folders(self) -> dict[str, int]:
        """Sub-folders below class folders (``train/cats/dogs``) -> images used from them (as that class)."""
        counts: dict[str, int] = {}
        for split in self.splits.values():
            bad = set(split.skipped)
            for f in split.files:
                parts = f.relative_to(self.root).parts  # split/class/.../file
                if len(parts) > 3 and f not in bad:
                    key = "/".join(parts[:-1])
                    counts[key] = counts.get(key, 0) + 1
        return dict(sorted(counts.items()))

    def misfiled(self) -> list[str]:
        """Nested folders named like another class (``train/cats/dogs`` with a class ``dogs``)."""
        found = []
        for folder in self.nested_folders():
            _, cls, *below = folder.split("/")
            if any(name in self.class_names and name != cls for name in below):
                found.append(folder)
        return found

    def counts_table(self) -> str:
        """Images used per class per split, as a plain-text table, with notes on what else was found."""
        names = [s for s in SPLITS if s in self.splits]
        shown = [printable(c, 60) for c in self.class_names]
        width = max(8, *(len(c) for c in shown))
        lines = [f"{'class':<{width}}" + "".join(f"{n:>12}" for n in names)]
        per_split = {n: self.splits[n].counts(self.num_classes) for n in names}
        for i, c in enumerate(shown):
            lines.append(f"{c:<{width}}" + "".join(f"{per_split[n][i]:>12}" for n in names))
        lines.append(f"{'total':<{width}}" + "".join(f"{sum(per_split[n]):>12}" for n in names))
        if self.validation_from_train:
            lines.append("(validation: a seeded split of train/)")
        if self.made_split is not None:
            lines.append(
                f"(no split folders: split by the tool, {'/'.join(f'{f:g}' for f in self.made_split['fractions'])} "
                f"with seed {self.made_split['seed']}; the lists are in the run's dataset.json)"
            )
        for n in names:
            for c, files in self.splits[n].skipped_by_class(self.class_names).items():
                lines.append(f"(not used: {len(files)} {n} image(s) of {printable(c, 60)} that could not be decoded)")
        nested = self.nested_folders()
        for c in self.class_names:
            mine = {k: v for k, v in nested.items() if k.split("/")[1] == c}
            if mine:
                where = ", ".join(f"{printable(k, 80)}/ ({v})" for k, v in mine.items())
                lines.append(
                    f"({printable(c, 60)}: {sum(mine.values())} image(s) in sub-folders, "
                    f"counted as {printable(c, 60)}: {where})"
                )
        for folder in self.misfiled():
            lines.append(f"(warning: {printable(folder, 80)}/ is named like another class: misfiled?)")
        if self.hidden:
            lines.append(
                f"(not used: {len(self.hidden)} hidden file(s)/folder(s), "
                f"e.g. {printable(self.hidden[0].relative_to(self.root), 80)})"
            )
        if self.irregular:
            lines.append(
                f"(not used: {len(self.irregular)} image name(s) that are not regular files, "
                f"e.g. {printable(self.irregular[0].relative_to(self.root), 80)})"
            )
        return "\n".join(lines)

    def summary(self) -> dict:
        rel = lambda p: str(p.relative_to(self.root))  # noqa: E731
        return {
            "root": str(self.root),
            "classes": self.class_names,
            "counts": {n: dict(zip(self.class_names, s.counts(self.num_classes))) for n, s in self.splits.items()},
            "validation_from_train": self.validation_from_train,
            # files that could not be decoded, per split and class (not in counts)
            "skipped": {
                n: {c: [rel(f) for f in files] for c, files in s.skipped_by_class(self.class_names).items()}
                for n, s in self.splits.items()
                if s.skipped
            },
            "nested_folders": self.nested_folders(),  # used as their class folder's class (in counts)
            "misfiled_folders": self.misfiled(),
            "hidden": [rel(p) for p in self.hidden],  # not used
            "not_regular_files": [rel(p) for p in self.irregular],  # not used
            # the tool's split of a folder with no split folders: every file, by split (posix paths below root)
            "split": None
            if self.made_split is None
            else {
                **self.made_split,
                "files": {n: [p.relative_to(self.root).as_posix() for p in s.files] for n, s in self.splits.items()},
            },
        }

    def listing(self) -> list[str]:
        """Every file with its split, class, size and mtime: the dataset's fingerprint input."""
        rows = []
        for name, split in self.splits.items():
            for f, y in zip(split.files, split.labels):
                st = f.stat()
                rows.append(
                    f"{name}\t{self.class_names[y]}\t{f.relative_to(self.root)}\t{st.st_size}\t{int(st.st_mtime)}"
                )
        return rows


VALIDATION_ALIASES = ("validation", "val", "valid")  # the folder names taken for validation/, first found wins


def scan_dataset(
    root: str | Path,
    validation_split: float = 0.2,
    seed: int = 1337,
    split: Sequence[float] = (0.8, 0.1, 0.1),
) -> Dataset:
    """``root/{train,validation,test}/<class>/*`` (``val/`` or ``valid/`` for validation/), or a folder of class
    folders with no splits (``root/<class>/*``): that one is split by the tool, per class, seeded (``split``:
    train, validation, test fractions; see :func:`split_flat`)."""
    root = Path(root)
    if not root.is_dir():
        raise EdgeExportError("dataset folder not found", path=root, hint="pass --data DIR with train/<class>/ images")
    train_dir = root / "train"
    if not train_dir.is_dir():
        if not any((root / name).is_dir() for name in (*VALIDATION_ALIASES, "test")) and len(_class_folders(root)) >= 2:
            return _scan_flat(root, seed, tuple(split))
        raise EdgeExportError(
            "dataset has no train/ folder",
            path=root,
            hint="lay the data out as DIR/train/<class>/*.jpg (validation/ and test/ optional), "
            "or as DIR/<class>/*.jpg with no split folders (the tool splits it: data.split)",
        )
    class_names = _class_folders(train_dir)
    if len(class_names) < 2:
        raise EdgeExportError(
            f"train/ needs at least 2 class folders, found {len(class_names)}",
            path=train_dir,
            hint="make one sub-folder per class, each holding its images",
        )
    left_out: dict[str, list[Path]] = {"hidden": [], "irregular": []}
    splits = {"train": _scan_split(train_dir, "train", class_names, left_out)}
    for name in ("validation", "test"):
        split_dir = _split_folder(root, name)
        if split_dir is not None:
            found = _class_folders(split_dir)
            if found != class_names:
                missing = sorted(set(class_names) - set(found))
                extra = sorted(set(found) - set(class_names))
                raise EdgeExportError(
                    f"{name}/ classes differ from train/: missing {missing or 'none'}, extra {extra or 'none'}",
                    path=split_dir,
                    hint="every split needs the same class folders as train/",
                )
            splits[name] = _scan_split(split_dir, name, class_names, left_out)
    validation_from_train = "validation" not in splits
    if validation_from_train:
        splits["train"], splits["validation"] = _stratified_split(splits["train"], validation_split, seed)
    for name, part in splits.items():
        empty = [class_names[i] for i, n in enumerate(part.counts(len(class_names))) if n == 0]
        if empty and name == "train":
            raise EdgeExportError(
                f"train split has no images for class(es) {empty}",
                path=train_dir,
                hint="add images or remove the empty folders",
            )
    dataset = Dataset(
        root=root,
        class_names=class_names,
        splits=splits,
        validation_from_train=validation_from_train,
        hidden=left_out["hidden"],
        irregular=left_out["irregular"],
    )
    for folder in dataset.misfiled():
        log.warning(
            "%s/ is a sub-folder named like another class: its images count as %s (misfiled?)",
            printable(root / folder),
            printable(folder.split("/")[1], 60),
        )
    if dataset.irregular:
        log.warning(
            "not used: %d image name(s) that are not regular files (FIFO, device, broken link), e.g. %s",
            len(dataset.irregular),
            printable(dataset.irregular[0]),
        )
    return dataset


def load_pixels(
    split: Split,
    size: tuple[int, int],
    method: str = "bilinear",
    workers: int | None = None,
    max_pixels: int | None = None,
) -> tuple[np.ndarray, np.ndarray, list[Path]]:
    """Decode and resize a split into memory: (uint8 N x H x W x 3, labels, skipped files). Bad files are
    skipped. For small sets; :func:`stream_pixels` leaves the pixels on disk (what training and export use).

    ``max_pixels``: images larger than this (from their header) are bad files too (see runtime.images).
    """
    pixels, labels, skipped = stream_pixels(split, size, method, workers, max_pixels)
    return pixels.read(), labels, skipped


def stream_pixels(
    split: Split,
    size: tuple[int, int],
    method: str = "bilinear",
    workers: int | None = None,
    max_pixels: int | None = None,
) -> tuple[CachedPixels, np.ndarray, list[Path]]:
    """Decode and resize a split into the pixel cache (or find it there): (uint8 N x H x W x 3 on disk, read
    in batches; labels; skipped files). Bad files are skipped, as in :func:`load_pixels`."""
    pixels, labels, skipped = _decode(split, size, method, workers, max_pixels)
    if not len(labels):
        raise EdgeExportError(f"no readable images in the {split.name} split", hint="check the image files")
    return pixels, labels, skipped


def decode_splits(
    dataset: Dataset, size: tuple[int, int], method: str = "bilinear", max_pixels: int | None = None
) -> dict[str, tuple[CachedPixels, np.ndarray]]:
    """Decode every split: {split: (pixels on disk, labels)} of the images used; each split's ``skipped`` is set.

    A class left with no image in train or validation because all of its files there were unreadable is
    an error naming the class and those files (a class that never had validation images is not).
    """
    arrays = {}
    for name in sorted(dataset.splits, key=SPLITS.index):
        split = dataset.splits[name]
        pixels, labels, split.skipped = _decode(split, size, method, None, max_pixels)
        if name in ("train", "validation"):
            _check_no_class_lost(dataset, split)
        if not len(labels):
            raise EdgeExportError(
                f"no readable images in the {name} split", path=dataset.root / name, hint="check the image files"
            )
        arrays[name] = (pixels, labels)
    if dataset.skipped:
        log.info("images used after decoding:\n%s", dataset.counts_table())
    return arrays


def _check_no_class_lost(dataset: Dataset, split: Split) -> None:
    found = _bincount(split.labels, dataset.num_classes)
    used = split.counts(dataset.num_classes)
    lost = [c for i, c in enumerate(dataset.class_names) if found[i] and not used[i]]
    if not lost:
        return
    skipped = split.skipped_by_class(dataset.class_names)
    parts = []
    for c in lost:
        files = skipped[c]
        shown = ", ".join(printable(f.relative_to(dataset.root), 120) for f in files[:5])
        more = f", ... ({len(files) - 5} more)" if len(files) > 5 else ""
        parts.append(f"class {printable(repr(c), 60)}: all {len(files)} file(s) skipped ({shown}{more})")
    raise EdgeExportError(
        f"no usable {split.name} image left for {len(lost)} class(es) after decoding: " + "; ".join(parts),
        path=dataset.root,
        hint="the warning above says why each was skipped (unreadable, or over data.max_image_pixels): "
        "replace or re-save them, or remove the class folder",
    )


def _decode(
    split: Split, size: tuple[int, int], method: str, workers: int | None, max_pixels: int | None
) -> tuple[CachedPixels, np.ndarray, list[Path]]:
    started = time.perf_counter()
    decoded = decoded_pixels(split.files, size, method, max_pixels, workers)
    log.info(
        "%s: %d images at %dx%d %s in %.1fs (%s)",
        split.name,
        len(decoded),
        size[0],
        size[1],
        "from the pixel cache" if decoded.reused else "decoded",
        time.perf_counter() - started,
        printable(decoded.path.parent, 200),
    )
    if decoded.errors:
        log.warning(
            "skipped %d unreadable image(s) in %s:\n%s",
            len(decoded.errors),
            split.name,
            skipped_text(split.files, decoded.errors),
        )
    return decoded, split.labels[decoded.kept], [split.files[i] for i in decoded.errors]


def _split_folder(root: Path, name: str) -> Path | None:
    """``root/test``, or for validation the first of validation/, val/, valid/ that exists (two are an error)."""
    names = VALIDATION_ALIASES if name == "validation" else (name,)
    found = [root / n for n in names if (root / n).is_dir()]
    if len(found) > 1:
        raise EdgeExportError(
            f"the dataset has {len(found)} validation folders ({', '.join(p.name + '/' for p in found)})",
            path=root,
            hint="keep one of validation/, val/, valid/",
        )
    return found[0] if found else None


def _scan_flat(root: Path, seed: int, fractions: Sequence[float]) -> Dataset:
    """A folder of class folders: scanned as one set, then split by :func:`split_flat`."""
    class_names = _class_folders(root)
    left_out: dict[str, list[Path]] = {"hidden": [], "irregular": []}
    every = _scan_split(root, "all", class_names, left_out)
    splits = split_flat(every, root, seed, fractions)
    for name in ("train", "validation"):
        empty = [class_names[i] for i, n in enumerate(splits[name].counts(len(class_names))) if n == 0]
        if empty:
            raise EdgeExportError(
                f"the {name} split of {printable(root)} has no images of class(es) {empty}: too few photos to split",
                path=root,
                hint="add photos (at least 2 per class; 10 or more for a meaningful check)",
            )
    dataset = Dataset(
        root=root,
        class_names=class_names,
        splits=splits,
        hidden=left_out["hidden"],
        irregular=left_out["irregular"],
        made_split={"seed": seed, "fractions": list(fractions)},
    )
    log.info(
        "%s has no split folders: split per class into train/validation/test %s with seed %d "
        "(recorded in the run's dataset.json)",
        printable(root),
        "/".join(f"{f:g}" for f in fractions),
        seed,
    )
    return dataset


def split_flat(every: Split, root: Path, seed: int, fractions: Sequence[float]) -> dict[str, Split]:
    """Each class's files ordered by a seeded hash of their path below ``root`` (not by the order found), then
    cut by ``fractions``: the same files give the same split on any machine, in any folder, and a photo added
    later moves few others. Every class with 3 or more files keeps at least one validation photo."""

    def key(path: Path) -> str:
        return hashlib.sha256(f"{seed}\0{path.relative_to(root).as_posix()}".encode()).hexdigest()

    chosen: dict[str, list[int]] = {"train": [], "validation": [], "test": []}
    for label in np.unique(every.labels):
        idx = sorted((i for i, y in enumerate(every.labels) if y == label), key=lambda i: key(every.files[i]))
        n = len(idx)
        n_val = max(1, round(n * fractions[1])) if n >= 3 else (1 if n == 2 else 0)
        n_test = round(n * fractions[2]) if n - n_val > 1 else 0
        chosen["validation"] += idx[:n_val]
        chosen["test"] += idx[n_val : n_val + n_test]
        chosen["train"] += idx[n_val + n_test :]
    return {
        name: Split(name, [every.files[i] for i in sorted(idx)], every.labels[sorted(idx)].astype(np.int64))
        for name, idx in chosen.items()
        if idx or name != "test"
    }


def _class_folders(split_dir: Path) -> list[str]:
    return sorted(p.name for p in split_dir.iterdir() if p.is_dir() and not p.name.startswith("."))


def _scan_split(split_dir: Path, name: str, class_names: list[str], left_out: dict[str, list[Path]]) -> Split:
    files, labels = [], []
    for index, class_name in enumerate(class_names):
        scan = find_images(split_dir / class_name)
        files += scan.files
        labels += [index] * len(scan.files)
        left_out["hidden"] += scan.hidden
        left_out["irregular"] += scan.irregular
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
