"""Read PyTorch checkpoints into numpy arrays without torch, and without running arbitrary pickles.

Both serialization formats are supported: the legacy one (a sequence of pickles followed by the raw
storages) and the zip one (``<name>/data.pkl`` plus ``<name>/data/<key>``). The unpickler admits only
the globals a tensor state dict needs; anything else is refused before it can run.
"""

from __future__ import annotations

import collections
import io
import math
import pickle
import struct
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from edge_export.core.errors import EdgeExportError
from edge_export.core.untrusted import printable

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C

# Limits on what a checkpoint file may declare, checked before anything is allocated or inflated.
MAX_MEMO = 1_000_000  # memo entries of one pickle (a real state dict: a few thousand)
MAX_NESTING = 1_000  # MARK levels
MAX_LINE = 1 << 20  # a text line of a protocol-0/1 opcode (a module or class name)
MAX_PICKLE_BYTES = 256 * 1024 * 1024  # the zip format's data.pkl (structure only; real ones: < 1 MB)
MAX_ZIP_MEMBERS = 1_000_000
ZIP_EXPANSION = 16  # storages may inflate to at most 16 x the zip file's size (torch stores them uncompressed)
MAX_DIMS = 32
LEGACY_PROTOCOL = 1001

STORAGE_DTYPES = {
    "FloatStorage": np.float32,
    "DoubleStorage": np.float64,
    "HalfStorage": np.float16,
    "LongStorage": np.int64,
    "IntStorage": np.int32,
    "ShortStorage": np.int16,
    "CharStorage": np.int8,
    "ByteStorage": np.uint8,
    "BoolStorage": np.bool_,
}


@dataclass
class _StorageType:
    name: str
    dtype: np.dtype


@dataclass
class _Storage:
    key: str
    dtype: np.dtype
    numel: int
    data: np.ndarray | None = None


@dataclass
class _View:
    """A slice of another storage (legacy files only)."""

    root: _Storage
    offset: int
    numel: int


@dataclass
class _Tensor:
    """A tensor whose storage bytes may not have been read yet."""

    storage: _Storage | _View
    offset: int
    size: tuple
    stride: tuple


def _rebuild_tensor(storage, storage_offset, size, stride):
    return _Tensor(storage, int(storage_offset), tuple(size), tuple(stride))


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad=False, hooks=None, metadata=None):
    return _rebuild_tensor(storage, storage_offset, size, stride)


def _rebuild_parameter(data, requires_grad=False, backward_hooks=None):
    return data


REBUILD_GLOBALS: dict[tuple[str, str], Callable[..., Any]] = {
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("collections", "OrderedDict"): collections.OrderedDict,
}


class _Memo(dict):
    """The unpickler's memo with a bounded number of entries."""

    def __setitem__(self, key, value):
        if len(self) >= MAX_MEMO and key not in self:
            raise pickle.UnpicklingError(f"more than {MAX_MEMO} memo entries")
        super().__setitem__(key, value)


class _Unpickler(pickle._Unpickler):
    """The pure-Python unpickler: its memo is a dict (the C one allocates a table as large as any index a
    PUT opcode names: 5 bytes can ask for 16 GB). Bounded: memo entries, MARK nesting; refuses every global
    but the few a tensor state dict needs."""

    # the base class's opcode table, copied (typeshed types its entries as methods of the C pickle.Unpickler)
    dispatch: ClassVar[dict[int, Callable[..., None]]] = dict(pickle._Unpickler.dispatch)
    metastack: list[list[Any]]  # set by the base class's load(): the MARKs not yet closed

    def __init__(self, file, path: Path, storages: dict[str, _Storage]):
        super().__init__(file)
        self.memo = _Memo()
        self.path = path
        self.storages = storages

    def load_mark(self):
        if len(self.metastack) >= MAX_NESTING:
            raise pickle.UnpicklingError(f"nested deeper than {MAX_NESTING} levels")
        super().load_mark()  # type: ignore[misc]  # typeshed's stub of the private pickle._Unpickler has no load_*

    dispatch[pickle.MARK[0]] = load_mark

    def refuse_buffer(self):  # protocol 5's out-of-band buffers: BYTEARRAY8 allocates its declared size first
        raise pickle.UnpicklingError("protocol 5 buffer opcodes are not used by tensor checkpoints")

    for _opcode in (pickle.BYTEARRAY8, pickle.NEXT_BUFFER, pickle.READONLY_BUFFER):
        dispatch[_opcode[0]] = refuse_buffer
    del _opcode

    def find_class(self, module, name):
        # Fresh objects each time, so a BUILD opcode in the file cannot alter anything shared.
        if module == "torch" and name in STORAGE_DTYPES:
            return _StorageType(name, np.dtype(STORAGE_DTYPES[name]))
        target = REBUILD_GLOBALS.get((module, name))
        if target is None:
            raise EdgeExportError(
                f"refused to load global {printable(f'{module}.{name}', 200)}: not a tensor checkpoint global",
                path=self.path,
                hint="only load checkpoints from sources you trust; this file may be malicious",
            )
        return lambda *args, **kwargs: target(*args, **kwargs)

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage"):
            raise EdgeExportError(f"unsupported persistent id {printable(repr(pid), 200)}", path=self.path)
        storage_type, key, _location, numel = pid[1:5]
        if not isinstance(storage_type, _StorageType):
            raise EdgeExportError(f"unsupported storage type {printable(type(storage_type).__name__)}", path=self.path)
        key = str(key) if isinstance(key, (str, int)) and not isinstance(key, bool) else None
        if key is None or not key.isalnum() or not key.isascii() or len(key) > 64:
            raise EdgeExportError(f"bad storage key {printable(repr(key), 80)}", path=self.path)
        storage = self.storages.setdefault(key, _Storage(key, storage_type.dtype, _count(numel, "storage size")))
        view = pid[5] if len(pid) > 5 else None
        if view is None:
            return storage
        _view_key, offset, view_numel = view
        return _View(storage, _count(offset, "storage offset"), _count(view_numel, "storage view size"))


def load_torch_state_dict(path) -> dict[str, np.ndarray]:
    """Read a PyTorch state dict file (legacy or zip format) into ``{name: contiguous ndarray}``."""
    path = Path(path)
    try:
        if zipfile.is_zipfile(path):
            obj = _load_zip(path)
        else:
            with open(path, "rb") as file:
                obj = _load_legacy(file, path)
        if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
            obj = obj["state_dict"]
        if not isinstance(obj, dict):
            raise EdgeExportError(f"expected a state dict, found {type(obj).__name__}", path=path)
        return {str(k): _materialize(v, path) for k, v in obj.items() if isinstance(v, _Tensor)}
    except EdgeExportError:
        raise
    except FileNotFoundError:
        raise EdgeExportError("checkpoint file not found", path=path) from None
    except Exception as exc:  # truncated or corrupt: any parser error becomes one clear message
        raise EdgeExportError(
            f"cannot read PyTorch checkpoint ({type(exc).__name__}: {printable(exc, 200)})",
            path=path,
            hint="the file is truncated or corrupt; download it again",
        ) from None


def _count(value, what: str) -> int:
    """A size, offset or count from the file: a non-negative int (never a bool, float or string)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{what} {printable(repr(value), 80)} is not a non-negative integer")
    return value


class _Bounded:
    """A file's ``read``/``readline`` that never ask for more than what is left of it: a length field in a
    pickle (4 GB of text, say) must not make the reader allocate it before finding the file is shorter."""

    def __init__(self, file, size: int):
        self.file, self.size = file, size

    def left(self) -> int:
        return self.size - self.file.tell()

    def read(self, n: int = -1) -> bytes:
        return self.file.read(self.left() if n is None or n < 0 else min(n, self.left()))

    def readline(self, n: int = -1) -> bytes:
        return self.file.readline(MAX_LINE if n is None or n < 0 else min(n, MAX_LINE))


def _load_legacy(file, path: Path):
    storages: dict[str, _Storage] = {}
    file = _Bounded(file, path.stat().st_size)

    def load():
        return _Unpickler(file, path, storages).load()

    if load() != LEGACY_MAGIC:
        raise EdgeExportError("not a PyTorch checkpoint (bad magic number)", path=path)
    if load() != LEGACY_PROTOCOL:
        raise EdgeExportError("unsupported PyTorch legacy protocol version", path=path)
    sys_info = load()
    if isinstance(sys_info, dict) and not sys_info.get("little_endian", True):
        raise EdgeExportError("big-endian checkpoints are not supported", path=path)
    obj = load()
    keys = load()
    if not isinstance(keys, list):
        raise ValueError("the storage key list is not a list")
    for key in keys:
        storage = storages[str(key)]
        (numel,) = struct.unpack("<q", file.read(8))
        if numel < 0 or numel * storage.dtype.itemsize > file.left():
            raise EdgeExportError(
                f"storage {storage.key} declares {numel} elements, more than the file holds",
                path=path,
                hint="the file is truncated or corrupt; download it again",
            )
        storage.data = _frombuffer(file.read(numel * storage.dtype.itemsize), storage, numel, path)
    return obj


def _load_zip(path: Path):
    storages: dict[str, _Storage] = {}
    with zipfile.ZipFile(path) as archive:
        members = archive.infolist()
        if len(members) > MAX_ZIP_MEMBERS:
            raise EdgeExportError(f"zip checkpoint with {len(members)} members (over {MAX_ZIP_MEMBERS})", path=path)
        pickles = [m for m in members if m.filename.endswith("data.pkl")]
        if len(pickles) != 1:
            raise EdgeExportError("zip checkpoint without a single data.pkl", path=path)
        if pickles[0].file_size > MAX_PICKLE_BYTES:
            raise EdgeExportError(f"data.pkl is {pickles[0].file_size} bytes (over {MAX_PICKLE_BYTES})", path=path)
        prefix = pickles[0].filename[: -len("data.pkl")]
        raw = archive.read(pickles[0])
        obj = _Unpickler(io.BytesIO(raw), path, storages).load()
        # a zip bomb declares far more than the file could hold: refuse before inflating anything
        budget = ZIP_EXPANSION * path.stat().st_size + MAX_PICKLE_BYTES
        infos = {}
        for key, storage in storages.items():
            info = archive.getinfo(f"{prefix}data/{key}")
            expected = storage.numel * storage.dtype.itemsize
            if info.file_size < expected or info.file_size % storage.dtype.itemsize:
                raise EdgeExportError(f"storage {storage.key} is truncated", path=path, hint="download it again")
            budget -= info.file_size
            infos[key] = info
        if budget < 0:
            raise EdgeExportError(
                "the checkpoint's storages declare far more bytes than the file can hold (a zip bomb?)",
                path=path,
                hint="only load checkpoints from sources you trust",
            )
        for key, storage in storages.items():
            raw = archive.read(infos[key])
            storage.data = _frombuffer(raw, storage, len(raw) // storage.dtype.itemsize, path)
    return obj


def _frombuffer(raw: bytes, storage: _Storage, numel: int, path: Path) -> np.ndarray:
    if numel < storage.numel or len(raw) != numel * storage.dtype.itemsize:
        raise EdgeExportError(f"storage {storage.key} is truncated", path=path, hint="download it again")
    return np.frombuffer(raw, dtype=storage.dtype.newbyteorder("<"), count=numel)


def _materialize(tensor: _Tensor, path: Path) -> np.ndarray:
    storage, base, limit = tensor.storage, 0, None
    if isinstance(storage, _View):
        base, limit = storage.offset, storage.offset + storage.numel
        storage = storage.root
    if not isinstance(storage, _Storage):
        raise EdgeExportError("a tensor without a storage", path=path)
    if storage.data is None:
        raise EdgeExportError(f"storage {storage.key} has no data", path=path)
    size = tuple(_count(n, "tensor size") for n in tensor.size)
    stride = tuple(_count(s, "tensor stride") for s in tensor.stride)
    if len(size) != len(stride) or len(size) > MAX_DIMS:
        raise EdgeExportError(f"tensor with size {printable(size, 80)} and stride {printable(stride, 80)}", path=path)
    limit = min(storage.data.size, limit if limit is not None else storage.data.size)
    offset = base + _count(tensor.offset, "tensor offset")
    numel = math.prod(size)
    if numel == 0:
        return np.zeros(size, dtype=storage.dtype)
    # never more elements out than the storage holds (a stride 0 would expand a few bytes into gigabytes)
    last = offset + sum((n - 1) * s for n, s in zip(size, stride))
    if last >= limit or numel > limit:
        raise EdgeExportError(f"tensor view exceeds storage {storage.key}", path=path)
    itemsize = storage.dtype.itemsize
    strides = [s * itemsize for s in stride]
    view = np.lib.stride_tricks.as_strided(storage.data[offset:], size, strides, writeable=False)
    return np.array(view, dtype=storage.dtype.newbyteorder("="), order="C")
