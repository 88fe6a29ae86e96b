"""The decoded-image cache on disk (runtime/pixel_cache.py) and the streaming training data (trainer/streaming.py)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sys
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from edge_export.runtime import pixel_cache
from edge_export.runtime.images import decode_many
from edge_export.runtime.pixel_cache import NpyWriter, cache_key, decoded_pixels

from conftest import start_paused, write_image_folder

SIZE = (24, 20)


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    root = tmp_path / "pixels"
    monkeypatch.setenv("EDGE_EXPORT_PIXEL_CACHE", str(root))
    return root


def _files(root: Path) -> list[Path]:
    return sorted(root.rglob("*.png"))


def _entries(root: Path) -> list[Path]:
    return (
        [p for p in root.iterdir() if not p.name.startswith(".") and p.name != pixel_cache.MARKER]
        if root.is_dir()
        else []
    )


def test_cached_pixels_are_the_in_memory_decode_and_are_reused(tmp_path, cache):
    files = _files(write_image_folder(tmp_path / "d", {"train": 7}))
    (tmp_path / "bad.png").write_bytes(b"not an image")
    files.insert(3, tmp_path / "bad.png")
    expected = decode_many(files, SIZE)
    first = decoded_pixels(files, SIZE)
    assert not first.reused and first.kept == expected.kept and list(first.errors) == list(expected.errors)
    assert np.array_equal(np.asarray(first), expected.pixels)
    assert np.array_equal(first[2:5], expected.pixels[2:5])
    assert np.array_equal(first.take([4, 0, 4]), expected.pixels[[4, 0, 4]])
    assert np.array_equal(np.concatenate(list(first.batches(3))), expected.pixels)
    assert np.array_equal(np.load(first.path), expected.pixels)  # a plain .npy: bench's readers use it as is
    again = decoded_pixels(files, SIZE)
    assert again.reused and again.path == first.path and np.array_equal(np.asarray(again), expected.pixels)


def test_the_key_follows_the_listing_the_size_and_the_decoder(tmp_path, cache, monkeypatch):
    files = _files(write_image_folder(tmp_path / "d", {"train": 3}))
    key = cache_key(files, SIZE, "bilinear", None)
    assert cache_key(list(files), SIZE, "bilinear", None) == key
    assert cache_key(files, (SIZE[0] + 1, SIZE[1]), "bilinear", None) != key
    assert cache_key(files, SIZE, "area", None) != key
    assert cache_key(files, SIZE, "bilinear", 1000) != key
    assert cache_key(files[:-1], SIZE, "bilinear", None) != key
    monkeypatch.setattr(pixel_cache, "decoder_version", lambda: "another decoder")
    assert cache_key(files, SIZE, "bilinear", None) != key
    monkeypatch.undo()
    monkeypatch.setenv("EDGE_EXPORT_PIXEL_CACHE", str(cache))

    first = decoded_pixels(files, SIZE)
    st = files[1].stat()
    Image.new("RGB", (40, 48), (0, 255, 0)).save(files[1])  # new content (and size) under the same name
    os.utime(files[1], ns=(st.st_atime_ns, st.st_mtime_ns))  # even with the old mtime: the size differs
    assert files[1].stat().st_size != st.st_size
    changed = decoded_pixels(files, SIZE)
    assert not changed.reused and changed.path != first.path
    assert np.array_equal(changed[1], decode_many([files[1]], SIZE).pixels[0])
    os.utime(files[2], ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # touched only: the same content, reused
    assert decoded_pixels(files, SIZE).reused


def _same_size_bmp(path: Path, colour: tuple[int, int, int]) -> None:
    Image.new("RGB", (30, 26), colour).save(path, format="BMP")  # a BMP's length depends on its size only


def test_a_photo_replaced_with_the_same_size_and_mtime_is_decoded_again(tmp_path, cache):
    # the first probe's case: a copy tool restores the mtime, the byte length happens to match
    files = [tmp_path / f"{i}.bmp" for i in range(3)]
    for i, f in enumerate(files):
        _same_size_bmp(f, (80 * i, 0, 0))
    first = decoded_pixels(files, SIZE)
    st = files[1].stat()
    _same_size_bmp(files[1], (0, 0, 255))
    os.utime(files[1], ns=(st.st_atime_ns, st.st_mtime_ns))
    assert (files[1].stat().st_size, files[1].stat().st_mtime_ns) == (st.st_size, st.st_mtime_ns)
    again = decoded_pixels(files, SIZE)
    assert not again.reused and again.path != first.path
    assert np.array_equal(np.asarray(again), decode_many(files, SIZE).pixels)
    assert tuple(again[1][0, 0]) == (0, 0, 255)


def test_the_same_photos_in_another_folder_reuse_the_entry(tmp_path, cache):
    # a remote bench unpacks the test photos into a new folder each run: one entry, not one per run
    files = _files(write_image_folder(tmp_path / "d", {"train": 4}))
    first = decoded_pixels(files, SIZE)
    copy = tmp_path / "elsewhere"
    shutil.copytree(tmp_path / "d", copy)
    moved = decoded_pixels(_files(copy), SIZE)
    assert moved.reused and moved.path == first.path and len(_entries(cache)) == 1


def test_overwritten_pixel_rows_are_said_and_decoded_again(tmp_path, cache, caplog):
    files = _files(write_image_folder(tmp_path / "d", {"train": 4}))
    good = decode_many(files, SIZE).pixels
    pixels = decoded_pixels(files, SIZE).path
    with open(pixels, "r+b") as f:  # one row's bytes, same length: the header and the byte count still check
        f.seek(os.path.getsize(pixels) - 50)
        f.write(bytes(50))
    with caplog.at_level("WARNING", logger="edge_export.runtime.pixel_cache"):
        again = decoded_pixels(files, SIZE)
    assert not again.reused and np.array_equal(np.asarray(again), good)
    assert "does not hold the pixels it was written with" in caplog.text
    assert decoded_pixels(files, SIZE).reused  # replaced by a good entry


def test_files_that_change_while_decoding_are_not_stored_under_the_old_content(tmp_path, cache, monkeypatch):
    files = [tmp_path / f"{i}.bmp" for i in range(2)]
    for i, f in enumerate(files):
        _same_size_bmp(f, (0, 100 * i, 0))
    real = pixel_cache._decode_into
    calls = []

    def decode_then_change(*args, **kwargs):
        out = real(*args, **kwargs)
        calls.append(1)
        if len(calls) == 1:
            _same_size_bmp(files[0], (255, 255, 255))  # written after its old bytes were decoded
        return out

    monkeypatch.setattr(pixel_cache, "_decode_into", decode_then_change)
    got = decoded_pixels(files, SIZE)
    assert len(calls) == 2 and np.array_equal(np.asarray(got), decode_many(files, SIZE).pixels)
    assert len(_entries(cache)) == 1


def test_a_damaged_or_hostile_entry_is_decoded_again(tmp_path, cache):
    files = _files(write_image_folder(tmp_path / "d", {"train": 4}))
    good = decode_many(files, SIZE).pixels
    entry = decoded_pixels(files, SIZE).path.parent
    meta = json.loads((entry / "meta.json").read_text())
    damages = [
        lambda: (entry / "pixels.npy").write_bytes((entry / "pixels.npy").read_bytes()[:-7]),  # truncated
        lambda: (entry / "meta.json").write_text(json.dumps({**meta, "kept": [0, 1, 2, 99]})),  # index out of range
        lambda: (entry / "meta.json").write_text(json.dumps({**meta, "kept": "x" * 10})),
        lambda: (entry / "meta.json").write_text("{" * 100000),
        lambda: (entry / "meta.json").write_text("[" * 100000),  # nested past Python's recursion limit
        lambda: (entry / "meta.json").write_text(json.dumps({**meta, "errors": {"0": "x"}})),  # kept and skipped
        lambda: (entry / "meta.json").unlink(),
    ]
    for damage in damages:
        damage()
        again = decoded_pixels(files, SIZE)
        assert not again.reused and np.array_equal(np.asarray(again), good)


def test_a_killed_write_leaves_no_valid_looking_entry(tmp_path, cache):
    files = _files(write_image_folder(tmp_path / "d", {"train": 6}))
    script = (
        "import sys; from pathlib import Path; from edge_export.runtime import pixel_cache as c\n"
        "c.CHUNK = 2\n"
        "c.decoded_pixels([Path(p) for p in sys.argv[1:]], (24, 20))\n"
    )
    for point in ("pixel_cache.chunk", "pixel_cache.written"):
        proc, events = start_paused([sys.executable, "-c", script, *map(str, files)], point)
        assert events[-1]["at"] == point
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
        assert _entries(cache) == []  # only the .tmp-* folder of the killed writer
        assert any(p.name.startswith(".tmp-") for p in cache.iterdir())
        fresh = decoded_pixels(files, SIZE)
        assert not fresh.reused and np.array_equal(np.asarray(fresh), decode_many(files, SIZE).pixels)
        for entry in _entries(cache):
            shutil.rmtree(entry)


def test_the_cache_is_bounded_least_recently_used_first(tmp_path, cache, monkeypatch):
    files = _files(write_image_folder(tmp_path / "d", {"train": 4}))
    one = decoded_pixels(files[:2], SIZE)
    two = decoded_pixels(files[2:], SIZE)
    size = pixel_cache.cache_bytes(cache)
    monkeypatch.setattr(pixel_cache, "_IN_USE", set())  # another process: nothing of ours in use
    os.utime(two.path.parent / "meta.json", (1, 1))  # the older one
    pixel_cache._evict(cache, size - 1)
    assert [p.name for p in _entries(cache)] == [one.path.parent.name]


def test_memory_does_not_grow_with_the_number_of_images(tmp_path, cache, monkeypatch):
    """Peak Python/numpy allocations of decoding into the cache and reading everything back in batches: about
    the same for 4x the images (the in-memory decode grows 4x: the check can fail)."""
    monkeypatch.setattr(pixel_cache, "CHUNK", 8)
    files = _files(write_image_folder(tmp_path / "d", {"train": 96}, size=(30, 30)))
    size = (64, 64)

    def peak(make) -> int:
        tracemalloc.start()
        try:
            make()
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    def streamed(n: int) -> None:
        pixels = decoded_pixels(files[:n], size, workers=1)
        for batch in pixels.batches(8):
            batch.sum()

    small, large = peak(lambda: streamed(24)), peak(lambda: streamed(96))
    in_memory_small = peak(lambda: decode_many(files[:24], size, workers=1))
    in_memory_large = peak(lambda: decode_many(files[:96], size, workers=1))
    assert in_memory_large > 3 * in_memory_small
    assert large < 1.3 * small, (small, large)


def test_writer_refuses_rows_of_another_shape(tmp_path):
    writer = NpyWriter(tmp_path / "a.npy", np.float32, (3,))
    with pytest.raises(ValueError):
        writer.write(np.zeros((2, 4), np.float32))
    writer.abort()
    assert not (tmp_path / "a.npy").exists()


def test_training_batches_from_disk_train_exactly_like_keras_on_arrays(tmp_path):
    """fit_dataset/ordered_dataset (rows read from disk) give the same weights and history as
    ``fit(x, y, shuffle=True, batch_size=B, validation_data=(xv, yv))`` on in-memory arrays, at equal seed."""
    from edge_export.core.tf_env import import_keras, seed_everything
    from edge_export.trainer.streaming import fit_dataset, ordered_dataset, predict

    keras = import_keras()
    rng = np.random.default_rng(0)
    x = rng.normal(size=(203, 6)).astype(np.float32)
    y = rng.integers(0, 3, 203)
    writer = NpyWriter(tmp_path / "x.npy", np.float32, (6,))
    writer.write(x)
    on_disk = writer.close()
    writer = NpyWriter(tmp_path / "v.npy", np.float32, (6,))
    writer.write(x[:50])
    val_on_disk = writer.close()

    def train(disk: bool):
        seed_everything(3)
        model = keras.Sequential(
            [
                keras.Input((6,)),
                keras.layers.Dense(8, activation="relu"),
                keras.layers.Dropout(0.3),
                keras.layers.Dense(3, activation="softmax"),
            ]
        )
        model.compile(keras.optimizers.Adam(0.01), "sparse_categorical_crossentropy", metrics=["accuracy"])
        if disk:
            history = model.fit(
                fit_dataset(on_disk, y, 16, True),
                validation_data=ordered_dataset(val_on_disk, y[:50], 16),
                epochs=3,
                shuffle=False,
                verbose=0,
            )
            return model.get_weights(), history.history, predict(model, on_disk, 16)
        history = model.fit(x, y, validation_data=(x[:50], y[:50]), epochs=3, batch_size=16, shuffle=True, verbose=0)
        return model.get_weights(), history.history, model.predict(x, batch_size=16, verbose=0)

    (w_mem, h_mem, p_mem), (w_disk, h_disk, p_disk) = train(False), train(True)
    assert all(np.array_equal(a, b) for a, b in zip(w_mem, w_disk))
    assert h_mem == h_disk
    assert np.array_equal(p_mem, p_disk)


# ------------------------------------------------------------------- it removes only what it provably wrote


def test_a_folder_with_other_files_is_refused_and_left_alone(tmp_path, monkeypatch):
    """EDGE_EXPORT_PIXEL_CACHE pointed at a folder of the user's: refused with a clear error, nothing deleted,
    even with a tiny size limit that would evict everything (the first round's eviction deleted such folders)."""
    from edge_export.core.errors import EdgeExportError

    files = _files(write_image_folder(tmp_path / "d", {"train": 3}))
    mine = tmp_path / "my_photos"
    (mine / "holiday").mkdir(parents=True)
    (mine / "holiday" / "meta.json").write_text("my notes")  # looks like an entry by one file name
    (mine / "notes.txt").write_text("keep me")
    monkeypatch.setenv("EDGE_EXPORT_PIXEL_CACHE", str(mine))
    monkeypatch.setenv("EDGE_EXPORT_PIXEL_CACHE_GB", "0")
    with pytest.raises(EdgeExportError, match="holds files edge-export did not write") as info:
        decoded_pixels(files, SIZE)
    assert "EDGE_EXPORT_PIXEL_CACHE" in info.value.hint
    assert (mine / "holiday" / "meta.json").read_text() == "my notes" and (mine / "notes.txt").is_file()
    target = tmp_path / "a_file"
    target.write_text("x")
    monkeypatch.setenv("EDGE_EXPORT_PIXEL_CACHE", str(target))
    with pytest.raises(EdgeExportError, match="not a folder"):
        decoded_pixels(files, SIZE)
    assert target.read_text() == "x"


def test_eviction_removes_only_entries_it_wrote_and_follows_no_link(tmp_path, cache, monkeypatch):
    """In the cache folder itself: a folder named like an entry but holding another file, a link named like an
    entry pointing at the user's data, and a .tmp- folder with a user's file survive eviction to 0 bytes; the
    cache's own entries go."""
    files = _files(write_image_folder(tmp_path / "d", {"train": 3}))
    first = decoded_pixels(files, SIZE)
    key = first.path.parent.name
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "pixels.npy").write_bytes(b"the user's")
    (outside / "meta.json").write_text("{}")
    impostor = cache / ("a" * 40)
    impostor.mkdir()
    (impostor / "meta.json").write_text("{}")
    (impostor / "thesis.tex").write_text("years of work")
    link = cache / ("b" * 40)
    link.symlink_to(outside, target_is_directory=True)
    stale = cache / ".tmp-0123456789ab-abcd1234"
    stale.mkdir()
    (stale / "draft.txt").write_text("mine")
    os.utime(stale, (0, 0))  # old enough for the stale clean-up
    pixel_cache._IN_USE.clear()
    pixel_cache._evict(cache, 0)
    pixel_cache._clean_stale_temporaries(cache)
    assert not (cache / key).exists()  # the cache's own entry: evicted
    assert (impostor / "thesis.tex").read_text() == "years of work"
    assert link.is_symlink() and (outside / "pixels.npy").read_bytes() == b"the user's"
    assert (stale / "draft.txt").read_text() == "mine"


def test_an_older_cache_without_the_marker_is_adopted(tmp_path, cache):
    """A cache folder an earlier version wrote (entries only, no marker) is taken and marked, not refused."""
    files = _files(write_image_folder(tmp_path / "d", {"train": 3}))
    entry = decoded_pixels(files, SIZE).path.parent
    (cache / pixel_cache.MARKER).unlink()
    again = decoded_pixels(files, SIZE)
    assert again.reused and again.path.parent == entry and (cache / pixel_cache.MARKER).is_file()


# ----------------------------------------------------------------------------- the cache's correctness, as a property

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

N_FILES = 3
_colour = st.tuples(*(st.integers(0, 255),) * 3)
_operations = st.lists(
    st.one_of(
        st.tuples(st.just("write"), st.integers(0, N_FILES - 1), _colour, st.integers(8, 40)),  # new content, any size
        st.tuples(st.just("same_size"), st.integers(0, N_FILES - 1), _colour),  # same length, mtime restored
        st.tuples(st.just("truncate"), st.integers(0, N_FILES - 1), st.integers(0, 200)),  # mtime restored
        st.tuples(st.just("remove"), st.integers(0, N_FILES - 1)),
        st.tuples(st.just("evict"), st.integers(0, 2)),  # down to 0, 1 or 2 entries' worth
        st.tuples(st.just("damage_rows"), st.integers(0, 10**6)),  # an entry's pixel bytes overwritten
        st.tuples(st.just("copy_folder")),  # the same photos in a fresh folder (a device's working folder)
    ),
    min_size=1,
    max_size=8,
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(operations=_operations)
def test_cached_answers_equal_uncached_ones_after_any_writes_and_evictions(tmp_path_factory, monkeypatch, operations):
    """Any sequence of writes, same-size same-mtime replacements, truncations, removals, evictions, damaged
    entries and moved folders: what the cache returns equals a fresh decode, file for file."""
    base = tmp_path_factory.mktemp("prop")
    monkeypatch.setenv("EDGE_EXPORT_PIXEL_CACHE", str(base / "pixels"))
    monkeypatch.setattr(pixel_cache, "_IN_USE", set())
    folder = base / "photos"
    folder.mkdir()
    names = [f"{i}.bmp" for i in range(N_FILES)]
    for i, name in enumerate(names):
        _same_size_bmp(folder / name, (40 * i, 0, 0))
    copies = 0
    for op in operations:
        files = [folder / n for n in names]
        if op[0] == "write":
            Image.new("RGB", (op[3], op[3] + 3), op[2]).save(files[op[1]], format="BMP")
        elif op[0] in ("same_size", "truncate") and files[op[1]].exists():
            st_ = files[op[1]].stat()
            if op[0] == "same_size":
                data = bytearray(files[op[1]].read_bytes())
                data[-3:] = bytes(op[2])  # the last pixel's bytes: same length, other content
                files[op[1]].write_bytes(bytes(data))
            else:
                with open(files[op[1]], "r+b") as f:
                    f.truncate(min(op[2], st_.st_size))
            os.utime(files[op[1]], ns=(st_.st_atime_ns, st_.st_mtime_ns))
        elif op[0] == "remove":
            files[op[1]].unlink(missing_ok=True)
        elif op[0] == "evict":
            sizes = [s for _, s, _ in pixel_cache._entries(base / "pixels")] if (base / "pixels").is_dir() else []
            pixel_cache._IN_USE.clear()
            if (base / "pixels").is_dir():
                pixel_cache._evict(base / "pixels", sum(sorted(sizes)[: op[1]]))
        elif op[0] == "damage_rows":
            for entry in _entries(base / "pixels") if (base / "pixels").is_dir() else []:
                npy = entry / "pixels.npy"
                rows = os.path.getsize(npy) - pixel_cache.HEADER_BYTES
                if rows > 0:
                    with open(npy, "r+b") as f:
                        f.seek(pixel_cache.HEADER_BYTES + op[1] % rows)
                        byte = f.read(1)
                        f.seek(-1, 1)
                        f.write(bytes([byte[0] ^ 0xFF]))
        elif op[0] == "copy_folder":
            copies += 1
            fresh = base / f"photos-{copies}"
            shutil.copytree(folder, fresh)
            folder = fresh
        files = [folder / n for n in names]
        expected = decode_many(files, SIZE)
        got = decoded_pixels(files, SIZE)
        assert got.kept == expected.kept and got.errors == expected.errors, op
        assert np.array_equal(np.asarray(got), expected.pixels), op


def test_pixel_cache_cost_script_times_a_hit_against_a_decode(tmp_path, monkeypatch):
    """benchmarks/scripts/pixel_cache_cost.py (the README's content-check cost): every step timed, a hit reused."""
    from conftest import load_script

    data = write_image_folder(tmp_path / "d", {"test": 4})
    monkeypatch.setenv("EDGE_EXPORT_PIXEL_CACHE", str(tmp_path / "unused"))  # the script uses a temporary folder
    script = load_script("pixel_cache_cost")
    result = script.measure(str(data / "test"), 32, 2)
    assert result["photos"] == 8 and set(result["median_ms"]) == {
        "decode",
        "stat key",
        "content key",
        "pixel check",
        "hit",
    }
    assert all(v > 0 for v in result["median_ms"].values()) and "of a decode" in script.render(result)
    assert not (tmp_path / "unused").exists()
