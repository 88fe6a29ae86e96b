"""Measure one model in this process: predictions on the test pixels, latency, throughput, peak memory.

A request is a plain dict (it crosses a process boundary as JSON, see ``worker``):

    kind         "model" (.tflite/.onnx through the runtime ``Classifier``) or "keras" (model.keras)
    path         the model file
    labels       label list for the model (None: its embedded metadata)
    preprocessing  (keras only) Preprocessing.to_dict() of the model input
    pixels       .npy of the test images, already resized to this model's input (``testset.save_pixels``)
    image        one test image file, the split's photo of median size (``TestSet.typical_image``): the
                 end-to-end and decode timings start from it
    threads      [[requested, used], ...]  (0 requested = all cores)
    warmup, runs, batch_size
    accuracy     whether to predict the whole test set

What is timed, per thread count (each on ONE image: the latency on the first test image's pixels, the
end-to-end and decode times from the ``image`` file; the calls in interleaved
blocks, so drifting load on a shared machine does not bias their ratios; ``predict_proba_ms`` and
``e2e_ms`` at the first thread count only, None at the others):
    latency_ms        the bare backend call on an input already preprocessed (and quantized)
    predict_proba_ms  ``Classifier.predict_proba`` on the preloaded uint8 image: + normalize,
                      quantize, dequantize and checks (overhead_pct = its p50 over the bare p50)
    e2e_ms            ``Classifier.predict(path)``: + decode and resize (e2e_overhead_pct likewise)
    throughput        images/s of the bare call on ``batch_size`` images: one batched call when the
                      model's batch dimension is dynamic, else ``batch_size`` sequential calls
and once: decode_ms (decode + resize of the image with the runtime's decoder).

Memory: the process's peak resident set (``peak_rss_mb()``: VmHWM, else ``ru_maxrss``) after load,
after the single-image measurements (``peak_rss_mb``: what a device running one image at a time
needs, plus the Python process), and at the end (``peak_rss_total_mb``, including batched accuracy
and throughput runs).
It is per model only when each model runs in its own process (the ``worker``).
"""

from __future__ import annotations

import resource
import sys
import time
from typing import Any

import numpy as np

from edge_export.benchmarks.classification import top1_indices
from edge_export.benchmarks.hand_written import e2e_sample
from edge_export.benchmarks.latency import measure, overhead_pct, summarize, throughput, time_interleaved
from edge_export.benchmarks.testset import iter_pixels, pixel_count, read_pixels
from edge_export.core.errors import EdgeExportError
from edge_export.core.records.model_spec import loads_external_code
from edge_export.core.tf_env import import_keras
from edge_export.runtime.classifier import Classifier
from edge_export.runtime.images import load_image
from edge_export.runtime.preprocessing import Preprocessing
from edge_export.runtime.quantization import quantize

ACCURACY_BATCH = 32


def peak_rss_mb() -> float:
    """This process's peak resident set size so far, in MiB.

    Linux: ``VmHWM`` of /proc/self/status, the high-water mark of this process's own memory.
    ``ru_maxrss`` is the fallback only: on Linux a child inherits its parent's peak through fork and
    exec, so a fresh worker started by a parent holding the decoded test set would report the parent's.
    """
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return round(int(line.split()[1]) / 1024, 1)
    except (OSError, ValueError, IndexError):
        pass
    return _ru_maxrss_mb()


def measure_request(request: dict[str, Any]) -> dict[str, Any]:
    kind = request.get("kind")
    if kind == "model":
        return measure_model(request)
    if kind == "keras":
        return measure_keras(request)
    raise ValueError(f"unknown measurement kind {kind!r}")


# ----------------------------------------------------------------------------- .tflite / .onnx


def measure_model(req: dict[str, Any]) -> dict[str, Any]:
    started = time.perf_counter()
    memory: dict[str, Any] = {"baseline_rss_mb": peak_rss_mb()}
    runs, warmup = int(req["runs"]), int(req["warmup"])

    def load(threads: int) -> Classifier:
        return Classifier.load(
            req["path"],
            labels=req.get("labels"),
            threads=threads,
            max_pixels=req.get("max_pixels"),
            providers=req.get("providers"),
        )

    def prepared(clf: Classifier, pixels: np.ndarray) -> np.ndarray:
        return quantize(clf.preprocessing.normalize(pixels), clf.backend.input_spec)

    first = read_pixels(req["pixels"], 0, 1)
    image = req["image"]
    by_threads: list[dict[str, Any]] = []
    info: dict[str, Any] = {}

    def single_image(requested: int, used: int) -> dict[str, Any]:
        """The one-image timings at ``used`` threads (and, at the first thread count, what the model is). A
        function of its own: its classifier is released before the next one loads."""
        clf = load(used)
        if not info:
            memory["after_load_rss_mb"] = peak_rss_mb()
            spec = clf.backend.input_spec
            info.update(
                {
                    "backend": clf.backend.name,
                    "input": {
                        "shape": list(spec.shape),
                        "dtype": str(spec.dtype),
                        "scale": spec.scale,
                        "zero_point": spec.zero_point,
                    },
                    "dynamic_batch": bool(spec.shape and spec.shape[0] is None),
                    "preprocessing": clf.preprocessing.to_dict(),
                }
            )
        x = prepared(clf, first)
        calls = {"bare": lambda: clf.backend.run(x)}
        if not by_threads:  # the runtime's overhead: at the first thread count (1 by default) only
            calls.update(proba=lambda: clf.predict_proba(first))
        timed = time_interleaved(calls, runs=runs, warmup=warmup)
        entry = _latency_entry(requested, used, timed)
        if not by_threads:  # what a user sees: predict(path) over a sample of photos, beside the OpenCV pipeline
            entry.update(e2e_sample(clf, req.get("e2e_images") or [image], runs))
        return entry

    for requested, used in req["threads"]:
        by_threads.append(single_image(requested, used))
    decode = _decode_ms(req, Preprocessing.from_dict(info["preprocessing"]), runs, warmup)
    memory["peak_rss_mb"] = peak_rss_mb()

    passes = NO_ACCURACY_PASSES
    if req.get("accuracy", True):
        clf = load(max(used for _, used in req["threads"]))  # accuracy does not depend on threads: use the most
        passes = _accuracy_passes(clf.predict_proba, req)
        del clf

    batch = _batch(req["pixels"], int(req["batch_size"]))
    repeats = max(3, runs // max(1, int(req["batch_size"])))

    def batch_throughput(threads: int) -> dict[str, Any]:
        """Throughput at ``threads``; a function of its own: its classifier is released before the next loads."""
        clf = load(threads)
        xb = prepared(clf, batch)
        return throughput(lambda: clf.backend.run(xb), len(batch), repeats=repeats, warmup=min(max(warmup, 1), 3))

    for entry in by_threads:
        entry["throughput"] = batch_throughput(entry["threads"])
        entry["throughput"]["mode"] = "batch" if info["dynamic_batch"] else "sequential"
    memory["peak_rss_total_mb"] = peak_rss_mb()
    memory["scope"] = "process"
    memory["ru_maxrss_mb"] = _ru_maxrss_mb()
    return {
        **info,
        **passes,
        "by_threads": by_threads,
        "decode_ms": decode,
        "memory": memory,
        "seconds": round(time.perf_counter() - started, 2),
    }


# ----------------------------------------------------------------------------- Keras reference


def measure_keras(req: dict[str, Any]) -> dict[str, Any]:
    """The Keras model, timed like the artifacts (a ``tf.function`` call stands in for the bare call).

    TensorFlow fixes its thread pools at start-up: only the first thread count of a process applies
    (``threads_applied``), so the suite runs one process per thread count.
    """
    started = time.perf_counter()
    keras = import_keras()
    import tensorflow as tf  # lazy: TensorFlow (seconds to import); imported above, by import_keras

    runs, warmup = int(req["runs"]), int(req["warmup"])
    prep = Preprocessing.from_dict(req["preprocessing"])
    applied = []
    for _, used in req["threads"]:
        try:
            tf.config.threading.set_intra_op_parallelism_threads(used)
            tf.config.threading.set_inter_op_parallelism_threads(used)
            applied.append(True)
        except RuntimeError:  # the runtime is initialized: the pools are fixed now
            applied.append(False)
    memory: dict[str, Any] = {"baseline_rss_mb": peak_rss_mb()}  # with TensorFlow imported
    try:
        model = keras.models.load_model(req["path"], compile=False, safe_mode=not loads_external_code(req["path"]))
    except Exception as exc:  # zipfile, h5, deserialization errors
        raise EdgeExportError(f"cannot load the Keras model ({type(exc).__name__}: {exc})", path=req["path"]) from None
    memory["after_load_rss_mb"] = peak_rss_mb()
    call_graph = tf.function(lambda x: model(x, training=False), reduce_retracing=True)

    def call(x: np.ndarray) -> np.ndarray:
        return call_graph(tf.constant(x)).numpy()

    def proba(pixels: np.ndarray) -> np.ndarray:
        return call(prep.normalize(pixels))

    first = read_pixels(req["pixels"], 0, 1)
    x = prep.normalize(first)
    by_threads = []
    for (requested, used), ok in zip(req["threads"], applied):
        # the bare call only: the runtime's overhead is a question for the artifacts, not the reference
        timed = time_interleaved({"bare": lambda: call(x)}, runs=runs, warmup=max(warmup, 2))
        entry = _latency_entry(requested, used, timed)
        entry["threads_applied"] = ok
        by_threads.append(entry)
    decode = _decode_ms(req, prep, runs, warmup)
    memory["peak_rss_mb"] = peak_rss_mb()
    passes = _accuracy_passes(proba, req) if req.get("accuracy", True) else NO_ACCURACY_PASSES

    batch = _batch(req["pixels"], int(req["batch_size"]))
    xb = prep.normalize(batch)
    repeats = max(3, runs // max(1, int(req["batch_size"])))
    for entry in by_threads:
        entry["throughput"] = throughput(lambda: call(xb), len(batch), repeats=repeats, warmup=2)
        entry["throughput"]["mode"] = "batch"
    memory["peak_rss_total_mb"] = peak_rss_mb()
    memory["scope"] = "process"
    memory["ru_maxrss_mb"] = _ru_maxrss_mb()
    return {
        "backend": f"tensorflow {tf.__version__} (tf.function)",
        "input": {"shape": [None, *prep.size, 3], "dtype": "float32", "scale": 0.0, "zero_point": 0},
        "dynamic_batch": True,
        "preprocessing": prep.to_dict(),
        **passes,
        "by_threads": by_threads,
        "decode_ms": decode,
        "memory": memory,
        "seconds": round(time.perf_counter() - started, 2),
    }


# ----------------------------------------------------------------------------- helpers

# what a measurement says of accuracy when it was not asked for (``accuracy: false``)
NO_ACCURACY_PASSES: dict[str, Any] = dict.fromkeys(
    ("predictions", "confidences", "robust_predictions", "robust_seconds", "accuracy_seconds")
)


def _accuracy_passes(proba: Any, req: dict[str, Any]) -> dict[str, Any]:
    """The clean pass over the test pixels and, where the request holds them, the robustness suite's shifted
    images (benchmarks/robustness.py): predictions, confidences (the top-1 probability of each prediction), and
    the time each pass took (the shifted one's is the suite's cost in this process)."""
    out = dict(NO_ACCURACY_PASSES)
    started = time.perf_counter()
    out["predictions"], out["confidences"] = _predict_all(proba, req["pixels"])
    out["accuracy_seconds"] = round(time.perf_counter() - started, 2)
    if req.get("robust_pixels"):
        started = time.perf_counter()
        out["robust_predictions"], _ = _predict_all(proba, req["robust_pixels"])
        out["robust_seconds"] = round(time.perf_counter() - started, 2)
    return out


def _decode_ms(req: dict[str, Any], prep: Preprocessing, runs: int, warmup: int) -> dict[str, float]:
    """The request's one photo decoded and resized as the model's preprocessing says (``measure``'s summary)."""
    height, width = prep.size
    return measure(
        lambda: load_image(req["image"], (height, width), prep.pixel_method, req.get("max_pixels")),
        runs=runs,
        warmup=min(warmup, 3),
    )


def _latency_entry(requested: int, used: int, timed: dict[str, list[int]]) -> dict[str, Any]:
    """Latency of the bare call; ``predict_proba`` and end-to-end times where they were measured (else None)."""
    bare = summarize(timed["bare"])
    proba, e2e = (summarize(timed[k]) if k in timed else None for k in ("proba", "e2e"))
    return {
        "threads_requested": int(requested),
        "threads": int(used),
        "latency_ms": bare,
        "predict_proba_ms": proba,
        "e2e_ms": e2e,
        "e2e_p50": e2e["p50"] if e2e else None,
        "overhead_pct": overhead_pct(proba["p50"], bare["p50"]) if proba else None,
        "e2e_overhead_pct": overhead_pct(e2e["p50"], bare["p50"]) if e2e else None,
    }


def _predict_all(proba: Any, pixels_path: str) -> tuple[list[int], list[float]]:
    """Top-1 index and its probability for every image of a pixel file, in chunks."""
    predictions: list[int] = []
    confidences: list[float] = []
    for chunk in iter_pixels(pixels_path, ACCURACY_BATCH):
        scores = np.asarray(proba(chunk))
        indices = top1_indices(scores)
        predictions += indices
        confidences += [float(scores[i, j]) for i, j in enumerate(indices)]
    return predictions, confidences


def _batch(pixels_path: str, batch_size: int) -> np.ndarray:
    """The first ``batch_size`` test images (repeated when the test set is smaller)."""
    n = pixel_count(pixels_path)
    batch = read_pixels(pixels_path, 0, batch_size)
    if n < batch_size:
        batch = np.concatenate([batch] * (batch_size // n + 1))[:batch_size]
    return batch


def _ru_maxrss_mb() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024, 1)
