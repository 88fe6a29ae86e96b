"""A run's artifact against the MobileNetV2 reference, over a sample of real photos, 1 thread, one process:

    python benchmarks/scripts/compare_reference.py RUN_DIR --data TEST_DIR [--artifact NAME] [--every 10]
        [--repeats 5] [--clock wall|cpu] [--cache DIR] [--reference PATH] [--tf1-reference PATH | --no-tf1] [--json OUT]

The reference is the *modern* conversion of MobileNetV2 1.0 at 224 x 224: ``keras.applications.MobileNetV2(
weights=None, input_shape=(224, 224, 3), classes=1001)`` converted by today's TFLite converter to full-integer
int8 with uint8 input and output, calibrated on random images. Latency does not depend on the weights, so it
times the same as a published TF2 post-training-quantized MobileNetV2. It is built once (TensorFlow, about a
minute) and cached under ``--cache`` (default ``$EDGE_EXPORT_CACHE/reference-models``, else
``~/.cache/edge-export/reference-models``), its file name keyed by the settings and TensorFlow's version;
``--reference PATH`` uses a file of your own instead. The shared TF1-era file
(``shared/reference-models/mobilenet_v2_1.0_224_quant.tflite``, about 2x slower than a current conversion on
a recent x86 CPU) stays as a second, labelled row when it is there (``--no-tf1`` leaves it out).

Photos: every ``--every``-th file of the test folder (sorted by class, then name), at most ``--images``. For
each repeat, each photo and each model in turn (the order alternating), one call each of: the bare
interpreter call on that photo's prepared input, ``predict_proba`` on its preloaded pixels (the runtime
around the model, no decode), ``predict(path)`` end to end, decode + resize alone (``load_image``), and two
hand-written pipelines around the same bare call (``HAND_WRITTEN``: OpenCV's imread + cvtColor + resize, where
OpenCV is installed, and the Pillow tutorial's open + convert + resize), so the table shows the gap to each.
The calls of one photo are adjacent, so load that comes and goes on a shared machine hits them alike. Per
photo, the median over repeats is kept; the report gives the median and p90 over photos, and the end-to-end
overhead per photo, e2e / bare - 1 (its median and p90 over photos). After each repeat, each model (the order
alternating) also runs the whole sample twice: bare calls back to back, and ``predict(paths)`` on the list of
files (the runtime decodes the next photos on another core while the model runs); the *stream* overhead is the
median over repeats of predict(paths) / bare - 1, always in wall-clock time (the decoding happens on other
threads). ``--clock cpu`` times each call in the
calling thread's CPU time instead of wall-clock time: at 1 thread LiteRT and ONNX Runtime compute on that
thread, so on a loaded machine (other processes taking the cores) the numbers stay those of an idle one.
"""

from __future__ import annotations

import gc
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
import numpy as np

from edge_export.benchmarks.hand_written import HAND_WRITTEN, hand_written
from edge_export.benchmarks.machine import describe, machine_info
from edge_export.benchmarks.testset import scan_test_folder
from edge_export.core.atomic import write_bytes
from edge_export.core.errors import EdgeExportError
from edge_export.core.records.recommendation import read_recommendation
from edge_export.core.run_folder import RunFolder
from edge_export.export.manifest import read_manifest
from edge_export.runtime.images import opencv_installed

# the sibling scripts import from this folder at run time; mypy checks them as package modules, unresolved
sys.path.insert(0, str(Path(__file__).resolve().parent))
from script_cli import finish, json_option, sample_options  # type: ignore[import-not-found]  # noqa: E402 (the scripts' shared command line)

TF1_REFERENCE_NAME = "mobilenet_v2_1.0_224_quant.tflite"
KINDS = (
    "bare",
    "predict_proba",
    "e2e",
    "decode",
    *HAND_WRITTEN,
)  # the hand-written pipelines: benchmarks/hand_written.py
REFERENCE = "reference"  # the modern MobileNetV2 conversion
REFERENCE_TF1 = "reference_tf1"  # the shared TF1-era file
LABELS = {
    REFERENCE: "MobileNetV2 1.0 224 int8, modern conversion",
    REFERENCE_TF1: "MobileNetV2 1.0 224 int8, TF1-era file",
}


# ----------------------------------------------------------------------------- the models


def default_cache() -> Path:
    base = os.environ.get("EDGE_EXPORT_CACHE")
    return (Path(base) if base else Path.home() / ".cache" / "edge-export") / "reference-models"


def default_tf1_reference() -> Path:
    """``$EDGE_EXPORT_SHARED/reference-models/...``, else the ``shared/`` folder beside the repository."""
    candidates = []
    if os.environ.get("EDGE_EXPORT_SHARED"):
        candidates.append(Path(os.environ["EDGE_EXPORT_SHARED"]))
    candidates += [Path(__file__).resolve().parents[3] / "shared", Path("../shared")]
    for shared in candidates:
        path = shared / "reference-models" / TF1_REFERENCE_NAME
        if path.is_file():
            return path
    return candidates[0] / "reference-models" / TF1_REFERENCE_NAME


def modern_reference(
    cache: str | Path | None = None,
    *,
    input_size: int = 224,
    alpha: float = 1.0,
    classes: int = 1001,
    calibration: int = 16,
    seed: int = 0,
    echo: Callable[[str], None] | None = None,
) -> Path:
    """The modern MobileNetV2 reference (see the module doc): built with TensorFlow on first use, then read
    from ``cache``. The settings are for tests (a tiny one converts in seconds); the defaults are the reference."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        tf_version = version("tensorflow")
    except PackageNotFoundError:
        tf_version = "unknown"
    cache = Path(cache) if cache is not None else default_cache()
    path = (
        cache
        / f"mobilenet_v2_{alpha:g}_{input_size}_c{classes}_int8_uint8io_cal{calibration}_s{seed}_tf{tf_version}.tflite"
    )
    if path.is_file():
        return path
    if echo:
        echo(f"building the modern MobileNetV2 reference with TensorFlow {tf_version} (once) -> {path}")
    write_bytes(path, _convert_mobilenet_v2(input_size, alpha, classes, calibration, seed))
    return path


def _convert_mobilenet_v2(input_size: int, alpha: float, classes: int, calibration: int, seed: int) -> bytes:
    """keras.applications.MobileNetV2 with random weights -> full-integer TFLite, uint8 in and out, calibrated on
    random inputs in the model's own range [-1, 1] (SavedModel, then ``from_saved_model``: the path that works
    for Keras 3)."""
    import tempfile

    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(seed)
    model = keras.applications.MobileNetV2(
        weights=None, input_shape=(input_size, input_size, 3), alpha=alpha, classes=classes
    )
    rng = np.random.default_rng(seed)

    def representative():
        for _ in range(calibration):
            yield [rng.uniform(-1.0, 1.0, (1, input_size, input_size, 3)).astype(np.float32)]

    with tempfile.TemporaryDirectory() as tmp:
        model.export(str(Path(tmp) / "saved_model"), format="tf_saved_model", verbose=False)
        converter = tf.lite.TFLiteConverter.from_saved_model(str(Path(tmp) / "saved_model"))
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = representative
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.uint8
        converter.inference_output_type = tf.uint8
        return converter.convert()


def recommended_artifact(run: RunFolder) -> str:
    """The build's recommended artifact, else ``tflite-int8``."""
    recommendation = read_recommendation(run)
    return recommendation.artifact if recommendation is not None and recommendation.artifact else "tflite-int8"


def artifact_path(run: RunFolder, name: str) -> Path:
    entry = read_manifest(run).artifact(name)
    if entry is None:
        raise EdgeExportError(f"the run's export has no artifact {name!r}", path=run.export_manifest)
    if not entry.ok or not entry.path:
        raise EdgeExportError(
            f"artifact {name!r} failed to export", path=run.export_manifest, hint="see its error there"
        )
    path = run.export_dir / entry.path
    if not path.is_file():
        raise EdgeExportError(f"artifact {name!r} is missing", path=path, hint="re-run `edge-export export`")
    return path


# ----------------------------------------------------------------------------- timing


class _Model:
    """One model at 1 thread, with each photo's preloaded pixels and prepared input."""

    def __init__(self, path: Path, photos: list[Path]):
        from edge_export.runtime.classifier import Classifier
        from edge_export.runtime.images import load_image
        from edge_export.runtime.quantization import quantize

        self.path = path
        self.clf = Classifier.load(path, threads=1)
        self.load_image = load_image
        prep, spec = self.clf.preprocessing, self.clf.backend.input_spec
        height, width = prep.size
        self.size, self.method = (height, width), prep.pixel_method
        self.pixels = [load_image(p, self.size, self.method)[np.newaxis] for p in photos]
        self.inputs = [quantize(prep.normalize(x), spec) for x in self.pixels]  # what the runtime feeds
        self.photos = [str(p) for p in photos]
        self.info = {"input": f"{self.size[0]}x{self.size[1]} {spec.dtype}", "size_bytes": path.stat().st_size}

    def bare_all(self) -> None:
        for x in self.inputs:
            self.clf.backend.run(x)

    def stream(self) -> None:
        self.clf.predict(self.photos, top_k=1)

    def call(self, kind: str, i: int) -> Callable[[], Any]:
        if kind == "bare":
            return lambda: self.clf.backend.run(self.inputs[i])
        if kind == "predict_proba":
            return lambda: self.clf.predict_proba(self.pixels[i])
        if kind == "e2e":
            return lambda: self.clf.predict(self.photos[i], top_k=1)
        if kind in HAND_WRITTEN:
            return lambda: hand_written(kind, self.clf, self.photos[i])
        return lambda: self.load_image(self.photos[i], self.size, self.method)


CLOCKS = {"wall": time.perf_counter_ns, "cpu": time.thread_time_ns}


def _once(fn: Callable[[], Any], clock: Callable[[], int]) -> float:
    start = clock()
    fn()
    return (clock() - start) / 1e6


def _spread(values: np.ndarray) -> dict[str, float]:
    return {"p50": float(np.percentile(values, 50)), "p90": float(np.percentile(values, 90))}


def compare_reference(
    run: RunFolder | str | Path,
    data: str | Path,
    *,
    artifact: str | None = None,
    reference: str | Path | None = None,
    tf1_reference: str | Path | None | bool = None,
    cache: str | Path | None = None,
    every: int = 10,
    images: int | None = None,
    repeats: int = 5,
    warmup: int = 3,
    clock: str = "wall",
    reference_settings: dict[str, Any] | None = None,
    echo: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Interleaved 1-thread timings of the run's ``artifact`` (default: the recommended one) and the references
    over a sample of the test photos (see the module doc). ``reference``: a modern reference file (default:
    built and cached, with ``reference_settings`` passed to ``modern_reference``); ``tf1_reference``: the TF1-era
    file (None: the shared one when present; False: none). ``clock``: "wall", or "cpu" (this thread's CPU
    time: at 1 thread both runtimes compute on the calling thread, so time lost to other processes on a
    shared machine is left out)."""
    if clock not in CLOCKS:
        raise EdgeExportError(f"unknown clock {clock!r}", hint=f"use one of {sorted(CLOCKS)}")
    if every < 1 or repeats < 1 or warmup < 0 or (images is not None and images < 1):
        raise EdgeExportError("every, repeats and images must be >= 1 (warmup >= 0)")
    run = run if isinstance(run, RunFolder) else RunFolder(run)
    artifact = artifact or recommended_artifact(run)
    models = {artifact: artifact_path(run, artifact)}
    if reference is not None:
        models[REFERENCE] = Path(reference)
        if not models[REFERENCE].is_file():
            raise EdgeExportError(
                "reference model not found", path=reference, hint="pass --reference PATH, or leave it out to build one"
            )
    else:
        models[REFERENCE] = modern_reference(cache, echo=echo, **(reference_settings or {}))
    if tf1_reference is not False:
        given = tf1_reference if isinstance(tf1_reference, (str, Path)) else None  # None or True: the shared one
        tf1 = Path(given) if given is not None else default_tf1_reference()
        if tf1.is_file():
            models[REFERENCE_TF1] = tf1
        elif given is not None:
            raise EdgeExportError(
                "TF1-era reference model not found", path=tf1, hint="pass --tf1-reference PATH or --no-tf1"
            )
    photos = scan_test_folder(data).files[::every][:images]
    timed = {name: _Model(path, photos) for name, path in models.items()}
    kinds = [k for k in KINDS if k != "opencv" or opencv_installed()]  # the OpenCV row where OpenCV is installed
    names = list(timed)
    for m in timed.values():
        for kind in kinds:
            for i in range(min(warmup, len(photos))):
                m.call(kind, i)()
    times = {name: {kind: np.zeros((repeats, len(photos))) for kind in kinds} for name in names}
    streams = {name: {"bare": np.zeros(repeats), "stream": np.zeros(repeats)} for name in names}
    enabled = gc.isenabled()
    gc.disable()
    try:
        for r in range(repeats):
            for i in range(len(photos)):
                for name in names if (r + i) % 2 == 0 else names[::-1]:
                    for kind in kinds:
                        times[name][kind][r, i] = _once(timed[name].call(kind, i), CLOCKS[clock])
            for name in names if r % 2 == 0 else names[::-1]:
                streams[name]["bare"][r] = _once(timed[name].bare_all, CLOCKS["wall"]) / len(photos)
                streams[name]["stream"][r] = _once(timed[name].stream, CLOCKS["wall"]) / len(photos)
    finally:
        if enabled:
            gc.enable()
    results: dict[str, Any] = {}
    for name, m in timed.items():
        per_photo = {kind: np.median(times[name][kind], axis=0) for kind in kinds}  # median over repeats
        e2e_overhead = (per_photo["e2e"] / per_photo["bare"] - 1.0) * 100.0
        proba_overhead = (per_photo["predict_proba"] / per_photo["bare"] - 1.0) * 100.0
        ms = {kind: _spread(per_photo[kind]) for kind in kinds}
        results[name] = {
            "label": LABELS.get(name, f"{name} (this run)"),
            "path": str(m.path),
            **m.info,
            "ms": ms,
            "per_photo_ms": {kind: [round(float(v), 4) for v in per_photo[kind]] for kind in kinds},
            # predict(path) against each hand-written pipeline: p50 over p50, p90 over p90 (the same photos)
            "e2e_vs": {
                kind: {q: ms["e2e"][q] / ms[kind][q] for q in ("p50", "p90")} for kind in HAND_WRITTEN if kind in ms
            },
            "e2e_overhead_pct": _spread(e2e_overhead),
            "overhead_pct": _spread(proba_overhead),
            "decode_share_pct": 100.0 * ms["decode"]["p50"] / ms["e2e"]["p50"] if ms["e2e"]["p50"] > 0 else None,
            "stream": {  # wall clock, per photo, the whole sample in one predict(paths) call vs bare calls in a row
                "bare_ms": float(np.median(streams[name]["bare"])),
                "predict_paths_ms": float(np.median(streams[name]["stream"])),
                "overhead_pct": float(np.median(streams[name]["stream"] / streams[name]["bare"] - 1.0) * 100.0),
            },
        }
    bare = {name: results[name]["ms"]["bare"]["p50"] for name in names}
    sizes = sorted(_image_size(p) for p in photos)
    return {
        "run_dir": str(run.root),
        "artifact": artifact,
        "data": str(data),
        "photos": [str(p) for p in photos],
        "every": every,
        "median_photo_size": list(sizes[len(sizes) // 2]) if sizes else None,
        "threads": 1,
        "clock": clock,
        "repeats": repeats,
        "warmup": warmup,
        "models": results,
        "bare_ratio": bare[artifact] / bare[REFERENCE] if bare[REFERENCE] > 0 else None,
        "bare_ratio_tf1": bare[artifact] / bare[REFERENCE_TF1] if bare.get(REFERENCE_TF1) else None,
        "machine": machine_info(),
    }


def _image_size(path: Path) -> tuple[int, int]:
    from PIL import Image

    with Image.open(path) as image:
        return image.size


# ----------------------------------------------------------------------------- report


def render(result: dict[str, Any]) -> str:
    header = [
        "model",
        "input",
        "size",
        "bare p50",
        "p90",
        "e2e p50",
        "p90",
        "decode p50",
        "p90",
        "overhead (no decode) p50",
        "e2e overhead p50",
        "p90",
        "OpenCV p50",
        "p90",
        "Pillow p50",
    ]
    rows = [header]
    for name, m in result["models"].items():
        ms = m["ms"]
        rows.append(
            [
                f"{name}: {m['label']}" if name != result["artifact"] else f"{name} ({Path(m['path']).name})",
                m["input"],
                f"{m['size_bytes'] / 1e6:.2f} MB",
                f"{ms['bare']['p50']:.3f}",
                f"{ms['bare']['p90']:.3f}",
                f"{ms['e2e']['p50']:.3f}",
                f"{ms['e2e']['p90']:.3f}",
                f"{ms['decode']['p50']:.3f}",
                f"{ms['decode']['p90']:.3f}",
                f"{m['overhead_pct']['p50']:+.1f}%",
                f"{m['e2e_overhead_pct']['p50']:+.1f}%",
                f"{m['e2e_overhead_pct']['p90']:+.1f}%",
                *((f"{ms['opencv']['p50']:.3f}", f"{ms['opencv']['p90']:.3f}") if "opencv" in ms else ("-", "-")),
                f"{ms['pillow']['p50']:.3f}",
            ]
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))) for r in rows]
    size = result["median_photo_size"]
    art, ref = result["models"][result["artifact"]], result["models"][REFERENCE]
    lines += [
        f"{'CPU time of the calling thread' if result.get('clock') == 'cpu' else 'wall-clock times'} in ms "
        f"at 1 thread over {len(result['photos'])} photos (one in {result['every']} of {result['data']}, "
        f"median photo {size[0]}x{size[1]}): per photo the median of {result['repeats']} interleaved repeats, "
        "then p50/p90 over photos; overhead per photo = e2e / bare - 1",
        f"bare call: {result['artifact']} takes {result['bare_ratio']:.3g}x the modern reference's time"
        + (f" ({result['bare_ratio_tf1']:.3g}x the TF1-era file's)" if result.get("bare_ratio_tf1") else ""),
        f"runtime overhead of {result['artifact']} over the bare interpreter call (1 thread), "
        "predict(path) end to end: "
        f"{art['e2e_overhead_pct']['p50']:+.1f}% median, {art['e2e_overhead_pct']['p90']:+.1f}% p90 "
        f"(decode+resize {art['ms']['decode']['p50']:.3f} ms median); without decode (predict_proba): "
        f"{art['overhead_pct']['p50']:+.1f}%",
        f"modern reference: {ref['e2e_overhead_pct']['p50']:+.1f}% median, "
        f"{ref['e2e_overhead_pct']['p90']:+.1f}% p90 "
        f"end to end (decode+resize {ref['ms']['decode']['p50']:.3f} ms of a {ref['ms']['e2e']['p50']:.3f} ms call)",
        *(
            f"{name}: predict(path) takes {m['e2e_vs']['opencv']['p50']:.3f}x the hand-written OpenCV pipeline's p50 "
            f"({m['e2e_vs']['opencv']['p90']:.3f}x at p90) "
            f"and {m['e2e_vs']['pillow']['p50']:.3f}x the Pillow tutorial's"
            for name, m in result["models"].items()
            if "opencv" in m.get("e2e_vs", {})
        ),
        *(f"{kind} pipeline: {text}" for kind, text in HAND_WRITTEN.items()),
        "a stream of photos, predict(paths) on the whole sample "
        "(decoding ahead on another core; wall clock, per photo): "
        + "; ".join(
            f"{name} {m['stream']['predict_paths_ms']:.3f} ms vs {m['stream']['bare_ms']:.3f} ms bare, "
            f"{m['stream']['overhead_pct']:+.1f}%"
            for name, m in result["models"].items()
        ),
        f"machine: {describe(result['machine'])}",
    ]
    return "\n".join(lines)


@click.command()
@sample_options("Interleaved repeats per photo.")
@click.option("--warmup", default=3, show_default=True, type=click.IntRange(min=0))
@click.option(
    "--clock",
    type=click.Choice(sorted(CLOCKS)),
    default="wall",
    show_default=True,
    help="wall, or cpu: the thread's CPU time (steadier on a shared, loaded machine).",
)
@click.option(
    "--cache",
    type=click.Path(path_type=Path),
    help="Where the modern reference is cached [$EDGE_EXPORT_CACHE/reference-models].",
)
@click.option(
    "--reference", type=click.Path(path_type=Path), help="A modern reference file to use instead of building one."
)
@click.option(
    "--tf1-reference",
    type=click.Path(path_type=Path),
    help=f"The TF1-era file [shared/reference-models/{TF1_REFERENCE_NAME}].",
)
@click.option("--no-tf1", is_flag=True, help="Leave the TF1-era file out.")
@json_option
def main(
    run_dir, data, artifact, every, images, repeats, warmup, clock, cache, reference, tf1_reference, no_tf1, json_out
) -> None:
    """Time RUN_DIR's artifact and the MobileNetV2 references side by side at 1 thread over real photos."""
    finish(
        lambda: compare_reference(
            run_dir,
            data,
            artifact=artifact,
            reference=reference,
            tf1_reference=False if no_tf1 else tf1_reference,
            cache=cache,
            every=every,
            images=images,
            repeats=repeats,
            warmup=warmup,
            clock=clock,
            echo=click.echo,
        ),
        render,
        json_out,
    )


if __name__ == "__main__":  # pragma: no cover
    main()
