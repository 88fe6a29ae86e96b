"""Bring your own model, ONNX: a PyTorch-style ONNX file through `edge-export build --model FILE.onnx`, measured.

There is no PyTorch here, so the ONNX file is made from the Keras tutorial model of byom_tutorial.py the way a
PyTorch export looks: channels-first input (N x 3 x 180 x 180) with the batch fixed at 1, the input scale
outside the model (-1..1, torchvision-style pixel normalisation done by the caller), one sigmoid unit out. The
tool must find that (layout from the graph, the sigmoid from the graph, -1..1 on validation photos, or ask for it
when the check cannot tell: then the script passes ``--input-scale -1-1`` as the model's user would), export
onnx-fp32 and onnx-int8, check them against the ONNX model, and bench them on the 1,000 test photos.

    python benchmarks/scripts/byom_onnx.py --model runs/byom_tutorial/cats_dogs_classifier.keras --out runs/byom_onnx

Prints the bench table and writes OUT/byom_onnx.json (the import's decisions, each row's accuracy, agreement with
the ONNX model as given, p50).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = Path(__file__).resolve().parents[2]
SHARED = Path(os.environ.get("EDGE_EXPORT_SHARED", ROOT.parent / "shared"))
SIZE = 180


def pytorch_style_onnx(keras_path: Path, out: Path) -> Path:
    """The Keras model behind an NCHW, -1..1 input with batch 1, as tf2onnx makes it from a frozen function."""
    import keras
    import onnx
    import tensorflow as tf
    import tf2onnx
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    model = keras.models.load_model(keras_path, compile=False)

    def forward(x):  # x: N x 3 x S x S in -1..1 -> the model's own 0-255 NHWC input
        return model((tf.transpose(x, [0, 2, 3, 1]) + 1.0) * 127.5, training=False)

    spec = [tf.TensorSpec((1, 3, SIZE, SIZE), tf.float32, name="input")]
    frozen = convert_variables_to_constants_v2(tf.function(forward, input_signature=spec).get_concrete_function())
    inputs = [t.name for t in frozen.inputs if t.dtype != tf.resource]
    proto, _ = tf2onnx.convert.from_graph_def(
        frozen.graph.as_graph_def(),
        input_names=inputs,
        output_names=[t.name for t in frozen.outputs],
        opset=17,
        tensors_to_rename={inputs[0]: "input"},
    )
    path = out / "cats_dogs_nchw.onnx"
    onnx.save_model(proto, str(path))
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, required=True, help="the tutorial's cats_dogs_classifier.keras")
    parser.add_argument("--data", type=Path, default=SHARED / "data" / "cats_vs_dogs_small")
    parser.add_argument("--out", type=Path, default=Path("runs/byom_onnx"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    onnx_path = pytorch_style_onnx(args.model, args.out)
    run = args.out / "build"
    command = [
        sys.executable,
        "-m",
        "edge_export.cli",
        "build",
        "--model",
        str(onnx_path),
        "--data",
        str(args.data),
        "--out",
        str(run),
        "--force",
    ]
    first = subprocess.run(command, capture_output=True, text=True)
    check = [
        line
        for line in (first.stdout + first.stderr).splitlines()
        if line.startswith(("preprocessing check", "  ", "model expects", "error:", "  fix:"))
    ]
    print("\n".join(check))
    asked = first.returncode != 0 and "cannot tell what the model expects" in first.stdout + first.stderr
    started = time.perf_counter()
    if first.returncode != 0:
        if not asked:
            sys.exit(f"the build failed:\n{first.stdout[-3000:]}\n{first.stderr[-3000:]}")
        # the check asked for the flag: pass what the model was made for, as its user would
        subprocess.run([*command, "--input-scale", "-1-1"], check=True)
    seconds = time.perf_counter() - started
    manifest = json.loads((run / "export" / "manifest.json").read_text())
    bench = json.loads((run / "bench" / "bench.json").read_text())
    rows = {
        r["name"]: {
            "accuracy": r.get("accuracy"),
            "agreement": r.get("top1_agreement"),
            "p50_ms": (r.get("latency_ms") or {}).get("p50"),
            "images": r.get("images"),
        }
        for r in bench["artifacts"]
    }
    result = {
        "model": str(onnx_path),
        "build_seconds": round(seconds, 1),
        "check_without_flag": check,
        "asked_for_input_scale": asked,
        "imported_from": {
            k: manifest["model"]["imported_from"][k] for k in ("kind", "input_scale", "output", "decided")
        },
        "validation_parity": {a["name"]: a["parity"] for a in manifest["artifacts"]},
        "skipped": {name: d["reason"] for name, d in manifest.get("auto", {}).items()},
        "bench": rows,
    }
    (args.out / "byom_onnx.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
