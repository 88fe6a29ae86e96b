"""The recommendation rule and the "below minimum accuracy" rule on pure records (no TensorFlow, no files
but the bench.json round trip)."""

from __future__ import annotations

import json

import pytest

from edge_export.core.errors import EdgeExportError
from edge_export.core.records.bench import BenchResult, BenchRow
from edge_export.core.records.recommendation import Recommendation, read_recommendation
from edge_export.core.run_folder import RunFolder
from edge_export.pipeline.recommend import recommend


def row(name, accuracy, p50, size_mb=1.0, fmt="tflite", status="ok", device="local", source="manifest"):
    if status != "ok":
        return BenchRow(
            name=name,
            format=fmt,
            status=status,
            error="it broke",
            device=device,
            source=source,
            size_bytes=int(size_mb * 1e6),
        )
    return BenchRow(
        name=name,
        format=fmt,
        accuracy=accuracy,
        latency_ms={"p50": p50, "p90": p50 * 1.1},
        size_bytes=int(size_mb * 1e6),
        device=device,
        source=source,
    )


def bench(*rows):
    return BenchResult(rows=list(rows), machine={"cpu": "test cpu"}, settings={"min_accuracy": None})


KERAS = row("keras", 0.95, 50.0, size_mb=10, fmt="keras", source="run")


def test_fastest_within_the_budget_and_under_the_size_limit():
    result = bench(
        KERAS,
        row("fp32", 0.95, 10.0, size_mb=9),
        row("int8", 0.945, 4.0, size_mb=2.5),
        row("tiny", 0.90, 1.0, size_mb=0.5),
    )
    rec = recommend(result, accuracy_budget=1.0, max_size_mb=None)
    assert rec.artifact == "int8"  # tiny is faster but 5 points below the Keras model
    assert "fastest within the budget on test cpu" in rec.why and "p50 4.00 ms" in rec.why
    rejected = {c.name: c.rejected for c in rec.candidates}
    assert (
        rejected["fp32"] == [] and rejected["int8"] == [] and rejected["tiny"][0].startswith("accuracy 90.00% < 94.00%")
    )
    assert [c.name for c in rec.candidates] == [
        "fp32",
        "int8",
        "tiny",
    ]  # the Keras model is the reference, not a candidate

    small = recommend(result, accuracy_budget=1.0, max_size_mb=2.0)
    # fp32 (9 MB) and int8 (2.5 MB) fail the size limit, tiny the accuracy budget: each is named
    assert small.artifact is None and small.why == "no artifact meets the accuracy budget or the size limit"
    assert recommend(result, accuracy_budget=10.0, max_size_mb=2.0).artifact == "tiny"
    assert (small.accuracy_budget, small.max_size_mb) == (1.0, 2.0)


def test_ties_go_to_the_first_in_bench_order():
    first, second = row("a", 0.95, 3.0), row("b", 0.95, 3.0)
    assert recommend(bench(KERAS, first, second), 1.0, None).artifact == "a"
    assert recommend(bench(KERAS, second, first), 1.0, None).artifact == "b"


def test_a_failed_row_is_never_recommended_nor_a_reference():
    broken = row("broken", None, None, status="failed")
    rec = recommend(bench(KERAS, broken, row("slow", 0.95, 20.0)), 1.0, None)
    assert rec.artifact == "slow" and [c.name for c in rec.candidates] == ["slow"]
    only_failed = recommend(bench(KERAS, broken), 1.0, None)
    assert only_failed.artifact is None and only_failed.why == "no artifact was measured successfully"
    # a failed Keras row is no reference: the most accurate artifact is
    rec = recommend(
        bench(row("keras", None, None, fmt="keras", status="failed"), row("x", 0.80, 2.0), row("y", 0.70, 1.0)),
        5.0,
        None,
    )
    assert rec.artifact == "x" and "below the most accurate artifact" in rec.why


def test_no_candidate_names_the_constraint_that_failed():
    result = bench(KERAS, row("fat", 0.95, 2.0, size_mb=50), row("bad", 0.50, 1.0, size_mb=1))
    assert recommend(result, 1.0, 10.0).why == "no artifact meets the accuracy budget or the size limit"
    assert recommend(bench(KERAS, row("bad", 0.50, 1.0)), 1.0, 10.0).why == "no artifact meets the accuracy budget"
    assert (
        recommend(bench(KERAS, row("fat", 0.95, 2.0, size_mb=50)), 1.0, 10.0).why == "no artifact meets the size limit"
    )
    both = recommend(bench(KERAS, row("fat-bad", 0.5, 2.0, size_mb=50)), 1.0, 10.0)
    assert both.why == "no artifact meets the accuracy budget and the size limit"


def test_rows_of_other_devices_are_not_candidates():
    remote = row("int8", 0.95, 0.5, device="pi@raspberrypi")
    rec = recommend(bench(KERAS, row("int8", 0.95, 5.0), remote), 1.0, None)
    assert rec.artifact == "int8" and rec.candidates[0].p50_ms == 5.0 and len(rec.candidates) == 1


def test_stale_rows_mean_no_recommendation():
    rec = recommend(bench(KERAS, row("int8", 0.95, 5.0)), 1.0, None, stale=["int8"])
    assert (
        rec.artifact is None
        and rec.why.startswith("stale: bench/bench.json measured int8")
        and "re-run bench" in rec.why
    )


def test_below_is_one_rule_for_bench_and_the_build_gate():
    min_accuracy = 0.9
    rows = [
        KERAS,
        row("low", 0.85, 1.0),
        row("good", 0.93, 1.0),
        row("broken", None, None, status="failed"),
        row("keras-low", 0.5, 1.0, fmt="keras"),
    ]
    assert [r.name for r in rows if r.below(min_accuracy)] == ["low"]  # the reference and a failed row are not "below"
    assert not any(r.below(None) for r in rows)
    for r in rows:
        r.below_min_accuracy = r.below(min_accuracy)  # what bench records when it measures
    result = bench(*rows)
    assert result.below_min_accuracy == ["low"] and result.failed == ["broken"] and not result.ok
    problems = result.problems(min_accuracy)  # what the build's gate reports
    assert problems == ["could not measure broken: it broke", "low: accuracy 85.00% below the minimum 90.00%"]
    assert result.problems(None) == ["could not measure broken: it broke"]


def test_bench_json_round_trip_keeps_its_keys(tmp_path):
    result = bench(
        KERAS,
        row("int8", 0.95, 5.0),
        row("broken", None, None, status="failed"),
        row("int8", 0.94, 9.0, device="pi@raspberrypi"),
    )
    result.devices = {"local": {"cpu": "x"}, "pi@raspberrypi": {"cpu": "arm"}}
    data = json.loads(json.dumps(result.to_dict()))
    assert [a["target"] for a in data["artifacts"]] == ["local", "local", "local", "pi@raspberrypi"]
    assert set(data["targets"]) == {"local", "pi@raspberrypi"} and data["failed"] == ["broken"]
    assert "latency_ms" in data["artifacts"][2] and "per_class" not in data["artifacts"][2]  # a failed row's keys
    back = BenchResult.from_dict(data, source="bench.json")
    assert [r.id for r in back.rows] == ["keras", "int8", "broken", "int8@pi@raspberrypi"]
    assert back.to_dict() == data and back.multi_device

    for bad, message in (
        ({**data, "bench_version": 99}, "format version 99"),
        ({**data, "artifacts": [{"name": "x", "status": "maybe"}]}, "status"),
        ({**data, "artifacts": [{"name": "x", "accuracy": "high"}]}, "finite number"),
        ({**data, "artifacts": [{"name": "x", "latency_ms": [1]}]}, "not a JSON object"),
    ):
        with pytest.raises(EdgeExportError, match=message):
            BenchResult.from_dict(bad, source="bench.json")


def test_recommendation_round_trip_and_its_one_reader(tmp_path):
    rec = recommend(bench(KERAS, row("int8", 0.95, 5.0)), 1.0, 4.0)
    rec.sha256 = "0" * 64
    assert Recommendation.from_dict(json.loads(json.dumps(rec.to_dict()))) == rec

    run = RunFolder(tmp_path / "run").create()
    assert read_recommendation(run) is None
    run.deploy_dir.mkdir()
    run.deploy_recommendation.write_text(json.dumps(rec.to_dict()))
    assert read_recommendation(run).artifact == "int8"
    run.report_json.write_text(json.dumps({"recommendation": {"artifact": "onnx-fp32", "why": "fastest"}}))
    assert read_recommendation(run).artifact == "onnx-fp32"  # report.json first, an older file's keys accepted
    run.report_json.write_text("{damaged")
    assert read_recommendation(run).artifact == "int8"  # unreadable: as if absent
    run.report_json.write_text(json.dumps({"recommendation": {"artifact": "../../victim"}}))
    with pytest.raises(EdgeExportError, match="not a safe name"):
        read_recommendation(run)


def test_the_build_gate_fails_on_the_same_rows_as_bench(tmp_path):
    from edge_export.core.config import load_config
    from edge_export.pipeline.runner import _gates

    run = RunFolder(tmp_path / "run").create()  # no export: only the bench gate speaks
    rows = [KERAS, row("low", 0.85, 1.0), row("good", 0.93, 1.0), row("broken", None, None, status="failed")]
    for r in rows:
        r.below_min_accuracy = r.below(0.9)
    result = bench(*rows)
    gates = _gates(run, load_config(None, ["bench.min_accuracy=0.9"]), result)
    assert gates == [f"bench: {p}" for p in result.problems(0.9)]
    assert gates == [
        "bench: could not measure broken: it broke",
        "bench: low: accuracy 85.00% below the minimum 90.00%",
    ]
    assert sorted(result.failed + result.below_min_accuracy) == ["broken", "low"]  # bench's own verdict: the same rows
    assert _gates(run, load_config(None, []), result) == ["bench: could not measure broken: it broke"]


def test_the_readers_answer_any_json_with_a_record_or_a_clear_error():
    """bench.json and recommendation.json come from devices and from disk: whatever they hold, the one reader
    returns a record or raises EdgeExportError, never another exception."""
    from hypothesis import given, settings
    from hypothesis import strategies as st

    scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8)
    values = st.recursive(
        scalars,
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
        max_leaves=12,
    )
    keys = st.sampled_from(
        [
            "name",
            "status",
            "target",
            "format",
            "accuracy",
            "latency_ms",
            "size_bytes",
            "threads",
            "by_threads",
            "per_class",
            "confusion",
            "sha256",
            "below_min_accuracy",
            "why",
            "artifact",
            "candidates",
            "budget",
            "device",
        ]
    )
    row_like = st.dictionaries(keys, values, max_size=6)
    bench_like = st.fixed_dictionaries(
        {},
        optional={
            "artifacts": st.lists(row_like, max_size=3) | values,
            "targets": values,
            "settings": values,
            "bench_version": values,
            "target_errors": values,
        },
    )
    rec_like = st.fixed_dictionaries(
        {},
        optional={
            "artifact": values,
            "why": values,
            "candidates": st.lists(row_like, max_size=2) | values,
            "budget": values,
            "sha256": values,
            "recommendation_version": values,
        },
    )

    @settings(max_examples=300, derandomize=True, deadline=None, database=None)
    @given(bench_like | values, rec_like | values)
    def check(bench_data, rec_data):
        for reader, data in ((BenchResult.from_dict, bench_data), (Recommendation.from_dict, rec_data)):
            try:
                record = reader(data, source="fuzz.json")
            except EdgeExportError:
                continue
            json.dumps(record.to_dict(), allow_nan=False) if reader is Recommendation.from_dict else record.to_dict()

    check()
