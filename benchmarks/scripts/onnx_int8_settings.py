"""Benchmark: onnx-int8 quantization settings on a trained run, scored on its VALIDATION split.

    python benchmarks/scripts/onnx_int8_settings.py runs/cats_vs_dogs [--settings shipped,percentile-head-int8]

For each named setting: quantize the run's float ONNX graph (calibrated on the export's representative
images, as ``edge-export export`` does), then run the result with ONNX Runtime on the whole validation
split, clean and under the robustness suite's seeded shifts: top-1 agreement with the Keras model, accuracy
drop (points), max |Δp|; the agreement of ONNX Runtime's int8 kernels with the same graph run in float
(optimizations off) and that float run's agreement with the Keras model (on x86 without VNNI the u8 x s8
kernels saturate: the two differ there); p50 at 1 thread on one image; quantization seconds, size and sha256
(two settings that make the same bytes show it). Results depend on the CPU: the JSON records the machine.
``shipped`` is ``export/onnx.py``'s INT8_SETTINGS; the others change one or two things from it. Writes ``--out``
(JSON). Timings share the machine with whatever else runs: compare them within one invocation only.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path
from typing import Any

import click
import numpy as np

VARIANTS: dict[str, dict[str, Any]] = {
    "shipped": {},
    "percentile": {"calibration": "Percentile", "percentile": 99.999},
    "percentile-head-int8": {"calibration": "Percentile", "percentile": 99.999, "head": "int8"},
    "minmax-head-int8": {"calibration": "MinMax", "head": "int8"},
    "entropy": {"calibration": "Entropy"},
    "reduce-range": {"reduce_range": True},
    "u8u8": {"weights": "uint8 per channel"},
    "s8s8": {"activations": "int8 per tensor"},
}


def _session(path: Path, optimize: bool = True, threads: int | None = None) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    if not optimize:  # QDQ nodes run as written: dequantize, float op, quantize (no int8 kernels)
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    if threads:
        options.intra_op_num_threads = threads
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _probabilities(session: Any, pixels: np.ndarray) -> np.ndarray:
    return np.concatenate(
        [
            session.run(None, {"image": np.asarray(pixels[i : i + 32], dtype=np.float32)})[0]
            for i in range(0, len(pixels), 32)
        ]
    )


def _p50_ms(path: Path, image: np.ndarray, runs: int = 50) -> float:
    from edge_export.benchmarks.latency import measure

    session = _session(path, threads=1)
    feed = {"image": np.asarray(image[None], dtype=np.float32)}
    return measure(lambda: session.run(None, feed), runs=runs, warmup=5)["p50"]


def score(path: Path, sets: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]], kernel_free: bool = True) -> dict:
    """Per set (clean and shifted validation): agreement with the Keras model, accuracy drop (points), max |dp|;
    with ``kernel_free``, also the agreement of ONNX Runtime's int8 kernels with the same QDQ graph run in float
    (``kernels_vs_float``): below 100% where this CPU's kernels lose what the quantized graph itself keeps (the
    u8 x s8 products of CPUs without VNNI saturate 16-bit sums), and that float run's agreement with the Keras model
    (``float_top1_agreement``: what a CPU without the saturation gets)."""
    session = _session(path)
    plain = _session(path, optimize=False) if kernel_free else None
    row: dict[str, Any] = {}
    for name, (pixels, labels, reference) in sets.items():
        probs = _probabilities(session, pixels)
        keras_accuracy = float((reference.argmax(1) == labels).mean())
        accuracy = float((probs.argmax(1) == labels).mean())
        row[name] = {
            "images": int(len(labels)),
            "top1_agreement": round(float((probs.argmax(1) == reference.argmax(1)).mean()), 6),
            "accuracy": round(accuracy, 6),
            "accuracy_drop": round((keras_accuracy - accuracy) * 100, 4),
            "max_abs_diff": round(float(np.abs(probs - reference).max()), 6),
        }
        if plain is not None:  # what a CPU whose kernels do not saturate computes (VNNI, Arm), up to rounding
            exact = _probabilities(plain, pixels).argmax(1)
            row[name]["kernels_vs_float"] = round(float((probs.argmax(1) == exact).mean()), 6)
            row[name]["float_top1_agreement"] = round(float((exact == reference.argmax(1)).mean()), 6)
    first = next(iter(sets.values()))[0]
    row["p50_ms_1thread"] = round(_p50_ms(path, first[0]), 3)
    return row


@click.command()
@click.argument("run_dir", type=click.Path(path_type=Path, exists=True, file_okay=False))
@click.option(
    "--settings",
    "names",
    default=",".join(VARIANTS),
    show_default=True,
    help=f"Comma-separated, from: {', '.join(VARIANTS)}.",
)
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    default=Path("runs/bench-onnx-int8/results.json"),
    show_default=True,
    help="JSON file for the results.",
)
@click.option(
    "--kernel-free/--no-kernel-free",
    default=True,
    show_default=True,
    help="Also run each graph with ONNX Runtime's optimizations off (QDQ in float) and report the agreement.",
)
def main(run_dir: Path, names: str, out: Path, kernel_free: bool) -> None:
    from edge_export.benchmarks.machine import describe, machine_info
    from edge_export.benchmarks.robustness import apply_suite
    from edge_export.core.config import load_config
    from edge_export.core.hashing import sha256_file
    from edge_export.core.run_folder import RunFolder
    from edge_export.export.context import ExportContext
    from edge_export.export.onnx import INT8_SETTINGS, _save, fp32_model, quantize
    from edge_export.export.parity import keras_probabilities

    run = RunFolder(run_dir)
    config = load_config(run.config)
    ctx = ExportContext(run, config.export, config, echo=click.echo)
    rows = []
    try:
        work = Path(tempfile.mkdtemp(prefix="onnx-int8-settings-", dir=ctx.workdir))
        source = work / "fp32.onnx"
        _save(fp32_model(ctx), source)
        calibration = ctx.representative()
        validation = ctx.parity_images()
        pixels = np.asarray(validation.pixels)
        shifted, _ = apply_suite(pixels, [f"validation/{i}" for i in range(len(pixels))])  # one seeded shift each
        sets = {
            "validation": (pixels, validation.labels, keras_probabilities(ctx.model, pixels)),
            "validation_shifted": (shifted, validation.labels, keras_probabilities(ctx.model, shifted)),
        }
        for name in [n.strip() for n in names.split(",") if n.strip()]:
            settings = {**INT8_SETTINGS, **VARIANTS[name]}
            path = work / f"{name}.onnx"
            started = time.perf_counter()
            quantize(source, path, calibration, work, settings)
            seconds = time.perf_counter() - started
            row = {
                "name": name,
                "settings": settings,
                "quantize_seconds": round(seconds, 1),
                "size_bytes": path.stat().st_size,
                "sha256": sha256_file(path),
                "calibration_images": int(len(calibration)),
                **score(path, sets, kernel_free),
            }
            rows.append(row)
            clean, moved = row["validation"], row["validation_shifted"]
            click.echo(
                f"{name:22s} agreement {clean['top1_agreement']:.2%} (shifted {moved['top1_agreement']:.2%})  "
                f"drop {clean['accuracy_drop']:+.2f} (shifted {moved['accuracy_drop']:+.2f})  "
                + (
                    f"kernels=float {clean['kernels_vs_float']:.2%} / {moved['kernels_vs_float']:.2%}  "
                    f"float: agreement {clean['float_top1_agreement']:.2%} / {moved['float_top1_agreement']:.2%}  "
                    if kernel_free
                    else ""
                )
                + f"p50 {row['p50_ms_1thread']:.2f} ms  {seconds:.0f}s  {row['size_bytes'] / 1e6:.2f} MB"
            )
    finally:
        ctx.close()
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps(
            {"run": str(run.root), "split": "validation", "machine": describe(machine_info()), "rows": rows}, indent=2
        )
    )
    click.echo(f"wrote {out}")


if __name__ == "__main__":
    main()
