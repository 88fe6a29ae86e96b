"""What one training setting buys: the same model trained without and with it, same seed, same everything else.

    python benchmarks/scripts/setting_gain.py --data ../shared/data/cats_vs_dogs_small \\
        --backbone efficientnet_lite0 --image-size 176 --with train.label_smoothing=0.1 --out runs/gain_ls

Trains OUT/without and OUT/with (edge-export train, the default recipe at that backbone and size, plus the
``--with`` settings in the second) and prints each one's validation accuracy and loss (decide on validation, as a
user would; test is not read) and its training time; writes OUT/setting_gain.json. Minutes on 2 cores: a
benchmark, not a test. (``distill_gain.py`` is the same comparison for a teacher.)
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path


def train(data: Path, out: Path, settings: list[str]) -> dict:
    """``edge-export train`` with ``settings``: its validation metrics, wall time, where the time went and the
    training record (``metrics.json``'s ``training``: the teacher of a distilled run, ...)."""
    started = time.perf_counter()
    cmd = [sys.executable, "-m", "edge_export.cli", "train", "--data", str(data), "--out", str(out), *settings]
    subprocess.run(cmd, check=True)
    metrics = json.loads((out / "metrics.json").read_text())
    return {
        "validation": metrics["validation"],
        "seconds": round(time.perf_counter() - started, 1),
        "timing_seconds": metrics["timing_seconds"],
        "training": metrics["training"],
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--backbone", default="efficientnet_lite0")
    parser.add_argument("--image-size", type=int, default=176)
    parser.add_argument("--seed", type=int, default=1337)
    parser.add_argument("--with", dest="settings", action="append", required=True, metavar="KEY=VALUE")
    parser.add_argument("--base", action="append", default=[], metavar="KEY=VALUE", help="settings of both runs")
    parser.add_argument("--out", type=Path, default=Path("runs/setting_gain"))
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    common = [f"model.backbone={args.backbone}", f"model.image_size={args.image_size}", f"train.seed={args.seed}"]
    common += args.base
    result = {
        "model": f"{args.backbone}@{args.image_size}",
        "data": str(args.data),
        "settings": args.settings,
        "base": args.base,
        "without": train(args.data, args.out / "without", common),
        "with": train(args.data, args.out / "with", common + args.settings),
    }
    for name in ("without", "with"):
        v = result[name]["validation"]
        print(f"{name:<8} validation accuracy {v['accuracy']:.2%}  loss {v['loss']:.4f}  ({result[name]['seconds']} s)")
    gain = result["with"]["validation"]["accuracy"] - result["without"]["validation"]["accuracy"]
    result["gain_points"] = round(100 * gain, 2)
    print(f"{' '.join(args.settings)}: {100 * gain:+.2f} points of validation accuracy")
    (args.out / "setting_gain.json").write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
