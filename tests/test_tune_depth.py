"""The search's cheap rules, on a fake trainer: fine-tuning goes one block deeper only while that pays
(tune.depth_patience), and the students the teacher can still teach are distilled first."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge_export.core.config import load_config
from edge_export.core.records.tune import DONE, NOT_PROMOTED, SKIPPED, CandidateRecord
from edge_export.core.run_folder import TuneFolder
from edge_export.tuning import search
from edge_export.tuning.space import Point

PAIR = ("b", 224)


def fine_tune(
    tmp_path: Path, monkeypatch, accuracy: dict[int, float], patience: str = "1", head: float = 0.95
) -> tuple[list[int], dict[str, CandidateRecord], list[str]]:
    """Run the fine-tuning step on one promoted pair whose depth-N model scores ``accuracy[N]``; the depths
    trained (in order), the records, and what the search printed."""
    config = load_config(None, [f"tune.depth_patience={patience}"])
    points = [
        Point(*PAIR, blocks, precision, kd)
        for blocks in (0, 1, 2, 3)
        for precision in ("int8", "fp16")
        for kd in (False, True)
    ]
    records = {
        p.key: CandidateRecord(
            p.backbone, p.image_size, p.fine_tune_blocks, p.precision, latency_ms=5.0, distilled=p.distilled
        )
        for p in points
    }
    lines: list[str] = []
    s = search.Search(config, TuneFolder(tmp_path), lines.append, lambda event: None, None, config, records)
    trained: list[int] = []

    def fake_train(s, live, phase, failure, teacher=None):
        assert phase == "fine_tune" and teacher is None and not any(p.distilled for p in live)
        trained.append(live[0].fine_tune_blocks)
        for p in live:
            s.records[p.key].keras_val_accuracy = accuracy[p.fine_tune_blocks]

    monkeypatch.setattr(search, "_train_points", fake_train)
    search._fine_tune(s, points, {PAIR: head})
    return trained, records, lines


def test_a_depth_that_does_not_beat_the_head_stops_the_pair(tmp_path, monkeypatch):
    trained, records, _ = fine_tune(tmp_path, monkeypatch, {1: 0.95, 2: 0.99, 3: 0.99})
    assert trained == [1]  # 1 block tied the head-only model: 2 and 3 are not trained, whatever they would score
    for blocks in (2, 3):
        for kd in ("", "-kd"):
            r = records[f"b-224-ft{blocks}{kd}-int8"]
            assert r.status == NOT_PROMOTED and r.keras_val_accuracy is None
            assert "95.00% at 0 block(s)" in r.reasons[0] and "tune.depth_patience=1" in r.reasons[0]
    assert records["b-224-ft1-int8"].status == SKIPPED and records["b-224-ft1-int8"].keras_val_accuracy == 0.95


def test_every_gain_buys_the_next_depth(tmp_path, monkeypatch):
    trained, records, _ = fine_tune(tmp_path, monkeypatch, {1: 0.96, 2: 0.97, 3: 0.97})
    assert trained == [1, 2, 3]
    assert all(r.status != NOT_PROMOTED for r in records.values())


def test_a_loss_then_stop_at_the_best_depth(tmp_path, monkeypatch):
    trained, records, _ = fine_tune(tmp_path, monkeypatch, {1: 0.97, 2: 0.96, 3: 0.99})
    assert trained == [1, 2]
    assert "97.00% at 1 block(s)" in records["b-224-ft3-fp16"].reasons[0]


def test_patience_two_and_every_depth(tmp_path, monkeypatch):
    trained, _, _ = fine_tune(tmp_path / "two", monkeypatch, {1: 0.95, 2: 0.94, 3: 0.99}, patience="2")
    assert trained == [1, 2]  # two depths in a row without a gain
    trained, _, _ = fine_tune(tmp_path / "two-gain", monkeypatch, {1: 0.95, 2: 0.96, 3: 0.99}, patience="2")
    assert trained == [1, 2, 3]
    trained, records, _ = fine_tune(tmp_path / "all", monkeypatch, {1: 0.90, 2: 0.90, 3: 0.90}, patience="null")
    assert trained == [1, 2, 3] and all(r.status != NOT_PROMOTED for r in records.values())


def test_a_failed_depth_is_neither_gain_nor_loss(tmp_path, monkeypatch):
    trained, _, _ = fine_tune(tmp_path, monkeypatch, {1: None, 2: 0.95, 3: 0.99})  # type: ignore[dict-item]
    assert trained == [1, 2]  # 1 block failed: 2 is tried; it ties the head: 3 is not


def test_a_kept_result_is_not_undone(tmp_path, monkeypatch):
    """A candidate finished in an earlier run (kept record) stays done even where the rule would not train it."""
    config = load_config(None)
    points = [Point(*PAIR, blocks, "int8") for blocks in (0, 1, 2)]
    records = {
        p.key: CandidateRecord(p.backbone, p.image_size, p.fine_tune_blocks, p.precision, latency_ms=5.0)
        for p in points
    }
    records["b-224-ft2-int8"].status, records["b-224-ft2-int8"].keras_val_accuracy = DONE, 0.99
    s = search.Search(config, TuneFolder(tmp_path), lambda line: None, lambda event: None, None, config, records)

    def fake_train(s, live, phase, failure, teacher=None):
        for p in live:
            s.records[p.key].keras_val_accuracy = 0.9

    monkeypatch.setattr(search, "_train_points", fake_train)
    search._fine_tune(s, points, {PAIR: 0.9})
    assert records["b-224-ft2-int8"].status == DONE and records["b-224-ft2-int8"].keras_val_accuracy == 0.99


@pytest.mark.parametrize("value", ["0", "-1", "true", "1.5"])
def test_bad_depth_patience_is_a_clear_error(value):
    from edge_export.core.errors import EdgeExportError

    with pytest.raises(EdgeExportError, match="tune.depth_patience"):
        load_config(None, [f"tune.depth_patience={value}"])


def test_students_below_the_teacher_come_first_one_per_pair():
    order = ["b-224-ft0", "b-224-ft1", "b-192-ft2", "b-192-ft3", "b-160-ft1"]  # the frontier's order
    accuracy = {"b-224-ft0": 0.993, "b-224-ft1": 0.994, "b-192-ft2": 0.989, "b-192-ft3": 0.989, "b-160-ft1": 0.976}
    pairs = {k: ("b", int(k.split("-")[1])) for k in order}
    assert search.pick_students(order, accuracy, pairs, 0.993, 2) == ["b-192-ft2", "b-160-ft1"]
    assert search.pick_students(order, accuracy, pairs, 0.993, 3) == ["b-192-ft2", "b-160-ft1", "b-224-ft0"]
    assert search.pick_students(order, accuracy, pairs, 0.999, 2) == ["b-224-ft0", "b-192-ft2"]  # all below it
    assert search.pick_students(order, accuracy, pairs, 0.97, 2) == ["b-224-ft0", "b-192-ft2"]  # none below it
    assert search.pick_students(order, accuracy, pairs, None, 9) == ["b-224-ft0", "b-192-ft2", "b-160-ft1"]
