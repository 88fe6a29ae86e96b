"""Seeing the errors: bench.json's misclassified images, the robustness suite, and the build report's
per-class tables, confusion matrix / sorted tables, misclassified gallery and Markdown tables."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from edge_export.benchmarks import robustness
from edge_export.core.config import BenchConfig
from edge_export.core.errors import EdgeExportError

FAST = BenchConfig(threads=[1], runs=5, warmup=1, batch_size=2)


# ----------------------------------------------------------------------------- the robustness suite


def _images(n: int, size: int = 32, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, size, size, 3), dtype=np.uint8)


def test_robustness_suite_is_seeded_and_deterministic():
    pixels = _images(40)
    keys = [f"class{i % 3}/img_{i}.jpg" for i in range(40)]
    a, ids_a = robustness.apply_suite(pixels, keys)
    b, ids_b = robustness.apply_suite(pixels, keys)
    assert a.dtype == np.uint8 and a.shape == pixels.shape
    assert np.array_equal(a, b) and np.array_equal(ids_a, ids_b)  # same seed: same pixels
    # an image's shift depends on its key, not on its neighbours or its place in the batch
    reverse, ids_r = robustness.apply_suite(pixels[::-1], keys[::-1])
    assert np.array_equal(reverse[::-1], a) and np.array_equal(ids_r[::-1], ids_a)
    other, ids_o = robustness.apply_suite(pixels, keys, seed=robustness.SEED + 1)
    assert not np.array_equal(other, a) and not np.array_equal(ids_o, ids_a)  # another seed: other shifts
    assert set(ids_a.tolist()) == set(range(len(robustness.SHIFTS)))  # 40 images meet every shift
    for i, name in enumerate(robustness.SHIFT_NAMES):
        j = int(np.flatnonzero(ids_a == i)[0])
        assert not np.array_equal(a[j], pixels[j]), name  # every shift changes the image
        again = robustness.shift_image(pixels[j], name, robustness.rng_for(keys[j], name))
        assert np.array_equal(again, a[j])
    with pytest.raises(ValueError, match="unknown shift"):
        robustness.shift_image(pixels[0], "fog", robustness.rng_for("k", "fog"))


def test_robustness_write_shifted_streams_the_same_pixels(tmp_path):
    from edge_export.benchmarks.testset import read_pixels, save_pixels

    pixels = _images(7, size=24, seed=3)
    keys = [f"c/{i}.png" for i in range(7)]
    source = save_pixels(tmp_path / "clean.npy", pixels)
    ids = robustness.write_shifted(source, tmp_path / "shifted.npy", keys, chunk=3)
    expected, expected_ids = robustness.apply_suite(pixels, keys)
    assert np.array_equal(read_pixels(tmp_path / "shifted.npy"), expected) and np.array_equal(ids, expected_ids)


def test_robustness_evaluate_counts_per_shift():
    pixels = _images(30, size=16, seed=5)
    keys = [f"k{i}" for i in range(30)]
    labels = [i % 2 for i in range(30)]
    # a "model" answering 0 for every image is right on exactly the label-0 images, under every shift
    result = robustness.evaluate(lambda x: np.zeros(len(x), dtype=int), pixels, labels, keys, batch=7)
    assert result["images"] == 30 and result["correct"] == 15 and result["accuracy"] == 0.5
    ids = [robustness.shift_of(k) for k in keys]
    for index, shift in enumerate(robustness.SHIFTS):
        in_shift = [labels[i] for i in range(30) if ids[i] == index]
        assert result["by_shift"][shift.name]["images"] == len(in_shift)
        assert result["by_shift"][shift.name]["correct"] == in_shift.count(0)
    scores = np.tile([[0.2, 0.8]], (30, 1))  # scores: argmax taken (class 1 everywhere)
    assert robustness.evaluate(lambda x: scores[: len(x)], pixels, labels, keys)["correct"] == 15


# ----------------------------------------------------------------------------- bench.json: misclassified, robustness


@pytest.fixture(scope="module")
def swapped_bench(tiny_export, tmp_path_factory):
    """The tiny tflite-int8 benchmarked with its labels right, and with them swapped (a model forced to err)."""
    from edge_export.benchmarks.suite import bench_run

    base = tmp_path_factory.mktemp("errors")
    model = tiny_export["run"] / "export" / "tflite-int8.tflite"
    labels = (tiny_export["run"] / "labels.txt").read_text().split()
    swapped = base / "swapped.txt"
    swapped.write_text("\n".join(reversed(labels)) + "\n")
    data = tiny_export["data"] / "test"
    lines: list[str] = []
    right = bench_run(models=[model], data=data, config=FAST, out=base / "right", isolate=False, echo=lines.append)
    wrong = bench_run(
        models=[model], data=data, labels=swapped, config=FAST, out=base / "wrong", isolate=False, echo=None
    )
    return {"right": right, "wrong": wrong, "model": model, "swapped": swapped, "data": data, "lines": lines}


def test_misclassified_lists_exactly_the_wrong_images_most_confident_first(swapped_bench):
    from edge_export.core.records.bench import BenchResult
    from edge_export.runtime.classifier import Classifier
    from edge_export.runtime.images import load_image

    data = swapped_bench["data"]
    everything = {p.relative_to(data).as_posix() for p in data.rglob("*.png")}
    (right,) = BenchResult.read(swapped_bench["right"].files["json"]).rows
    (wrong,) = BenchResult.read(swapped_bench["wrong"].files["json"]).rows
    right_paths = {m["path"] for m in right.misclassified}
    wrong_paths = {m["path"] for m in wrong.misclassified}
    assert len(right.misclassified) == right.images - right.correct
    assert len(wrong.misclassified) == wrong.images - wrong.correct > 0
    # two classes, labels swapped: an image is wrong exactly when it was right before
    assert wrong_paths == everything - right_paths and not (wrong_paths & right_paths)
    confidences = [m["confidence"] for m in wrong.misclassified]
    assert confidences == sorted(confidences, reverse=True) and all(0.5 <= c <= 1 for c in confidences)
    clf = Classifier.load(swapped_bench["model"], labels=swapped_bench["swapped"].read_text().split())
    for m in wrong.misclassified:
        assert m["true"] == Path(m["path"]).parent.name and m["predicted"] != m["true"]
        pixels = load_image(data / m["path"], tuple(clf.preprocessing.size), clf.preprocessing.pixel_method)
        scores = clf.predict_proba(pixels[None])[0]
        assert clf.labels[int(scores.argmax())] == m["predicted"]
        assert m["confidence"] == pytest.approx(float(scores.max()), abs=1e-5)
    md = swapped_bench["wrong"].files["md"].read_text()
    assert "Misclassified (" in md and wrong.misclassified[0]["path"] in md


def test_misclassified_list_is_bounded_by_the_setting(swapped_bench, tmp_path):
    from edge_export.benchmarks.suite import bench_run

    config = BenchConfig(threads=[1], runs=5, warmup=1, batch_size=2, misclassified=3, robustness=False)
    outcome = bench_run(
        models=[swapped_bench["model"]],
        data=swapped_bench["data"],
        labels=swapped_bench["swapped"],
        config=config,
        out=tmp_path / "o",
        isolate=False,
        echo=None,
    )
    (row,) = outcome.result.rows
    full = swapped_bench["wrong"].result.rows[0].misclassified
    assert row.misclassified == full[:3] and len(full) > 3
    # bench.robustness=false: no shifted pass, no robustness anywhere
    assert row.robustness is None and outcome.report["settings"]["robustness"] is None
    assert "Robustness" not in outcome.files["md"].read_text()


def test_robustness_accuracy_in_bench_json_matches_the_suite_run_directly(swapped_bench):
    from edge_export.benchmarks.testset import decode_all
    from edge_export.runtime.classifier import Classifier

    report = json.loads(swapped_bench["right"].files["json"].read_text())
    (row,) = report["artifacts"]
    assert report["settings"]["robustness"]["seed"] == robustness.SEED
    rob = row["robustness"]
    assert rob["images"] == row["images"] == 12
    assert sum(v["images"] for v in rob["by_shift"].values()) == 12
    assert sum(v["correct"] for v in rob["by_shift"].values()) == rob["correct"]
    # the same suite, run here on the same images through the runtime, gives the same predictions
    data = swapped_bench["data"]
    files = sorted(data.rglob("*.png"))
    clf = Classifier.load(swapped_bench["model"])
    pixels, bad = decode_all(files, tuple(clf.preprocessing.size), clf.preprocessing.pixel_method)
    assert not bad
    classes = sorted({f.parent.name for f in files})
    labels = [classes.index(f.parent.name) for f in files]
    order = [clf.labels.index(c) for c in classes]
    direct = robustness.evaluate(
        lambda x: clf.predict_proba(x)[:, order], pixels, labels, [f.relative_to(data).as_posix() for f in files]
    )
    assert direct["correct"] == rob["correct"] and direct["by_shift"] == rob["by_shift"]
    md = swapped_bench["right"].files["md"].read_text()
    assert "## Robustness" in md and "| shifted |" in md


def test_bench_progress_lines_show_times(swapped_bench):
    lines = swapped_bench["lines"]
    measuring = [line for line in lines if line.startswith("[1/1] measuring")]
    done = [line for line in lines if line.startswith("[1/1] tflite-int8: accuracy")]
    assert measuring and "elapsed" in measuring[0]
    assert done and re.search(r"in \d+s; elapsed \d+s", done[0]) and "shifted" in done[0]
    assert any(line.startswith("robustness suite: shifted 12 test images") for line in lines)


def test_bench_json_misclassified_and_robustness_are_checked_when_read():
    from edge_export.core.records.bench import BenchRow

    good = {"path": "cats/a.jpg", "true": "cats", "predicted": "dogs", "confidence": 0.9}
    row = BenchRow.from_dict({"name": "m", "format": "tflite", "misclassified": [good]})
    assert row.misclassified == [good] and BenchRow.from_dict(row.to_dict()).misclassified == [good]
    for bad in ("../etc/passwd", "/etc/passwd", "cats/../../x.jpg", "C:/x.jpg", "", 7):
        with pytest.raises(EdgeExportError, match="misclassified path"):
            BenchRow.from_dict({"name": "m", "format": "tflite", "misclassified": [{**good, "path": bad}]})
    for key, value in (("confidence", 1.5), ("confidence", "nan"), ("true", None), ("predicted", ["x"])):
        with pytest.raises(EdgeExportError, match="misclassified"):
            BenchRow.from_dict({"name": "m", "format": "tflite", "misclassified": [{**good, key: value}]})
    with pytest.raises(EdgeExportError, match="robustness.accuracy"):
        BenchRow.from_dict({"name": "m", "format": "tflite", "robustness": {"accuracy": 2.0, "by_shift": {}}})
    with pytest.raises(EdgeExportError, match="by_shift.blur.accuracy"):
        BenchRow.from_dict(
            {"name": "m", "format": "tflite", "robustness": {"accuracy": 0.5, "by_shift": {"blur": {"accuracy": -1}}}}
        )


def test_bench_settings_are_validated():
    from edge_export.core.config import load_config

    assert load_config(None, ["bench.robustness=false"]).bench.robustness is False
    with pytest.raises(EdgeExportError, match="bench.misclassified"):
        load_config(None, ["bench.misclassified=-1"])


# ----------------------------------------------------------------------------- the build report


def _cells(line: str) -> list[str]:
    """A Markdown table row's cells: split at '|' not escaped (preceded by an even number of backslashes)."""
    body = line.strip()[1:-1]
    cells, current, backslashes = [], "", 0
    for ch in body:
        if ch == "|" and backslashes % 2 == 0:
            cells.append(current)
            current = ""
        else:
            current += ch
        backslashes = backslashes + 1 if ch == "\\" else 0
    return cells + [current]


def assert_markdown_tables_parse(text: str) -> int:
    """Every table row has its header's column count (by hand and, where installed, by markdown-it)."""
    tables, current = [], []
    for line in text.splitlines() + [""]:
        if line.startswith("|"):
            current.append(line)
        elif current:
            tables.append(current)
            current = []
    for table in tables:
        assert re.fullmatch(r"\|(---\|)+", table[1]), table[:2]
        width = len(_cells(table[0]))
        assert all(len(_cells(row)) == width for row in table), table
    try:
        from markdown_it import MarkdownIt
    except ImportError:
        return len(tables)
    tokens = MarkdownIt("commonmark").enable("table").parse(text)
    assert sum(t.type == "table_open" for t in tokens) == len(tables)
    widths, row = [], 0
    for t in tokens:
        if t.type == "tr_open":
            row = 0
        elif t.type in ("th_open", "td_open"):
            row += 1
        elif t.type == "tr_close":
            widths.append(row)
        elif t.type == "table_close":
            assert len(set(widths)) == 1, widths
            widths = []
    return len(tables)


def _bench_row(name: str, classes: list[str], misclassified: list[dict], accuracy: float = 0.9) -> dict:
    k = len(classes)
    matrix = (np.eye(k, dtype=int) * 9 + np.roll(np.eye(k, dtype=int), 1, axis=1)).tolist()
    per_class = [
        {
            "label": c,
            "precision": 0.9,
            "recall": 0.9 - 0.01 * (i % 7),
            "f1": 0.9 - 0.01 * (i % 7),
            "support": 10,
            "predicted": 10,
        }
        for i, c in enumerate(classes)
    ]
    return {
        "name": name,
        "format": "tflite",
        "precision": "int8",
        "status": "ok",
        "size_bytes": 1000,
        "accuracy": accuracy,
        "images": 10 * k,
        "correct": 9 * k,
        "latency_ms": {"p50": 1.0, "p90": 1.2},
        "fps": 1000.0,
        "threads": 1,
        "per_class": per_class,
        "confusion": {"rows": classes, "columns": classes, "matrix": matrix},
        "misclassified": misclassified,
        "robustness": {
            "accuracy": 0.8,
            "images": 10 * k,
            "correct": 8 * k,
            "by_shift": {
                s: {"accuracy": 0.8, "images": 2 * k, "correct": int(1.6 * k)} for s in robustness.SHIFT_NAMES
            },
        },
    }


def _report(tmp_path, classes: list[str], n_wrong: int, recommended: str = "tflite-int8"):
    from edge_export.core.run_folder import RunFolder
    from edge_export.pipeline.report import write_reports

    data = tmp_path / "test"
    files = []
    for i in range(n_wrong):
        cls = classes[i % len(classes)]
        folder = data / cls
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"img {i}.png"
        Image.new("RGB", (300 + i, 200), (i * 7 % 256, 80, 160)).save(path)
        files.append(path)
    wrong = [
        {
            "path": f.relative_to(data).as_posix(),
            "true": f.parent.name,
            "predicted": classes[(classes.index(f.parent.name) + 1) % len(classes)],
            "confidence": round(0.99 - i * 0.01, 4),
        }
        for i, f in enumerate(files)
    ]
    wrong.append({"path": "gone/missing.png", "true": classes[0], "predicted": classes[1], "confidence": 0.1})
    run = RunFolder(tmp_path / "run").create()
    report = {
        "dataset": {"classes": classes, "counts": {"test": {c: 10 for c in classes}}},
        "export": {
            "artifacts": [
                {
                    "name": "tflite-int8",
                    "status": "ok",
                    "size_bytes": 1000,
                    "parity": {"accuracy": 0.9, "accuracy_drop": 0.1, "top1_agreement": 0.99, "max_abs_diff": 0.01},
                }
            ]
        },
        "bench": {
            "bench_version": 1,
            "data": {"path": str(data), "classes": classes, "images": 10 * len(classes)},
            "settings": {"robustness": robustness.describe()},
            "artifacts": [
                _bench_row("keras", classes, wrong[:2]) | {"format": "keras"},
                _bench_row("tflite-int8", classes, wrong),
            ],
        },
        "recommendation": {"artifact": recommended, "why": "fastest"},
        "command": "edge-export build",
    }
    write_reports(run, report)
    return run


def test_report_gallery_is_bounded_worst_first_and_tables_parse(tmp_path):
    from edge_export.pipeline.report import GALLERY_MAX, THUMBNAIL

    classes = ["cats|dogs", "new\nline", "<b>bold", "back\\slash|", "plain"]
    run = _report(tmp_path, classes, n_wrong=GALLERY_MAX + 6)
    md = run.report_md.read_text()
    assert assert_markdown_tables_parse(md) >= 6
    assert "max \\|Δp\\|" in md and "cats\\|dogs" in md and "new\\nline" in md and "\\<b>bold" in md
    thumbs = sorted(run.report_files.glob("misclassified-*.jpg"))
    assert len(thumbs) == GALLERY_MAX  # bounded: 30 errors, 24 pictures
    for thumb in thumbs:
        with Image.open(thumb) as im:
            assert max(im.size) <= THUMBNAIL
    gallery = md[md.index("## Misclassified test images: tflite-int8 (recommended)") :]
    assert f"{GALLERY_MAX} of" in gallery
    links = re.findall(r"!\[misclassified (\d+)\]\((report_files/misclassified-\d+\.jpg)\)", gallery)
    assert [int(i) for i, _ in links] == list(range(1, GALLERY_MAX + 1))
    assert all((run.root / link).is_file() for _, link in links)
    confidences = [float(c) for c in re.findall(r"\| (\d+\.\d+)% \|", gallery)]
    assert confidences == sorted(confidences, reverse=True) and confidences[0] == 99.0  # worst first
    assert "## Robustness" in md and "| shifted accuracy |" in md
    html = run.report_html.read_text()
    assert html.count("data:image/jpeg;base64,") == GALLERY_MAX and "&lt;b&gt;bold" in html
    assert "<b>bold" not in html
    # five classes: a confusion matrix picture with names, the per-class table in class order
    assert (
        run.report_files / "confusion_matrix.png"
    ).is_file() and "![confusion matrix](report_files/confusion_matrix.png)" in md
    assert "Most frequent confusions" not in md


def test_report_switches_to_sorted_tables_beyond_40_classes(tmp_path):
    from edge_export.benchmarks.render import CONFUSION_MAX_CLASSES, PER_CLASS_SHOWN

    many = [f"class_{i:03d}" for i in range(CONFUSION_MAX_CLASSES + 5)]
    run = _report(tmp_path / "many", many, n_wrong=3)
    md = run.report_md.read_text()
    assert_markdown_tables_parse(md)
    assert not (run.report_files / "confusion_matrix.png").exists() and "confusion_matrix.png" not in md
    assert "## Most frequent confusions: tflite-int8 (recommended)" in md
    per_class = md[md.index("## Per-class precision and recall") :].split("\n\n")[1]
    recalls = [float(r) for r in re.findall(r"^\| class_\d+ \| [\d.]+ \| ([\d.]+) \|", per_class, re.M)]
    assert len(recalls) == PER_CLASS_SHOWN and recalls == sorted(recalls)  # worst first, cut
    assert f"lowest F1 of {len(many)}" in md

    few = [f"c{i}" for i in range(CONFUSION_MAX_CLASSES)]  # at the threshold: still a matrix
    run = _report(tmp_path / "few", few, n_wrong=2)
    assert (run.report_files / "confusion_matrix.png").is_file()
    assert "Most frequent confusions" not in run.report_md.read_text()


def test_report_gallery_of_a_rerun_leaves_no_stale_thumbnails(tmp_path):
    run = _report(tmp_path, ["a", "b"], n_wrong=5)
    assert len(list(run.report_files.glob("misclassified-*.jpg"))) == 5
    run = _report(tmp_path, ["a", "b"], n_wrong=2)
    assert len(list(run.report_files.glob("misclassified-*.jpg"))) == 2
    assert "(unreadable)" in run.report_md.read_text()  # the missing file: a row without a picture
