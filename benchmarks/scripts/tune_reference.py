"""The latency limit of ``edge-export tune`` from the modern MobileNetV2 int8 reference, in the same process:

    python benchmarks/scripts/tune_reference.py [TUNE_DIR] [--runs 200] [--json OUT.json]

Builds (once, cached) the modern reference of ``compare_reference.py`` (``modern_reference``: a random-weight
``keras.applications.MobileNetV2`` 1.0 at 224, full-integer uint8-I/O TFLite) and times its bare 1-thread
interpreter call interleaved, in this one process, with every random-weight model a tune run measured
(``TUNE_DIR/latency/models``): p50, p90 and min of each, and each one's ratio to the reference. Give the
reference's p50 (a quiet machine) or min (a busy, shared one; with ``tune.latency_statistic=min``) to
``edge-export tune --max-latency-ms``; the ratios say which candidates the limit keeps.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
import numpy as np

from edge_export.benchmarks.latency import summarize, time_interleaved
from edge_export.core.atomic import write_json
from edge_export.core.run_folder import TuneFolder

REFERENCE = "reference (modern MobileNetV2 1.0 224 int8)"


def _compare_reference():
    spec = importlib.util.spec_from_file_location("compare_reference", Path(__file__).with_name("compare_reference.py"))
    assert spec is not None and spec.loader is not None  # a .py file always has both
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def reference_latency(
    tune_dir: str | Path | None = None,
    *,
    runs: int = 200,
    warmup: int = 10,
    reference: str | Path | None = None,
    reference_settings: dict | None = None,
) -> dict[str, Any]:
    """{model: {p50, p90, min, ratio_p50, ratio_min}} with the reference first (see the module doc)."""
    from edge_export.runtime.backends.litert import LiteRTBackend

    if reference is None:
        reference = _compare_reference().modern_reference(**(reference_settings or {}))
    models = {REFERENCE: Path(reference)}
    if tune_dir is not None:
        folder = TuneFolder(tune_dir).latency_model("x").parent
        models.update({p.stem: p for p in sorted(folder.glob("*.tflite"))})
    rng = np.random.default_rng(0)
    calls: dict[str, Callable[..., Any]] = {}
    for name, path in models.items():
        backend = LiteRTBackend.load(path, threads=1)
        shape = [1 if d is None or d < 1 else d for d in backend.input_spec.shape]
        x = rng.integers(0, 256, shape).astype(backend.input_spec.dtype)
        calls[name] = lambda b=backend, x=x: b.run(x)
    timed = time_interleaved(calls, runs=runs, warmup=warmup, block=10)
    stats = {name: summarize(d) for name, d in timed.items()}
    ref = stats[REFERENCE]
    return {
        name: {
            "p50": s["p50"],
            "p90": s["p90"],
            "min": s["min"],
            "ratio_p50": s["p50"] / ref["p50"],
            "ratio_min": s["min"] / ref["min"],
        }
        for name, s in stats.items()
    }


def render(result: dict[str, Any]) -> str:
    width = max(len(n) for n in result)
    lines = [f"{'model':<{width}}  {'p50 ms':>8}  {'p90 ms':>8}  {'min ms':>8}  {'x ref p50':>9}  {'x ref min':>9}"]
    for name, s in result.items():
        lines.append(
            f"{name:<{width}}  {s['p50']:8.3f}  {s['p90']:8.3f}  {s['min']:8.3f}  "
            f"{s['ratio_p50']:9.2f}  {s['ratio_min']:9.2f}"
        )
    ref = result[REFERENCE]
    lines.append(
        f"bare 1-thread calls, interleaved in one process; --max-latency-ms {ref['p50']:.2f} (p50) or "
        f"{ref['min']:.2f} with tune.latency_statistic=min"
    )
    return "\n".join(lines)


@click.command()
@click.argument("tune_dir", required=False, type=click.Path(path_type=Path))
@click.option("--runs", default=200, show_default=True, type=click.IntRange(min=5))
@click.option("--json", "json_out", type=click.Path(path_type=Path), help="Also write the numbers to this JSON file.")
def main(tune_dir, runs, json_out) -> None:
    """Time the modern MobileNetV2 int8 reference with TUNE_DIR's random-weight models, in one process."""
    result = reference_latency(tune_dir, runs=runs)
    click.echo(render(result))
    if json_out:
        write_json(json_out, result)


if __name__ == "__main__":  # pragma: no cover
    main()
