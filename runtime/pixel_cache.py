"""Decoded images on disk: decode once, read back in batches, with memory that does not grow with the data.

TF-free (numpy + the runtime's one decoder, ``runtime.images.decode_many``). Training, feature caching,
calibration, parity and bench all read the same files.

* ``decoded_pixels(files, size, method, max_pixels)`` decodes a file list into one uint8 ``.npy`` (N x H x W x 3,
  the readable files in order) under the cache folder, in chunks (at most ``CHUNK`` decoded images in memory),
  and returns a :class:`CachedPixels` reading it. The entry's key is the *content* of the file list (the
  sha256 of each file's bytes, in order; never a path, size or mtime, which copy tools restore), the size, the
  resize method, the pixel limit and the decoder's version (a hash of ``runtime/images.py`` and the Pillow
  version): a changed, added or removed file, another size or another decoder is another entry, and the same
  photos in another folder (a device's fresh working folder each bench) are the same entry. A later run, or
  another stage of the same build, finds it and decodes nothing. The key is taken again after decoding: files
  that changed meanwhile are decoded again, never stored under the old content.
* A hit is proven by the stored pixels too: ``meta.json`` holds the CRC-32 of the pixel rows, checked when an
  entry is opened; an entry whose rows were overwritten (or truncated) is said and decoded again.
* Entries are written under a temporary name and renamed into place after their ``meta.json`` (written last,
  with the expected byte count): a kill leaves a ``.tmp-*`` folder, never an entry that looks complete. An entry
  whose meta does not validate (hostile or damaged: wrong sizes, indices out of range) is decoded again.
* The folder: ``$EDGE_EXPORT_PIXEL_CACHE``, else ``$EDGE_EXPORT_CACHE/pixels``, else
  ``~/.cache/edge-export/pixels``; ``EDGE_EXPORT_PIXEL_CACHE=off`` keeps entries in a temporary folder removed at
  exit (still on disk, still bounded memory). It is bounded: after each new entry the least recently used
  entries go until the folder holds at most ``$EDGE_EXPORT_PIXEL_CACHE_GB`` (default 20) GB; entries this
  process uses are kept.
* It removes only what it provably wrote: a folder is taken as the cache only when it is new, empty, holds the
  cache's marker file (``MARKER``), or holds nothing but entries this tool wrote (an older cache, then marked);
  any other folder is refused with a clear error, never shared. Eviction and clean-up remove an entry only when
  its name is a cache key (or ``.tmp-`` + key) *and* it holds exactly the files an entry holds (never a link):
  file by file, then the empty folder, so nothing is followed out of the cache and nothing else is deleted.
* Reading is by plain positioned reads (``os.pread``), not ``mmap``: a memory map's touched pages count in the
  process's resident memory and would grow with the data set; reads go through the page cache instead.
"""

from __future__ import annotations

import atexit
import hashlib
import json
import logging
import os
import re
import shutil
import stat
import tempfile
import threading
import time
import zlib
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import PIL

from edge_export.core.errors import EdgeExportError
from edge_export.core.pause import pause_point
from edge_export.core.untrusted import printable
from edge_export.runtime import images
from edge_export.runtime.images import READ_NO_WAIT, decode_many, max_pixels_value

# what decoded_pixels reports after each chunk: (files decoded so far, files)
Progress = Callable[[int, int], object]

CHUNK = 128  # images decoded at a time (128 x 288 x 288 x 3 = 32 MB)
HEADER_BYTES = 128  # fixed .npy header size, so the row count can be written after the rows
FORMAT = 2  # of meta.json (2: content keys, pixels_crc32)
DEFAULT_MAX_GB = 20.0
MARKER = "EDGE_EXPORT_PIXEL_CACHE"  # in the cache folder: this folder is edge-export's pixel cache
ENTRY_FILES = frozenset({"meta.json", "pixels.npy"})  # all an entry holds (a temporary one: a subset)
_KEY = re.compile(r"^[0-9a-f]{40}$")
_TEMPORARY = re.compile(r"^\.tmp-[0-9a-f]{12}-[A-Za-z0-9_]+$")  # tempfile.mkdtemp(prefix=".tmp-<key[:12]>-")
_IN_USE: set[Path] = set()  # entries this process returned: never evicted by it
_TEMP_ROOT: list[Path] = []
_OPEN_LOCK = threading.Lock()
READ_BLOCK = 1 << 22  # bytes hashed at a time
MAX_KEY_ATTEMPTS = 3  # decodes of a file list that keeps changing before giving up
log = logging.getLogger(__name__)


# ----------------------------------------------------------------------------- .npy files written row by row


class NpyWriter:
    """Append rows to a C-ordered ``.npy`` whose row count is filled in on ``close()``."""

    def __init__(self, path: str | Path, dtype: npt.DTypeLike, row_shape: Sequence[int]) -> None:
        self.path = Path(path)
        self.dtype = np.dtype(dtype)
        self.row_shape = tuple(int(d) for d in row_shape)
        self.rows = 0
        self.crc32 = 0  # of the rows, as written
        self._file = open(self.path, "wb")
        self._file.write(b"\0" * HEADER_BYTES)

    def write(self, rows: np.ndarray) -> None:
        rows = np.ascontiguousarray(rows, dtype=self.dtype)
        if rows.shape[1:] != self.row_shape:
            raise ValueError(f"rows of shape {rows.shape[1:]} written to a file of rows {self.row_shape}")
        data = rows.tobytes()
        self._file.write(data)
        self.crc32 = zlib.crc32(data, self.crc32)
        self.rows += len(rows)

    def close(self) -> DiskArray:
        self._file.seek(0)
        self._file.write(_npy_header(self.dtype, (self.rows, *self.row_shape)))
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        return DiskArray(self.path)

    def abort(self) -> None:
        self._file.close()
        self.path.unlink(missing_ok=True)


def _npy_header(dtype: np.dtype, shape: tuple[int, ...]) -> bytes:
    text = repr({"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False, "shape": shape})
    body = text.encode("latin1")
    pad = HEADER_BYTES - 10 - len(body) - 1
    if pad < 0:
        raise ValueError(f"shape {shape} does not fit a {HEADER_BYTES}-byte .npy header")
    return b"\x93NUMPY\x01\x00" + (HEADER_BYTES - 10).to_bytes(2, "little") + body + b" " * pad + b"\n"


class DiskArray:
    """Rows of a C-ordered ``.npy`` read on demand with positioned reads (thread-safe, no mmap).

    Indexing with a slice or an index array returns an in-memory ndarray of those rows; ``np.asarray``
    reads everything (only for small arrays)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        with open(self.path, "rb") as f:
            version = np.lib.format.read_magic(f)
            read_header = (
                np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            )
            shape, fortran, dtype = read_header(f)
            self.offset = f.tell()
        if fortran or dtype.hasobject:
            raise ValueError(f"{printable(self.path)} is not a C-ordered numeric .npy")
        self.shape = tuple(int(d) for d in shape)
        self.dtype = np.dtype(dtype)
        self.row_bytes = int(np.prod(self.shape[1:], dtype=np.int64)) * self.dtype.itemsize
        size = os.path.getsize(self.path)
        if size != self.offset + self.shape[0] * self.row_bytes:
            raise ValueError(f"{printable(self.path)} holds {size} bytes, not the {self.shape} its header says")
        self._fd: int | None = None

    def __len__(self) -> int:
        return self.shape[0]

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def _descriptor(self) -> int:
        if self._fd is None:
            with _OPEN_LOCK:  # tf.data reads from several threads
                if self._fd is None:
                    self._fd = os.open(self.path, os.O_RDONLY | getattr(os, "O_BINARY", 0))
        return self._fd

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_fd": None}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)

    def read(self, start: int = 0, stop: int | None = None) -> np.ndarray:
        """Rows ``start:stop`` as a new array."""
        n = len(self)
        start, stop, _ = slice(start, stop).indices(n)
        count = max(0, stop - start)
        out = np.empty((count, *self.shape[1:]), self.dtype)
        self._read_into(out.reshape(-1).view(np.uint8).data, self.offset + start * self.row_bytes)
        return out

    def take(self, indices: Sequence[int] | np.ndarray) -> np.ndarray:
        """Rows at ``indices`` (any order, repeats allowed) as a new array."""
        indices = np.asarray(indices, dtype=np.int64).reshape(-1)
        if len(indices) and (indices.min() < -len(self) or indices.max() >= len(self)):
            raise IndexError(f"row index out of range for {len(self)} rows")
        indices = np.where(indices < 0, indices + len(self), indices)
        out = np.empty((len(indices), *self.shape[1:]), self.dtype)
        flat = out.reshape(len(indices), -1).view(np.uint8)
        for j, i in enumerate(indices):
            self._read_into(flat[j].data, self.offset + int(i) * self.row_bytes)
        return out

    def _read_into(self, view: memoryview, position: int) -> None:
        fd = self._descriptor()
        done = 0
        while done < len(view):
            got = os.preadv(fd, [view[done:]], position + done)
            if got <= 0:
                raise OSError(f"{printable(self.path)} ended early (changed while in use?)")
            done += got

    def __getitem__(self, key: Any) -> np.ndarray:
        if isinstance(key, slice):
            if key.step not in (None, 1):
                return self.take(np.arange(len(self))[key])
            return self.read(key.start or 0, key.stop)
        if isinstance(key, (int, np.integer)):
            row: np.ndarray = self.take([int(key)])[0]
            return row
        if isinstance(key, tuple) and key and isinstance(key[0], slice) and key[0] == slice(None):
            return self.read()[key]  # e.g. x[:, :, ::-1] on a small array
        return self.take(key)

    def __array__(self, dtype: npt.DTypeLike | None = None, copy: bool | None = None) -> np.ndarray:
        data = self.read()
        return data if dtype is None else data.astype(dtype)

    def astype(self, dtype: npt.DTypeLike) -> np.ndarray:
        """Everything, in memory, as ``dtype`` (only for small arrays)."""
        return self.read().astype(dtype)

    def copy(self) -> np.ndarray:
        return self.read()

    def batches(self, batch_size: int) -> Iterator[np.ndarray]:
        for start in range(0, len(self), batch_size):
            yield self.read(start, start + batch_size)


# ----------------------------------------------------------------------------- the decoded-image cache


class CachedPixels(DiskArray):
    """The decoded, resized images of a file list (readable ones, in order), on disk.

    ``kept``: the index in the file list of each row; ``errors``: index of each unreadable file -> why;
    ``reused``: found in the cache (nothing decoded)."""

    def __init__(self, path: str | Path, kept: list[int], errors: dict[int, str], reused: bool) -> None:
        DiskArray.__init__(self, path)
        self.kept, self.errors, self.reused = kept, errors, reused
        self._descriptor()  # open now: an entry another process evicts later stays readable here

    def __repr__(self) -> str:
        return f"CachedPixels({printable(self.path)}, {self.shape})"


def cache_root() -> Path:
    value = os.environ.get("EDGE_EXPORT_PIXEL_CACHE", "").strip()
    if value.lower() in ("off", "none", "0", "false"):
        if not _TEMP_ROOT:
            _TEMP_ROOT.append(Path(tempfile.mkdtemp(prefix="edge-export-pixels-")))
            atexit.register(shutil.rmtree, _TEMP_ROOT[0], True)
        return _TEMP_ROOT[0]
    if value:
        return Path(value).expanduser()
    base = os.environ.get("EDGE_EXPORT_CACHE")
    return (Path(base) if base else Path.home() / ".cache" / "edge-export") / "pixels"


def max_cache_bytes() -> int:
    value = os.environ.get("EDGE_EXPORT_PIXEL_CACHE_GB", "")
    try:
        gb = float(value) if value.strip() else DEFAULT_MAX_GB
    except ValueError:
        gb = DEFAULT_MAX_GB
    return int(max(gb, 0.0) * 1e9) if np.isfinite(gb) else int(DEFAULT_MAX_GB * 1e9)


def decoder_version() -> str:
    """Changes whenever the decoder could give other pixels: its source file, Pillow's and OpenCV's versions."""
    try:
        import cv2  # lazy: OpenCV is optional (the video and train extras) and 80 MB to import; only its version

        opencv_version = cv2.__version__
    except ImportError:
        opencv_version = "none"
    # through the module's loader: the file may be inside a zipped wheel (a deploy bundle)
    loader: Any = images.__loader__  # a file's or a zipped wheel's loader: both have get_data (typeshed's type has not)
    source = loader.get_data(images.__file__)
    versions = f"\0{PIL.__version__}\0{opencv_version}".encode()
    return hashlib.sha256(source + versions).hexdigest()[:16]


def file_digest(path: str | Path) -> str:
    """What a file holds, for the cache key: the sha256 of its bytes; a missing file, a folder or a special file
    (never read: a FIFO would block) by its kind. Links are followed, as the decoder follows them."""
    try:
        fd = os.open(path, READ_NO_WAIT)
    except FileNotFoundError:
        return "missing"
    except OSError as exc:
        return f"unreadable:{exc.errno}"
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            return f"special:{stat.S_IFMT(mode)}"
        digest = hashlib.sha256()
        while block := os.read(fd, READ_BLOCK):
            digest.update(block)
        return digest.hexdigest()
    except OSError as exc:
        return f"unreadable:{exc.errno}"
    finally:
        os.close(fd)


def cache_key(files: Sequence[Path], size: tuple[int, int], method: str, max_pixels: int | None) -> str:
    """The entry of a file list: the content of each file in order (``file_digest``), the output size, the
    resize method, the pixel limit and the decoder. No path, size or mtime: a hit is proven by the bytes."""
    digest = hashlib.sha256()
    digest.update(json.dumps([FORMAT, decoder_version(), list(size), method, max_pixels_value(max_pixels)]).encode())
    for f in files:
        digest.update(f"\n{file_digest(f)}".encode())
    return digest.hexdigest()[:40]


def decoded_pixels(
    files: Sequence[Path],
    size: tuple[int, int],
    method: str = "bilinear",
    max_pixels: int | None = None,
    workers: int | None = None,
    progress: Progress | None = None,
) -> CachedPixels:
    """The decoded images of ``files`` from the cache, decoding them (in chunks) into it first if needed."""
    files = list(files)
    size = (int(size[0]), int(size[1]))
    root = cache_root()
    claim_root(root)
    key = cache_key(files, size, method, max_pixels)
    for _ in range(MAX_KEY_ATTEMPTS):
        entry = root / key
        found = _open_entry(entry, len(files), size, verify=True)
        if found is not None:
            _touch(entry)
            _IN_USE.add(entry)
            return found
        stored, key_after = _decode_entry(root, key, files, size, method, max_pixels, workers, progress)
        if stored is not None:
            _IN_USE.add(entry)
            _evict(root, max_cache_bytes())
            return stored
        key = key_after  # the files changed while being decoded: again, as they are now
    raise EdgeExportError(
        f"the images changed on disk each time they were decoded ({MAX_KEY_ATTEMPTS} tries)",
        hint="decode them when nothing is writing to the folder",
    )


def _decode_entry(
    root: Path,
    key: str,
    files: list[Path],
    size: tuple[int, int],
    method: str,
    max_pixels: int | None,
    workers: int | None,
    progress: Progress | None,
) -> tuple[CachedPixels | None, str]:
    """Decode ``files`` into the entry ``key``: (the entry, key), or (None, their key now) when their content changed
    meanwhile (nothing is stored)."""
    entry = root / key
    _clean_stale_temporaries(root)
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{key[:12]}-", dir=root))
    try:
        kept, errors, pixels_crc32 = _decode_into(
            tmp / "pixels.npy", files, size, method, max_pixels, workers, progress
        )
        key_after = cache_key(files, size, method, max_pixels)
        if key_after != key:
            return None, key_after
        meta = {
            "format": FORMAT,
            "images": len(kept),
            "files": len(files),
            "size": list(size),
            "method": method,
            "kept": kept,
            "errors": {str(i): why for i, why in errors.items()},
            "bytes": os.path.getsize(tmp / "pixels.npy"),
            "pixels_crc32": pixels_crc32,
        }
        with open(tmp / "meta.json", "w", encoding="utf-8") as f:
            json.dump(meta, f)
            f.flush()
            os.fsync(f.fileno())
        pause_point("pixel_cache.written")  # tests: a kill with every file written, before the rename
        try:
            os.rename(tmp, entry)  # atomic; fails if another process finished the same entry first
        except OSError:
            if entry.exists() and _open_entry(entry, len(files), size, verify=True) is None:
                if not remove_entry(entry, _KEY):  # a damaged entry of ours: replace it; anything else: keep it
                    raise
                os.rename(tmp, entry)
    finally:
        remove_entry(tmp, _TEMPORARY)
    # ours, just written (or another process's, checked above)
    opened = _open_entry(entry, len(files), size, verify=False)
    if opened is None:
        raise OSError(f"the pixel cache entry {printable(entry)} could not be read back")
    opened.reused = False
    return opened, key


def _decode_into(
    path: Path,
    files: list[Path],
    size: tuple[int, int],
    method: str,
    max_pixels: int | None,
    workers: int | None,
    progress: Progress | None,
) -> tuple[list[int], dict[int, str], int]:
    writer = NpyWriter(path, np.uint8, (*size, 3))
    kept: list[int] = []
    errors: dict[int, str] = {}
    try:
        for start in range(0, len(files), CHUNK):
            decoded = decode_many(files[start : start + CHUNK], size, method, max_pixels, workers)
            writer.write(decoded.pixels)
            kept += [start + i for i in decoded.kept]
            errors.update({start + i: why for i, why in decoded.errors.items()})
            if progress is not None:
                progress(min(start + CHUNK, len(files)), len(files))
            pause_point("pixel_cache.chunk")  # tests: a kill with part of the pixels written
    except BaseException:
        writer.abort()
        raise
    writer.close()
    return kept, errors, writer.crc32


def _open_entry(entry: Path, n_files: int, size: tuple[int, int], verify: bool) -> CachedPixels | None:
    """The entry if it is complete and consistent (and, with ``verify``, its pixel rows have the CRC-32 its
    meta.json holds); None otherwise (missing, partial, damaged, hostile)."""
    meta_path = entry / "meta.json"
    try:
        if not meta_path.is_file() or meta_path.stat().st_size > 1024 * (n_files + 16) + 1_000_000:
            return None
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        kept = meta["kept"]
        errors = {int(k): str(v) for k, v in meta["errors"].items()}
        kept_set = set(kept) if isinstance(kept, list) and all(type(i) is int for i in kept) else None
        ok = kept_set is not None and (
            meta.get("format") == FORMAT
            and meta.get("files") == n_files
            and meta.get("size") == list(size)
            and all(0 <= a < b for a, b in zip(kept, kept[1:]))
            and (not kept or 0 <= kept[0] and kept[-1] < n_files)
            and all(0 <= i < n_files and i not in kept_set for i in errors)
            and len(kept) + len(errors) == n_files
            and meta.get("images") == len(kept)
        )
        if not ok:
            return None
        pixels = CachedPixels(entry / "pixels.npy", kept, dict(sorted(errors.items())), reused=True)
        if (
            pixels.shape != (len(kept), *size, 3)
            or pixels.dtype != np.uint8
            or meta.get("bytes") != os.path.getsize(pixels.path)
        ):
            return None
        if verify and rows_crc32(pixels) != meta.get("pixels_crc32"):
            log.warning(
                "the pixel cache entry %s does not hold the pixels it was written with (changed on disk): "
                "decoding the images again",
                printable(entry),
            )
            return None
        return pixels
    except (OSError, ValueError, KeyError, TypeError, AttributeError, SyntaxError, RecursionError):
        return None  # json.JSONDecodeError is a ValueError


def rows_crc32(pixels: DiskArray) -> int:
    """The CRC-32 of an array's rows as stored (damage, not an attacker: one who can write the entry can write
    its meta.json too; the photos' side of a hit is proven by sha256)."""
    crc = 0
    fd = pixels._descriptor()
    position, end = pixels.offset, pixels.offset + len(pixels) * pixels.row_bytes
    while position < end:
        block = os.pread(fd, min(READ_BLOCK, end - position), position)
        if not block:
            break
        crc = zlib.crc32(block, crc)
        position += len(block)
    return crc


def _touch(entry: Path) -> None:
    try:
        os.utime(entry / "meta.json")
    except OSError:
        pass


def claim_root(root: Path) -> None:
    """Make ``root`` the pixel cache, or refuse it: see the module doc. Creates it when missing."""
    hint = (
        "point EDGE_EXPORT_PIXEL_CACHE at a new or empty folder (the cache deletes old entries in it), or set it to off"
    )
    if root.is_symlink() and not root.exists():
        raise EdgeExportError("the pixel cache folder is a broken link", path=root, hint=hint)
    if root.exists() and not root.is_dir():
        raise EdgeExportError("the pixel cache folder is not a folder", path=root, hint=hint)
    try:
        root.mkdir(parents=True, exist_ok=True)
        if (root / MARKER).is_file():
            return
        foreign = [p.name for p in root.iterdir() if not _ours(p, _KEY) and not _ours(p, _TEMPORARY)]
        if foreign:
            raise EdgeExportError(
                "the pixel cache folder holds files edge-export did not write "
                f"({', '.join(printable(n, 40) for n in sorted(foreign)[:5])}"
                f"{' ...' if len(foreign) > 5 else ''}): it is not used, so that nothing in it is ever deleted",
                path=root,
                hint=hint,
            )
        with open(root / MARKER, "w", encoding="utf-8") as f:
            f.write(
                "edge-export pixel cache: decoded images, removed least recently used first. Only folders "
                "named by a cache key holding meta.json and pixels.npy are ever deleted.\n"
            )
    except OSError as exc:
        raise EdgeExportError(
            f"cannot use the pixel cache folder ({type(exc).__name__}: {printable(str(exc), 200)})",
            path=root,
            hint=hint,
        ) from None


def _ours(path: Path, name: re.Pattern[str]) -> bool:
    """``path`` is a folder this cache wrote: its name matches, it is a real folder (not a link), and it holds
    nothing but an entry's files (some of them, for a damaged or partial one), each a regular file (not a link)."""
    if not name.match(path.name) or path.is_symlink() or not path.is_dir():
        return False
    try:
        children = list(path.iterdir())
    except OSError:
        return False
    return all(c.name in ENTRY_FILES and not c.is_symlink() and c.is_file() for c in children)


def remove_entry(path: Path, name: re.Pattern[str]) -> bool:
    """Remove ``path`` if it is provably an entry of this cache (``_ours``): its files, then the folder. Nothing
    else is ever removed, and no link is followed. True when it is gone."""
    if not _ours(path, name):
        return not path.exists() and not path.is_symlink()
    try:
        for name_ in ENTRY_FILES:
            (path / name_).unlink(missing_ok=True)
        path.rmdir()
    except OSError:
        return False
    return True


def _entries(root: Path) -> list[tuple[float, int, Path]]:
    out = []
    for p in root.iterdir():
        if not _ours(p, _KEY):
            continue
        try:
            used = (p / "meta.json").stat().st_mtime
            size = sum(f.stat().st_size for f in p.iterdir() if f.is_file())
        except OSError:
            continue
        out.append((used, size, p))
    return sorted(out)


def _evict(root: Path, limit: int) -> None:
    """Remove the least recently used entries until the folder holds at most ``limit`` bytes."""
    entries = _entries(root)
    total = sum(size for _, size, _ in entries)
    for _, size, path in entries:
        if total <= limit:
            break
        if path in _IN_USE:
            continue
        if remove_entry(path, _KEY):
            total -= size


def _clean_stale_temporaries(root: Path, age_s: float = 6 * 3600) -> None:
    """Partial entries left by a killed process (older than ``age_s``: a running writer is never touched)."""
    now = time.time()
    for p in root.glob(".tmp-*"):
        try:
            if now - p.lstat().st_mtime > age_s:
                remove_entry(p, _TEMPORARY)
        except OSError:
            pass


def cache_bytes(root: Path | None = None) -> int:
    """Bytes held by the cache folder (for benchmarks)."""
    root = root or cache_root()
    return sum(size for _, size, _ in _entries(root)) if root.is_dir() else 0
