"""Benchmark a run's exported artifacts (and/or model files) on a test folder: ``bench_run``.

Order of work: check everything that can be wrong with the inputs (run folder, manifest, model files,
labels, class names, test images) and raise ``EdgeExportError`` before measuring anything; decode the
test images once per input size; measure each model (by default in its own process, so its peak memory
is its own); then compute accuracy and agreement here and write ``bench.json``, ``bench.md`` and the
plots. A model that fails while being measured is recorded as failed; the others go on.
"""

from __future__ import annotations

import importlib.util
import json
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from edge_export.core.atomic import write_json, write_text
from edge_export.benchmarks.classification import classification_metrics, top1_agreement
from edge_export.benchmarks.machine import machine_info, resolve_threads
from edge_export.benchmarks.plots import plot_accuracy_latency, plot_confusions
from edge_export.benchmarks.report import build_report, render_markdown, render_table
from edge_export.benchmarks.targets import LOCAL
from edge_export.benchmarks.testset import TestSet, decode_all, map_classes, save_pixels, scan_test_folder
from edge_export.benchmarks.worker import measure_safely, run_worker
from edge_export.core.config import BenchConfig
from edge_export.core.hashing import sha256_file
from edge_export.core.errors import EdgeExportError
from edge_export.export.manifest import check_made_from, read_manifest
from edge_export.core.pause import pause_point
from edge_export.core.run_folder import RunFolder
from edge_export.runtime.backends import SUFFIXES
from edge_export.runtime.preprocessing import Preprocessing
from edge_export.core.untrusted import printable

Echo = Callable[[str], None]

BENCH_JSON, BENCH_MD = "bench.json", "bench.md"
PLOT_ACCURACY, PLOT_CONFUSION = "accuracy_vs_latency.png", "confusion_matrices.png"
MANIFEST = "manifest.json"
FAMILY = {".tflite": "tflite", ".onnx": "onnx"}


@dataclass
class Target:
    """One model to measure."""

    name: str
    kind: str  # "model" | "keras"
    format: str  # tflite | onnx | keras
    precision: str | None
    path: Path
    labels: list[str]  # the model's labels (output order)
    labels_arg: list[str] | None  # passed to the measuring Classifier (None: its metadata)
    preprocessing: Preprocessing
    mapping: list[int]  # test class index -> model label index
    source: str  # "manifest" | "argument" | "run"

    @property
    def size_bytes(self) -> int:
        return self.path.stat().st_size


@dataclass
class BenchOutcome:
    report: dict[str, Any]
    out_dir: Path
    files: dict[str, Path] = field(default_factory=dict)
    table: str = ""

    @property
    def failed(self) -> list[str]:
        return self.report["failed"]

    @property
    def below_min_accuracy(self) -> list[str]:
        return self.report["below_min_accuracy"]

    @property
    def ok(self) -> bool:
        return self.report["ok"]


def bench_run(
    run: RunFolder | str | Path | None = None,
    *,
    data: str | Path,
    models: Sequence[str | Path] = (),
    config: BenchConfig | None = None,
    out: str | Path | None = None,
    labels: str | Path | None = None,
    keras: bool | None = None,
    isolate: bool = True,
    echo: Echo | None = print,
    max_image_pixels: int | None = None,
) -> BenchOutcome:
    """Measure a run folder's exported artifacts (manifest status ok) and/or ``models`` on ``data``.

    ``keras``: None measures the run's model.keras when TensorFlow is installed; True requires it.
    ``max_image_pixels`` (the setting data.max_image_pixels; None: the default) refuses larger test images
    like unreadable ones. ``labels`` (a labels.txt) overrides every model's own labels. ``out`` defaults to ``RUN_DIR/bench``,
    or ``./bench`` when only model files are given. ``isolate`` measures each model in a fresh process.
    Returns the outcome (``outcome.ok`` is False when a model failed or is below ``config.min_accuracy``);
    raises EdgeExportError, before measuring anything, when an input cannot be used.
    """
    started = time.perf_counter()
    echo = echo or (lambda line: None)
    config = config or BenchConfig()
    config.validate()
    run = RunFolder(run) if run is not None and not isinstance(run, RunFolder) else run
    if run is None and not models:
        raise EdgeExportError("nothing to benchmark", hint="pass a run folder (with an export) or model files")
    models = [Path(m) for m in models]
    for model in models:
        _check_model_file(model)
    if run is not None and not run.root.is_dir():
        raise EdgeExportError("run folder not found", path=run.root, hint="pass a run folder or model files")
    testset = scan_test_folder(data, max_image_pixels)
    labels_arg = _read_labels(labels) if labels is not None else None

    targets: list[Target] = []
    skipped: list[dict[str, Any]] = []
    if run is not None:
        run_labels = run.read_labels() if run.labels.is_file() else None
        manifest_targets, skipped = _manifest_targets(run, testset, labels_arg, run_labels)
        targets += manifest_targets
    for model in models:
        targets.append(_model_target(model, _unique(model.stem, targets), testset, labels_arg, None, "argument", None, None))
    keras_target = _keras_target(run, keras, testset, targets)
    if keras_target is not None:
        targets.insert(0, keras_target)
    if not targets:
        raise EdgeExportError(
            "no artifact to benchmark: every artifact in the manifest failed to export",
            path=run.export_dir / MANIFEST if run else None,
            hint="fix the export (see its manifest) or pass model files",
        )
    out_dir = Path(out) if out is not None else (run.bench_dir if run is not None else Path("bench"))
    thread_pairs = resolve_threads(list(config.threads))

    # in RUN/.tmp when the command holds the run folder (run_lock), where a killed benchmark's leftovers are cleaned
    with tempfile.TemporaryDirectory(prefix="edge-export-bench-") as tmp:
        workdir = Path(tmp)
        pixel_files = _decode_groups(targets, testset, workdir, echo)
        echo(f"test data: {testset.root} ({len(testset.files)} images, classes {', '.join(printable(c, 60) for c in testset.class_names)})")
        records = []
        for i, target in enumerate(targets, 1):
            echo(f"[{i}/{len(targets)}] measuring {target.name} ({target.path.name})")
            key = (tuple(target.preprocessing.size), target.preprocessing.resize)
            request = {
                "kind": target.kind,
                "path": str(target.path),
                "labels": target.labels_arg,
                "preprocessing": target.preprocessing.to_dict(),
                "pixels": str(pixel_files[key]),
                "image": str(testset.files[0]),
                "max_pixels": testset.max_pixels,
                "threads": [list(p) for p in thread_pairs],
                "warmup": config.warmup,
                "runs": config.runs,
                "batch_size": config.batch_size,
                "accuracy": True,
            }
            result = _measure(request, target, workdir, isolate, i)
            records.append(_record(target, result, testset, config))
            pause_point(f"bench.measured.{target.name}")  # tests: kill or resume mid-benchmark here
    _add_agreement(records, targets)

    report = build_report(
        artifacts=records,
        skipped=skipped,
        data=testset.summary(),
        settings={
            "threads": list(config.threads),
            "threads_used": [used for _, used in thread_pairs],
            "warmup": config.warmup,
            "runs": config.runs,
            "batch_size": config.batch_size,
            "min_accuracy": config.min_accuracy,
            "isolated": isolate,
            "labels": str(labels) if labels is not None else None,
        },
        machine=machine_info(),
        run_dir=str(run.root) if run is not None else None,
        seconds=time.perf_counter() - started,
    )
    return write_outputs(report, out_dir, echo)


# ----------------------------------------------------------------------------- targets


def _check_model_file(path: Path) -> None:
    if not path.exists():
        raise EdgeExportError("model file not found", path=path, hint="check the path (a .tflite or .onnx file, or a run folder)")
    if path.suffix.lower() not in SUFFIXES:
        raise EdgeExportError(
            f"not a model file: unknown suffix {path.suffix or '(none)'!r}", path=path, hint="pass .tflite or .onnx files or a run folder"
        )


def _read_labels(path: str | Path) -> list[str]:
    from edge_export.runtime.classifier import read_labels

    return read_labels(path)


def _manifest_targets(
    run: RunFolder, testset: TestSet, labels_arg: list[str] | None, run_labels: list[str] | None
) -> tuple[list[Target], list[dict[str, Any]]]:
    targets: list[Target] = []
    skipped: list[dict[str, Any]] = []
    entries = read_manifest(run, hint="run `edge-export export` on it first, or pass model files")
    # one train's model, labels and spec (run.json), and an export of that model.keras: else a clear error
    check_made_from(run, run.verify())
    for entry in entries:
        name = str(entry.get("name") or entry.get("path") or "?")
        if entry.get("status") != "ok":
            skipped.append({"name": name, "reason": f"export status {entry.get('status')!r}: {entry.get('error', '')}".rstrip(": ")})
            continue
        if not entry.get("path"):
            raise EdgeExportError(f"manifest entry {name!r} has no path", path=run.export_dir / MANIFEST)
        path = run.export_dir / entry["path"]
        if not path.is_file():
            raise EdgeExportError(
                f"artifact {name!r} is listed in the manifest but its file is missing",
                path=path,
                hint="re-run `edge-export export`",
            )
        targets.append(
            _model_target(path, _unique(name, targets), testset, labels_arg, run_labels, "manifest", entry.get("format"), entry.get("precision"))
        )
    return targets, skipped


def _model_target(
    path: Path,
    name: str,
    testset: TestSet,
    labels_arg: list[str] | None,
    fallback_labels: list[str] | None,
    source: str,
    family: str | None,
    precision: str | None,
) -> Target:
    """Open the model once here: its labels, input size and class mapping are checked before measuring."""
    from edge_export.runtime.classifier import Classifier

    passed = labels_arg
    clf = Classifier.load(path, labels=passed, threads=1)
    meta = clf.metadata or {}
    if passed is None and not meta.get("labels"):
        if fallback_labels is None:
            raise EdgeExportError(
                "the model has no labels of its own (no edge_export metadata)",
                path=path,
                hint="pass its labels file with --labels FILE",
            )
        passed = fallback_labels
        clf = Classifier.load(path, labels=passed, threads=1)
    mapping = map_classes(testset.class_names, clf.labels, path)
    if precision is None:
        precision = meta.get("precision") or ("int8" if clf.backend.input_spec.is_integer else "float")
    target = Target(
        name=name,
        kind="model",
        format=family or FAMILY[path.suffix.lower()],
        precision=precision,
        path=path,
        labels=clf.labels,
        labels_arg=passed,
        preprocessing=clf.preprocessing,
        mapping=mapping,
        source=source,
    )
    del clf
    return target


def _keras_target(run: RunFolder | None, want: bool | None, testset: TestSet, targets: list[Target]) -> Target | None:
    if want is False:
        return None
    if run is None:
        if want:
            raise EdgeExportError("--keras needs a run folder (its model.keras is the reference)", hint="pass RUN_DIR")
        return None
    if importlib.util.find_spec("tensorflow") is None:
        if want:
            raise EdgeExportError("measuring the Keras model needs TensorFlow", hint="pip install 'edge-export[train]', or pass --no-keras")
        return None
    if not run.model.is_file():
        if want:
            run.require_model()
        return None
    labels = run.read_labels()
    preprocessing = _keras_preprocessing(run, targets)
    if preprocessing is None:
        if want:
            raise EdgeExportError("cannot tell the Keras model's input size (no model_spec.json)", path=run.model_spec)
        return None
    return Target(
        name="keras",
        kind="keras",
        format="keras",
        precision="fp32",
        path=run.model,
        labels=labels,
        labels_arg=None,
        preprocessing=preprocessing,
        mapping=map_classes(testset.class_names, labels, run.labels),
        source="run",
    )


def _keras_preprocessing(run: RunFolder, targets: list[Target]) -> Preprocessing | None:
    try:
        spec = json.loads(run.model_spec.read_text())
        if spec.get("preprocessing"):
            return Preprocessing.from_dict(spec["preprocessing"])
        return Preprocessing(size=(int(spec["image_size"]), int(spec["image_size"])))
    except (OSError, ValueError, KeyError, TypeError, EdgeExportError):
        pass
    manifest_targets = [t for t in targets if t.source == "manifest"]
    return manifest_targets[0].preprocessing if manifest_targets else None


def _unique(name: str, targets: list[Target]) -> str:
    taken = {t.name for t in targets}
    candidate, i = name, 2
    while candidate in taken:
        candidate, i = f"{name}-{i}", i + 1
    return candidate


# ----------------------------------------------------------------------------- measuring


def _decode_groups(targets: list[Target], testset: TestSet, workdir: Path, echo: Echo) -> dict[tuple, Path]:
    """Decode the test images once per (input size, resize method); unreadable files are dropped for all."""
    keys = list(dict.fromkeys((tuple(t.preprocessing.size), t.preprocessing.resize) for t in targets))
    files: dict[tuple, Path] = {}
    for i, (size, method) in enumerate(keys):
        started = time.perf_counter()
        pixels, bad = decode_all(testset.files, size, method, testset.max_pixels)
        if bad:
            testset.drop(bad)
            if i > 0:  # cannot happen (decoding does not depend on the size), but keep groups aligned
                raise EdgeExportError("test images became unreadable while benchmarking", path=bad[0])
        files[(size, method)] = save_pixels(workdir / f"pixels-{size[0]}x{size[1]}-{method}.npy", pixels)
        echo(f"decoded {len(pixels)} test images at {size[0]}x{size[1]} in {time.perf_counter() - started:.1f}s")
    return files


def _measure(request: dict[str, Any], target: Target, workdir: Path, isolate: bool, index: int) -> dict[str, Any]:
    if not isolate:
        return measure_safely(request)
    if target.kind != "keras" or len(request["threads"]) == 1:
        return run_worker(request, workdir, f"{index}-{target.name}")
    # TensorFlow fixes its thread pools at start-up: one process per thread count, accuracy in the one
    # with the most threads (predictions do not depend on threads)
    merged: dict[str, Any] | None = None
    most = max(range(len(request["threads"])), key=lambda j: request["threads"][j][1])
    for j, pair in enumerate(request["threads"]):
        part = run_worker({**request, "threads": [pair], "accuracy": j == most}, workdir, f"{index}-{target.name}-{j}")
        if "error" in part:
            return part
        if merged is None:
            merged = part
        else:
            merged["predictions"] = merged.get("predictions") or part.get("predictions")
            merged["by_threads"] += part["by_threads"]
            merged["seconds"] = round(merged["seconds"] + part["seconds"], 2)
            for key, value in part["memory"].items():
                if isinstance(value, (int, float)):
                    merged["memory"][key] = max(merged["memory"].get(key, 0), value)
    return merged or {"error": "nothing measured"}


def _record(target: Target, result: dict[str, Any], testset: TestSet, config: BenchConfig) -> dict[str, Any]:
    base = {
        "name": target.name,
        "target": LOCAL,
        "format": target.format,
        "precision": target.precision,
        "path": str(target.path),
        "source": target.source,
        "size_bytes": target.size_bytes,
        "sha256": sha256_file(target.path),  # what was measured: a later export or train makes this row stale
    }
    predictions = result.get("predictions")
    if "error" not in result and (predictions is None or len(predictions) != len(testset.files)):
        result = {"error": f"got {0 if predictions is None else len(predictions)} predictions for {len(testset.files)} images"}
    if "error" in result:
        return {
            **base, "status": "failed", "error": result["error"], "accuracy": None, "top1_agreement": None,
            "threads": None, "latency_ms": None, "below_min_accuracy": False,
        }
    inverse = {model_index: test_index for test_index, model_index in enumerate(target.mapping)}
    y_pred = [inverse.get(int(p), -1) for p in predictions]
    metrics = classification_metrics(testset.labels, y_pred, testset.class_names)
    first = result["by_threads"][0]
    p50 = first["latency_ms"]["p50"]
    accuracy = metrics["accuracy"]
    below = config.min_accuracy is not None and target.kind != "keras" and accuracy < config.min_accuracy
    return {
        **base,
        "status": "ok",
        "accuracy": accuracy,
        "top1_agreement": None,
        "threads": first["threads"],
        "latency_ms": first["latency_ms"],
        "fps": 1000.0 / p50 if p50 > 0 else None,
        "e2e_p50": first["e2e_p50"],
        "overhead_pct": first["overhead_pct"],
        "e2e_overhead_pct": first["e2e_overhead_pct"],
        "predict_proba_ms": first["predict_proba_ms"],
        "e2e_ms": first["e2e_ms"],
        "decode_ms": result["decode_ms"],
        "throughput_ips": first["throughput"]["images_per_s"],
        "throughput": first["throughput"],
        "peak_rss_mb": result["memory"].get("peak_rss_mb"),
        "memory": result["memory"],
        "backend": result.get("backend"),
        "input": result.get("input"),
        "dynamic_batch": result.get("dynamic_batch"),
        "images": metrics["images"],
        "correct": metrics["correct"],
        "macro_f1": metrics["macro_f1"],
        "macro_precision": metrics["macro_precision"],
        "macro_recall": metrics["macro_recall"],
        "per_class": metrics["per_class"],
        "confusion": metrics["confusion"],
        "by_threads": result["by_threads"],
        "below_min_accuracy": below,
        "seconds": result.get("seconds"),
        "predicted_labels": [target.labels[int(p)] if 0 <= int(p) < len(target.labels) else str(p) for p in predictions],
    }


def _add_agreement(records: list[dict[str, Any]], targets: list[Target]) -> None:
    """Top-1 agreement with the Keras model (by label name), when it was measured; drops the predictions."""
    reference = next((r for r, t in zip(records, targets) if t.kind == "keras" and r["status"] == "ok"), None)
    for record in records:
        if reference is not None and record["status"] == "ok":
            record["top1_agreement"] = top1_agreement(record["predicted_labels"], reference["predicted_labels"])
    for record in records:
        record.pop("predicted_labels", None)


# ----------------------------------------------------------------------------- outputs


def write_outputs(report: dict[str, Any], out_dir: Path, echo: Echo | None = print) -> BenchOutcome:
    """bench.md, plots (when matplotlib is installed: a device may not have it) and bench.json, last."""
    echo = echo or (lambda line: None)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    files: dict[str, Path] = {}
    plots: dict[str, str] = {}
    try:
        files["accuracy_vs_latency"] = plot_accuracy_latency(report, out_dir / PLOT_ACCURACY)
        files["confusion_matrices"] = plot_confusions(report, out_dir / PLOT_CONFUSION)
        plots = {"accuracy vs latency": PLOT_ACCURACY, "confusion matrices": PLOT_CONFUSION}
    except ModuleNotFoundError as exc:
        if (exc.name or "").split(".")[0] != "matplotlib":
            raise
    files["md"] = write_text(out_dir / BENCH_MD, render_markdown(report, plots))
    files["json"] = write_json(out_dir / BENCH_JSON, report)  # last: its presence means a finished benchmark
    table = render_table(report)
    echo(table)
    extra = " and plots" if plots else " (no plots: matplotlib is not installed)"
    echo(f"wrote {files['json']}, {files['md']}{extra} in {out_dir}")
    return BenchOutcome(report=report, out_dir=out_dir, files=files, table=table)
