"""A run's int8 artifact against the reference MobileNetV2 (quantized, 224x224), side by side, 1 thread:

    python benchmarks/scripts/compare_reference.py RUN_DIR --data TEST_DIR [--repeats 7 --runs 20]

Both models are loaded in this one process and timed in interleaved blocks (each repeat times a block
of ``runs`` calls of every model in turn, the order alternating between repeats), and the median over
repeats of each block's p50 is reported: on a shared, noisy machine, load that comes and goes hits both
models alike. For each model it reports the bare interpreter call, ``predict_proba`` on a preloaded
image (the runtime's normalize/quantize/dequantize overhead) and ``predict(path)`` end to end (plus
decode and resize), and the runtime's overhead over the bare call.
"""

from __future__ import annotations

import os
import statistics
from pathlib import Path
from typing import Any, Callable

import click
import numpy as np

from edge_export.core.atomic import write_json
from edge_export.benchmarks.latency import overhead_pct, summarize, time_calls
from edge_export.benchmarks.machine import describe, machine_info
from edge_export.benchmarks.testset import scan_test_folder
from edge_export.core.errors import EdgeExportError
from edge_export.export.manifest import read_manifest
from edge_export.core.run_folder import RunFolder

REFERENCE_NAME = "mobilenet_v2_1.0_224_quant.tflite"
KINDS = ("bare", "predict_proba", "e2e", "decode")


def default_reference() -> Path:
    """``$EDGE_EXPORT_SHARED/reference-models/...``, else the ``shared/`` folder beside the repository."""
    candidates = []
    if os.environ.get("EDGE_EXPORT_SHARED"):
        candidates.append(Path(os.environ["EDGE_EXPORT_SHARED"]))
    candidates += [Path(__file__).resolve().parents[3] / "shared", Path("../shared")]
    for shared in candidates:
        path = shared / "reference-models" / REFERENCE_NAME
        if path.is_file():
            return path
    return candidates[0] / "reference-models" / REFERENCE_NAME


def artifact_path(run: RunFolder, name: str) -> Path:
    entry = read_manifest(run).artifact(name)
    if entry is None:
        raise EdgeExportError(f"the run's export has no artifact {name!r}", path=run.export_manifest)
    if not entry.ok or not entry.path:
        raise EdgeExportError(f"artifact {name!r} failed to export", path=run.export_manifest, hint="see its error there")
    path = run.export_dir / entry.path
    if not path.is_file():
        raise EdgeExportError(f"artifact {name!r} is missing", path=path, hint="re-run `edge-export export`")
    return path


def _timers(path: Path, image: Path) -> dict[str, Callable[[], Any]]:
    """The four timed calls of one model at 1 thread."""
    from edge_export.runtime.classifier import Classifier
    from edge_export.runtime.images import load_image
    from edge_export.runtime.quantization import quantize

    clf = Classifier.load(path, threads=1)
    prep = clf.preprocessing
    pixels = load_image(image, tuple(prep.size), prep.resize)[np.newaxis]
    x = quantize(prep.normalize(pixels), clf.backend.input_spec)
    return {
        "bare": lambda: clf.backend.run(x),
        "predict_proba": lambda: clf.predict_proba(pixels),
        "e2e": lambda: clf.predict(str(image), top_k=1),
        "decode": lambda: load_image(image, tuple(prep.size), prep.resize),
        "_info": {"input": f"{prep.size[0]}x{prep.size[1]} {clf.backend.input_spec.dtype}", "size_bytes": path.stat().st_size},
    }


def compare_reference(
    run: RunFolder | str | Path,
    data: str | Path,
    *,
    reference: str | Path | None = None,
    artifact: str = "tflite-int8",
    runs: int = 20,
    repeats: int = 7,
    warmup: int = 10,
) -> dict[str, Any]:
    """Interleaved 1-thread timings of the run's ``artifact`` and the reference model (see the module doc)."""
    if runs < 1 or repeats < 1:
        raise EdgeExportError("runs and repeats must be >= 1")
    run = run if isinstance(run, RunFolder) else RunFolder(run)
    reference = Path(reference) if reference is not None else default_reference()
    if not reference.is_file():
        raise EdgeExportError("reference model not found", path=reference, hint="pass --reference PATH")
    image = scan_test_folder(data).files[0]
    models = {artifact: artifact_path(run, artifact), "reference": reference}
    timers = {name: _timers(path, image) for name, path in models.items()}
    for t in timers.values():
        for kind in KINDS:
            for _ in range(warmup):
                t[kind]()
    blocks: dict[str, dict[str, list[float]]] = {name: {k: [] for k in KINDS} for name in models}
    pooled: dict[str, dict[str, list[int]]] = {name: {k: [] for k in KINDS} for name in models}
    order = list(models)
    for r in range(repeats):
        for name in order if r % 2 == 0 else order[::-1]:
            for kind in KINDS:
                durations = time_calls(timers[name][kind], runs=runs)
                blocks[name][kind].append(float(np.median(durations)) / 1e6)
                pooled[name][kind] += durations
    results: dict[str, Any] = {}
    for name, path in models.items():
        p50 = {kind: statistics.median(blocks[name][kind]) for kind in KINDS}
        results[name] = {
            "path": str(path),
            **timers[name]["_info"],
            "p50_ms": p50,
            "block_p50_ms": blocks[name],
            "pooled_ms": {kind: summarize(pooled[name][kind]) for kind in KINDS},
            "overhead_pct": overhead_pct(p50["predict_proba"], p50["bare"]),
            "e2e_overhead_pct": overhead_pct(p50["e2e"], p50["bare"]),
        }
    ours, ref = results[artifact]["p50_ms"]["bare"], results["reference"]["p50_ms"]["bare"]
    return {
        "run_dir": str(run.root),
        "artifact": artifact,
        "image": str(image),
        "threads": 1,
        "runs_per_block": runs,
        "repeats": repeats,
        "warmup": warmup,
        "models": results,
        "bare_ratio": ours / ref if ref > 0 else None,
        "machine": machine_info(),
    }


def render(result: dict[str, Any]) -> str:
    header = ["model", "input", "size", "bare p50", "spread", "predict_proba p50", "e2e p50", "decode p50", "overhead", "e2e overhead"]
    rows = [header]
    for name, m in result["models"].items():
        label = f"{name} ({Path(m['path']).name})"
        bare_blocks = m["block_p50_ms"]["bare"]
        rows.append([
            label, m["input"], f"{m['size_bytes'] / 1e6:.2f} MB", f"{m['p50_ms']['bare']:.3f}",
            f"{min(bare_blocks):.3f}-{max(bare_blocks):.3f}", f"{m['p50_ms']['predict_proba']:.3f}",
            f"{m['p50_ms']['e2e']:.3f}", f"{m['p50_ms']['decode']:.3f}",
            f"{m['overhead_pct']:+.1f}%", f"{m['e2e_overhead_pct']:+.1f}%",
        ])
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))) for r in rows]
    art = result["models"][result["artifact"]]
    lines += [
        f"times in ms at 1 thread: median over {result['repeats']} interleaved repeats of the p50 of {result['runs_per_block']} "
        f"calls (spread = lowest-highest repeat); image {result['image']}",
        f"bare call: {result['artifact']} takes {result['bare_ratio']:.3g}x the reference's time",
        f"runtime overhead of {result['artifact']} over the bare interpreter call (1 thread): "
        f"{art['overhead_pct']:+.1f}% without decode (predict_proba on a preloaded image), "
        f"{art['e2e_overhead_pct']:+.1f}% end to end (predict(path), decode+resize {art['p50_ms']['decode']:.3f} ms)",
        f"machine: {describe(result['machine'])}",
    ]
    return "\n".join(lines)


@click.command()
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option("--data", required=True, type=click.Path(path_type=Path), help="Test folder (its first image is timed).")
@click.option("--reference", type=click.Path(path_type=Path), help=f"Reference model [shared/reference-models/{REFERENCE_NAME}].")
@click.option("--artifact", default="tflite-int8", show_default=True, help="Which of the run's artifacts.")
@click.option("--runs", default=20, show_default=True, type=click.IntRange(min=1), help="Timed calls per block.")
@click.option("--repeats", default=7, show_default=True, type=click.IntRange(min=1), help="Interleaved blocks per model.")
@click.option("--warmup", default=10, show_default=True, type=click.IntRange(min=0))
@click.option("--json", "json_out", type=click.Path(path_type=Path), help="Also write the numbers to this JSON file.")
def main(run_dir, data, reference, artifact, runs, repeats, warmup, json_out) -> None:
    """Time RUN_DIR's int8 artifact and the reference MobileNetV2 side by side at 1 thread."""
    try:
        result = compare_reference(run_dir, data, reference=reference, artifact=artifact, runs=runs, repeats=repeats, warmup=warmup)
    except EdgeExportError as exc:
        click.secho(f"error: {exc}", fg="red", err=True)
        raise SystemExit(2) from None
    click.echo(render(result))
    if json_out:
        write_json(json_out, result)


if __name__ == "__main__":  # pragma: no cover
    main()
