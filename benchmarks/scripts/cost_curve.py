"""The cost curve of ``edge-export train``: wall time, peak memory and cache disk at N, 2N, 4N, 8N training images.

    python benchmarks/scripts/cost_curve.py [--n 1000] [--multiples 1,2,4,8] [--work DIR] [--out DIR]
                                            [--holdout K] [--keep] [OVERRIDE=VALUE ...]

For each size, a data set is made of symbolic links (no extra disk) to the shared photos
(``$EDGE_EXPORT_SHARED``, default ``../shared``, ``data/cats_vs_dogs_small``):

* ``train/{cats,dogs}/``: the first ``size/2`` photos of each class from ``train/`` (1,000 per class), then,
  when more are needed, the same photos again under new names (``r1-cat.0.jpg``, ...: decoded, cached and
  trained on as separate images, so the cost is real; the *accuracy* of such a set means nothing);
* ``validation/`` and ``test/``: the shared ones (or their first ``--holdout`` photos per class), the same for
  every size (only the training split grows).

Each size runs ``edge-export train`` twice with default settings (plus any OVERRIDES, e.g.
``train.feature_extraction.epochs=2``): first with an empty pixel cache (``EDGE_EXPORT_PIXEL_CACHE`` under the
work folder: every photo decoded), then again with the cache it left (warm: nothing decoded). Recorded per
run: wall time, peak RSS of the process tree (``ru_maxrss`` of the train process, read by a small measuring
parent with ``getrusage(RUSAGE_CHILDREN)``), the pixel cache's size on disk, the stage times from
``metrics.json``. Writes ``cost_curve.json``, ``cost_curve.md`` (a table) and ``cost_curve.png`` into ``--out``.

What it shows: peak RSS at 8N against N (the target: at most 1.3x), and wall time against images (linear at
most). Timings on a shared machine are noisy; ratios within one invocation are what to read.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

SHARED = Path(os.environ.get("EDGE_EXPORT_SHARED", Path(__file__).resolve().parents[2].parent / "shared"))
SOURCE = SHARED / "data" / "cats_vs_dogs_small"
CLASSES = ("cats", "dogs")


def make_dataset(source: Path, root: Path, images: int, holdout: int | None = None) -> dict[str, int]:
    """``root``/{train,validation,test}/<class>/ of links; ``images`` training images (split over the classes).
    ``holdout``: photos per class in validation/ and test/ (default: all of the shared ones).
    Returns how many links are repeats of a photo already used."""
    if root.exists():
        shutil.rmtree(root)
    repeats = 0
    per_class = [images // len(CLASSES) + (1 if i < images % len(CLASSES) else 0) for i in range(len(CLASSES))]
    for cls, count in zip(CLASSES, per_class):
        photos = sorted((source / "train" / cls).iterdir())
        target = root / "train" / cls
        target.mkdir(parents=True)
        for i in range(count):
            photo = photos[i % len(photos)]
            rounds = i // len(photos)
            name = photo.name if rounds == 0 else f"r{rounds}-{photo.name}"
            repeats += rounds > 0
            (target / name).symlink_to(photo.resolve())
        for split in ("validation", "test"):
            (root / split).mkdir(exist_ok=True)
            if holdout is None:
                (root / split / cls).symlink_to((source / split / cls).resolve(), target_is_directory=True)
                continue
            (root / split / cls).mkdir()
            for photo in sorted((source / split / cls).iterdir())[:holdout]:
                (root / split / cls / photo.name).symlink_to(photo.resolve())
    return {"train_images": images, "repeated_photos": repeats}


def measured(cmd: list[str], env: dict[str, str], log: Path) -> dict:
    """Run ``cmd`` in a measuring child: wall time, peak RSS of its process tree, exit status."""
    wrapper = [sys.executable, __file__, "--_measure", "--", *cmd]
    with open(log, "w") as out:
        proc = subprocess.run(wrapper, env=env, stdout=subprocess.PIPE, stderr=out, text=True)
    lines = [line for line in proc.stdout.splitlines() if line.startswith('{"measured"')]
    if not lines:
        return {"returncode": proc.returncode, "error": f"no measurement (see {log})"}
    return json.loads(lines[-1])["measured"]


def _measure_child(cmd: list[str]) -> int:
    started = time.perf_counter()
    proc = subprocess.run(cmd, stdout=sys.stderr)
    wall = time.perf_counter() - started
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)  # the largest of the waited-for descendants
    scale = 1 if sys.platform == "darwin" else 1024  # ru_maxrss: bytes on macOS, KiB on Linux
    print(
        json.dumps(
            {
                "measured": {
                    "returncode": proc.returncode,
                    "wall_s": round(wall, 2),
                    "peak_rss_bytes": int(usage.ru_maxrss * scale),
                }
            }
        ),
        flush=True,
    )
    return proc.returncode


def folder_bytes(folder: Path) -> int:
    total = 0
    for dirpath, _, names in os.walk(folder):
        for name in names:
            path = Path(dirpath) / name
            if not path.is_symlink():
                total += path.stat().st_size
    return total


def run_size(images: int, args, overrides: list[str]) -> dict:
    work: Path = args.work
    data = work / f"data-{images}"
    info = make_dataset(SOURCE, data, images, args.holdout)
    cache = work / f"cache-{images}"
    if cache.exists():
        shutil.rmtree(cache)
    env = {**os.environ, "EDGE_EXPORT_PIXEL_CACHE": str(cache), "TF_CPP_MIN_LOG_LEVEL": "2"}
    row: dict[str, Any] = {**info}
    for label in ("cold", "warm"):
        out = work / f"run-{images}-{label}"
        if out.exists():
            shutil.rmtree(out)
        cmd = [sys.executable, "-m", "edge_export.cli", "train", "--data", str(data), "--out", str(out), *overrides]
        print(f"[{images} images, {label} cache] {' '.join(cmd[3:])}", flush=True)
        result = measured(cmd, env, work / f"run-{images}-{label}.log")
        metrics_path = out / "metrics.json"
        metrics = json.loads(metrics_path.read_text()) if metrics_path.is_file() else {}
        row[label] = {
            **result,
            "cache_bytes": folder_bytes(cache) if cache.exists() else 0,
            "timing_seconds": metrics.get("timing_seconds"),
            "test_accuracy": (metrics.get("test") or {}).get("accuracy"),
        }
        print(
            f"  wall {result.get('wall_s')} s, peak RSS {result.get('peak_rss_bytes', 0) / 1e9:.2f} GB, "
            f"cache {row[label]['cache_bytes'] / 1e6:.0f} MB, exit {result.get('returncode')}",
            flush=True,
        )
        if not args.keep:
            shutil.rmtree(out, ignore_errors=True)
    if not args.keep:
        shutil.rmtree(cache, ignore_errors=True)
        shutil.rmtree(data, ignore_errors=True)
    return row


def table(rows: list[dict]) -> str:
    base = rows[0]
    lines = [
        "| training images | repeated photos | cold: wall (s) | cold: peak RSS (GB) | RSS vs smallest | "
        "warm: wall (s) | warm: peak RSS (GB) | pixel cache (MB) | decode cold / warm (s) |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        cold, warm = r["cold"], r["warm"]
        ratio = cold.get("peak_rss_bytes", 0) / max(1, base["cold"].get("peak_rss_bytes", 1))
        decode = lambda m: (m.get("timing_seconds") or {}).get("decode", "-")  # noqa: E731
        lines.append(
            f"| {r['train_images']} | {r['repeated_photos']} | {cold.get('wall_s', '-')} | "
            f"{cold.get('peak_rss_bytes', 0) / 1e9:.2f} | {ratio:.2f}x | {warm.get('wall_s', '-')} | "
            f"{warm.get('peak_rss_bytes', 0) / 1e9:.2f} | {cold['cache_bytes'] / 1e6:.0f} | "
            f"{decode(cold)} / {decode(warm)} |"
        )
    return "\n".join(lines) + "\n"


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x = [r["train_images"] for r in rows]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    for label, style in (("cold", "o-"), ("warm", "s--")):
        left.plot(x, [r[label].get("wall_s", float("nan")) for r in rows], style, label=f"{label} cache")
        right.plot(x, [r[label].get("peak_rss_bytes", 0) / 1e9 for r in rows], style, label=f"{label} cache")
    left.set(xlabel="training images", ylabel="wall time (s)", title="edge-export train: time")
    right.set(xlabel="training images", ylabel="peak RSS (GB)", title="edge-export train: peak memory")
    right.set_ylim(bottom=0)
    for ax in (left, right):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:2] == ["--_measure", "--"]:
        return _measure_child(argv[2:])
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=1000, help="smallest number of training images [1000]")
    parser.add_argument("--multiples", default="1,2,4,8", help="sizes as multiples of N [1,2,4,8]")
    parser.add_argument("--work", type=Path, default=Path("runs/cost-curve-work"), help="data links, caches, runs")
    parser.add_argument("--out", type=Path, default=Path("runs/cost-curve"), help="where the JSON, table and plot go")
    parser.add_argument(
        "--holdout",
        type=int,
        default=None,
        help="photos per class in validation/ and test/ [all: 500] (fewer for a quick check)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the run folders, caches and data links")
    parser.add_argument("overrides", nargs="*", help="settings for every train, e.g. train.fine_tune.epochs=2")
    args = parser.parse_args(argv)
    if not (SOURCE / "train").is_dir():
        print(f"shared photos not found at {SOURCE} (set EDGE_EXPORT_SHARED)", file=sys.stderr)
        return 2
    args.work.mkdir(parents=True, exist_ok=True)
    args.out.mkdir(parents=True, exist_ok=True)
    sizes = [args.n * int(m) for m in args.multiples.split(",")]
    rows = [run_size(size, args, args.overrides) for size in sizes]
    first, last = rows[0]["cold"], rows[-1]["cold"]
    summary = {
        "rss_ratio_largest_to_smallest": round(
            last.get("peak_rss_bytes", 0) / max(1, first.get("peak_rss_bytes", 1)), 3
        ),
        "wall_ratio_largest_to_smallest": round(last.get("wall_s", 0) / max(1e-9, first.get("wall_s", 1)), 3),
        "images_ratio": sizes[-1] / sizes[0],
    }
    record = {
        "source": str(SOURCE),
        "overrides": args.overrides,
        "sizes": sizes,
        "rows": rows,
        "summary": summary,
        "machine": {"cpus": os.cpu_count(), "platform": sys.platform},
    }
    (args.out / "cost_curve.json").write_text(json.dumps(record, indent=2) + "\n")
    (args.out / "cost_curve.md").write_text(table(rows) + f"\n{json.dumps(summary)}\n")
    plot(rows, args.out / "cost_curve.png")
    print(table(rows))
    print(json.dumps(summary))
    failed = [r for r in rows for label in ("cold", "warm") if r[label].get("returncode") != 0]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
