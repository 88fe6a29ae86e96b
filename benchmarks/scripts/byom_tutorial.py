"""Bring your own model, measured: the Keras transfer-learning tutorial's model through `edge-export build --model`.

1. Trains the tutorial's model on cats vs dogs as a user would: ``image_dataset_from_directory`` at 180 px,
   RandomFlip + RandomRotation and ``Rescaling(1/127.5, offset=-1)`` inside the model, a MobileNet base (the
   ImageNet weights in ../shared/weights/keras, alpha 0.25: offline), GlobalAveragePooling2D, Dropout,
   ``Dense(1, activation="sigmoid")``; frozen base first, then the top of the base fine-tuned at a low
   learning rate; saved by ``ModelCheckpoint`` as ``cats_dogs_classifier.keras`` (best validation loss).
2. Measures the Keras model on the test split with the Keras pipeline (``image_dataset_from_directory``).
3. Converts it to full-integer int8 by the TensorFlow documentation's recipe (200 representative training
   photos from the same pipeline, uint8 input and output) and measures that file on the same pixels.
4. Runs ``edge-export build --model cats_dogs_classifier.keras --data DATA`` and reads its bench.json.

Prints one table and writes OUT/byom_tutorial.json. Minutes (training on 2 cores), so a benchmark, not a test.

    python benchmarks/scripts/byom_tutorial.py --out runs/byom_tutorial
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = Path(__file__).resolve().parents[2]
SHARED = Path(os.environ.get("EDGE_EXPORT_SHARED", ROOT.parent / "shared"))
SIZE = 180


def train_tutorial_model(data: Path, out: Path, weights: Path, epochs: int, fine_tune_epochs: int, seed: int) -> Path:
    import keras

    keras.utils.set_random_seed(seed)
    train = keras.utils.image_dataset_from_directory(data / "train", image_size=(SIZE, SIZE), batch_size=32, seed=seed)
    validation = keras.utils.image_dataset_from_directory(
        data / "validation", image_size=(SIZE, SIZE), batch_size=32, shuffle=False
    )
    base = keras.applications.MobileNet(
        input_shape=(SIZE, SIZE, 3), alpha=0.25, include_top=False, weights=str(weights)
    )
    base.trainable = False
    inputs = keras.Input((SIZE, SIZE, 3))
    x = keras.layers.RandomFlip("horizontal")(inputs)
    x = keras.layers.RandomRotation(0.2)(x)
    x = keras.layers.Rescaling(1.0 / 127.5, offset=-1)(x)
    x = base(x, training=False)
    x = keras.layers.GlobalAveragePooling2D()(x)
    x = keras.layers.Dropout(0.2)(x)
    outputs = keras.layers.Dense(1, activation="sigmoid")(x)
    model = keras.Model(inputs, outputs)
    path = out / "cats_dogs_classifier.keras"
    checkpoint = keras.callbacks.ModelCheckpoint(str(path), monitor="val_loss", save_best_only=True)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="binary_crossentropy", metrics=["accuracy"])
    model.fit(train, validation_data=validation, epochs=epochs, callbacks=[checkpoint], verbose=2)
    base.trainable = True
    for layer in base.layers[: len(base.layers) * 2 // 3]:  # fine-tune the top third of the base
        layer.trainable = False
    model.compile(optimizer=keras.optimizers.Adam(1e-5), loss="binary_crossentropy", metrics=["accuracy"])
    model.fit(train, validation_data=validation, epochs=fine_tune_epochs, callbacks=[checkpoint], verbose=2)
    return path


def keras_pipeline(model_path: Path, data: Path, out: Path) -> dict:
    """The Keras model and the TF documentation's int8 recipe, both on image_dataset_from_directory's pixels."""
    import keras
    import numpy as np
    import tensorflow as tf
    from ai_edge_litert.interpreter import Interpreter

    model = keras.models.load_model(model_path)
    test = keras.utils.image_dataset_from_directory(
        data / "test", image_size=(SIZE, SIZE), batch_size=32, shuffle=False
    )
    pixels = np.concatenate([x.numpy() for x, _ in test])
    labels = np.concatenate([y.numpy() for _, y in test])
    keras_p = model.predict(pixels, batch_size=32, verbose=0)[:, 0]
    keras_pred = (keras_p > 0.5).astype(int)

    train = keras.utils.image_dataset_from_directory(data / "train", image_size=(SIZE, SIZE), batch_size=1, seed=0)

    def representative():
        for x, _ in train.take(200):
            yield [tf.cast(x, tf.float32)]

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = representative
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.uint8
    converter.inference_output_type = tf.uint8
    tflite_path = out / "tf_recipe_int8.tflite"
    tflite_path.write_bytes(converter.convert())
    interpreter = Interpreter(model_path=str(tflite_path))
    interpreter.allocate_tensors()
    inp, outp = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    scale, zero = outp["quantization"]
    recipe_p = []
    for image in pixels:
        interpreter.set_tensor(inp["index"], image[np.newaxis].round().clip(0, 255).astype(np.uint8))
        interpreter.invoke()
        recipe_p.append((interpreter.get_tensor(outp["index"])[0, 0].astype(np.float32) - zero) * scale)
    recipe_pred = (np.asarray(recipe_p) > 0.5).astype(int)
    return {
        "test_images": int(len(labels)),
        "keras_accuracy_keras_pipeline": float((keras_pred == labels).mean()),
        "tf_recipe_int8_accuracy": float((recipe_pred == labels).mean()),
        "tf_recipe_int8_agreement_with_keras": float((recipe_pred == keras_pred).mean()),
        "tf_recipe_int8_size_bytes": tflite_path.stat().st_size,
    }


def run_build(model_path: Path, data: Path, out: Path) -> dict:
    build_dir = out / "build"
    cmd = [
        sys.executable,
        "-m",
        "edge_export.cli",
        "build",
        "--model",
        str(model_path),
        "--data",
        str(data),
        "--out",
        str(build_dir),
    ]
    started = time.perf_counter()
    subprocess.run(cmd, check=False)
    seconds = time.perf_counter() - started
    bench = json.loads((build_dir / "bench" / "bench.json").read_text())
    manifest = json.loads((build_dir / "export" / "manifest.json").read_text())
    rows: dict[str, dict[str, Any]] = {}
    for row in bench["artifacts"]:
        rows.setdefault(
            row["name"],
            {
                "accuracy": row.get("accuracy"),
                "agreement_with_keras": row.get("top1_agreement"),
                "size_bytes": row.get("size_bytes"),
                "status": row.get("status"),
                "p50_ms": (row.get("latency_ms") or {}).get("p50"),
            },
        )
    return {
        "build_seconds": round(seconds, 1),
        "command": " ".join(cmd[2:]),
        "rows": rows,
        "imported_from": manifest["model"].get("imported_from"),
        "auto": manifest.get("auto"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=SHARED / "data" / "cats_vs_dogs_small")
    parser.add_argument("--weights", type=Path, default=SHARED / "weights" / "keras" / "mobilenet_2_5_224_tf_no_top.h5")
    parser.add_argument("--out", type=Path, default=Path("runs/byom_tutorial"))
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--fine-tune-epochs", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip-training", action="store_true", help="reuse OUT/cats_dogs_classifier.keras")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    model_path = args.out / "cats_dogs_classifier.keras"
    if not (args.skip_training and model_path.is_file()):
        model_path = train_tutorial_model(
            args.data, args.out, args.weights, args.epochs, args.fine_tune_epochs, args.seed
        )
    result = {"model": str(model_path), **keras_pipeline(model_path, args.data, args.out)}
    result["edge_export"] = run_build(model_path, args.data, args.out)
    (args.out / "byom_tutorial.json").write_text(json.dumps(result, indent=2) + "\n")
    keras_accuracy = result["keras_accuracy_keras_pipeline"]
    print(f"\n{'pipeline':<34} {'test accuracy':>14} {'vs Keras':>9} {'agreement':>10}")
    print(f"{'Keras model (Keras pipeline)':<34} {keras_accuracy:>14.2%} {'':>9} {'':>10}")
    print(
        f"{'TF docs int8 recipe (uint8 I/O)':<34} {result['tf_recipe_int8_accuracy']:>14.2%} "
        f"{100 * (result['tf_recipe_int8_accuracy'] - keras_accuracy):>+9.2f} "
        f"{result['tf_recipe_int8_agreement_with_keras']:>10.2%}"
    )
    for name, row in result["edge_export"]["rows"].items():
        if row["accuracy"] is None:
            continue
        agreement = row["agreement_with_keras"]
        print(
            f"{'edge-export ' + name:<34} {row['accuracy']:>14.2%} {100 * (row['accuracy'] - keras_accuracy):>+9.2f} "
            f"{agreement if agreement is None else format(agreement, '.2%'):>10}"
        )
    print(f"wrote {args.out / 'byom_tutorial.json'}")


if __name__ == "__main__":
    main()
