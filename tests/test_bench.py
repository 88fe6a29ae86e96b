"""``edge-export bench`` and ``edge_export.benchmarks``: on a tiny run folder made here and the reference models."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from edge_export.benchmarks.classification import classification_metrics, confusion_matrix, top1_agreement
from edge_export.benchmarks.latency import measure, summarize, time_calls, time_interleaved
from edge_export.core.config import BenchConfig
from edge_export.core.errors import EdgeExportError

from conftest import load_script, write_image_folder

ROOT = Path(__file__).resolve().parents[1]
FAST = ["--threads", "1", "--runs", "5", "--warmup", "1"]


def _cli(*args: str):
    from click.testing import CliRunner

    from edge_export.cli import cli

    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def _main(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    """The real entry point in a fresh process (errors -> exit 2 without a traceback)."""
    return subprocess.run(
        [sys.executable, "-c", "from edge_export.cli import main; main()", *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
    )


# ----------------------------------------------------------------------------- a tiny run folder with exports


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> dict[str, Path]:
    """A trained tiny_cnn run with export/manifest.json: tflite-fp32 and tflite-int8 (uint8 io) made here."""
    from edge_export.core.config import load_config
    from edge_export.core.run_folder import RunFolder
    from edge_export.export.metadata import build_metadata, embed_tflite_metadata
    from edge_export.runtime.preprocessing import Preprocessing
    from edge_export.trainer.run import train_run

    base = tmp_path_factory.mktemp("bench")
    data = write_image_folder(base / "data", {"train": 12, "validation": 6, "test": 6})
    run = RunFolder(base / "run")
    overrides = [
        f"data.path={data}",
        "model.backbone=tiny_cnn",
        "model.weights=none",
        "train.feature_extraction.epochs=2",
        "train.fine_tune.epochs=1",
    ]
    train_run(load_config(None, overrides), run)

    import keras
    import tensorflow as tf

    model = keras.models.load_model(run.model, compile=False)
    labels = run.read_labels()
    calibration = np.stack(
        [
            np.asarray(Image.open(p).convert("RGB").resize((32, 32)), np.float32)
            for p in sorted((data / "train").rglob("*.png"))[:16]
        ]
    )

    def convert(int8: bool) -> bytes:
        converter = tf.lite.TFLiteConverter.from_keras_model(model)
        if int8:
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
            converter.representative_dataset = lambda: ([x[None]] for x in calibration)
            converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
            converter.inference_input_type = tf.uint8
            converter.inference_output_type = tf.uint8
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return converter.convert()

    export = run.export_dir
    export.mkdir(parents=True)
    meta = build_metadata(labels, Preprocessing(size=(32, 32)))
    artifacts = []
    for name, precision, int8 in (("tflite-fp32", "fp32", False), ("tflite-int8", "int8", True)):
        path = export / f"{name}.tflite"
        path.write_bytes(embed_tflite_metadata(convert(int8), {**meta, "precision": precision}))
        artifacts.append(
            {
                "name": name,
                "path": path.name,
                "format": "tflite",
                "precision": precision,
                "size_bytes": path.stat().st_size,
                "sha256": "0" * 64,
                "status": "ok",
                "parity": {},
            }
        )
    artifacts.append(
        {
            "name": "onnx-fp32",
            "path": None,
            "format": "onnx",
            "precision": "fp32",
            "status": "failed",
            "error": "no tf2onnx",
        }
    )
    made_from = {"sha256": run.verify().model_sha256}  # an export of this run's model (bench checks it)
    (export / "manifest.json").write_text(json.dumps({"model": made_from, "artifacts": artifacts}))
    return {"run": run.root, "data": data, "base": base}


# ----------------------------------------------------------------------------- bench.json on the tiny run


def test_bench_json_schema(tiny_run, tmp_path):
    out = tmp_path / "out"
    result = _cli(
        "bench", str(tiny_run["run"]), "--data", str(tiny_run["data"]), "--out", str(out), *FAST, "bench.batch_size=3"
    )
    assert result.exit_code == 0, result.output
    assert "tflite-int8" in result.output and "p50 ms @1t" in result.output

    report = json.loads((out / "bench.json").read_text())
    for name in ("bench.md", "accuracy_vs_latency.png", "confusion_matrices.png"):
        assert (out / name).stat().st_size > 0
    with Image.open(out / "accuracy_vs_latency.png") as im:
        assert im.format == "PNG"
    assert not list(out.glob(".*partial*"))

    machine = report["machine"]
    for key, kind in {
        "cpu": str,
        "cores": int,
        "usable_cores": int,
        "os": str,
        "python": str,
        "libraries": dict,
    }.items():
        assert isinstance(machine[key], kind), key
    assert {"numpy", "ai-edge-litert", "onnxruntime", "tensorflow"} <= set(machine["libraries"])
    assert report["data"]["classes"] == ["blue", "red"] and report["data"]["images"] == 12
    assert report["data"]["path"].endswith("test")  # a dataset root: its test/ split is used
    assert report["settings"]["threads_used"] == [1] and report["settings"]["batch_size"] == 3
    from edge_export.benchmarks.testset import scan_test_folder, typical_image

    e2e_image = report["settings"]["e2e_image"]  # decode alone is timed on the photo of median size
    assert e2e_image == str(typical_image(scan_test_folder(tiny_run["data"]).files))
    assert report["settings"]["e2e_photos"] == 12  # predict(path) over a sample of the photos (all 12 here)
    assert "median over 12 test photos" in (out / "bench.md").read_text()
    assert [s["name"] for s in report["skipped"]] == ["onnx-fp32"]

    by_name = {a["name"]: a for a in report["artifacts"]}
    assert set(by_name) == {"keras", "tflite-fp32", "tflite-int8"}
    assert report["reference"] == "keras" and by_name["keras"]["format"] == "keras"
    for a in report["artifacts"]:
        assert a["status"] == "ok", a.get("error")
        assert isinstance(a["name"], str) and a["format"] in ("tflite", "keras")
        assert isinstance(a["precision"], str) and isinstance(a["size_bytes"], int) and a["size_bytes"] > 0
        assert isinstance(a["accuracy"], float) and 0 <= a["accuracy"] <= 1
        assert isinstance(a["top1_agreement"], float) and 0 <= a["top1_agreement"] <= 1
        assert a["threads"] == 1
        lat = a["latency_ms"]
        assert set(lat) >= {"p50", "p90", "p99", "mean", "std"} and all(
            isinstance(lat[k], float) for k in ("p50", "p90", "p99", "mean", "std")
        )
        assert 0 < lat["p50"] <= lat["p90"] <= lat["p99"]
        if a["format"] == "keras":  # the reference: its bare call only (the runtime's overhead is the artifacts')
            assert a["e2e_p50"] is None and a["overhead_pct"] is None
        else:
            assert isinstance(a["e2e_p50"], float) and a["e2e_p50"] > 0 and isinstance(a["overhead_pct"], float)
            e2e, opencv = a["e2e_ms"], a["opencv_ms"]  # per photo medians, then p50/p90 over the 12 photos
            assert e2e["photos"] == 12 and e2e["p50"] == a["e2e_p50"] and 0 < e2e["p50"] <= e2e["p90"]
            assert 0 < opencv["p50"] <= opencv["p90"] and a["e2e_vs_opencv"] == pytest.approx(
                e2e["p50"] / opencv["p50"]
            )
        assert a["decode_ms"]["p50"] > 0 and a["throughput"]["images_per_s"] > 0 and a["throughput"]["batch_size"] == 3
        assert isinstance(a["peak_rss_mb"], float) and a["peak_rss_mb"] > 0
        assert [c["label"] for c in a["per_class"]] == ["blue", "red"]
        assert sum(map(sum, a["confusion"]["matrix"])) == 12 and a["images"] == 12
        assert [e["threads"] for e in a["by_threads"]] == [1] and a["by_threads"][0]["latency_ms"] == lat
    assert by_name["keras"]["top1_agreement"] == 1.0
    # each model is measured in its own process: a LiteRT worker's peak is its own, not TensorFlow's
    assert by_name["tflite-int8"]["peak_rss_mb"] < by_name["keras"]["peak_rss_mb"] / 2
    assert by_name["tflite-int8"]["throughput"]["mode"] == "batch"  # converted from Keras: dynamic batch
    assert by_name["tflite-int8"]["input"]["dtype"] == "uint8"
    assert by_name["tflite-int8"]["size_bytes"] < by_name["tflite-fp32"]["size_bytes"]
    md = (out / "bench.md").read_text()
    assert "| tflite-int8 |" in md and "Per-class metrics" in md


def test_min_accuracy_fails_after_writing_outputs(tiny_run, tmp_path):
    # the same images under both class folders: every model is right on exactly half of them
    data = tmp_path / "dup"
    for cls in ("blue", "red"):
        shutil.copytree(tiny_run["data"] / "test" / "blue", data / cls)
    out = tmp_path / "out"
    result = _cli(
        "bench",
        str(tiny_run["run"]),
        "--data",
        str(data),
        "--out",
        str(out),
        "--no-keras",
        *FAST,
        "--min-accuracy",
        "0.75",
    )
    assert result.exit_code == 1, result.output
    assert "below --min-accuracy 75.00%" in result.output and "tflite-int8 (50.00%)" in result.output
    report = json.loads((out / "bench.json").read_text())
    assert report["ok"] is False and sorted(report["below_min_accuracy"]) == ["tflite-fp32", "tflite-int8"]
    from edge_export.core.records.bench import BenchResult

    gate = BenchResult.read(out / "bench.json").problems(0.75)  # what the build's gate says of the same bench.json
    assert sorted(p.split(":")[0] for p in gate) == ["tflite-fp32", "tflite-int8"]
    assert all(a["accuracy"] == 0.5 and a["top1_agreement"] is None for a in report["artifacts"])
    assert (out / "bench.md").is_file() and (out / "confusion_matrices.png").is_file()

    passing = _cli(
        "bench",
        str(tiny_run["run"]),
        "--data",
        str(data),
        "--out",
        str(out),
        "--no-keras",
        *FAST,
        "--min-accuracy",
        "0.5",
    )
    assert passing.exit_code == 0, passing.output


def test_class_missing_from_labels_is_an_error(tiny_run, tmp_path):
    from edge_export.benchmarks.suite import bench_run

    data = tmp_path / "data"
    shutil.copytree(tiny_run["data"] / "test" / "blue", data / "purple")
    with pytest.raises(EdgeExportError, match="'purple' are not among the model's labels"):
        bench_run(tiny_run["run"], data=data, out=tmp_path / "out", keras=False, echo=None)
    assert not (tmp_path / "out").exists()


def test_in_process_library_call_with_two_thread_counts(tiny_run, tmp_path):
    from edge_export.benchmarks.suite import bench_run

    model = tiny_run["run"] / "export" / "tflite-int8.tflite"
    config = BenchConfig(threads=[1, 2], runs=5, warmup=1, batch_size=2)
    lines: list[str] = []
    outcome = bench_run(
        models=[model],
        data=tiny_run["data"] / "test",
        config=config,
        out=tmp_path / "o",
        isolate=False,
        echo=lines.append,
    )
    assert outcome.ok and outcome.files["json"].is_file()
    (a,) = outcome.report["artifacts"]
    assert a["name"] == "tflite-int8" and a["precision"] == "int8" and a["source"] == "argument"
    assert [e["threads"] for e in a["by_threads"]] == [1, 2] and a["threads"] == 1
    assert a["latency_ms"] == a["by_threads"][0]["latency_ms"]
    assert any("tflite-int8" in line for line in lines)


# ----------------------------------------------------------------------------- metrics on a hand-made case


def test_typical_image_is_the_photo_of_median_size(tmp_path):
    from edge_export.benchmarks.testset import typical_image

    sizes = {"a.png": (150, 149), "b.png": (500, 400), "c.png": (450, 375), "d.png": (2000, 1500), "e.png": (10, 10)}
    for name, size in sizes.items():
        Image.new("RGB", size).save(tmp_path / name)
    files = [tmp_path / n for n in sorted(sizes)]
    assert typical_image(files).name == "c.png"  # 10x10 < 150x149 < 450x375 < 500x400 < 2000x1500
    assert typical_image(list(reversed(files))).name == "c.png"  # not the order given
    (tmp_path / "f.png").write_bytes(b"not an image")  # an unreadable header counts as 0 pixels
    assert typical_image(files + [tmp_path / "f.png"]).name == "a.png"
    with pytest.raises(EdgeExportError, match="no test images"):
        typical_image([])


def test_classification_metrics_match_a_direct_computation():
    classes = ["cat", "dog", "fox"]
    y_true = [0, 0, 0, 0, 1, 1, 1, 2, 2, 2]
    y_pred = [0, 0, 1, -1, 1, 1, 0, 2, 1, 2]  # -1: a label outside the test classes
    m = classification_metrics(y_true, y_pred, classes)

    assert m["accuracy"] == pytest.approx(6 / 10) and m["correct"] == 6 and m["images"] == 10
    expected_matrix = [
        [2, 1, 0, 1],  # cat: 2 right, 1 as dog, 1 as other
        [1, 2, 0, 0],
        [0, 1, 2, 0],
    ]
    assert m["confusion"]["matrix"] == expected_matrix
    assert m["confusion"]["columns"] == ["cat", "dog", "fox", "(other)"] and m["confusion"]["rows"] == classes
    for i, row in enumerate(m["per_class"]):
        tp = sum(1 for t, p in zip(y_true, y_pred) if t == i and p == i)
        predicted = sum(1 for p in y_pred if p == i)
        support = sum(1 for t in y_true if t == i)
        precision, recall = tp / predicted, tp / support
        assert row["precision"] == pytest.approx(precision) and row["recall"] == pytest.approx(recall)
        assert row["f1"] == pytest.approx(2 * precision * recall / (precision + recall))
        assert row["support"] == support and row["predicted"] == predicted
    assert m["per_class"][0]["precision"] == pytest.approx(2 / 3) and m["per_class"][0]["recall"] == pytest.approx(
        1 / 2
    )
    assert m["macro_f1"] == pytest.approx(np.mean([r["f1"] for r in m["per_class"]]))

    # a class never predicted: precision and F1 are 0, not NaN; no "(other)" column when nothing is outside
    m = classification_metrics([0, 1, 1], [1, 1, 1], ["a", "b"])
    assert m["per_class"][0] == {"label": "a", "precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1, "predicted": 0}
    assert m["confusion"]["matrix"] == [[0, 1], [0, 2]] and m["confusion"]["columns"] == ["a", "b"]
    assert confusion_matrix(np.array([0, 1]), np.array([-1, 1]), 2).tolist() == [[0, 0, 1], [0, 1, 0]]
    assert top1_agreement(["a", "b", "c", "d"], ["a", "x", "c", "d"]) == 0.75
    with pytest.raises(ValueError):
        classification_metrics([0, 1], [0], ["a", "b"])


# ----------------------------------------------------------------------------- latency


def test_latency_percentiles_are_ordered_and_positive():
    stats = summarize([5_000_000, 1_000_000, 2_000_000, 3_000_000, 4_000_000, 100_000_000])
    assert 0 < stats["p50"] <= stats["p90"] <= stats["p99"] <= stats["max"]
    assert stats["p50"] == pytest.approx(3.5) and stats["min"] == 1.0 and stats["runs"] == 6
    assert stats["mean"] == pytest.approx(np.mean([5, 1, 2, 3, 4, 100]))
    calls = []
    durations = time_calls(lambda: calls.append(sum(range(2000))), runs=20, warmup=3)
    assert len(durations) == 20 and len(calls) == 23 and all(d > 0 for d in durations)
    order: list[str] = []
    timed = time_interleaved(
        {"a": lambda: order.append("a"), "b": lambda: order.append("b")}, runs=5, warmup=1, block=2
    )
    assert {k: len(v) for k, v in timed.items()} == {"a": 5, "b": 5}
    assert "".join(order) == "ab" + "aabb" + "bbaa" + "ab"  # warm-up, then blocks of 2 in alternating order
    real = measure(lambda: np.linalg.svd(np.ones((40, 40))), runs=15, warmup=2)
    assert 0 < real["p50"] <= real["p90"] <= real["p99"] and real["std"] >= 0


# ----------------------------------------------------------------------------- the reference model as MODEL


def test_reference_model_as_model_argument(shared, tmp_path):
    reference = shared / "reference-models"
    model = reference / "mobilenet_v2_1.0_224_quant.tflite"
    if not model.is_file():
        pytest.skip("no reference model")
    data = tmp_path / "test"
    (data / "Egyptian cat").mkdir(parents=True)
    shutil.copy(reference / "cat.bmp", data / "Egyptian cat" / "cat.bmp")
    out = tmp_path / "out"
    result = _cli(
        "bench",
        str(model),
        "--labels",
        str(reference / "imagenet_labels.txt"),
        "--data",
        str(data),
        "--out",
        str(out),
        *FAST,
    )
    assert result.exit_code == 0, result.output
    (a,) = json.loads((out / "bench.json").read_text())["artifacts"]
    assert a["name"] == "mobilenet_v2_1.0_224_quant" and a["status"] == "ok"
    assert a["accuracy"] == 1.0 and a["per_class"][0]["recall"] == 1.0 and a["images"] == 1
    assert a["top1_agreement"] is None  # no Keras model for a bare model file
    assert a["size_bytes"] == model.stat().st_size and a["format"] == "tflite" and a["precision"] == "int8"
    assert a["throughput"]["mode"] == "sequential"  # the reference model's batch is fixed at 1
    assert 0 < a["latency_ms"]["p50"] <= a["latency_ms"]["p90"] <= a["latency_ms"]["p99"]
    # end to end (decode + resize + normalize + run) is measured; 5 runs on a shared machine are too few
    # to assert it is slower than the bare call, so only that it was timed
    assert (
        a["e2e_p50"] > 0
        and a["decode_ms"]["p50"] > 0
        and a["e2e_ms"]["photos"] == 1
        and a["e2e_ms"]["runs_per_photo"] == 5
    )


# ----------------------------------------------------------------------------- errors (exit 2, no traceback)


def test_missing_data_folder_and_missing_model_are_clear_errors(tmp_path, image_folder):
    model = tmp_path / "nope.tflite"
    proc = _main("bench", str(model), "--data", str(image_folder / "test"), "--out", str(tmp_path / "o"))
    assert proc.returncode == 2, proc.stderr
    assert "model file not found" in proc.stderr and str(model) in proc.stderr and "Traceback" not in proc.stderr

    missing = tmp_path / "no-such-data"
    broken = tmp_path / "m.tflite"
    broken.write_bytes(b"not a model")
    proc = _main("bench", str(broken), "--data", str(missing), "--out", str(tmp_path / "o"))
    assert proc.returncode == 2, proc.stderr
    assert (
        "test data folder not found" in proc.stderr and str(missing) in proc.stderr and "Traceback" not in proc.stderr
    )

    proc = _main("bench", str(broken), "--data", str(image_folder / "test"), "--out", str(tmp_path / "o"))
    assert proc.returncode == 2 and "not a TFLite model" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "o").exists()


def test_data_root_without_test_split_and_empty_run_folder_are_errors(tmp_path):
    from edge_export.benchmarks.testset import scan_test_folder

    root = write_image_folder(tmp_path / "d", {"train": 2, "validation": 1})
    with pytest.raises(EdgeExportError, match="no test/ split"):
        scan_test_folder(root)
    assert scan_test_folder(root / "train").class_names == ["blue", "red"]
    empty_run = tmp_path / "run"
    empty_run.mkdir()
    proc = _main("bench", str(empty_run), "--data", str(root / "train"), "--no-keras")
    assert proc.returncode == 2 and "export/manifest.json is missing" in proc.stderr and "Traceback" not in proc.stderr


# ----------------------------------------------------------------------------- compare_reference, imports


def test_compare_reference_times_the_models_over_photos_interleaved(tiny_run, shared, tmp_path):
    script = load_script("compare_reference")
    tf1 = shared / "reference-models" / "mobilenet_v2_1.0_224_quant.tflite"
    settings = {"input_size": 32, "alpha": 0.35, "classes": 10, "calibration": 2}  # a tiny modern reference
    reference = script.modern_reference(tmp_path / "cache", **settings)
    built = reference.stat().st_mtime_ns
    result = script.compare_reference(
        tiny_run["run"],
        tiny_run["data"],
        cache=tmp_path / "cache",
        reference_settings=settings,
        tf1_reference=tf1 if tf1.is_file() else False,
        every=2,
        repeats=2,
        warmup=1,
    )
    assert result["models"]["reference"]["path"] == str(reference) and reference.stat().st_mtime_ns == built  # cached
    assert result["artifact"] == "tflite-int8"  # no recommendation in this run: the default
    assert (
        len(result["photos"]) == 6
        and result["photos"]
        == [str(p) for p in sorted((tiny_run["data"] / "test").rglob("*.png"), key=lambda p: (p.parent.name, p.name))][
            ::2
        ]
    )
    names = ["tflite-int8", "reference"] + (["reference_tf1"] if tf1.is_file() else [])
    assert list(result["models"]) == names
    for m in result["models"].values():
        assert all(len(m["per_photo_ms"][kind]) == 6 for kind in script.KINDS)
        assert 0 < m["ms"]["bare"]["p50"] <= m["ms"]["bare"]["p90"] and m["ms"]["decode"]["p50"] > 0
        assert m["e2e_overhead_pct"]["p50"] <= m["e2e_overhead_pct"]["p90"]
        assert m["stream"]["bare_ms"] > 0 and m["stream"]["predict_paths_ms"] > 0
    ours, ref = result["models"]["tflite-int8"], result["models"]["reference"]
    assert ours["input"] == "32x32 uint8" and ref["input"] == "32x32 uint8" and "modern" in ref["label"]
    assert result["bare_ratio"] == pytest.approx(ours["ms"]["bare"]["p50"] / ref["ms"]["bare"]["p50"])
    text = script.render(result)
    assert "runtime overhead of tflite-int8 over the bare interpreter call (1 thread)" in text
    assert "modern reference:" in text and "over 6 photos (one in 2 of" in text
    assert "a stream of photos, predict(paths)" in text and "tflite-int8 " in text.split("a stream of photos")[1]
    for kind in ("opencv", "pillow"):  # the hand-written pipelines beside predict(path), on the same photos
        assert ours["e2e_vs"][kind]["p50"] == pytest.approx(ours["ms"]["e2e"]["p50"] / ours["ms"][kind]["p50"])
    assert "tflite-int8: predict(path) takes" in text and "the hand-written OpenCV pipeline's p50" in text
    with pytest.raises(EdgeExportError, match="no artifact 'onnx-int8'"):
        script.compare_reference(tiny_run["run"], tiny_run["data"], artifact="onnx-int8", reference=reference)


def test_decode_cost_splits_the_time_around_the_model(tiny_run, tmp_path):
    from edge_export.runtime.images import RESIZE_METHODS

    script = load_script("decode_cost")
    result = script.decode_cost(tiny_run["run"], tiny_run["data"], every=3, repeats=2)
    assert result["artifact"] == "tflite-int8" and len(result["photos"]) == 4
    expected = {
        "bare",
        "decode 1/1",
        "decode 1/2",
        "decode 1/4",
        "decode 1/8",
        "load_image",
        *(f"resize {m}" for m in RESIZE_METHODS),
    }
    assert set(result["ms"]) == expected and set(result["share_of_bare_pct"]) == expected - {"bare"}
    assert all(0 < v["p50"] <= v["p90"] for v in result["ms"].values())
    text = script.render(result)
    assert "decode 1/8" in text and "share of bare" in text and "thread CPU time" in text
    with pytest.raises(EdgeExportError, match="no artifact 'onnx-int8'"):
        script.decode_cost(tiny_run["run"], tiny_run["data"], artifact="onnx-int8")
    data = tmp_path / "test"
    shutil.copytree(tiny_run["data"] / "test", data)
    (data / "red" / "broken.png").write_bytes(b"not an image")  # left out with a note, not a traceback
    assert (
        str(data / "red" / "broken.png") not in script.decode_cost(tiny_run["run"], data, every=1, repeats=1)["photos"]
    )

    from click.testing import CliRunner  # the command line: the table and the JSON, or one error line and exit 2

    out = tmp_path / "cost.json"
    result = CliRunner().invoke(
        script.main, [str(tiny_run["run"]), "--data", str(data), "--repeats", "1", "--json", str(out)]
    )
    assert result.exit_code == 0 and "decode 1/8" in result.output and json.loads(out.read_text())["repeats"] == 1
    result = CliRunner().invoke(script.main, [str(tmp_path / "no-run"), "--data", str(data)])
    assert result.exit_code == 2 and result.output.startswith("error: ") and "Traceback" not in result.output


def test_benchmark_modules_do_not_import_tensorflow():
    code = (
        "import sys, edge_export.benchmarks.suite, edge_export.benchmarks.worker, "
        "edge_export.commands.bench; "
        "print(sorted(m for m in ('tensorflow', 'keras', 'matplotlib') if m in sys.modules))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and proc.stdout.strip() == "[]", proc.stderr


def _colour_onnx(path: Path) -> Path:
    """NHWC pixels -> mean R, G, B -> logits for red, green, blue, grey (with edge_export metadata)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from edge_export.export.metadata import build_metadata, embed_onnx_metadata
    from edge_export.runtime.preprocessing import Preprocessing

    weights = np.array([[8, -4, -4, 0], [-4, 8, -4, 0], [-4, -4, 8, 0]], np.float32)
    nodes = [
        helper.make_node("Transpose", ["pixels"], ["nchw"], perm=[0, 3, 1, 2]),
        helper.make_node("Mul", ["nchw", "scale"], ["scaled"]),
        helper.make_node("GlobalAveragePool", ["scaled"], ["pooled"]),
        helper.make_node("Flatten", ["pooled"], ["flat"], axis=1),
        helper.make_node("Gemm", ["flat", "W", "b"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["probabilities"], axis=-1),
    ]
    graph = helper.make_graph(
        nodes,
        "colour",
        [helper.make_tensor_value_info("pixels", TensorProto.FLOAT, ["batch", 16, 16, 3])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["batch", 4])],
        initializer=[
            numpy_helper.from_array(np.array(1 / 255.0, np.float32), "scale"),
            numpy_helper.from_array(weights, "W"),
            numpy_helper.from_array(np.zeros(4, np.float32), "b"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    embed_onnx_metadata(model, build_metadata(["red", "green", "blue", "grey"], Preprocessing(size=(16, 16))))
    onnx.save(model, str(path))
    return path


def test_onnx_model_argument_with_more_labels_than_test_classes(tmp_path, image_folder):
    pytest.importorskip("onnx")
    from edge_export.benchmarks.suite import bench_run

    model = _colour_onnx(tmp_path / "colour.onnx")
    config = BenchConfig(threads=[1], runs=5, warmup=1, batch_size=4)
    outcome = bench_run(models=[model], data=image_folder / "test", config=config, out=tmp_path / "o", echo=None)
    (a,) = outcome.report["artifacts"]
    assert a["status"] == "ok", a.get("error")
    assert a["format"] == "onnx" and a["precision"] == "float" and a["backend"] == "onnxruntime"
    assert a["accuracy"] == 1.0 and a["throughput"]["mode"] == "batch" and a["threads"] == 1
    assert a["confusion"]["columns"] == ["blue", "red"]  # nothing predicted outside the test classes
    assert a["peak_rss_mb"] > 0 and a["memory"]["scope"] == "process"


def test_a_model_that_fails_while_measured_is_recorded_and_the_rest_go_on(tmp_path, image_folder, monkeypatch):
    pytest.importorskip("onnx")
    import edge_export.benchmarks.measure as measure_module
    from edge_export.benchmarks.suite import bench_run

    good = _colour_onnx(tmp_path / "good.onnx")
    bad = _colour_onnx(tmp_path / "bad.onnx")
    real = measure_module.measure_model

    def flaky(request):
        if request["path"].endswith("bad.onnx"):
            raise RuntimeError("interpreter crashed")
        return real(request)

    monkeypatch.setattr(measure_module, "measure_model", flaky)
    config = BenchConfig(threads=[1], runs=5, warmup=0, batch_size=2)
    outcome = bench_run(
        models=[good, bad], data=image_folder / "test", config=config, out=tmp_path / "o", isolate=False, echo=None
    )
    assert outcome.failed == ["bad"] and not outcome.ok
    by_name = {a["name"]: a for a in outcome.report["artifacts"]}
    assert by_name["good"]["status"] == "ok" and by_name["bad"]["status"] == "failed"
    assert "interpreter crashed" in by_name["bad"]["error"] and by_name["bad"]["latency_ms"] is None
    assert "FAILED bad: RuntimeError: interpreter crashed" in outcome.table
    assert json.loads(outcome.files["json"].read_text())["failed"] == ["bad"]


def test_provider_reaches_onnx_models_only_and_a_bad_one_fails_first(tiny_export, tmp_path, monkeypatch):
    """`bench --provider` as `predict --provider`: checked before any work, passed to ONNX models only."""
    from edge_export.benchmarks.suite import bench_run
    from edge_export.runtime.classifier import Classifier

    export = tiny_export["run"] / "export"
    models = [export / "onnx-fp32.onnx", export / "tflite-int8.tflite"]
    seen: dict[str, object] = {}
    real_load = Classifier.load.__func__

    def recording_load(cls, path, *args, **kwargs):
        seen[Path(path).suffix] = kwargs.get("providers")
        return real_load(cls, path, *args, **kwargs)

    monkeypatch.setattr(Classifier, "load", classmethod(recording_load))
    config = BenchConfig(threads=[1], runs=5, warmup=1, batch_size=2)
    outcome = bench_run(
        models=models,
        data=tiny_export["data"] / "test",
        config=config,
        out=tmp_path / "o",
        isolate=False,
        echo=None,
        providers=["cpu"],
    )
    assert outcome.ok
    assert seen == {".onnx": ["cpu"], ".tflite": None}

    out = tmp_path / "bad"
    proc = _main(
        "bench", str(models[0]), "--data", str(tiny_export["data"] / "test"), "--out", str(out), "--provider", "nope"
    )
    assert proc.returncode == 2 and "--provider" in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    assert not out.exists()
