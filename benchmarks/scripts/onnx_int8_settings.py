"""Benchmark: onnx-int8 quantization settings on a trained run, scored on its VALIDATION split.

    python benchmarks/scripts/onnx_int8_settings.py runs/cats_vs_dogs [--settings shipped,percentile-head-int8]

For each named setting: quantize the run's float ONNX graph (calibrated on the export's representative
images, as ``edge-export export`` does), then run the result with ONNX Runtime on the whole validation
split: top-1 agreement with the Keras model, accuracy drop (points), max |Δp|, quantization seconds, size
and sha256 (two settings that make the same bytes show it). ``shipped`` is ``export/onnx.py``'s
INT8_SETTINGS; the others change one or two things from it. Writes ``--out`` (JSON). Timings share the machine with whatever else runs: compare
them within one invocation only.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

import click
import numpy as np

VARIANTS = {
    "shipped": {},
    "percentile": {"calibration": "Percentile", "percentile": 99.999},
    "percentile-head-int8": {"calibration": "Percentile", "percentile": 99.999, "head": "int8"},
    "minmax-head-int8": {"calibration": "MinMax", "head": "int8"},
    "entropy": {"calibration": "Entropy"},
    "reduce-range": {"reduce_range": True},
}


def score(path: Path, pixels: np.ndarray, labels: np.ndarray, reference: np.ndarray) -> dict:
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    probs = np.concatenate([
        session.run(None, {"image": np.asarray(pixels[i : i + 32], dtype=np.float32)})[0]
        for i in range(0, len(pixels), 32)
    ])
    keras_accuracy = float((reference.argmax(1) == labels).mean())
    accuracy = float((probs.argmax(1) == labels).mean())
    return {
        "images": int(len(labels)),
        "top1_agreement": round(float((probs.argmax(1) == reference.argmax(1)).mean()), 6),
        "accuracy": round(accuracy, 6),
        "accuracy_drop": round((keras_accuracy - accuracy) * 100, 4),
        "max_abs_diff": round(float(np.abs(probs - reference).max()), 6),
    }


@click.command()
@click.argument("run_dir", type=click.Path(path_type=Path, exists=True, file_okay=False))
@click.option("--settings", "names", default=",".join(VARIANTS), show_default=True,
              help=f"Comma-separated, from: {', '.join(VARIANTS)}.")
@click.option("--out", type=click.Path(path_type=Path), default=Path("runs/bench-onnx-int8/results.json"),
              show_default=True, help="JSON file for the results.")
def main(run_dir: Path, names: str, out: Path) -> None:
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
        reference = keras_probabilities(ctx.model, pixels)
        for name in [n.strip() for n in names.split(",") if n.strip()]:
            settings = {**INT8_SETTINGS, **VARIANTS[name]}
            path = work / f"{name}.onnx"
            started = time.perf_counter()
            quantize(source, path, calibration, work, settings)
            seconds = time.perf_counter() - started
            row = {"name": name, "settings": settings, "quantize_seconds": round(seconds, 1),
                   "size_bytes": path.stat().st_size, "sha256": sha256_file(path),
                   "calibration_images": int(len(calibration)), **score(path, pixels, validation.labels, reference)}
            rows.append(row)
            click.echo(f"{name:22s} agreement {row['top1_agreement']:.2%}  drop {row['accuracy_drop']:+.2f}  "
                       f"max|dp| {row['max_abs_diff']:.4f}  {seconds:.0f}s  {row['size_bytes'] / 1e6:.2f} MB")
    finally:
        ctx.close()
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"run": str(run.root), "split": "validation", "rows": rows}, indent=2))
    click.echo(f"wrote {out}")


if __name__ == "__main__":
    main()
