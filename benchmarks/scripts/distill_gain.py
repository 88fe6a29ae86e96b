"""What distillation buys: the same student trained with and without a teacher, same seed, same settings.

    python benchmarks/scripts/distill_gain.py --data ../shared/data/cats_vs_dogs_small --teacher runs/default \\
        --backbone efficientnet_lite0 --image-size 160 --out runs/distill_gain [--views 2] [--weight 0.5]

Trains OUT/plain and OUT/distilled (edge-export train, the default recipe at the student's size) and prints, for
each, the validation accuracy and loss (chosen on validation, as a user would; test is not read), the training
time and where it went, and writes OUT/distill_gain.json. Minutes on 2 cores (the teacher labels every photo and
view once), so a benchmark, not a test.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from setting_gain import train as train_run  # type: ignore[import-not-found]  # noqa: E402 (a sibling script)


def train(data: Path, out: Path, backbone: str, size: int, seed: int, extra: list[str]) -> dict:
    model = [f"model.backbone={backbone}", f"model.image_size={size}", f"train.seed={seed}"]
    result = train_run(data, out, model + extra)
    return {
        **{k: result[k] for k in ("validation", "seconds", "timing_seconds")},
        "distill": result["training"].get("distill"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--teacher", type=Path, required=True, help="a finished run folder of the same classes")
    parser.add_argument("--backbone", default="efficientnet_lite0")
    parser.add_argument("--image-size", type=int, default=160)
    parser.add_argument("--seed", type=int, default=1337)
    parser.add_argument("--views", type=int, default=2)
    parser.add_argument("--weight", type=float, default=0.5)
    parser.add_argument("--out", type=Path, default=Path("runs/distill_gain"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    result = {
        "student": f"{args.backbone}@{args.image_size}",
        "teacher": str(args.teacher.resolve()),
        "teacher_validation": json.loads((args.teacher / "metrics.json").read_text())["validation"],
        "plain": train(args.data, args.out / "plain", args.backbone, args.image_size, args.seed, []),
        "distilled": train(
            args.data,
            args.out / "distilled",
            args.backbone,
            args.image_size,
            args.seed,
            [
                f"train.distill.teacher={args.teacher}",
                f"train.distill.views={args.views}",
                f"train.distill.weight={args.weight}",
            ],
        ),
    }
    for name in ("plain", "distilled"):
        v = result[name]["validation"]
        print(
            f"{name:<10} validation accuracy {v['accuracy']:.2%}  loss {v['loss']:.4f}  "
            f"({result[name]['seconds']:.0f} s)"
        )
    gain = result["distilled"]["validation"]["accuracy"] - result["plain"]["validation"]["accuracy"]
    result["gain_points"] = round(100 * gain, 2)
    print(f"distillation: {100 * gain:+.2f} points of validation accuracy")
    (args.out / "distill_gain.json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
