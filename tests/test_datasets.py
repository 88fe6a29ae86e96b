"""Dataset folder rules: classes from train/, seeded split, mismatches named, bad images skipped."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from PIL import Image

from conftest import write_image_folder
from edge_export.core.errors import EdgeExportError
from edge_export.trainer.datasets import load_pixels, scan_dataset
from edge_export.trainer.named_datasets import resolve_data


def test_classes_and_counts(image_folder):
    ds = scan_dataset(image_folder)
    assert ds.class_names == ["blue", "red"]
    assert {n: s.counts(2) for n, s in ds.splits.items()} == {"train": [12, 12], "validation": [6, 6], "test": [6, 6]}
    table = ds.counts_table()
    assert "blue" in table and "validation" in table and "24" in table


def test_seeded_validation_split_when_missing(tmp_path):
    root = write_image_folder(tmp_path / "d", {"train": 10})
    a = scan_dataset(root, validation_split=0.2, seed=3)
    b = scan_dataset(root, validation_split=0.2, seed=3)
    c = scan_dataset(root, validation_split=0.2, seed=4)
    assert a.validation_from_train
    assert a.splits["validation"].counts(2) == [2, 2] and a.splits["train"].counts(2) == [8, 8]
    assert a.splits["validation"].files == b.splits["validation"].files
    assert a.splits["validation"].files != c.splits["validation"].files
    assert not set(a.splits["validation"].files) & set(a.splits["train"].files)


def test_split_with_different_classes_is_named(tmp_path):
    root = write_image_folder(tmp_path / "d", {"train": 3})
    write_image_folder(root, {"validation": 2}, classes=("blue", "green"))
    with pytest.raises(EdgeExportError, match=r"missing \['red'\].*extra \['green'\]"):
        scan_dataset(root)


@pytest.mark.parametrize("layout, message", [("none", "no train/"), ("one", "at least 2 class")])
def test_bad_layouts(tmp_path, layout, message):
    root = tmp_path / "d"
    root.mkdir()
    if layout == "one":
        write_image_folder(root, {"train": 2}, classes=("red",))
    with pytest.raises(EdgeExportError, match=message):
        scan_dataset(root)


def test_unreadable_images_skipped_with_one_warning(tmp_path, caplog):
    root = write_image_folder(tmp_path / "d", {"train": 4, "validation": 1})
    (root / "train" / "red" / "broken.jpg").write_bytes(b"\xff\xd8\xff garbage")
    good = root / "train" / "red" / "red_0.png"
    (root / "train" / "red" / "truncated.png").write_bytes(good.read_bytes()[:60])
    Image.new("L", (9, 7), 128).save(root / "train" / "blue" / "gray.jpg")
    Image.new("CMYK", (9, 7)).save(root / "train" / "blue" / "cmyk.jpg")
    ds = scan_dataset(root)
    split = ds.splits["train"]
    with caplog.at_level(logging.WARNING):
        pixels, labels, skipped = load_pixels(split, (16, 16))
    assert sorted(p.name for p in skipped) == ["broken.jpg", "truncated.png"]
    assert len(pixels) == len(split.files) - 2 and pixels.shape[1:] == (16, 16, 3)
    assert pixels.dtype == np.uint8 and len(labels) == len(pixels)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "broken.jpg" in warnings[0].getMessage() and "truncated.png" in warnings[0].getMessage()


def test_named_dataset_resolves_locally_before_download(tmp_path, monkeypatch):
    local = write_image_folder(tmp_path / "data" / "cats_vs_dogs_small", {"train": 1}, classes=("cats", "dogs"))
    monkeypatch.setenv("EDGE_EXPORT_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("EDGE_EXPORT_CACHE", str(tmp_path / "cache"))
    assert resolve_data("cats_vs_dogs", download=False) == local
    monkeypatch.setenv("EDGE_EXPORT_DATA_DIR", str(tmp_path / "elsewhere"))
    with pytest.raises(EdgeExportError, match="not available locally"):
        resolve_data("cats_vs_dogs", download=False)
    cached = write_image_folder(tmp_path / "cache" / "datasets" / "cats_vs_dogs_small", {"train": 1}, classes=("cats", "dogs"))
    assert resolve_data("cats_vs_dogs", download=False) == cached


def test_unknown_data_path(tmp_path):
    with pytest.raises(EdgeExportError, match="not a known dataset"):
        resolve_data(str(tmp_path / "nope"))
