"""A run folder never pairs files from two runs (run.json, written last by train, checked by every reader),
and it works from any working directory (config.yaml records absolute data paths)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from edge_export.core.config import load_config
from edge_export.core.errors import EdgeExportError
from edge_export.core.hashing import sha256_file as sha256_of
from edge_export.core.run_folder import RunFolder

from conftest import start_paused, write_image_folder

FAST = [
    "model.backbone=tiny_cnn",
    "model.weights=none",
    "train.batch_size=8",
    "train.feature_extraction.epochs=2",
    "train.feature_extraction.learning_rate=0.05",
    "train.fine_tune.epochs=1",
]
EXPORT = ["--formats", "tflite-fp32"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> dict:
    """A tiny run trained from its own working directory with a *relative* data path (``data``)."""
    from edge_export.trainer.run import train_run

    base = tmp_path_factory.mktemp("integrity")
    write_image_folder(base / "data", {"train": 8, "validation": 4, "test": 4})
    here = os.getcwd()
    os.chdir(base)
    try:
        train_run(load_config(None, ["data.path=data", *FAST]), RunFolder("run"))
    finally:
        os.chdir(here)
    return {"run": RunFolder(base / "run"), "data": base / "data", "base": base}


def copy_run(run: RunFolder, dest: Path) -> RunFolder:
    shutil.copytree(run.root, dest, ignore=shutil.ignore_patterns("export", "checkpoints", ".*"))
    return RunFolder(dest)


def main(*args: str, cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    """The real console entry point in a fresh process, in ``cwd``."""
    return subprocess.run(
        [sys.executable, "-c", "from edge_export.cli import main; main()", *args],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=cwd,
        env={**os.environ, **(env or {})},
    )


# ----------------------------------------------------------------------------- the record


def test_train_writes_the_run_record_last(trained):
    run = trained["run"]
    record = run.verify()
    on_disk = json.loads(run.run_record.read_text())
    assert on_disk["run_id"] == record.run_id and len(record.run_id) == 32
    assert set(on_disk["files"]) == set(RunFolder.RECORDED) >= {"model.keras", "labels.txt", "config.yaml"}
    for name, digest in on_disk["files"].items():
        assert sha256_of(run.root / name) == digest, name
    newest = max((run.root / name).stat().st_mtime_ns for name in RunFolder.RECORDED)
    assert run.run_record.stat().st_mtime_ns >= newest


@pytest.mark.parametrize("name", [n for n in RunFolder.RECORDED if n != RunFolder.MODEL])
def test_a_file_from_another_run_is_refused(trained, tmp_path, name):
    run = copy_run(trained["run"], tmp_path / "run")
    with open(run.root / name, "ab") as f:
        f.write(b"\n")  # what another train would have written there
    with pytest.raises(EdgeExportError) as info:
        run.verify()
    assert (
        f"run folder {run.root} holds files from different runs ({name} does not match model.keras's run; "
        "train was interrupted?)"
    ) in str(info.value)
    assert f"re-run `edge-export train --out {run.root}`" in str(info.value)


def test_a_missing_or_malformed_record_is_refused(trained, tmp_path):
    run = copy_run(trained["run"], tmp_path / "run")
    run.run_record.write_text('{"run_id": "../x", "files": {}}')
    with pytest.raises(EdgeExportError, match="run.json is malformed"):
        run.verify()
    run.run_record.write_text("{not json")
    with pytest.raises(EdgeExportError, match="run.json is not valid JSON"):
        run.verify()
    run.run_record.unlink()
    with pytest.raises(EdgeExportError, match=r"has no run record \(run.json\): train was interrupted"):
        run.verify()


def test_labels_of_another_run_are_refused_by_every_reader(trained, tmp_path, capsys):
    """labels.txt renamed by a newer train beside the older model.keras: export, bench, package and
    the build's fingerprints all refuse, and nothing is written."""
    from edge_export.benchmarks.suite import bench_run
    from edge_export.cli import main as cli_main
    from edge_export.deploy.bundle import package_run
    from edge_export.export.exporter import export_run
    from edge_export.pipeline import stages

    run = copy_run(trained["run"], tmp_path / "run")
    assert export_run(run, formats="tflite-fp32", echo=None).ok
    run.labels.write_text("blue\ngreen\n")  # the class "red" was renamed "green" in the data
    export_before = {p.name: p.read_bytes() for p in run.export_dir.iterdir()}
    expected = "holds files from different runs (labels.txt does not match model.keras's run; train was interrupted?)"

    with pytest.raises(SystemExit) as exit_info:
        cli_main(["export", str(run.root), *EXPORT])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and expected in err and "Traceback" not in err
    for call in (
        lambda: export_run(run, formats="tflite-fp32", echo=None),
        lambda: bench_run(run, data=trained["data"] / "test", keras=False, echo=None),
        lambda: package_run(run, artifact="tflite-fp32", out=tmp_path / "package", echo=None),
        lambda: stages._export_fingerprint(SimpleNamespace(run=run, config=load_config(run.config))),
    ):
        with pytest.raises(EdgeExportError, match=r"labels\.txt does not match model\.keras's run"):
            call()
    assert {p.name: p.read_bytes() for p in run.export_dir.iterdir()} == export_before
    assert not (tmp_path / "package").exists() and not run.bench_dir.exists()


def test_interrupted_train_is_refused_until_a_retrain(trained, tmp_path):
    """A second train (a class renamed) killed mid-training leaves the old model.keras and no run record:
    export refuses; training again makes a whole run whose export carries the new labels."""
    from edge_export.runtime.metadata import read_metadata

    run = copy_run(trained["run"], tmp_path / "run")
    old_model = sha256_of(run.model)
    renamed = write_image_folder(tmp_path / "renamed", {"train": 8, "validation": 4}, classes=("blue", "green"))
    cmd = [sys.executable, "-m", "edge_export.cli", "train", "--data", str(renamed), "--out", str(run.root), *FAST]
    proc, _ = start_paused(cmd, "train.feature_extraction.epoch.1")
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)

    assert sha256_of(run.model) == old_model and not run.run_record.exists()  # old model, no record
    assert str(renamed) in run.config.read_text()  # the new config.yaml is already there
    result = main("export", str(run.root), *EXPORT, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert "has no run record (run.json): train was interrupted" in result.stderr and "Traceback" not in result.stderr
    assert f"re-run `edge-export train --out {run.root}`" in result.stderr
    assert not run.export_dir.exists()

    from edge_export.trainer.run import train_run

    train_run(load_config(None, [f"data.path={renamed}", *FAST]), run)
    assert run.verify().model_sha256 == sha256_of(run.model) != old_model
    result = main("export", str(run.root), *EXPORT, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert read_metadata(run.export_dir / "tflite-fp32.tflite")["labels"] == ["blue", "green"]


def test_train_removes_the_old_record_before_writing_anything(trained, tmp_path, monkeypatch):
    from edge_export.core import atomic
    from edge_export.trainer import run as trainer_run

    run = copy_run(trained["run"], tmp_path / "run")
    seen = []
    real = atomic.write_bytes

    def spy(path, data):  # the first file train writes: the record is already gone
        seen.append((Path(path).name, run.run_record.exists()))
        raise KeyboardInterrupt

    monkeypatch.setattr(atomic, "write_bytes", spy)
    with pytest.raises(KeyboardInterrupt):
        trainer_run.train_run(load_config(run.config, FAST), run)
    monkeypatch.setattr(atomic, "write_bytes", real)
    assert seen == [("config.yaml", False)]
    with pytest.raises(EdgeExportError, match="no run record"):
        run.verify()


# ----------------------------------------------------------------------------- paths that work from anywhere


def test_config_records_absolute_data_paths_and_keeps_dataset_names(trained, tmp_path, monkeypatch):
    from edge_export.trainer.run import recorded_config

    recorded = load_config(trained["run"].config)
    assert recorded.data.path == str(trained["data"])  # trained with data.path=data in its own folder
    monkeypatch.chdir(tmp_path)
    config = recorded_config(load_config(None, ["data.path=cats_vs_dogs", "build.test_data=../t"]))
    assert config.data.path == "cats_vs_dogs"  # a known dataset's name: resolved the same anywhere
    assert config.build.test_data == str(tmp_path.parent / "t")


def test_export_from_another_working_directory_finds_the_training_data(trained, tmp_path):
    run = copy_run(trained["run"], tmp_path / "somewhere" / "run")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    result = main("export", os.path.relpath(run.root, elsewhere), *EXPORT, cwd=elsewhere)
    assert result.returncode == 0, result.stderr
    manifest = json.loads((run.export_dir / "manifest.json").read_text())
    assert manifest["ok"] and manifest["model"]["run_id"] == run.verify().run_id


# ----------------------------------------------------------------------------- the build after a partial export


def test_build_does_not_recommend_from_a_stale_bench_and_re_runs_it(trained, tmp_path):
    """An export that replaces a measured artifact makes bench/bench.json stale: a build without the bench
    stage recommends nothing ("stale: ... re-run bench"); a build with it re-runs bench."""
    from edge_export.export.exporter import export_run
    from edge_export.pipeline.runner import build

    settings = [
        f"data.path={trained['data']}",
        *FAST,
        "export.formats=tflite-fp32,tflite-int8",
        "export.representative_images=8",
        "export.accuracy_budget=100",
        "bench.runs=5",
        "bench.warmup=0",
        "bench.threads=[1]",
        "build.accuracy_budget=100",
    ]
    run = RunFolder(tmp_path / "run")
    config = load_config(None, settings)
    first = build(config, run, echo=lambda line: None)
    assert first.ok and first.recommendation.artifact in ("tflite-fp32", "tflite-int8")
    deployed = json.loads((run.deploy_dir / "recommendation.json").read_text())
    assert deployed["sha256"] == sha256_of(run.export_dir / f"{deployed['artifact']}.tflite")

    other = load_config(run.config, ["export.int8_io=int8"])  # a different tflite-int8 for the same model
    export_run(run, other.export, run_config=other, formats="tflite-int8", echo=None)
    only_train = build(config, run, stages=["train"], echo=lambda line: None)
    assert only_train.recommendation.artifact is None
    assert only_train.recommendation.why.startswith("stale: bench/bench.json measured tflite-int8")
    assert any("re-run bench" in f for f in only_train.failures) and not run.deploy_dir.exists()

    again = build(config, run, echo=lambda line: None)
    assert "bench" in again.ran and again.ok and again.recommendation.artifact
