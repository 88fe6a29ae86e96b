"""Read PyTorch checkpoints into numpy arrays without torch, and without running arbitrary pickles.

Both serialization formats are supported: the legacy one (a sequence of pickles followed by the raw
storages) and the zip one (``<name>/data.pkl`` plus ``<name>/data/<key>``). The unpickler admits only
the globals a tensor state dict needs; anything else is refused before it can run.
"""

from __future__ import annotations

import collections
import pickle
import struct
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge_export.errors import EdgeExportError

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
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


REBUILD_GLOBALS = {
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("collections", "OrderedDict"): collections.OrderedDict,
}


class _Unpickler(pickle.Unpickler):
    def __init__(self, file, path: Path, storages: dict[str, _Storage]):
        super().__init__(file)
        self.path = path
        self.storages = storages

    def find_class(self, module, name):
        # Fresh objects each time, so a BUILD opcode in the file cannot alter anything shared.
        if module == "torch" and name in STORAGE_DTYPES:
            return _StorageType(name, np.dtype(STORAGE_DTYPES[name]))
        target = REBUILD_GLOBALS.get((module, name))
        if target is None:
            raise EdgeExportError(
                f"refused to load global {module}.{name}: not a tensor checkpoint global",
                path=self.path,
                hint="only load checkpoints from sources you trust; this file may be malicious",
            )
        return lambda *args, **kwargs: target(*args, **kwargs)

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage"):
            raise EdgeExportError(f"unsupported persistent id {pid!r}", path=self.path)
        storage_type, key, _location, numel = pid[1:5]
        if not isinstance(storage_type, _StorageType):
            raise EdgeExportError(f"unsupported storage type {storage_type!r}", path=self.path)
        key = str(key)
        storage = self.storages.setdefault(key, _Storage(key, storage_type.dtype, int(numel)))
        view = pid[5] if len(pid) > 5 else None
        if view is None:
            return storage
        _view_key, offset, view_numel = view
        return _View(storage, int(offset), int(view_numel))


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
            f"cannot read PyTorch checkpoint ({type(exc).__name__}: {exc})",
            path=path,
            hint="the file is truncated or corrupt; download it again",
        ) from None


def _load_legacy(file, path: Path):
    storages: dict[str, _Storage] = {}

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
    for key in load():
        storage = storages[str(key)]
        (numel,) = struct.unpack("<q", file.read(8))
        storage.data = _frombuffer(file.read(numel * storage.dtype.itemsize), storage, numel, path)
    return obj


def _load_zip(path: Path):
    storages: dict[str, _Storage] = {}
    with zipfile.ZipFile(path) as archive:
        pickles = [name for name in archive.namelist() if name.endswith("data.pkl")]
        if len(pickles) != 1:
            raise EdgeExportError("zip checkpoint without a single data.pkl", path=path)
        prefix = pickles[0][: -len("data.pkl")]
        with archive.open(pickles[0]) as file:
            obj = _Unpickler(file, path, storages).load()
        for key, storage in storages.items():
            raw = archive.read(f"{prefix}data/{key}")
            storage.data = _frombuffer(raw, storage, len(raw) // storage.dtype.itemsize, path)
    return obj


def _frombuffer(raw: bytes, storage: _Storage, numel: int, path: Path) -> np.ndarray:
    if numel < storage.numel or len(raw) != numel * storage.dtype.itemsize:
        raise EdgeExportError(f"storage {storage.key} is truncated", path=path, hint="download it again")
    return np.frombuffer(raw, dtype=storage.dtype.newbyteorder("<"), count=numel)


def _materialize(tensor: _Tensor, path: Path) -> np.ndarray:
    storage, base, limit = tensor.storage, 0, None
    if isinstance(storage, _View):
        storage, base, limit = storage.root, storage.offset, storage.offset + storage.numel
    if storage.data is None:
        raise EdgeExportError(f"storage {storage.key} has no data", path=path)
    limit = min(storage.data.size, limit if limit is not None else storage.data.size)
    offset = base + tensor.offset
    if any(n == 0 for n in tensor.size):
        return np.zeros(tensor.size, dtype=storage.dtype)
    last = offset + sum((n - 1) * s for n, s in zip(tensor.size, tensor.stride))
    if min(base, tensor.offset, *tensor.stride) < 0 or last >= limit:
        raise EdgeExportError(f"tensor view exceeds storage {storage.key}", path=path)
    itemsize = storage.dtype.itemsize
    strides = [s * itemsize for s in tensor.stride]
    view = np.lib.stride_tricks.as_strided(storage.data[offset:], tensor.size, strides, writeable=False)
    return np.array(view, dtype=storage.dtype.newbyteorder("="), order="C")
