"""Benchmark a run's exported artifacts (and/or model files) on a test folder: ``bench_run``.

Order of work: check everything that can be wrong with the inputs (run folder, manifest, model files,
labels, class names, test images) and raise ``EdgeExportError`` before measuring anything; decode the
test images once per input size; measure each model (by default in its own process, so its peak memory
is its own); then compute accuracy and agreement here and write ``bench.json``, ``bench.md`` and the
plots. A model that fails while being measured is recorded as failed; the others go on.
"""

from __future__ import annotations

import importlib.util
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edge_export.benchmarks import robustness
from edge_export.benchmarks.classification import classification_metrics, top1_agreement
from edge_export.benchmarks.hand_written import sample
from edge_export.benchmarks.machine import machine_info, resolve_threads
from edge_export.benchmarks.plots import plot_accuracy_latency, plot_confusions
from edge_export.benchmarks.render import build_report, render_markdown, render_table
from edge_export.benchmarks.testset import (
    TestSet,
    decode_all,
    map_classes,
    recorded_split,
    save_pixels,
    scan_test_folder,
)
from edge_export.benchmarks.worker import measure_safely, run_worker
from edge_export.core.atomic import write_json, write_text
from edge_export.core.config import BenchConfig
from edge_export.core.echo import Echo  # noqa: E402  (the one Echo type)
from edge_export.core.errors import EdgeExportError
from edge_export.core.hashing import sha256_file
from edge_export.core.pause import pause_point
from edge_export.core.records.bench import KERAS, SOURCE, BenchResult, BenchRow
from edge_export.core.records.model_spec import ModelSpec
from edge_export.core.run_folder import BenchFiles, RunFolder
from edge_export.core.untrusted import printable
from edge_export.export.manifest import check_made_from, read_manifest
from edge_export.runtime.backends import FAMILIES, SUFFIXES
from edge_export.runtime.classifier import Classifier, read_labels
from edge_export.runtime.preprocessing import Preprocessing


@dataclass
class BenchModel:
    """One model to measure (an exported artifact, a model file, or the run's model.keras)."""

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
    result: BenchResult
    out_dir: Path
    files: dict[str, Path] = field(default_factory=dict)
    table: str = ""

    @property
    def report(self) -> dict[str, Any]:
        """bench.json's content (``result.to_dict()``)."""
        return self.result.to_dict()

    @property
    def failed(self) -> list[str]:
        return self.result.failed

    @property
    def below_min_accuracy(self) -> list[str]:
        return self.result.below_min_accuracy

    @property
    def ok(self) -> bool:
        return self.result.ok


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
    providers: Sequence[str] | None = None,
) -> BenchOutcome:
    """Measure a run folder's exported artifacts (manifest status ok) and/or ``models`` on ``data``.

    ``keras``: None measures the run's model.keras when TensorFlow is installed; True requires it.
    ``max_image_pixels`` (the setting data.max_image_pixels; None: the default) refuses larger test images
    like unreadable ones. ``providers``: ONNX Runtime execution providers for .onnx models (TFLite models
    ignore them). ``labels`` (a labels.txt) overrides every model's own labels. ``out`` defaults to ``RUN_DIR/bench``,
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
    model_files = [Path(m) for m in models]
    for model_file in model_files:
        _check_model_file(model_file)
    if run is not None and not run.root.is_dir():
        raise EdgeExportError("run folder not found", path=run.root, hint="pass a run folder or model files")
    recorded = recorded_split(run.dataset, data, max_image_pixels) if run is not None else None
    testset = recorded or scan_test_folder(data, max_image_pixels)
    labels_arg = _read_labels(labels) if labels is not None else None

    to_measure: list[BenchModel] = []
    skipped: list[dict[str, Any]] = []
    if run is not None:
        run_labels = run.read_labels() if run.labels.is_file() else None
        manifest_models, skipped = _manifest_models(run, testset, labels_arg, run_labels)
        to_measure += manifest_models
    for model_file in model_files:
        to_measure.append(
            _file_model(
                model_file, _unique(model_file.stem, to_measure), testset, labels_arg, None, "argument", None, None
            )
        )
    keras_model = _keras_model(run, keras, testset, to_measure)
    if keras_model is not None:
        to_measure.insert(0, keras_model)
    if not to_measure:
        raise EdgeExportError(
            "no artifact to benchmark: every artifact in the manifest failed to export",
            path=run.export_manifest if run else None,
            hint="fix the export (see its manifest) or pass model files",
        )
    out_dir = Path(out) if out is not None else (run.bench_dir if run is not None else Path("bench"))
    thread_pairs = resolve_threads(list(config.threads))

    # in RUN/.tmp when the command holds the run folder (run_lock), where a killed benchmark's leftovers are cleaned
    with tempfile.TemporaryDirectory(prefix="edge-export-bench-") as tmp:
        workdir = Path(tmp)
        pixel_files = _decode_groups(to_measure, testset, workdir, echo)
        robust_files = _shift_groups(pixel_files, testset, workdir, echo) if config.robustness else {}
        echo(
            f"test data: {testset.root} ({len(testset.files)} images, "
            f"classes {', '.join(printable(c, 60) for c in testset.class_names)})"
        )
        e2e_image = testset.typical_image()
        e2e_images = sample(testset.files)  # predict(path) is timed over these (bench.md: e2e)
        rows: list[BenchRow] = []
        predicted: list[list[str] | None] = []
        measuring_started = time.perf_counter()
        for i, model in enumerate(to_measure, 1):
            echo(
                f"[{i}/{len(to_measure)}] measuring {model.name} ({model.path.name})"
                + _progress_times(started, measuring_started, i - 1, len(to_measure))
            )
            model_started = time.perf_counter()
            key = (tuple(model.preprocessing.size), model.preprocessing.pixel_method)
            request = {
                "kind": model.kind,
                "path": str(model.path),
                "labels": model.labels_arg,
                "preprocessing": model.preprocessing.to_dict(),
                "pixels": str(pixel_files[key]),
                "robust_pixels": str(robust_files[key]) if key in robust_files else None,
                "image": str(e2e_image),
                "e2e_images": e2e_images,
                "max_pixels": testset.max_pixels,
                "providers": list(providers) if providers and model.path.suffix.lower() == ".onnx" else None,
                "threads": [list(p) for p in thread_pairs],
                "warmup": config.warmup,
                "runs": config.runs,
                "batch_size": config.batch_size,
                "accuracy": True,
            }
            result = _measure(request, model, workdir, isolate, i)
            row, labels_predicted = _record(model, result, testset, config)
            rows.append(row)
            predicted.append(labels_predicted)
            echo(
                f"[{i}/{len(to_measure)}] {model.name}: {_row_summary(row)} "
                f"in {_duration(time.perf_counter() - model_started)}"
                + _progress_times(started, measuring_started, i, len(to_measure))
            )
            pause_point(f"bench.measured.{model.name}")  # tests: kill or resume mid-benchmark here
    _add_agreement(rows, predicted)

    report = build_report(
        rows=rows,
        skipped=skipped,
        data=testset.summary(),
        settings={
            "threads": list(config.threads),
            "threads_used": [used for _, used in thread_pairs],
            "warmup": config.warmup,
            "runs": config.runs,
            "batch_size": config.batch_size,
            "e2e_image": str(e2e_image),
            "e2e_photos": len(e2e_images),
            "min_accuracy": config.min_accuracy,
            "isolated": isolate,
            "labels": str(labels) if labels is not None else None,
            "robustness": robustness.describe() if config.robustness else None,
            "misclassified": config.misclassified,
        },
        machine=machine_info(),
        run_dir=str(run.root) if run is not None else None,
        seconds=time.perf_counter() - started,
    )
    return write_outputs(report, out_dir, echo)


# ----------------------------------------------------------------------------- models to measure


def _check_model_file(path: Path) -> None:
    if not path.exists():
        raise EdgeExportError(
            "model file not found", path=path, hint="check the path (a .tflite or .onnx file, or a run folder)"
        )
    if path.suffix.lower() not in SUFFIXES:
        raise EdgeExportError(
            f"not a model file: unknown suffix {path.suffix or '(none)'!r}",
            path=path,
            hint="pass .tflite or .onnx files or a run folder",
        )


def _read_labels(path: str | Path) -> list[str]:
    return read_labels(path)


def _manifest_models(
    run: RunFolder, testset: TestSet, labels_arg: list[str] | None, run_labels: list[str] | None
) -> tuple[list[BenchModel], list[dict[str, Any]]]:
    to_measure: list[BenchModel] = []
    skipped: list[dict[str, Any]] = []
    if not run.export_manifest.is_file() and run.reference_model.is_file() and _imported(run):
        return to_measure, skipped  # a user's model not exported yet (bench FILE.keras): its Keras row only
    manifest = read_manifest(run, hint="run `edge-export export` on it first, or pass model files")
    # one train's model, labels and spec (run.json), and an export of that model.keras: else a clear error
    check_made_from(run, run.verify(), manifest)
    for entry in manifest.artifacts:
        name = entry.name
        if not entry.ok:
            skipped.append(
                {"name": name, "reason": f"export status {entry.status!r}: {entry.error or ''}".rstrip(": ")}
            )
            continue
        if not entry.path:
            raise EdgeExportError(f"manifest entry {name!r} has no path", path=run.export_manifest)
        path = run.export_dir / entry.path
        if not path.is_file():
            raise EdgeExportError(
                f"artifact {name!r} is listed in the manifest but its file is missing",
                path=path,
                hint="re-run `edge-export export`",
            )
        to_measure.append(
            _file_model(
                path,
                _unique(name, to_measure),
                testset,
                labels_arg,
                run_labels,
                "manifest",
                entry.format,
                entry.precision,
            )
        )
    return to_measure, skipped


def _imported(run: RunFolder) -> bool:
    try:
        return ModelSpec.read(run.model_spec).imported
    except EdgeExportError:
        return False


def _file_model(
    path: Path,
    name: str,
    testset: TestSet,
    labels_arg: list[str] | None,
    fallback_labels: list[str] | None,
    source: str,
    family: str | None,
    precision: str | None,
) -> BenchModel:
    """Open the model once here: its labels, input size and class mapping are checked before measuring."""
    passed = labels_arg
    clf = Classifier.load(path, labels=passed, threads=1)
    meta = clf.model_metadata
    if passed is None and not (meta is not None and meta.labels):
        if fallback_labels is None:
            raise EdgeExportError(
                "the model has no labels of its own (no edge_export metadata)",
                path=path,
                hint="pass its labels file with --labels FILE",
            )
        passed = fallback_labels
        clf = Classifier.load(path, labels=passed, threads=1)
    labels = clf.labels
    assert labels is not None  # passed, or the model's own (checked above)
    mapping = map_classes(testset.class_names, labels, path)
    if precision is None:
        precision = (meta.precision if meta is not None else None) or (
            "int8" if clf.backend.input_spec.is_integer else "float"
        )
    model = BenchModel(
        name=name,
        kind="model",
        format=family or FAMILIES[path.suffix.lower()],
        precision=precision,
        path=path,
        labels=labels,
        labels_arg=passed,
        preprocessing=clf.preprocessing,
        mapping=mapping,
        source=source,
    )
    del clf
    return model


def _keras_model(
    run: RunFolder | None, want: bool | None, testset: TestSet, to_measure: list[BenchModel]
) -> BenchModel | None:
    if want is False:
        return None
    if run is None:
        if want:
            raise EdgeExportError("--keras needs a run folder (its model.keras is the reference)", hint="pass RUN_DIR")
        return None
    if not run.model.is_file() and run.model_onnx.is_file():
        return _source_model(run, testset)  # an imported ONNX model: run by the runtime, no TensorFlow needed
    if importlib.util.find_spec("tensorflow") is None:
        if want:
            raise EdgeExportError(
                "measuring the Keras model needs TensorFlow",
                hint="pip install 'edge-export[train]', or pass --no-keras",
            )
        return None
    if not run.model.is_file():
        if want:
            run.require_model()
        return None
    labels = run.read_labels()
    preprocessing = _keras_preprocessing(run, to_measure)
    if preprocessing is None:
        if want:
            raise EdgeExportError("cannot tell the Keras model's input size (no model_spec.json)", path=run.model_spec)
        return None
    return BenchModel(
        name=KERAS,
        kind="keras",
        format=KERAS,
        precision="fp32",
        path=run.model,
        labels=labels,
        labels_arg=None,
        preprocessing=preprocessing,
        mapping=map_classes(testset.class_names, labels, run.labels),
        source="run",
    )


def _source_model(run: RunFolder, testset: TestSet) -> BenchModel:
    """An imported ONNX model's model.onnx (the user's graph, wrapped, with our metadata): the reference row."""
    return _file_model(run.model_onnx, SOURCE, testset, None, run.read_labels(), "run", SOURCE, "fp32")


def _keras_preprocessing(run: RunFolder, to_measure: list[BenchModel]) -> Preprocessing | None:
    try:
        return ModelSpec.read(run.model_spec).preprocessing_record()
    except EdgeExportError:
        pass
    manifest_models = [t for t in to_measure if t.source == "manifest"]
    return manifest_models[0].preprocessing if manifest_models else None


def _unique(name: str, to_measure: list[BenchModel]) -> str:
    taken = {t.name for t in to_measure}
    candidate, i = name, 2
    while candidate in taken:
        candidate, i = f"{name}-{i}", i + 1
    return candidate


# ----------------------------------------------------------------------------- measuring


def _decode_groups(to_measure: list[BenchModel], testset: TestSet, workdir: Path, echo: Echo) -> dict[tuple, Path]:
    """Decode the test images once per (input size, resize method); unreadable files are dropped for all."""
    keys = list(dict.fromkeys((tuple(t.preprocessing.size), t.preprocessing.pixel_method) for t in to_measure))
    files: dict[tuple, Path] = {}
    for i, (size, method) in enumerate(keys):
        started = time.perf_counter()
        height, width = size
        pixels, bad = decode_all(testset.files, (height, width), method, testset.max_pixels)
        if bad:
            testset.drop(bad)
            if i > 0:  # cannot happen (decoding does not depend on the size), but keep groups aligned
                raise EdgeExportError("test images became unreadable while benchmarking", path=bad[0])
        files[(size, method)] = save_pixels(workdir / f"pixels-{size[0]}x{size[1]}-{method}.npy", pixels)
        how = (
            "read from the pixel cache (photos' bytes and stored pixels checked)"
            if getattr(pixels, "reused", False)
            else "decoded"
        )
        echo(f"{how}: {len(pixels)} test images at {size[0]}x{size[1]} in {time.perf_counter() - started:.1f}s")
    return files


def image_keys(testset: TestSet) -> list[str]:
    """A stable name per test image (its path relative to the test folder): what seeds its robustness shift
    and what bench.json's misclassified list names."""
    keys = []
    for f in testset.files:
        try:
            keys.append(f.relative_to(testset.root).as_posix())
        except ValueError:
            keys.append(f.name)
    return keys


def _shift_groups(pixel_files: dict[tuple, Path], testset: TestSet, workdir: Path, echo: Echo) -> dict[tuple, Path]:
    """The robustness suite's shifted copy of each decoded group (same images, same order)."""
    keys = image_keys(testset)
    files: dict[tuple, Path] = {}
    for (size, method), path in pixel_files.items():
        started = time.perf_counter()
        # in this benchmark's temporary folder (the clean pixels may be the shared decode cache's own file)
        files[(size, method)] = target = workdir / f"shifted-{size[0]}x{size[1]}-{method}.npy"
        robustness.write_shifted(path, target, keys)
        echo(
            f"robustness suite: shifted {len(keys)} test images at {size[0]}x{size[1]} "
            f"in {time.perf_counter() - started:.1f}s "
            f"({', '.join(robustness.SHIFT_NAMES)}; one per image, seed {robustness.SEED})"
        )
    return files


def _duration(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    if seconds < 60:
        return f"{seconds}s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m{seconds:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def _progress_times(started: float, measuring_started: float, done: int, total: int) -> str:
    """``; elapsed 1m05s, ETA ~2m10s``: the ETA is the mean time per model measured so far times those left."""
    now = time.perf_counter()
    text = f"; elapsed {_duration(now - started)}"
    if done and done < total:
        text += f", ETA ~{_duration((now - measuring_started) / done * (total - done))}"
    return text


def _row_summary(row: BenchRow) -> str:
    if not row.ok:
        return "FAILED"
    text = f"accuracy {row.accuracy:.2%}"
    if row.robustness:
        text += f", shifted {row.robustness['accuracy']:.2%}"
    if row.p50_ms is not None:
        text += f", p50 {row.p50_ms:.2f} ms"
    return text


def _measure(request: dict[str, Any], model: BenchModel, workdir: Path, isolate: bool, index: int) -> dict[str, Any]:
    if not isolate:
        return measure_safely(request)
    if model.kind != "keras" or len(request["threads"]) == 1:
        return run_worker(request, workdir, f"{index}-{model.name}")
    # TensorFlow fixes its thread pools at start-up: one process per thread count, accuracy in the one
    # with the most threads (predictions do not depend on threads)
    merged: dict[str, Any] | None = None
    most = max(range(len(request["threads"])), key=lambda j: request["threads"][j][1])
    for j, pair in enumerate(request["threads"]):
        part = run_worker({**request, "threads": [pair], "accuracy": j == most}, workdir, f"{index}-{model.name}-{j}")
        if "error" in part:
            return part
        if merged is None:
            merged = part
        else:
            for key in ("predictions", "confidences", "robust_predictions", "robust_seconds", "accuracy_seconds"):
                merged[key] = merged.get(key) or part.get(key)
            merged["by_threads"] += part["by_threads"]
            merged["seconds"] = round(merged["seconds"] + part["seconds"], 2)
            for key, value in part["memory"].items():
                if isinstance(value, (int, float)):
                    merged["memory"][key] = max(merged["memory"].get(key, 0), value)
    return merged or {"error": "nothing measured"}


# BenchRow fields taken as they are from classification_metrics, from the first thread count's measurement
# and from the worker's result
METRIC_KEYS = ("accuracy", "images", "correct", "macro_f1", "macro_precision", "macro_recall", "per_class", "confusion")
FIRST_THREAD_KEYS = (
    "threads",
    "latency_ms",
    "e2e_p50",
    "overhead_pct",
    "e2e_overhead_pct",
    "predict_proba_ms",
    "e2e_ms",
    "throughput",
    "opencv_ms",
    "e2e_vs_opencv",
)
WORKER_KEYS = ("decode_ms", "memory", "backend", "input", "dynamic_batch", "by_threads", "seconds")


def _record(
    model: BenchModel, result: dict[str, Any], testset: TestSet, config: BenchConfig
) -> tuple[BenchRow, list[str] | None]:
    """The row of one measured model, and the labels it predicted (for the agreement; not kept)."""
    base: dict[str, Any] = dict(
        name=model.name,
        format=model.format,
        precision=model.precision,
        path=str(model.path),
        source=model.source,
        size_bytes=model.size_bytes,
        sha256=sha256_file(model.path),  # what was measured: a later export or train makes this row stale
    )
    predictions = result.get("predictions")
    if "error" not in result and (predictions is None or len(predictions) != len(testset.files)):
        result = {
            "error": f"got {0 if predictions is None else len(predictions)} predictions for {len(testset.files)} images"
        }
    if "error" in result:
        return BenchRow(**base, status="failed", error=result["error"]), None
    assert predictions is not None  # checked above
    inverse = {model_index: test_index for test_index, model_index in enumerate(model.mapping)}
    y_pred = [inverse.get(int(p), -1) for p in predictions]
    metrics = classification_metrics(testset.labels, y_pred, testset.class_names)
    first = result["by_threads"][0]
    p50 = first["latency_ms"]["p50"]
    from_worker: dict[str, Any] = {key: result.get(key) for key in WORKER_KEYS}
    row = BenchRow(
        **base,
        status="ok",
        **{key: metrics[key] for key in METRIC_KEYS},
        **{key: first.get(key) for key in FIRST_THREAD_KEYS},  # the first thread count's; by_threads has them all
        **from_worker,
        fps=1000.0 / p50 if p50 > 0 else None,
        throughput_ips=first["throughput"]["images_per_s"],
        peak_rss_mb=result["memory"].get("peak_rss_mb"),
    )
    row.below_min_accuracy = row.below(config.min_accuracy)  # the one rule (the build's gate uses it too)
    labels = [model.labels[int(p)] if 0 <= int(p) < len(model.labels) else str(p) for p in predictions]
    row.misclassified = misclassified_list(testset, y_pred, labels, result.get("confidences"), config.misclassified)
    robust = result.get("robust_predictions")
    if robust is not None and len(robust) == len(testset.files):
        keys = image_keys(testset)
        row.robustness = robustness.summarize(
            testset.labels, [inverse.get(int(p), -1) for p in robust], [robustness.shift_of(k) for k in keys]
        )
        # the shifted pass and the clean one, timed in the measuring process: the suite's cost per model
        row.robustness["seconds"] = result.get("robust_seconds")
        row.robustness["clean_seconds"] = result.get("accuracy_seconds")
    return row, labels


def misclassified_list(
    testset: TestSet,
    y_pred: Sequence[int],
    predicted_labels: Sequence[str],
    confidences: Sequence[float] | None,
    limit: int,
) -> list[dict[str, Any]]:
    """The wrongly classified test images, most confident first (the worst errors), at most ``limit``:
    path (relative to the test folder), true class, predicted label, the prediction's probability."""
    keys = image_keys(testset)
    wrong = [i for i, (t, p) in enumerate(zip(testset.labels, y_pred)) if int(t) != int(p)]
    conf = [float(c) for c in confidences] if confidences is not None and len(confidences) == len(keys) else None
    wrong.sort(key=lambda i: (-(conf[i] if conf else 0.0), keys[i]))
    return [
        {
            "path": keys[i],
            "true": testset.class_names[int(testset.labels[i])],
            "predicted": str(predicted_labels[i]),  # the model's label (a test class, or one it has beyond them)
            "confidence": round(conf[i], 6) if conf else None,
        }
        for i in wrong[:limit]
    ]


def _add_agreement(rows: list[BenchRow], predicted: list[list[str] | None]) -> None:
    """Top-1 agreement with the Keras model (by label name), when it was measured."""
    reference = next((labels for row, labels in zip(rows, predicted) if row.is_reference and row.ok), None)
    if reference is None:
        return
    for row, labels in zip(rows, predicted):
        if row.ok and labels is not None:
            row.top1_agreement = top1_agreement(labels, reference)


# ----------------------------------------------------------------------------- outputs


def write_outputs(result: BenchResult, out_dir: Path, echo: Echo | None = print) -> BenchOutcome:
    """bench.md, plots (when matplotlib is installed: a device may not have it) and bench.json, last."""
    echo = echo or (lambda line: None)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    files: dict[str, Path] = {}
    plots: dict[str, str] = {}
    try:
        files["accuracy_vs_latency"] = plot_accuracy_latency(result, out_dir / BenchFiles.PLOT_ACCURACY)
        plots = {"accuracy vs latency": BenchFiles.PLOT_ACCURACY}
        confusions = plot_confusions(result, out_dir / BenchFiles.PLOT_CONFUSION)  # None beyond 40 classes
        if confusions is not None:
            files["confusion_matrices"] = confusions
            plots["confusion matrices"] = BenchFiles.PLOT_CONFUSION
    except ModuleNotFoundError as exc:
        if (exc.name or "").split(".")[0] != "matplotlib":
            raise
    files["md"] = write_text(out_dir / BenchFiles.MARKDOWN, render_markdown(result, plots))
    # last: its presence means a finished benchmark
    files["json"] = write_json(out_dir / BenchFiles.JSON, result.to_dict())
    table = render_table(result)
    echo(table)
    extra = " and plots" if plots else " (no plots: matplotlib is not installed)"
    echo(f"wrote {files['json']}, {files['md']}{extra} in {out_dir}")
    return BenchOutcome(result=result, out_dir=out_dir, files=files, table=table)
