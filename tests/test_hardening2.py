"""The second hostile-input round (issue 25): each class of failure reproduced, with the rule that now holds.
(The pixel cache's own rules are tested in tests/test_pixel_cache.py.)"""

from __future__ import annotations

from pathlib import Path

import pytest

from edge_export.core.errors import EdgeExportError

from conftest import write_image_folder


def test_a_diverged_training_run_is_an_error_naming_the_setting_and_writes_no_model(tmp_path):
    """An absurd learning rate makes the loss NaN: the run stops with an error naming the setting; no model.keras
    and no run record (before: the initial weights were restored silently and the run reported success)."""
    from edge_export import api

    data = write_image_folder(tmp_path / "data", {"train": 12, "validation": 6, "test": 6})
    out = tmp_path / "run"
    with pytest.raises(EdgeExportError, match="training diverged in stage feature_extraction: loss is nan") as info:
        api.train(
            None,
            out=out,
            data=str(data),
            echo=None,
            overrides=[
                "model.backbone=tiny_cnn",
                "model.weights=none",
                "model.image_size=32",
                "train.batch_size=8",
                "train.feature_extraction.epochs=3",
                "train.fine_tune.enabled=false",
                "train.feature_extraction.learning_rate=1e38",
            ],
        )
    assert "train.feature_extraction.learning_rate" in info.value.hint
    assert not (out / "model.keras").exists() and not (out / "run.json").exists()


HOSTILE_DEVICES = [
    ("ssh://-oProxyCommand=touch${IFS}pwned@host", "is not a login name"),
    ("ssh://-oProxyCommand=x", "is not a host name"),
    ("ssh://pi@host;reboot", "is not a host name"),
    ("ssh://pi@h$(id)", "is not a host name"),
    ("ssh://pi@host:0", "port 0 is not 1..65535"),
    ("ssh://pi@host:99999", "with a port 1..65535"),
    ("ssh://pi:secret@host", "only user, host and port"),
    ("ssh://pi@host/path", "only user, host and port"),
]


@pytest.mark.parametrize("url, message", HOSTILE_DEVICES)
def test_a_device_url_never_becomes_an_ssh_option_or_shell_syntax(url, message, tmp_path):
    """One parser for every place a device is named: bench --device, tune --device and tune.device in a config."""
    from edge_export import api
    from edge_export.deploy.ssh import SshDevice

    with pytest.raises(EdgeExportError, match="bad ssh device") as info:
        SshDevice.parse(url)
    assert message in info.value.message
    with pytest.raises(EdgeExportError, match="bad ssh device"):
        api.parse_devices([url])
    with pytest.raises(EdgeExportError, match="bad ssh device"):  # tune.device from a config, before any work
        api.tune(None, out=tmp_path / "t", overrides=[f"tune.device={url}"], echo=None)


def test_ssh_ends_its_options_before_the_destination():
    from edge_export.deploy.ssh import SshConnection, SshDevice

    argv = SshConnection(SshDevice.parse("ssh://pi@raspberrypi.local:2222")).command("true")
    assert argv[-3:] == ["--", "pi@raspberrypi.local", "true"] and argv.index("-p") < argv.index("--")


def test_any_accepted_device_is_a_safe_destination():
    """Hypothesis: whatever text is put in the user, host and port places, a device that parses has a destination
    ssh cannot take for an option and a shell cannot take for syntax."""
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from edge_export.deploy.ssh import SshDevice

    text = st.text(alphabet=st.characters(codec="utf-8"), max_size=20)

    @settings(max_examples=300, deadline=None)
    @given(user=text, host=text, port=st.one_of(st.none(), st.integers(-5, 70000)))
    def check(user, host, port):
        url = "ssh://" + (f"{user}@" if user else "") + host + (f":{port}" if port is not None else "")
        try:
            device = SshDevice.parse(url)
        except EdgeExportError:
            return
        assert not device.destination.startswith("-")
        assert all(c.isalnum() and c.isascii() or c in "._-@:" for c in device.destination), device.destination
        assert device.port is None or 1 <= device.port <= 65535

    check()


def test_tune_never_replays_a_failed_latency_and_keys_results_by_the_remote_settings(tmp_path):
    """A latency measurement that failed (the device's Python was wrong) is measured again on the next run, not
    replayed; an ssh:// device's settings (its Python, folder, venv, ssh options) are part of a result's key."""
    from edge_export.core.config import load_config
    from edge_export.core.records.tune import LatencyRecord
    from edge_export.core.run_folder import TuneFolder
    from edge_export.deploy.remote import RemoteSettings
    from edge_export.tuning.latency import LatencyTable, latency_fingerprint

    config = load_config(None, ["tune.device=ssh://pi@device.local"])
    folder = TuneFolder(tmp_path / "tune")
    folder.latency_dir.mkdir(parents=True)
    combo = ("tiny_cnn", 32, "int8")
    calls = []

    def broken(combos):
        calls.append("broken")
        return {
            c: LatencyRecord(*c, "ssh://pi@device.local", status="failed", error="python3.99: not found")
            for c in combos
        }

    def fixed(combos):
        calls.append("fixed")
        return {c: LatencyRecord(*c, "ssh://pi@device.local", p50_ms=3.0, p90_ms=3.2, size_bytes=1000) for c in combos}

    settings = RemoteSettings(python="python3.99")
    assert not LatencyTable(folder, config, 2, broken, lambda line: None, settings).get([combo])[combo].ok
    lines: list[str] = []
    record = LatencyTable(folder, config, 2, fixed, lines.append, settings).get([combo])[combo]
    assert record.ok and record.p50_ms == 3.0 and calls == ["broken", "fixed"]
    assert any("failed last time" in line for line in lines)
    assert LatencyTable(folder, config, 2, fixed, lines.append, settings).get([combo])[combo].ok and len(calls) == 2
    other = RemoteSettings(python="/opt/venv/bin/python")
    assert latency_fingerprint(config, *combo, 2, settings) != latency_fingerprint(config, *combo, 2, other)


def test_bad_numbers_and_empty_images_are_clear_errors():
    import numpy as np

    from edge_export.runtime.classifier import Classifier

    model = (
        Path(__file__).resolve().parents[1].parent
        / "shared"
        / "reference-models"
        / "mobilenet_v1_0.25_128_quant.tflite"
    )
    if not model.is_file():
        pytest.skip("the shared reference models are not here")
    for bad, message in (
        (dict(mean="abc"), "mean must be numbers"),
        (dict(mean=(1, "x", 2)), "mean must be numbers"),
        (dict(std=0), "other than 0"),
        (dict(mean=float("nan")), "finite"),
    ):
        with pytest.raises(EdgeExportError, match=message):
            Classifier.load(model, **bad)
    with pytest.raises(EdgeExportError, match="an image with no pixels"):
        Classifier.load(model).predict(np.zeros((0, 0, 3), np.uint8))


@pytest.mark.parametrize("command", ["train", "build", "tune"])
def test_an_output_inside_the_data_is_refused_before_any_work(tmp_path, command):
    """tune --out inside --data wrote into the data set (its folders became classes): refused, for every command
    that trains, before anything is written."""
    from edge_export import api

    data = write_image_folder(tmp_path / "data", {"train": 4, "validation": 2})
    out = data / "train" / "runs"
    call = {
        "train": lambda: api.train(None, out=out, data=str(data), echo=None),
        "build": lambda: api.build(None, out=out, data=str(data), echo=None),
        "tune": lambda: api.tune(None, out=out, data=str(data), echo=None),
    }[command]
    with pytest.raises(EdgeExportError, match="is inside --data") as info:
        call()
    assert "outside the data set" in info.value.hint and not out.exists()
    assert sorted(p.name for p in (data / "train").iterdir()) == ["blue", "red"]


def test_remote_settings_and_bounds_are_checked_before_any_work(tmp_path):
    """--remote-python with an unbalanced quote, --remote-dir / (once: silently the home) and ~user, epochs and
    thread counts without an upper bound, an absurd latency table: one-line errors, not tracebacks or runs that
    never end."""
    import json

    from edge_export.core.config import load_config
    from edge_export.deploy.remote import RemoteSettings, remote_base
    from edge_export.tuning.latency import table_measure

    with pytest.raises(EdgeExportError, match="cannot be read"):
        RemoteSettings(python='"python3')
    for bad, message in (("/", "the file system root"), ("~bob/x", "another user's home"), ("  ", "is empty")):
        with pytest.raises(EdgeExportError, match=message):
            RemoteSettings(remote_dir=bad)
    assert remote_base("~") == "." and remote_base("~/edge") == "edge" and remote_base("/opt/edge/") == "/opt/edge"
    for override, key in (
        ("train.feature_extraction.epochs=1000000000", "train.feature_extraction.epochs"),
        ("bench.threads=[1,100000]", "bench.threads"),
        ("bench.runs=10000000000", "bench.runs"),
    ):
        with pytest.raises(EdgeExportError, match=key):
            load_config(None, [override])
    table = tmp_path / "table.json"
    table.write_text(json.dumps({"tiny_cnn-32-int8": {"p50_ms": 1e300, "p90_ms": 1.0, "size_bytes": 1000}}))
    with pytest.raises(EdgeExportError, match="not a plausible latency"):
        table_measure(table, "local")([("tiny_cnn", 32, "int8")])


HOSTILE_TEXT = "\x1b]0;pwned\x07\x1b[2J\u202egnp.exe"  # sets the terminal title, clears the screen, reverses text


def test_a_devices_words_reach_no_terminal_or_report_raw(tiny_export, tmp_path):
    """Class 4: what a device's bench.json says (CPU, OS, library versions, errors, data path, class names) goes
    through the one printable filter on reading, so the merged table, bench.md and the saved bench.json hold no
    control or bidi character from it."""
    import json

    from edge_export.benchmarks.devices import merge_device, record_device_error
    from edge_export.benchmarks.render import render_markdown, render_table
    from edge_export.benchmarks.suite import bench_run
    from edge_export.core.config import BenchConfig
    from edge_export.core.records.bench import BenchResult

    model = tiny_export["run"] / "export" / "tflite-int8.tflite"
    config = BenchConfig(threads=[1], runs=5, warmup=1, batch_size=2)
    outcome = bench_run(
        models=[model], data=tiny_export["data"] / "test", config=config, out=tmp_path / "o", isolate=False, echo=None
    )
    device = json.loads(json.dumps(outcome.report))  # the same bench, as a hostile device would send it back
    device["machine"].update(cpu=HOSTILE_TEXT, os=HOSTILE_TEXT, libraries={"numpy": HOSTILE_TEXT, HOSTILE_TEXT: "1"})
    device["data"]["path"] = HOSTILE_TEXT
    device["created"] = device["edge_export"] = HOSTILE_TEXT
    device["artifacts"][0].update(status="failed", error=HOSTILE_TEXT)
    device["skipped"] = [{"name": HOSTILE_TEXT, "reason": HOSTILE_TEXT}]
    remote = BenchResult.from_dict(device, source="pi:bench.json")

    result = BenchResult.from_dict(outcome.report, source="local")
    merge_device(result, "pi@raspberrypi", remote, None)
    record_device_error(result, "pi@raspberrypi", remote.machine["cpu"])
    rendered = render_table(result) + render_markdown(result) + json.dumps(result.to_dict())  # as write_json writes it
    assert "pwned" in rendered  # the words are kept, escaped
    for raw in ("\x1b", "\x07", "\u202e"):
        assert raw not in rendered, repr(raw)
    assert "\\x1b]0;pwned\\x07" in remote.machine["cpu"]


def test_a_tune_candidate_folder_is_locked_against_a_concurrent_train(tmp_path):
    """Class 9, second half: tune's candidate run folders are locked like every run folder a command writes. With
    tune stopped inside a candidate's training, ``train --out`` into that candidate's folder fails at once, naming
    tune; nothing of the candidate is touched."""
    import json
    import signal
    import sys

    from edge_export import api
    from edge_export.core.run_folder import TuneFolder

    from conftest import start_paused

    data = write_image_folder(tmp_path / "data", {"train": 12, "validation": 6, "test": 6})
    table = tmp_path / "latency.json"  # a fake device: no timing needed
    table.write_text(json.dumps({"tiny_cnn-32-int8": {"p50_ms": 3.2, "p90_ms": 3.5, "size_bytes": 32000}}))
    small = [
        "model.backbone=tiny_cnn",
        "model.weights=none",
        "train.batch_size=8",
        "train.feature_extraction.epochs=2",
        "train.fine_tune.enabled=false",
    ]
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
        *small,
        "tune.backbones=[tiny_cnn]",
        "tune.image_sizes=[32]",
        "tune.fine_tune_blocks=[0]",
        "tune.precisions=[int8]",
        f"tune.latency_table={table}",
    ]
    proc, _ = start_paused(cmd, "train.feature_extraction.epoch.1")  # inside the candidate's training
    try:
        candidate = TuneFolder(out).run("tiny_cnn-32-ft0")
        before = sorted(p.relative_to(candidate.root) for p in candidate.root.rglob("*"))
        with pytest.raises(EdgeExportError, match=r"is in use by .*edge-export tune \(tiny_cnn-32-ft0\)"):
            api.train(None, out=candidate.root, data=str(data), echo=None, overrides=[*small, "model.image_size=32"])
        assert sorted(p.relative_to(candidate.root) for p in candidate.root.rglob("*")) == before
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
