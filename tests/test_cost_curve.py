"""benchmarks/scripts/cost_curve.py: its data sets of links, its measuring child and its table (the real
curve is a benchmark, run by hand)."""

from __future__ import annotations

import os
import sys

from conftest import load_script, write_image_folder

cost_curve = load_script("cost_curve")


def test_datasets_are_links_with_repeats_under_new_names(tmp_path):
    source = write_image_folder(tmp_path / "src", {"train": 3, "validation": 2, "test": 2}, classes=("cats", "dogs"))
    info = cost_curve.make_dataset(source, tmp_path / "d", 10, holdout=1)
    train = sorted((tmp_path / "d" / "train").rglob("*.png"))
    assert len(train) == 10 and all(p.is_symlink() for p in train)
    assert len({p.name for p in train if p.parent.name == "cats"}) == 5  # 3 photos + 2 repeats, all names unique
    assert info == {"train_images": 10, "repeated_photos": 4}
    assert {os.path.realpath(p) for p in train} <= {str(p.resolve()) for p in (source / "train").rglob("*.png")}
    for split in ("validation", "test"):
        assert len(list((tmp_path / "d" / split).rglob("*.png"))) == 2
    cost_curve.make_dataset(source, tmp_path / "d", 4)  # again: replaced, validation/test all of them
    assert len(list((tmp_path / "d" / "train").rglob("*.png"))) == 4
    test = tmp_path / "d" / "test"
    assert all((test / c).is_symlink() for c in ("cats", "dogs"))  # folder links: rglob does not follow them
    assert sum(len(os.listdir(test / c)) for c in ("cats", "dogs")) == 4


def test_the_measuring_child_reports_the_peak_of_the_command(tmp_path):
    grow = "import numpy as np; a = np.ones(300_000_000 // 8); print(a.sum())"
    big = cost_curve.measured([sys.executable, "-c", grow], dict(os.environ), tmp_path / "big.log")
    small = cost_curve.measured([sys.executable, "-c", "pass"], dict(os.environ), tmp_path / "small.log")
    assert big["returncode"] == 0 and small["returncode"] == 0
    assert big["peak_rss_bytes"] > small["peak_rss_bytes"] + 250_000_000
    failed = cost_curve.measured([sys.executable, "-c", "raise SystemExit(3)"], dict(os.environ), tmp_path / "f.log")
    assert failed["returncode"] == 3


def test_table_and_plot(tmp_path):
    def row(n, rss):
        run = {
            "returncode": 0,
            "wall_s": n / 10,
            "peak_rss_bytes": rss,
            "cache_bytes": n * 1000,
            "timing_seconds": {"decode": 1.0},
        }
        return {
            "train_images": n,
            "repeated_photos": 0,
            "cold": run,
            "warm": {**run, "timing_seconds": {"decode": 0.1}},
        }

    rows = [row(100, 2_000_000_000), row(200, 2_200_000_000)]
    text = cost_curve.table(rows)
    lines = text.strip().splitlines()
    assert len(lines) == 4 and all(line.count("|") == lines[0].count("|") for line in lines)
    assert "1.10x" in lines[-1] and "2.20" in lines[-1]
    cost_curve.plot(rows, tmp_path / "c.png")
    assert (tmp_path / "c.png").stat().st_size > 1000
