"""Benchmark: `edge-export train` with default settings, several seeds; wall time and accuracy.

    python benchmarks/scripts/train_recipe.py --data ../shared/data/cats_vs_dogs_small --seeds 1,2,3

Each seed runs the real command in a fresh process (so import and start-up time count, as for a user).
Writes ``results.json`` and ``results.md`` in ``--out`` with per-seed numbers and the medians.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import click


@click.command()
@click.option("--data", required=True, help="Dataset folder.")
@click.option("--seeds", default="1,2,3", show_default=True, help="Comma-separated seeds.")
@click.option("--out", type=click.Path(path_type=Path), default=Path("runs/bench-train"), show_default=True)
@click.argument("overrides", nargs=-1)
def main(data: str, seeds: str, out: Path, overrides: tuple[str, ...]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for seed in [int(s) for s in seeds.split(",")]:
        run_dir = out / f"seed{seed}"
        cmd = [
            sys.executable,
            "-m",
            "edge_export.cli",
            "train",
            "--data",
            data,
            "--out",
            str(run_dir),
            "--seed",
            str(seed),
            *overrides,
        ]
        click.echo(f"$ {' '.join(cmd[2:])}")
        t = time.perf_counter()
        with open(out / f"seed{seed}.log", "w") as log:
            subprocess.run(cmd, check=True, stdout=log, stderr=subprocess.STDOUT)
        wall = time.perf_counter() - t
        metrics = json.loads((run_dir / "metrics.json").read_text())
        row = {
            "seed": seed,
            "wall_seconds": round(wall, 1),
            "validation_accuracy": metrics["validation"]["accuracy"],
            "validation_loss": round(metrics["validation"]["loss"], 4),
            "test_accuracy": metrics.get("test", {}).get("accuracy"),
            "timing_seconds": metrics["timing_seconds"],
        }
        rows.append(row)
        click.echo(f"  seed {seed}: {wall:.0f}s  val {row['validation_accuracy']:.4f}  test {row['test_accuracy']}")
    median = {
        key: statistics.median(r[key] for r in rows)
        for key in ("wall_seconds", "validation_accuracy", "validation_loss", "test_accuracy")
        if all(r[key] is not None for r in rows)
    }
    result = {"data": data, "overrides": list(overrides), "runs": rows, "median": median}
    (out / "results.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = ["| seed | wall (s) | val acc | val loss | test acc |", "|---|---|---|---|---|"]
    lines += [
        f"| {r['seed']} | {r['wall_seconds']:.0f} | {r['validation_accuracy']:.4f} | {r['validation_loss']:.4f} "
        f"| {r['test_accuracy']} |"
        for r in rows
    ]
    lines.append(
        f"| **median** | {median['wall_seconds']:.0f} | {median['validation_accuracy']:.4f} "
        f"| {median['validation_loss']:.4f} | {median.get('test_accuracy')} |"
    )
    (out / "results.md").write_text("\n".join(lines) + "\n")
    click.echo("\n".join(lines))


if __name__ == "__main__":
    main()
