"""Knowledge distillation (train.distill): soft targets from a teacher run on seeded views, on tiny models.

The teacher's targets are checked against the teacher run on the same views; the run is seeded (the same targets
and weights twice); a run killed during the teacher's pass resumes to the same targets; bad teachers are clear
errors before any training."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import start_paused, write_image_folder

TINY = [
    "model.backbone=tiny_cnn",
    "model.weights=none",
    "train.batch_size=8",
    "train.feature_extraction.epochs=2",
    "train.feature_extraction.learning_rate=0.05",
    "train.fine_tune.epochs=1",
]


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    # 40 photos a class: 80 training photos, two chunks of views (trainer/distill.CHUNK = 64)
    return write_image_folder(
        tmp_path_factory.mktemp("distill") / "data", {"train": 40, "validation": 6, "test": 6}, size=(36, 44)
    )


@pytest.fixture(scope="module")
def teacher(data, tmp_path_factory) -> Path:
    from edge_export import api

    out = tmp_path_factory.mktemp("distill") / "teacher"
    api.train(None, out=out, data=str(data), overrides=[*TINY, "model.image_size=40"], echo=None)
    return out


def train_student(data: Path, out: Path, *extra: str):
    from edge_export import api

    return api.train(None, out=out, data=str(data), overrides=[*TINY, "model.image_size=32", *extra], echo=None)


def _chunks(run: Path) -> list[Path]:
    return sorted((run / "distill").glob("*/targets-*.npz"))


def _views(run: Path, size: int = 32) -> list[Path]:
    return sorted((run / "distill").glob(f"*/views-{size}-*.npz"))


def test_targets_are_the_teachers_on_the_same_views_and_the_run_is_seeded(data, teacher, tmp_path):
    import json

    import keras

    first = tmp_path / "a"
    train_student(data, first, f"train.distill.teacher={teacher}", "train.distill.views=2", "train.distill.weight=0.7")
    chunks = _chunks(first)
    assert len(chunks) == 2 and len(_views(first)) == 2
    with np.load(chunks[0]) as saved, np.load(_views(first)[0]) as made:
        views, labels, probs = made["views"], saved["view_labels"], saved["probs"]
    assert views.shape == (128, 32, 32, 3) and len(labels) == 128 and probs.shape == (64 + 128, 2)
    # the teacher's probabilities of the photos: its own model on the photos at its size
    from edge_export.core.config import load_config
    from edge_export.core.records.preprocessing import pixel_method
    from edge_export.trainer.datasets import scan_dataset, stream_pixels

    dataset = scan_dataset(data, 0.2, 1337)
    default = load_config(None).model  # the decoder and resize the student was trained with
    photos, photo_labels, _ = stream_pixels(
        dataset.splits["train"], (40, 40), pixel_method(default.resize, default.decoder)
    )
    model = keras.models.load_model(teacher / "model.keras", compile=False)
    expected = np.asarray(model(np.asarray(photos[:64], np.float32), training=False))
    np.testing.assert_allclose(probs[:64], expected, atol=1e-5)
    metrics = json.loads((first / "metrics.json").read_text())
    distill = metrics["training"]["distill"]
    assert distill["training_images"] == 80 * 3 and distill["weight"] == 0.7 and distill["teacher_image_size"] == 40

    second = tmp_path / "b"
    train_student(data, second, f"train.distill.teacher={teacher}", "train.distill.views=2", "train.distill.weight=0.7")
    for a, b in zip(chunks + _views(first), _chunks(second) + _views(second)):
        with np.load(a) as x, np.load(b) as y:
            assert x.files == y.files
            for key in x.files:
                np.testing.assert_array_equal(x[key], y[key])
    weights = [keras.models.load_model(run / "model.keras", compile=False).get_weights() for run in (first, second)]
    for x, y in zip(*weights):
        np.testing.assert_array_equal(x, y)

    plain = tmp_path / "plain"
    train_student(data, plain)
    history = {
        run: json.loads((run / "history.json").read_text())["feature_extraction"]["loss"] for run in (first, plain)
    }
    assert history[first][0] != pytest.approx(history[plain][0], abs=1e-4)  # other targets, other loss


def test_killed_during_the_teachers_pass_resumes_to_the_same_targets(data, teacher, tmp_path):
    """kill -9 after the first chunk of views and targets is written: the re-run keeps it, makes the second,
    and ends with the targets of an uninterrupted run."""
    out = tmp_path / "killed"
    cmd = [
        sys.executable,
        "-m",
        "edge_export.cli",
        "train",
        "--data",
        str(data),
        "--out",
        str(out),
        *TINY,
        "model.image_size=32",
        f"train.distill.teacher={teacher}",
    ]
    proc, events = start_paused(cmd, "train.distill.chunk")
    assert events[-1]["chunk"] == 0
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=60)
    assert len(_chunks(out)) == 1 and not (out / "model.keras").exists()
    kept = _chunks(out)[0].stat().st_mtime_ns
    train_student(data, out, f"train.distill.teacher={teacher}")
    assert _chunks(out)[0].stat().st_mtime_ns == kept and len(_chunks(out)) == 2
    clean = tmp_path / "clean"
    train_student(data, clean, f"train.distill.teacher={teacher}")
    for a, b in zip(_chunks(out) + _views(out), _chunks(clean) + _views(clean)):
        with np.load(a) as x, np.load(b) as y:
            for key in x.files:
                np.testing.assert_array_equal(x[key], y[key])


def test_a_student_of_another_size_reuses_the_teachers_pass_and_its_crops(data, teacher, tmp_path):
    """The teacher's targets do not depend on the student: a student of another size in the same run folder
    (as tune's candidates share one) makes only its views, from the same seeded crops, and no teacher pass."""
    import json

    out = tmp_path / "shared"
    train_student(data, out, f"train.distill.teacher={teacher}")
    targets = {p: p.stat().st_mtime_ns for p in _chunks(out)}
    from edge_export import api

    api.train(
        None,
        out=out,
        data=str(data),
        overrides=[*TINY, "model.image_size=36", f"train.distill.teacher={teacher}"],
        echo=None,
    )
    assert {p: p.stat().st_mtime_ns for p in _chunks(out)} == targets  # the teacher did not run again
    small, big = _views(out, 32), _views(out, 36)
    assert len(small) == len(big) == 2
    with np.load(small[0]) as s32, np.load(big[0]) as s36:
        assert s32["views"].shape[1:] == (32, 32, 3) and s36["views"].shape[1:] == (36, 36, 3)
        # the same crops: each 36-px view made smaller is close to its 32-px twin (both from the 40-px photo),
        # closer than to the other photos' views
        from PIL import Image

        shrunk = np.stack([np.asarray(Image.fromarray(v).resize((32, 32))) for v in s36["views"][:8]]).astype(int)
        same = np.abs(shrunk - s32["views"][:8].astype(int)).mean()
        other = np.abs(shrunk - s32["views"][8:16].astype(int)).mean()
        assert same < 25 and same < other
    assert json.loads((out / "metrics.json").read_text())["training"]["distill"]["training_images"] == 240


def test_bad_teachers_are_clear_errors(data, teacher, tmp_path):
    from edge_export.core.errors import EdgeExportError

    with pytest.raises(EdgeExportError, match="teacher's run folder is not there"):
        train_student(data, tmp_path / "a", f"train.distill.teacher={tmp_path / 'nowhere'}")
    other = write_image_folder(tmp_path / "other", {"train": 4, "validation": 2}, classes=("green", "red"))
    with pytest.raises(EdgeExportError, match="are not the data's") as info:
        train_student(other, tmp_path / "b", f"train.distill.teacher={teacher}")
    assert "trained on these classes" in info.value.hint
    with pytest.raises(EdgeExportError, match="train.distill.weight"):
        train_student(data, tmp_path / "c", f"train.distill.teacher={teacher}", "train.distill.weight=1.5")


def test_smoothed_targets_move_mass_evenly_and_keep_rows_summing_to_one():
    from edge_export.trainer.distill import smoothed_targets

    hard = np.eye(4, dtype=np.float32)[[0, 3, 1]]
    out = smoothed_targets(hard, 0.1)
    np.testing.assert_allclose(out[0], [0.925, 0.025, 0.025, 0.025], rtol=1e-6)
    np.testing.assert_allclose(out.sum(axis=1), 1.0, rtol=1e-6)
    teacher = np.array([[0.6, 0.4, 0.0, 0.0]], np.float32)  # a teacher's targets are smoothed the same way
    np.testing.assert_allclose(smoothed_targets(teacher, 0.2)[0], [0.53, 0.37, 0.05, 0.05], rtol=1e-6)
    np.testing.assert_array_equal(smoothed_targets(hard, 0.0), hard)


def test_label_smoothing_changes_the_training_loss_not_the_validation_measure(data, tmp_path):
    import json

    from edge_export.core.errors import EdgeExportError

    runs = {s: tmp_path / f"smooth-{s}" for s in ("0", "0.2")}
    for s, out in runs.items():
        train_student(data, out, f"train.label_smoothing={s}")
    metrics = {s: json.loads((out / "metrics.json").read_text()) for s, out in runs.items()}
    history = {s: json.loads((out / "history.json").read_text())["feature_extraction"] for s, out in runs.items()}
    # smoothed targets can never be matched exactly: the first epoch's training loss is higher
    assert history["0.2"]["loss"][0] > history["0"]["loss"][0] + 1e-3
    assert metrics["0.2"]["training"]["label_smoothing"] == 0.2 and "label_smoothing" not in metrics["0"]["training"]
    # validation is measured against the plain labels either way: the same kind of number, comparable
    assert all(0.0 <= m["validation"]["accuracy"] <= 1.0 for m in metrics.values())
    with pytest.raises(EdgeExportError, match="train.label_smoothing"):
        train_student(data, tmp_path / "bad", "train.label_smoothing=1.0")


def test_the_setting_gain_script_trains_both_and_reports_the_difference(data, tmp_path, capsys):
    from conftest import load_script

    base = [f"--base={s}" for s in TINY if not s.startswith("model.backbone")]
    result = load_script("setting_gain").main(
        ["--data", str(data), "--backbone", "tiny_cnn", "--image-size", "32", *base]
        + ["--with", "train.label_smoothing=0.2", "--out", str(tmp_path / "gain")]
    )
    accuracy = {k: result[k]["validation"]["accuracy"] for k in ("with", "without")}
    assert result["gain_points"] == round(100 * (accuracy["with"] - accuracy["without"]), 2)
    assert (tmp_path / "gain" / "setting_gain.json").is_file()
    assert "train.label_smoothing=0.2:" in capsys.readouterr().out
