"""edge-export tune with distillation as a dimension (tune.distill), on a tiny backbone with a fake device: the
teacher trained on the spot, students near the frontier sharing one teacher pass, the distilled candidates
quantized and chosen like any other, the chosen config carrying its teacher, and a re-run that redoes nothing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_tune import TINY, fake_device

from edge_export.core.config import load_config
from edge_export.core.errors import EdgeExportError
from edge_export.core.records.tune import DONE, NOT_PROMOTED, PRUNED, CandidateRecord, TuneResult
from edge_export.core.run_folder import RunFolder, TuneFolder
from edge_export.tuning.output import frontier_rows, write_chosen_config

from conftest import write_image_folder

SPACE = [
    *[o for o in TINY if not o.startswith("tune.image_sizes") and not o.startswith("tune.fine_tune_blocks")],
    "tune.image_sizes=[32,40,48]",
    "tune.fine_tune_blocks=[0]",
    "model.image_size=48",  # the build's own model: the teacher with tune.distill=auto
]


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return write_image_folder(
        tmp_path_factory.mktemp("tune_kd") / "data", {"train": 12, "validation": 6, "test": 6}, size=(52, 60)
    )


def search(data: Path, out: Path, calls: list | None = None, **kwargs):
    from edge_export import api

    return api.tune(
        None,
        out=out,
        overrides=[f"data.path={data}", *SPACE],
        max_latency_ms=4.5,  # 48 px (4.8 ms on the fake device) is pruned, 32 and 40 px are not
        measure=fake_device([] if calls is None else calls),
        echo=None,
        **kwargs,
    )


@pytest.fixture(scope="module")
def distilled(data, tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("tune_kd") / "search"
    return {"out": out, "result": search(data, out, distill="auto")}


def test_the_teacher_is_trained_once_and_the_frontier_is_distilled_from_it(distilled):
    result, folder = distilled["result"], TuneFolder(distilled["out"])
    by_key = {c.key: c for c in result.candidates}
    assert set(by_key) == {
        f"tiny_cnn-{size}-ft0{kd}-int8" for size in (32, 40, 48) for kd in ("", "-kd")
    }  # every point of the space, undistilled and distilled
    for size in (32, 40):
        plain, kd = by_key[f"tiny_cnn-{size}-ft0-int8"], by_key[f"tiny_cnn-{size}-ft0-kd-int8"]
        assert plain.status == kd.status == DONE and kd.distilled and not plain.distilled
        assert kd.val_accuracy is not None and kd.latency_ms == plain.latency_ms  # the same network, timed once
    assert by_key["tiny_cnn-48-ft0-kd-int8"].status == PRUNED  # the same latency limit, before any training
    teacher = folder.run(TuneFolder.TEACHER)
    assert RunFolder(teacher.root).verify()  # the build's own model (48 px), a finished run
    assert result.space["distill_teacher"] in (
        str(teacher.root.resolve()),
        *(str(folder.run(f"tiny_cnn-{size}-ft0").root.resolve()) for size in (32, 40)),
    )
    # where the time went: the teacher, the students (each counted once), in the total
    assert result.seconds["teacher"] > 0 and result.seconds["distill"] > 0
    assert sum(v for k, v in result.seconds.items() if k != "total") <= result.seconds["total"] + 1
    for size in (32, 40):
        run = folder.run(f"tiny_cnn-{size}-ft0-kd")
        recorded = json.loads(run.metrics.read_text())["training"]["distill"]
        assert recorded["teacher"] == result.space["distill_teacher"] and recorded["views"] == 2
        assert (run.root / RunFolder.DISTILL).is_symlink()  # into TUNE_DIR/distill
        plain = json.loads(folder.run(f"tiny_cnn-{size}-ft0").history.read_text())["feature_extraction"]["loss"]
        kd = json.loads(run.history.read_text())["feature_extraction"]["loss"]
        assert kd[0] != pytest.approx(plain[0], abs=1e-4)  # other targets (and more images): another loss


def test_the_students_share_one_teacher_pass(distilled):
    shared = TuneFolder(distilled["out"]).root / TuneFolder.DISTILL
    targets = sorted(shared.glob("*/targets-*.npz"))
    assert len(targets) == 1  # 24 training photos: one chunk, labelled by the teacher once for both students
    assert len(list(shared.glob("*/views-32-*.npz"))) == 1 and len(list(shared.glob("*/views-40-*.npz"))) == 1


def test_the_report_shows_backbone_by_size_undistilled_and_distilled(distilled):
    folder = TuneFolder(distilled["out"])
    result = TuneResult.read(folder.result)
    assert result.to_dict() == distilled["result"].to_dict()
    rows = frontier_rows(result)
    assert rows[0] == ["backbone", "size", "latency ms", "val acc (Keras)", "distilled (Keras)"]
    by_size = {row[1]: row for row in rows[1:]}
    assert by_size["48"][2:] == ["4.80", "", ""] and by_size["32"][2] == "3.20"  # pruned: timed, never trained
    for size in (32, 40):
        for column, key in ((3, f"tiny_cnn-{size}-ft0-int8"), (4, f"tiny_cnn-{size}-ft0-kd-int8")):
            assert by_size[str(size)][column] == f"{100 * result.candidate(key).keras_val_accuracy:.2f}% (ft0)"
    text = folder.table.read_text()
    assert "distilled (Keras)" in text and "tiny_cnn-32-ft0-kd-int8" in text


def test_a_distilled_choice_carries_its_teacher_into_the_build_config(distilled, tmp_path):
    result = distilled["result"]
    teacher = result.space["distill_teacher"]
    kd = result.candidate("tiny_cnn-32-ft0-kd-int8")
    config = load_config(write_chosen_config(tmp_path / "chosen.yaml", load_config(None), kd, teacher))
    assert config.train.distill.teacher == teacher and config.model.image_size == 32
    plain = result.candidate("tiny_cnn-32-ft0-int8")
    config = load_config(write_chosen_config(tmp_path / "plain.yaml", load_config(None), plain, teacher))
    assert config.train.distill.teacher is None
    chosen = load_config(TuneFolder(distilled["out"]).chosen_config)
    assert chosen.train.distill.teacher == (teacher if result.candidate(result.chosen).distilled else None)


def test_a_rerun_redoes_nothing(distilled, data):
    folder = TuneFolder(distilled["out"])
    files = [
        *sorted((folder.root / TuneFolder.CANDIDATES).glob("*.json")),
        *sorted((folder.root / TuneFolder.DISTILL).glob("*/*.npz")),
        folder.run(TuneFolder.TEACHER).model,
    ]
    before = {p: p.stat().st_mtime_ns for p in files}
    calls: list = []
    result = search(data, folder.root, calls, distill="auto")
    assert calls == [] and {p: p.stat().st_mtime_ns for p in files} == before
    assert result.chosen == distilled["result"].chosen


def test_a_named_teacher_and_distill_top(distilled, data, tmp_path):
    """tune.distill names a finished run folder: it is the teacher; distill_top=1 distils only the model the
    frontier ranks first, and says why the others were not distilled."""
    teacher = TuneFolder(distilled["out"]).run(TuneFolder.TEACHER).root
    from edge_export import api

    result = api.tune(
        None,
        out=tmp_path / "named",
        overrides=[f"data.path={data}", *SPACE, "tune.distill_top=1"],
        max_latency_ms=4.5,
        measure=fake_device([]),
        distill=teacher,
        echo=None,
    )
    assert result.space["distill_teacher"] == str(teacher.resolve())
    assert not (tmp_path / "named" / TuneFolder.RUNS / TuneFolder.TEACHER).exists()  # none trained here
    kd = [c for c in result.candidates if c.distilled and c.status != PRUNED]
    assert sorted(c.status for c in kd) == [DONE, NOT_PROMOTED]
    skipped = next(c for c in kd if c.status == NOT_PROMOTED)
    assert "tune.distill_top" in skipped.reasons[0]


def test_the_builds_own_model_is_not_trained_where_the_search_trained_its_size(data, tmp_path):
    """With auto, the build's own model (here 40 px) is trained as a teacher only where the search did not train
    that backbone and size itself: here it did (and judged it), so the teacher is the search's best model."""
    from edge_export import api

    lines: list[str] = []
    out = tmp_path / "own"
    result = api.tune(
        None,
        out=out,
        overrides=[f"data.path={data}", *SPACE, "model.image_size=40", "tune.distill_top=1"],
        max_latency_ms=4.5,
        measure=fake_device([]),
        distill="auto",
        echo=lines.append,
    )
    folder = TuneFolder(out)
    assert not folder.run(TuneFolder.TEACHER).root.exists()
    assert result.space["distill_teacher"] in {str(folder.run(f"tiny_cnn-{z}-ft0").root.resolve()) for z in (32, 40)}
    assert any("own model (tiny_cnn at 40 px) is not trained" in line and "tiny_cnn-40-ft0" in line for line in lines)
    assert sum(c.distilled and c.status == DONE for c in result.candidates) == 1  # the one student


def test_a_teacher_that_is_not_a_finished_run_fails_before_any_work(data, tmp_path):
    with pytest.raises(EdgeExportError) as caught:
        search(data, tmp_path / "bad", distill=tmp_path / "nowhere")
    assert "nowhere" in str(caught.value) and not (tmp_path / "bad").exists()


def test_a_distilled_record_round_trips():
    record = CandidateRecord("tiny_cnn", 32, 1, "int8", status=DONE, val_accuracy=0.9, distilled=True)
    assert record.key == "tiny_cnn-32-ft1-kd-int8"
    assert CandidateRecord.from_dict(record.to_dict()) == record
