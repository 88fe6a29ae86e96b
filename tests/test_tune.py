"""edge-export tune: a tiny-backbone search with a fake device latency table (injected), pruning before
training, resume after kill -9, the choice's rule, and the chosen config that build takes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from edge_export.core.config import load_config
from edge_export.core.records.tune import (
    DONE,
    NOT_PROMOTED,
    PRUNED,
    CandidateRecord,
    LatencyRecord,
    TuneResult,
)
from edge_export.core.run_folder import TuneFolder

from conftest import start_paused, write_image_folder

TINY = [
    "model.backbone=tiny_cnn",
    "model.weights=none",
    "train.batch_size=8",
    "train.feature_extraction.epochs=3",
    "train.feature_extraction.learning_rate=0.05",
    "train.fine_tune.epochs=1",
    "export.representative_images=8",
    "export.accuracy_budget=100",
    "tune.backbones=[tiny_cnn]",
    "tune.image_sizes=[32,48]",
    "tune.fine_tune_blocks=[0,1]",
    "tune.precisions=[int8]",
]


def fake_device(calls: list):
    """A device whose latency grows with the input size (ms = size / 10), recording what it was asked."""

    def measure(combos):
        calls.extend(combos)
        return {
            (b, size, p): LatencyRecord(b, size, p, "fake", p50_ms=size / 10, p90_ms=size / 9, size_bytes=size * 1000)
            for b, size, p in combos
        }

    return measure


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return write_image_folder(tmp_path_factory.mktemp("tune") / "data", {"train": 12, "validation": 6, "test": 6})


@pytest.fixture(scope="module")
def searched(data, tmp_path_factory) -> dict:
    from edge_export import api

    out = tmp_path_factory.mktemp("tune") / "search"
    calls: list = []
    result = api.tune(
        None, out=out, overrides=[f"data.path={data}", *TINY], max_latency_ms=4.0, measure=fake_device(calls), echo=None
    )
    return {"out": out, "result": result, "calls": calls, "data": data}


def test_pruned_by_latency_before_any_training(searched):
    result, folder = searched["result"], TuneFolder(searched["out"])
    assert sorted(searched["calls"]) == [("tiny_cnn", 32, "int8"), ("tiny_cnn", 48, "int8")]  # once per combination
    by_key = {c.key: c for c in result.candidates}
    assert set(by_key) == {
        "tiny_cnn-32-ft0-int8",
        "tiny_cnn-32-ft1-int8",
        "tiny_cnn-48-ft0-int8",
        "tiny_cnn-48-ft1-int8",
    }
    for key in ("tiny_cnn-48-ft0-int8", "tiny_cnn-48-ft1-int8"):
        assert by_key[key].status == PRUNED and "p50 4.80 ms > max 4 ms" in by_key[key].reasons[0]
        assert not folder.run(by_key[key].key.rsplit("-", 1)[0]).root.exists()  # never trained
    assert not any(p.name.startswith("tiny_cnn-48") for p in (folder.root / TuneFolder.RUNS).iterdir())
    done = [c for c in result.candidates if c.status == DONE]
    assert done and all(
        c.image_size == 32 and c.val_accuracy is not None and c.p50_ms == c.latency_ms == 3.2 for c in done
    )


def test_no_candidate_sees_the_test_split(searched):
    from edge_export.core.untrusted import read_json

    runs = sorted((TuneFolder(searched["out"]).root / TuneFolder.RUNS).iterdir())
    assert runs
    for run in runs:  # trained on TUNE_DIR/data: links to train/ and validation/ only
        metrics = read_json(run / "metrics.json")
        assert "validation" in metrics and "test" not in metrics


def test_outputs_tune_json_plot_and_chosen_config(searched):
    folder = TuneFolder(searched["out"])
    result = TuneResult.read(folder.result)  # the one reader of tune.json
    assert result.to_dict() == searched["result"].to_dict()
    chosen = result.candidate(result.chosen)
    assert chosen is not None and chosen.status == DONE and chosen.image_size == 32
    assert result.binding == ["max_latency_ms"] and "max_latency_ms bound it" in result.why
    assert folder.plot.is_file() and folder.plot.stat().st_size > 1000
    assert chosen.key in folder.table.read_text()
    for c in result.candidates:  # every candidate has its settings, latency, status and time
        assert c.p50_ms is not None and c.status and "latency" in c.seconds
    for c in result.candidates:  # robustness (the bench's camera-like shifts, validation images) when quantized
        assert (c.robustness_accuracy is not None) == (c.status == DONE)
    config = load_config(folder.chosen_config)
    assert (config.model.backbone, config.model.image_size) == ("tiny_cnn", 32)
    assert config.train.fine_tune.enabled == (chosen.fine_tune_blocks > 0)
    assert config.export.formats == ["tflite-int8"]
    assert Path(config.data.path).is_absolute()


def test_build_accepts_the_chosen_config(searched, tmp_path):
    from edge_export import api

    folder = TuneFolder(searched["out"])
    result = api.build(folder.chosen_config, out=tmp_path / "build", stages=["train", "export"], echo=None)
    assert result.ok and result.ran == ["train", "export"]


def test_a_rerun_keeps_finished_candidates_and_measures_nothing(searched):
    from edge_export import api

    folder = TuneFolder(searched["out"])
    records = sorted((folder.root / TuneFolder.CANDIDATES).glob("*.json"))
    before = {p: p.stat().st_mtime_ns for p in records}
    calls: list = []
    result, built = api.tune(
        None,
        out=folder.root,
        overrides=[f"data.path={searched['data']}", *TINY],
        max_latency_ms=4.0,
        measure=fake_device(calls),
        build_chosen=True,
        echo=None,
    )
    assert calls == []  # the latency table is cached in TUNE_DIR
    assert {p: p.stat().st_mtime_ns for p in records} == before
    assert result.chosen == searched["result"].chosen
    # --build: the chosen config built straight away (train, export, bench on the test split: after the choice)
    assert built.ok and built.ran == ["train", "export", "bench"] and built.recommendation.artifact == "tflite-int8"
    assert (folder.build_dir / "bench" / "bench.json").is_file()


def test_resume_after_kill_does_not_redo_finished_candidates(data, tmp_path):
    table = tmp_path / "latency.json"  # a fake device, through the config: tune.latency_table
    table.write_text(
        json.dumps(
            {f"tiny_cnn-{s}-int8": {"p50_ms": s / 10, "p90_ms": s / 9, "size_bytes": s * 1000} for s in (32, 48)}
        )
    )
    out = tmp_path / "tune"
    cmd = [
        sys.executable,
        "-m",
        "edge_export.cli",
        "tune",
        "--data",
        str(data),
        "--out",
        str(out),
        "--json",
        *TINY,
        f"tune.latency_table={table}",
    ]
    first = "tiny_cnn-32-ft0-int8"  # the first model quantized: the fastest near the frontier
    proc, _ = start_paused(cmd, f"tune.candidate.{first}")
    folder = TuneFolder(out)
    record = folder.candidate_record(first)
    assert CandidateRecord.read(record).status == DONE  # written before the pause point
    stamps = {
        p: p.stat().st_mtime_ns
        for p in (
            record,
            folder.run("tiny_cnn-32-ft0").build_state_dir / "export.json",
            folder.run("tiny_cnn-32-ft0").build_state_dir / "train.json",
        )
    }
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=60)
    assert not folder.result.exists()

    rerun = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps  # neither the record nor its training/export redone
    result = TuneResult.read(folder.result)
    assert result.candidate(first).status == DONE
    assert {c.key for c in result.candidates if c.status == PRUNED} == set()  # no limit given
    assert all(c.status in (DONE, NOT_PROMOTED, "not_quantized") for c in result.candidates)
    events = [json.loads(line) for line in rerun.stdout.splitlines() if line.startswith("{")]
    assert events[-1]["event"] == "tune_finished" and events[-1]["chosen"] == result.chosen
    assert first not in {e.get("key") for e in events if e["event"] == "tune_candidate"}  # kept, not finished again


def test_real_latency_of_random_weight_models_is_measured_once(data, tmp_path):
    """The default device: tiny random-weight models converted by the export's converters and timed here."""
    from edge_export.tuning.latency import LatencyTable, device_measure

    folder = TuneFolder(tmp_path / "tune")
    config = load_config(None, [f"data.path={data}", *TINY, "tune.latency_runs=5", "tune.latency_warmup=1"])
    calls: list = []
    real = device_measure(folder, config, ["blue", "red"], echo=lambda line: None)
    table = LatencyTable(
        folder, config, 2, lambda combos: calls.append(list(combos)) or real(combos), echo=lambda line: None
    )
    combos = [("tiny_cnn", 32, "int8"), ("tiny_cnn", 32, "fp16")]
    found = table.get(combos)
    assert calls == [combos]  # both in one measurement (timed interleaved)
    for combo in combos:
        record = found[combo]
        assert record.ok and 0 < record.min_ms <= record.p50_ms <= record.p90_ms and record.size_bytes > 0, record
        assert LatencyRecord.read(folder.latency_record(record.key)) == record
    assert found[combos[0]].size_bytes < found[combos[1]].size_bytes  # int8 weights are smaller than fp16
    assert table.get(combos) == found and len(calls) == 1  # cached: never measured again


def test_latency_statistic_min_ranks_by_the_uncontended_time(data, tmp_path):
    """On a busy machine p50 grows with the load; tune.latency_statistic=min limits by the fastest call instead."""
    from edge_export import api

    def busy(combos):  # a loaded host: p50 far above the fastest call
        return {
            (b, z, p): LatencyRecord(b, z, p, "busy", p50_ms=9.0, p90_ms=30.0, min_ms=1.5, size_bytes=1000)
            for b, z, p in combos
        }

    small = [f"data.path={data}", *TINY, "tune.image_sizes=[32]", "tune.fine_tune_blocks=[0]"]
    result = api.tune(None, out=tmp_path / "p50", overrides=small, max_latency_ms=2.0, measure=busy, echo=None)
    assert result.chosen is None and result.binding == ["max_latency_ms"]
    assert not (tmp_path / "p50" / TuneFolder.RUNS).exists()  # all pruned: nothing trained
    result = api.tune(
        None,
        out=tmp_path / "min",
        overrides=[*small, "tune.latency_statistic=min"],
        max_latency_ms=2.0,
        measure=busy,
        echo=None,
    )
    chosen = result.candidate(result.chosen)
    assert chosen is not None and chosen.latency_ms == chosen.min_ms == 1.5 and chosen.p50_ms == 9.0
    assert "min 1.50 ms" in result.why


def test_latency_on_an_ssh_device(data, tmp_path, sshd, device_python):
    """--device ssh://: the random-weight models go to the device (a local sshd, a Python without TensorFlow
    or edge-export) in one bundle and the device's own benchmark times them."""
    from edge_export import api
    from edge_export.deploy.remote import RemoteSettings

    remote_python, _ = device_python
    remote = RemoteSettings(
        ssh_options=list(sshd["options"]), python=remote_python, remote_dir=str(tmp_path / "remote")
    )
    out = tmp_path / "tune"
    result = api.tune(
        None,
        out=out,
        overrides=[
            f"data.path={data}",
            *TINY,
            "tune.image_sizes=[32]",
            "tune.fine_tune_blocks=[0]",
            "tune.latency_runs=5",
            "tune.latency_warmup=1",
        ],
        device=sshd["url"],
        remote=remote,
        echo=None,
    )
    record = LatencyRecord.read(TuneFolder(out).latency_record("tiny_cnn-32-int8"))
    assert record.ok and record.device == sshd["url"] and 0 < record.min_ms <= record.p50_ms
    assert result.device == sshd["url"] and result.chosen == "tiny_cnn-32-ft0-int8"


def test_a_spent_budget_starts_nothing_new(data, tmp_path):
    from edge_export import api
    from edge_export.core.records.tune import SKIPPED

    calls: list = []
    result = api.tune(
        None,
        out=tmp_path / "t",
        overrides=[f"data.path={data}", *TINY],
        budget_minutes=1e-9,
        measure=fake_device(calls),
        echo=None,
    )
    assert calls == [] and result.chosen is None
    assert all(c.status == SKIPPED and "budget" in c.reasons[0] for c in result.candidates)
    assert not (tmp_path / "t" / TuneFolder.RUNS).exists()


def test_reference_script_times_the_reference_with_the_tune_models(searched, tmp_path):
    from edge_export.tuning.latency import device_measure

    from conftest import load_script

    folder = TuneFolder(tmp_path / "tune")  # two real random-weight models in a tune folder's latency/models
    config = load_config(None, [f"data.path={searched['data']}", *TINY, "tune.latency_runs=5", "tune.latency_warmup=1"])
    device_measure(folder, config, ["blue", "red"], echo=lambda line: None)(
        [("tiny_cnn", 32, "int8"), ("tiny_cnn", 48, "int8")]
    )
    script = load_script("tune_reference")
    tiny = {"input_size": 32, "alpha": 0.35, "classes": 2, "calibration": 2, "cache": tmp_path / "ref"}
    result = script.reference_latency(folder.root, runs=5, warmup=1, reference_settings=tiny)
    assert list(result)[0] == script.REFERENCE and result[script.REFERENCE]["ratio_p50"] == 1.0
    assert len(result) == 3 and all(0 < r["min"] <= r["p50"] <= r["p90"] for r in result.values())
    assert "--max-latency-ms" in script.render(result)


# ------------------------------------------------------------------------------ the rule, without training


def record(key_size: int, blocks: int, status: str, acc: float | None, p50: float, reasons=()) -> CandidateRecord:
    return CandidateRecord(
        "b",
        key_size,
        blocks,
        "int8",
        status=status,
        val_accuracy=acc,
        p50_ms=p50,
        latency_ms=p50,
        reasons=list(reasons),
    )


def test_min_accuracy_picks_the_fastest_above_it_and_says_it_bound():
    from edge_export.tuning.search import choose

    config = load_config(None, ["tune.min_accuracy=0.99"])
    records = [record(160, 0, DONE, 0.980, 2.0), record(224, 0, DONE, 0.991, 3.0), record(288, 1, DONE, 0.995, 5.0)]
    key, why, binding = choose(records, config)
    assert key == "b-224-ft0-int8" and binding == ["min_accuracy"] and "1 faster evaluated" in why
    key, why, binding = choose(records, load_config(None, ["tune.min_accuracy=0.999"]))
    assert key is None and binding == ["min_accuracy"] and "b-288-ft1-int8" in why  # says what came closest
    key, _, binding = choose(records, load_config(None, []))  # no minimum: the most accurate
    assert key == "b-288-ft1-int8" and binding == []


def test_robustness_breaks_ties_and_can_be_a_constraint():
    from edge_export.tuning.search import choose

    a, b = record(224, 0, DONE, 0.99, 3.0), record(224, 1, DONE, 0.99, 3.0)
    a.robustness_accuracy, b.robustness_accuracy = 0.95, 0.97
    assert choose([a, b], load_config(None, []))[0] == b.key  # equal accuracy and latency: the more robust
    fast = record(160, 0, DONE, 0.99, 2.0)
    fast.robustness_accuracy = 0.90
    assert choose([a, b, fast], load_config(None, ["tune.min_accuracy=0.98"]))[0] == fast.key
    key, why, binding = choose([a, b, fast], load_config(None, ["tune.min_accuracy=0.98", "tune.min_robustness=0.96"]))
    assert key == b.key and binding == ["min_robustness"] and "min robustness bound it" in why


def test_every_candidate_pruned_names_the_limit():
    from edge_export.tuning.search import choose

    records = [record(160, 0, PRUNED, None, 9.0, ["latency p50 9.00 ms > max 3 ms"])]
    key, why, binding = choose(records, load_config(None, ["tune.max_latency_ms=3"]))
    assert key is None and binding == ["max_latency_ms"] and "9.00 ms" in why


def test_successive_halving_promotes_the_frontier_first():
    from edge_export.tuning.search import promote
    from edge_export.tuning.space import pareto

    assert pareto([(1.0, 0.90), (2.0, 0.95), (3.0, 0.94), (1.5, 0.89)]) == [0, 1]
    heads = {("a", 160): 0.90, ("a", 224): 0.95, ("a", 288): 0.94, ("b", 160): 0.96}
    latency = {("a", 160): 1.0, ("a", 224): 2.0, ("a", 288): 3.0, ("b", 160): 9.0}
    assert promote(heads, latency, 0.5) == [("b", 160), ("a", 224)]  # frontier, most accurate first
    assert len(promote(heads, latency, 0.01)) == 1


def test_default_space_is_what_loads_offline(tmp_path, monkeypatch):
    from edge_export.tuning.space import search_space

    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    points, notes = search_space(load_config(None, []))
    backbones = {p.backbone for p in points}
    assert "mobilenet_v2" not in backbones and "tiny_cnn" not in backbones  # not cached / no pretrained weights
    assert "efficientnet_lite1" not in backbones and any("efficientnet_lite1" in n for n in notes)  # named only
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5").write_bytes(b"x")
    points, _ = search_space(load_config(None, []))
    assert {p.image_size for p in points if p.backbone == "mobilenet_v2"} == {224}  # the one cached size
    assert {p.fine_tune_blocks for p in points} == {0, 1, 2, 3} and {p.precision for p in points} == {"int8", "fp16"}


def test_a_bad_latency_table_is_a_clear_error(data, tmp_path):
    from edge_export import api
    from edge_export.core.errors import EdgeExportError

    table = tmp_path / "table.json"
    table.write_text("[1, 2]")
    with pytest.raises(EdgeExportError, match="latency table"):
        api.tune(
            None, out=tmp_path / "t", overrides=[f"data.path={data}", *TINY, f"tune.latency_table={table}"], echo=None
        )


def test_outputs_without_an_evaluated_candidate_drop_an_earlier_plot(tmp_path):
    """A search with nothing to plot leaves no earlier search's Pareto plot behind, nor a link to it."""
    from edge_export.core.config import load_config
    from edge_export.core.records.tune import TuneResult
    from edge_export.core.run_folder import TuneFolder
    from edge_export.tuning.output import write_outputs

    folder = TuneFolder(tmp_path)
    folder.plot.parent.mkdir(parents=True, exist_ok=True)
    folder.plot.write_bytes(b"an earlier search's plot")
    result = TuneResult(
        candidates=[], chosen=None, why="no candidate", binding=[], constraints={}, device="local", seconds={}
    )
    write_outputs(folder, result, load_config(None), lambda *a, **k: None)
    assert not folder.plot.exists()
    assert TuneFolder.PLOT not in folder.table.read_text()


@pytest.mark.parametrize(
    "key, value, message",
    [
        ("binding", 7, "binding is not a list"),
        ("notes", "text", "notes is not a list"),
        ("seconds", [1, 2], "seconds is not an object"),
        ("space", "x", "space is not an object"),
        ("constraints", [1], "constraints is not an object"),
    ],
)
def test_malformed_tune_json_is_a_clear_error(tmp_path, key, value, message):
    """A hand-edited or damaged tune.json: an error naming the file and the key, never a traceback or a value
    iterated character by character."""
    from edge_export.core.errors import EdgeExportError
    from edge_export.core.records.tune import TuneResult

    good = TuneResult(
        candidates=[],
        chosen=None,
        why="no candidate",
        binding=["latency"],
        constraints={},
        device="local",
        seconds={"total": 1.0},
    ).to_dict()
    assert TuneResult.from_dict(good).binding == ["latency"]
    with pytest.raises(EdgeExportError, match=message) as error:
        TuneResult.from_dict({**good, key: value}, source=tmp_path / "tune.json")
    assert "tune.json" in str(error.value)


@pytest.mark.parametrize(
    "key, value, message",
    [
        ("seconds", [1], "seconds is not an object"),
        ("reasons", "slow", "reasons is not a list"),
    ],
)
def test_malformed_candidate_record_is_a_clear_error(tmp_path, key, value, message):
    """A damaged candidate record: the same one-line error (naming the candidate, the key and the fix)."""
    from edge_export.core.errors import EdgeExportError

    good = record(224, 0, DONE, 0.99, 3.0, reasons=["fine"]).to_dict()
    assert CandidateRecord.from_dict(good).reasons == ["fine"]
    with pytest.raises(EdgeExportError, match=message) as error:
        CandidateRecord.from_dict({**good, key: value}, source=tmp_path / "b-224-ft0-int8.json")
    assert "b-224-ft0-int8" in str(error.value) and "tune redoes it" in str(error.value)
