"""Bad and hostile image input (issue 9, items 3, 6, 8, 10): decompression bombs, FIFOs and devices,
classes left empty by unreadable files, nested and hidden folders, links and link loops."""

from __future__ import annotations

import json
import logging
import os
import shutil
import struct
import subprocess
import sys
import threading
import zlib
from pathlib import Path

import pytest
from PIL import Image

from edge_export.core.errors import EdgeExportError
from edge_export.runtime.images import DEFAULT_MAX_PIXELS, ImageDecodeError, find_images, load_image
from edge_export.trainer.datasets import decode_splits, load_pixels, scan_dataset

from conftest import TINY_TRAIN, write_image_folder

ROOT = Path(__file__).resolve().parents[1]


def write_bomb_png(path: Path, width: int, height: int) -> Path:
    """A valid 1-bit grayscale PNG of ``width`` x ``height`` black pixels: ~109 KB for 30000 x 30000,
    which decodes to 900 MB (2.7 GB as RGB). Written row block by row block, never whole in memory."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    row = b"\0" * (1 + (width + 7) // 8)  # filter byte + packed bits
    z = zlib.compressobj(9)
    parts = [z.compress(row * 256) for _ in range(height // 256)]
    parts += [z.compress(row * (height % 256)), z.flush()]
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", b"".join(parts)) + chunk(b"IEND", b"")
    )
    return path


def in_thread(call, *args, release: Path | None = None):
    """``call(*args)`` in a thread; returns its result or exception. If it is still blocked after a minute
    (a FIFO opened for reading waits for a writer), open ``release`` for writing to free it and fail."""
    out: dict = {}

    def target():
        try:
            out["value"] = call(*args)
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            out["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(60)
    if thread.is_alive():
        if release is not None:
            with open(release, "wb"):
                pass
        thread.join(10)
        pytest.fail(f"{call.__name__} blocked on {release}")
    return out


# ----------------------------------------------------------------------------- item 8: decompression bombs


def test_bomb_png_is_a_bad_image_named_before_decoding(tmp_path):
    bomb = write_bomb_png(tmp_path / "bomb.png", 30000, 30000)
    assert bomb.stat().st_size < 200_000
    with pytest.raises(ImageDecodeError) as info:
        load_image(bomb, (16, 16))
    text = str(info.value)
    assert str(bomb) in text and "900 megapixels" in text and "64 megapixels" in text
    assert "data.max_image_pixels" in text and "--max-image-pixels" in text


def test_pixel_limit_is_ours_not_pillows(tmp_path, monkeypatch):
    # 8200 x 8200 = 67.2 MP: over our default (64 MP), under Pillow's own warning (89 MP): Pillow would decode it
    big = write_bomb_png(tmp_path / "big.png", 8200, 8200)
    with pytest.raises(ImageDecodeError, match=r"8200x8200 = 67\.24 megapixels, over the limit of 64 megapixels"):
        load_image(big, (16, 16))
    # Pillow's global switched off: our check still holds
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", None)
    with pytest.raises(ImageDecodeError, match="over the limit"):
        load_image(write_bomb_png(tmp_path / "bomb.png", 30000, 30000), (16, 16))
    # the setting moves the limit both ways
    small = write_bomb_png(tmp_path / "small.png", 300, 200)
    assert load_image(small, (8, 8), max_pixels=60_000).shape == (8, 8, 3)
    with pytest.raises(ImageDecodeError, match="300x200"):
        load_image(small, (8, 8), max_pixels=59_999)
    with pytest.raises(EdgeExportError, match="positive integer"):
        load_image(small, (8, 8), max_pixels=0)


def test_config_setting_default_and_validation():
    from edge_export.core.config import load_config

    assert load_config().data.max_image_pixels == DEFAULT_MAX_PIXELS
    assert load_config(None, ["data.max_image_pixels=1000"]).data.max_image_pixels == 1000
    for bad in ("0", "-5", "1.5", "lots"):
        with pytest.raises(EdgeExportError, match="data.max_image_pixels"):
            load_config(None, [f"data.max_image_pixels={bad}"])


def test_bomb_in_dataset_is_skipped_with_the_warning(tmp_path, caplog):
    root = write_image_folder(tmp_path / "d", {"train": 3, "validation": 2})
    write_bomb_png(root / "train" / "red" / "bomb.png", 30000, 30000)
    ds = scan_dataset(root)
    with caplog.at_level(logging.WARNING):
        pixels, labels, skipped = load_pixels(ds.splits["train"], (16, 16))
    assert [p.name for p in skipped] == ["bomb.png"] and len(pixels) == 6
    warning = "\n".join(r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)
    assert "bomb.png" in warning and "megapixels" in warning
    # the setting reaches dataset decoding: a limit below the 40x48 images skips them all
    caplog.clear()
    with pytest.raises(EdgeExportError, match=r"no usable train image.*class 'blue': all 3 file\(s\) skipped"):
        decode_splits(scan_dataset(root), (16, 16), max_pixels=1000)
    assert "48x40 = 1920 pixels, over the limit of 1000 pixels" in caplog.text


def test_pixel_limit_reaches_export_and_bench_decoding(tmp_path):
    from edge_export.benchmarks.testset import decode_all, scan_test_folder
    from edge_export.export.data import load_images

    root = write_image_folder(tmp_path / "d", {"train": 2, "test": 2})
    write_bomb_png(root / "test" / "red" / "bomb.png", 30000, 30000)
    testset = scan_test_folder(root, max_pixels=40 * 48)
    pixels, bad = decode_all(testset.files, (8, 8), "bilinear", testset.max_pixels)
    assert [p.name for p in bad] == ["bomb.png"] and len(pixels) == 4
    pixels, bad = decode_all(testset.files, (8, 8), "bilinear", 40 * 48 - 1)
    assert len(bad) == 5 and len(pixels) == 0
    train = scan_dataset(root).splits["train"]
    assert len(load_images(train, (8, 8), "bilinear", 40 * 48)) == len(train.files) == 2
    with pytest.raises(EdgeExportError, match="no readable images"):
        load_images(train, (8, 8), "bilinear", 40 * 48 - 1)


def test_bench_skips_a_bomb_and_names_it(tiny_export, tmp_path):
    from edge_export.benchmarks.suite import bench_run
    from edge_export.core.config import BenchConfig

    test = tmp_path / "test"
    shutil.copytree(tiny_export["data"] / "test", test)
    bomb = write_bomb_png(test / "red" / "bomb.png", 30000, 30000)
    model = next((tiny_export["run"] / "export").glob("*.onnx"))
    config = BenchConfig(threads=[1], runs=5, warmup=1, batch_size=4)
    outcome = bench_run(
        models=[model], data=test, config=config, out=tmp_path / "bench", keras=False, isolate=False, echo=None
    )
    assert outcome.ok and outcome.report["data"]["skipped"] == [str(bomb)]
    assert outcome.report["data"]["images"] == 12
    with pytest.raises(EdgeExportError, match="no readable test images"):  # the setting reaches bench
        bench_run(
            models=[model],
            data=test,
            config=config,
            out=tmp_path / "bench2",
            keras=False,
            isolate=False,
            echo=None,
            max_image_pixels=100,
        )


# ----------------------------------------------------------------------------- item 10: non-regular files


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
def test_fifo_device_and_folder_are_refused_never_read(tmp_path):
    fifo = tmp_path / "fifo.png"
    os.mkfifo(fifo)
    for path, kind in ((fifo, "FIFO"), (Path("/dev/zero"), "device"), (tmp_path, "folder")):
        if not path.exists():
            continue
        out = in_thread(load_image, path, (8, 8), release=fifo)
        assert isinstance(out.get("error"), ImageDecodeError), out
        assert "not a regular file" in str(out["error"]) and kind in str(out["error"])


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
def test_fifo_in_a_class_folder_does_not_hang_the_dataset(tmp_path):
    root = write_image_folder(tmp_path / "d", {"train": 3, "validation": 2})
    fifo = root / "train" / "red" / "pipe.jpg"
    os.mkfifo(fifo)
    (root / "train" / "blue" / "zero.png").symlink_to("/dev/zero")
    out = in_thread(scan_dataset, root, release=fifo)
    ds = out["value"]
    assert fifo not in ds.splits["train"].files and ds.splits["train"].counts(2) == [3, 3]
    assert sorted(p.name for p in ds.irregular) == ["pipe.jpg", "zero.png"]
    assert "2 image name(s) that are not regular files" in ds.counts_table()
    assert sorted(ds.summary()["not_regular_files"]) == ["train/blue/zero.png", "train/red/pipe.jpg"]


# ----------------------------------------------------------------------------- item 3: recount after decoding


def _break(folder: Path, names: list[str]) -> None:
    for name in names:
        (folder / name).write_bytes(b"\xff\xd8\xff not a jpeg")


def test_counts_are_of_the_images_used(tmp_path):
    root = write_image_folder(tmp_path / "d", {"train": 4, "validation": 2, "test": 2})
    _break(root / "train" / "red", ["bad1.jpg", "bad2.jpg"])
    _break(root / "test" / "blue", ["bad3.jpg"])
    ds = scan_dataset(root)
    assert ds.splits["train"].counts(2) == [4, 6]  # as found, before decoding
    arrays = decode_splits(ds, (8, 8))
    assert {n: len(labels) for n, (_, labels) in arrays.items()} == {"train": 8, "validation": 4, "test": 4}
    assert ds.splits["train"].counts(2) == [4, 4] and ds.splits["test"].counts(2) == [2, 2]
    table = ds.counts_table()
    assert "not used: 2 train image(s) of red that could not be decoded" in table
    assert "not used: 1 test image(s) of blue that could not be decoded" in table
    summary = ds.summary()
    assert summary["counts"]["train"] == {"blue": 4, "red": 4}
    assert summary["skipped"] == {
        "train": {"red": ["train/red/bad1.jpg", "train/red/bad2.jpg"]},
        "test": {"blue": ["test/blue/bad3.jpg"]},
    }
    assert len(ds.listing()) == 8 + 4 + 4 + 3  # the fingerprint's input does not change with decoding


@pytest.mark.parametrize("split", ["train", "validation"])
def test_a_class_left_empty_by_unreadable_files_is_an_error(tmp_path, split):
    root = write_image_folder(tmp_path / "d", {"train": 3, "validation": 2})
    folder = root / split / "red"
    for f in folder.iterdir():
        f.unlink()
    _break(folder, ["a.jpg", "b.jpg", "c\x1b[31m.jpg"])
    ds = scan_dataset(root)
    with pytest.raises(EdgeExportError) as info:
        decode_splits(ds, (8, 8))
    text = str(info.value)
    assert f"no usable {split} image" in text and "'red'" in text and "all 3 file(s) skipped" in text
    assert f"{split}/red/a.jpg" in text and "\x1b" not in text and "\\x1b" in text  # printed safely


def test_a_class_without_validation_images_to_begin_with_is_fine(tmp_path):
    root = write_image_folder(tmp_path / "d", {"train": 5})
    for name in ("red_1.png", "red_2.png", "red_3.png", "red_4.png"):
        (root / "train" / "red" / name).unlink()  # one red image: none held out for validation
    ds = scan_dataset(root)
    arrays = decode_splits(ds, (8, 8))
    assert ds.splits["validation"].counts(2) == [1, 0] and len(arrays["train"][1]) == 5


def test_train_refuses_an_all_unreadable_class_before_writing_anything(tmp_path):
    from edge_export.core.config import load_config
    from edge_export.core.run_folder import RunFolder
    from edge_export.trainer.run import train_run

    root = write_image_folder(tmp_path / "d", {"train": 3, "validation": 2})
    _break(root / "train" / "red", ["x.jpg"])
    for f in (root / "train" / "red").glob("*.png"):
        f.unlink()
    run = RunFolder(tmp_path / "run")
    with pytest.raises(EdgeExportError, match=r"class 'red': all 1 file\(s\) skipped \(train/red/x.jpg\)"):
        train_run(load_config(None, [f"data.path={root}", *TINY_TRAIN]), run)
    assert not run.root.exists()


def test_train_records_the_images_used_nested_and_skipped(tmp_path):
    from edge_export.core.config import load_config
    from edge_export.core.run_folder import RunFolder
    from edge_export.trainer.run import train_run

    root = write_image_folder(tmp_path / "d", {"train": 4, "validation": 2})
    _break(root / "train" / "red", ["bad.jpg"])
    write_image_folder(root / "train" / "blue" / "more", {"x": 2}, classes=("blue",))  # train/blue/more/x/blue/...
    write_bomb_png(root / "validation" / "blue" / "bomb.png", 30000, 30000)
    (root / "train" / "red" / ".thumbnails").mkdir()
    Image.new("RGB", (8, 8)).save(root / "train" / "red" / ".thumbnails" / "t.jpg")
    run = RunFolder(tmp_path / "run")
    metrics = train_run(
        load_config(
            None,
            [f"data.path={root}", *TINY_TRAIN, "train.fine_tune.enabled=false", "train.feature_extraction.epochs=1"],
        ),
        run,
    )
    dataset = json.loads(run.dataset.read_text())
    assert dataset["counts"]["train"] == {"blue": 6, "red": 4} and dataset["counts"]["validation"] == {
        "blue": 2,
        "red": 2,
    }
    assert metrics["train"]["images"] == 10 and metrics["validation"]["images"] == 4
    assert dataset["skipped"] == {
        "train": {"red": ["train/red/bad.jpg"]},
        "validation": {"blue": ["validation/blue/bomb.png"]},
    }
    assert dataset["nested_folders"] == {"train/blue/more/x/blue": 2}
    assert dataset["hidden"] == ["train/red/.thumbnails"]


# ----------------------------------------------------------------------------- item 6: nested, hidden, links


def test_nested_folders_count_as_their_class_and_are_reported(tmp_path, caplog):
    root = write_image_folder(tmp_path / "d", {"train": 3, "validation": 2}, classes=("cats", "dogs"))
    cats = root / "train" / "cats"
    for sub in ("dogs", "2020/summer"):
        (cats / sub).mkdir(parents=True)
        Image.new("RGB", (8, 8), (200, 0, 0)).save(cats / sub / "n.jpg")
    (cats / ".thumbnails").mkdir()
    Image.new("RGB", (8, 8)).save(cats / ".thumbnails" / "t.jpg")
    Image.new("RGB", (8, 8)).save(cats / ".hidden.jpg")
    Image.new("RGB", (8, 8)).save(cats / "dogs" / "._resource.jpg")
    with caplog.at_level(logging.WARNING):
        ds = scan_dataset(root)
    assert ds.splits["train"].counts(2) == [5, 3]
    names = {str(p.relative_to(cats)) for p in ds.splits["train"].files if p.is_relative_to(cats)}
    assert names == {"cats_0.png", "cats_1.png", "cats_2.png", "dogs/n.jpg", "2020/summer/n.jpg"}
    assert ds.nested_folders() == {"train/cats/2020/summer": 1, "train/cats/dogs": 1}
    assert ds.misfiled() == ["train/cats/dogs"]
    assert any("train/cats/dogs/ is a sub-folder named like another class" in r.getMessage() for r in caplog.records)
    table = ds.counts_table()
    assert (
        "cats: 2 image(s) in sub-folders, counted as cats: train/cats/2020/summer/ (1), train/cats/dogs/ (1)" in table
    )
    assert "warning: train/cats/dogs/ is named like another class" in table and "3 hidden" in table
    summary = ds.summary()
    assert summary["nested_folders"] == {"train/cats/2020/summer": 1, "train/cats/dogs": 1}
    assert summary["misfiled_folders"] == ["train/cats/dogs"]
    assert summary["hidden"] == ["train/cats/.hidden.jpg", "train/cats/.thumbnails", "train/cats/dogs/._resource.jpg"]


def test_folder_links_are_followed_once_and_loops_end(tmp_path):
    outside = write_image_folder(tmp_path / "elsewhere", {"x": 2}, classes=("more",)) / "x" / "more"
    folder = tmp_path / "cls"
    folder.mkdir()
    Image.new("RGB", (8, 8)).save(folder / "a.png")
    (folder / "loop").symlink_to(folder)  # cls/loop -> cls
    (folder / "up").symlink_to(tmp_path)  # cls/up -> its parent, which holds cls again
    (folder / "ext").symlink_to(outside)
    (folder / "ext2").symlink_to(outside)  # the same real folder twice: once
    (folder / "file-link.png").symlink_to(folder / "a.png")
    scan = in_thread(find_images, folder)["value"]
    names = [str(p.relative_to(folder)) for p in scan.files]
    assert "a.png" in names and "file-link.png" in names
    assert sum(n.endswith("more_0.png") for n in names) == 1 and len(names) == len(set(names))
    assert not any(n.startswith(("loop", "up/cls")) for n in names)


# ----------------------------------------------------------------------------- CLI: one-line errors, no traceback


def test_build_with_an_all_unreadable_class_is_a_one_line_error(tmp_path):
    root = write_image_folder(tmp_path / "d", {"train": 3, "validation": 2})
    for f in (root / "train" / "blue").glob("*.png"):
        f.unlink()
    write_bomb_png(root / "train" / "blue" / "bomb.png", 30000, 30000)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "edge_export.cli",
            "train",
            "--data",
            str(root),
            "--out",
            str(tmp_path / "run"),
            *TINY_TRAIN,
        ],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=ROOT,
    )
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr and "bomb.png" in proc.stderr and "class 'blue'" in proc.stderr
    assert not (tmp_path / "run" / "model.keras").exists()
