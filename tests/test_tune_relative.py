"""tune --faster-than REF: latency as a ratio to a reference timed in the same rounds, re-timing near the ceiling,
with fake timers (a quiet one, a machine whose load changes between rounds, one model's spike) and a search."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edge_export.core.errors import EdgeExportError
from edge_export.tuning.relative import REFERENCE, time_relative

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
REFERENCE_MODEL = SHARED / "reference-models" / "mobilenet_v1_0.25_128_quant.tflite"


class FakeTimer:
    """Each model's true time in ms; ``load(round)`` scales a whole round (the machine's load), ``spike(round, key)``
    one model in one round. Records which keys each round timed."""

    def __init__(self, true_ms: dict, reference_ms: float = 10.0, load=lambda i: 1.0, spike=lambda i, key: 1.0):
        self.true_ms, self.reference_ms, self.load, self.spike = true_ms, reference_ms, load, spike
        self.rounds: list[list] = []

    def __call__(self, paths: dict) -> dict:
        i = len(self.rounds)
        self.rounds.append([k for k in paths if k != REFERENCE])
        out = {}
        for key in paths:
            base = self.reference_ms if key == REFERENCE else self.true_ms[key]
            if base is None:
                out[key] = "does not run: broken"
                continue
            ms = base * self.load(i) * self.spike(i, key)
            out[key] = {"p50": ms, "p90": ms * 1.1, "min": ms * 0.9}
        return out


def _time(timer: FakeTimer, keys, **settings):
    options = {"ceiling": 1.0, "statistic": "p50", "retimes": 2, "band": 0.25, **settings}
    return time_relative(timer, {k: Path(f"{k}.tflite") for k in keys}, Path("ref.tflite"), **options)


def test_ratio_to_the_reference_and_only_candidates_near_the_ceiling_are_retimed():
    timer = FakeTimer({"fast": 5.0, "close_below": 9.5, "close_above": 10.5, "slow": 20.0})
    out = _time(timer, ["fast", "close_below", "close_above", "slow"])
    assert {k: round(v["ratio"], 3) for k, v in out.items()} == {
        "fast": 0.5,
        "close_below": 0.95,
        "close_above": 1.05,
        "slow": 2.0,
    }
    assert timer.rounds == [
        ["fast", "close_below", "close_above", "slow"],
        ["close_below", "close_above"],
        ["close_below", "close_above"],
    ]
    assert out["fast"]["ratios"] == [0.5] and len(out["close_below"]["ratios"]) == 3
    assert out["fast"]["reference"]["p50"] == 10.0  # the reference's timing of the same round
    assert _time(FakeTimer({"a": 9.5}), ["a"], retimes=0)["a"]["ratios"] == [0.95]  # no re-timing asked


def test_a_machine_whose_load_changes_between_rounds_leaves_the_ratios_alone():
    """The same candidates on a machine 1.0x, 1.6x and 0.7x as busy in three rounds: absolute times move by more
    than the margin to the ceiling, the ratios (timed together) do not."""
    timer = FakeTimer({"a": 9.0, "b": 11.0}, load=lambda i: (1.0, 1.6, 0.7)[i])
    out = _time(timer, ["a", "b"])
    assert [round(r, 3) for r in out["a"]["ratios"]] == [0.9, 0.9, 0.9]
    assert round(out["b"]["ratio"], 3) == 1.1
    assert max(out["a"]["p50"], out["a"]["reference"]["p50"]) in (9.0, 10.0)  # the median round's own pair


def test_one_noisy_round_of_one_model_does_not_decide():
    """A spike on one candidate in one round (another process woke up during its block) would prune it on one
    figure; near the ceiling it is timed again and the median of its rounds decides. A slow candidate that read
    fast once is not let through either."""
    spikes = {(0, "kept"): 1.3, (1, "pruned"): 0.8}
    timer = FakeTimer({"kept": 9.5, "pruned": 10.5}, spike=lambda i, key: spikes.get((i, key), 1.0))
    out = _time(timer, ["kept", "pruned"])
    assert round(out["kept"]["ratios"][0], 3) == 1.235 and round(out["kept"]["ratio"], 3) == 0.95
    assert round(out["pruned"]["ratio"], 3) == 1.05


def test_a_reference_that_does_not_run_is_an_error_and_a_candidate_that_does_not_is_its_own():
    timer = FakeTimer({"ok": 5.0, "broken": None})
    out = _time(timer, ["ok", "broken"])
    assert out["broken"] == "does not run: broken" and out["ok"]["ratio"] == 0.5
    with pytest.raises(EdgeExportError, match="the latency reference did not run"):
        _time(FakeTimer({"ok": 5.0}, reference_ms=None), ["ok"])


# ------------------------------------------------------------------------------------------------ the search


def relative_device(config, true_ms: dict, load=lambda i: 1.0):
    """A fake device measured through the search's own path (timed_with_reference -> latency_record): true time in
    ms per (backbone, size), the reference 4 ms, the machine's load changing per round."""
    from edge_export.tuning.latency import latency_record, timed_with_reference

    timer = FakeTimer(true_ms, reference_ms=4.0, load=load)

    def measure(combos):
        paths = {c: Path(f"{c[0]}-{c[1]}.tflite") for c in combos}
        timed = timed_with_reference(lambda p: timer({k: v for k, v in p.items()}), paths, config)
        return {c: latency_record(c, "fake", timed.get(c), 1000 * c[1], 0.0) for c in combos}

    return measure, timer


def test_search_prunes_by_the_ratio_and_shows_it(tmp_path):
    from test_tune import TINY

    from edge_export import api
    from edge_export.core.config import load_config

    from conftest import write_image_folder

    if not REFERENCE_MODEL.is_file():
        pytest.skip("the shared reference models are not here")
    data = write_image_folder(tmp_path / "data", {"train": 12, "validation": 6, "test": 6})
    overrides = [f"data.path={data}", *TINY, "tune.fine_tune_blocks=[0]", f"tune.latency_reference={REFERENCE_MODEL}"]
    config = load_config(None, overrides)
    measure, timer = relative_device(
        config, {("tiny_cnn", 32, "int8"): 3.2, ("tiny_cnn", 48, "int8"): 4.4}, load=lambda i: (1.0, 3.0, 0.5)[i]
    )
    out = tmp_path / "tune"
    result = api.tune(None, out=out, overrides=overrides, measure=measure, echo=None)
    by_key = {c.key: c for c in result.candidates}
    slow, fast = by_key["tiny_cnn-48-ft0-int8"], by_key["tiny_cnn-32-ft0-int8"]
    assert slow.status == "pruned" and round(slow.latency_ratio, 2) == 1.1
    assert slow.reasons[0].startswith("latency ratio 1.10x the reference's (mobilenet_v1_0.25_128_quant.tflite")
    assert round(fast.latency_ratio, 2) == 0.8 and result.chosen == fast.key
    assert timer.rounds[1:] == [[("tiny_cnn", 32, "int8"), ("tiny_cnn", 48, "int8")]] * 2  # both near 1.0: re-timed
    assert result.constraints["max_latency_ratio"] == 1.0 and result.binding == ["max_latency_ratio"]
    assert "0.80x the reference's latency" in result.why
    assert "0.80x" in (out / "tune.md").read_text()
    saved = json.loads((out / "tune.json").read_text())
    assert {c["key"]: c["latency_ratio"] for c in saved["candidates"]}[fast.key] == pytest.approx(0.8)


def test_bad_reference_settings_are_clear_errors(tmp_path):
    from edge_export import api
    from edge_export.core.config import load_config

    with pytest.raises(EdgeExportError, match="name the reference model too"):
        load_config(None, ["tune.max_latency_ratio=0.8"])
    with pytest.raises(EdgeExportError, match="not with tune.latency_table"):
        load_config(None, ["tune.latency_reference=r.tflite", "tune.latency_table=t.json"])
    with pytest.raises(EdgeExportError, match="not a file") as info:
        api.tune(None, out=tmp_path / "t", faster_than=tmp_path / "missing.tflite", echo=None)
    assert "--faster-than" in info.value.hint
    text = tmp_path / "ref.txt"
    text.write_text("x")
    with pytest.raises(EdgeExportError, match="must be a .tflite or .onnx model"):
        api.tune(None, out=tmp_path / "t", faster_than=text, echo=None)
