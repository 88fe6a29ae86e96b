"""``tflite-qat-int8``: quantization-aware training, run in a subprocess.

tensorflow-model-optimization only quantizes tf_keras models, and tf_keras is only what ``tf.keras``
means when ``TF_USE_LEGACY_KERAS=1`` is set before TensorFlow is imported. So this process (Keras 3)
hands the work to ``python -m edge_export.export.qat_worker JOB_DIR`` with that variable set, through
files in a temporary job folder:

- ``job.json``: the model spec, training settings, normalization constants, int8_io
- ``weights.npz``: the Keras 3 model's weights by layer name (``<layer>/<index>``)
- ``train_x.npy`` / ``train_y.npy``: uint8 training pixels and labels
- ``val_x.npy`` / ``val_y.npy``: validation images, to keep the best epoch (epoch 0: calibration only)
- back: ``model.tflite`` (no metadata yet) and ``result.json``, or ``error.json``
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import numpy as np

from edge_export.core.errors import EdgeExportError
from edge_export.core.process import child_popen_kwargs, python_module_command
from edge_export.export.context import ExportContext
from edge_export.export.formats import FormatSpec
from edge_export.export.tflite import write_tflite
from edge_export.trainer.backbones import get_backbone
from edge_export.trainer.model import HEAD_LAYERS, NORMALIZE
from edge_export.trainer.two_stage import top_layers

WORKER = "edge_export.export.qat_worker"
JOB, WEIGHTS, TRAIN_X, TRAIN_Y = "job.json", "weights.npz", "train_x.npy", "train_y.npy"
VAL_X, VAL_Y = "val_x.npy", "val_y.npy"
RESULT, ERROR, MODEL, LOG = "result.json", "error.json", "model.tflite", "worker.log"


def convert_qat_int8(ctx: ExportContext, fmt: FormatSpec, out: Path) -> dict:
    settings = ctx.config.qat
    images = ctx.training_images(settings.max_images)
    validation = ctx.validation_images(settings.validation_images)
    job_dir = ctx.workdir / "qat"
    write_job(
        job_dir,
        model=ctx.model,
        spec=ctx.spec,
        pixels=images.pixels,
        labels=images.labels,
        validation=(validation.pixels, validation.labels),
        trainable_layers=trainable_layers(ctx.model, ctx.spec, ctx.run_config.train.fine_tune),
        epochs=settings.epochs,
        learning_rate=settings.learning_rate,
        batch_size=ctx.run_config.train.batch_size,
        seed=ctx.run_config.train.seed,
        int8_io=ctx.config.int8_io,
    )
    result = run_worker(job_dir, echo=ctx.echo)
    info = {
        "images": int(len(images)),
        "epochs": settings.epochs,
        "learning_rate": settings.learning_rate,
        "trained_weights": result.get("trained_weights"),
        "best_epoch": result.get("best_epoch"),
        "train_seconds": result.get("train_seconds"),
    }
    write_tflite(ctx, fmt, (job_dir / MODEL).read_bytes(), out, qat=info)
    return {"qat": {**info, "history": result.get("history", {}), "validation": result.get("validation", [])}}


def write_job(
    job_dir: Path,
    *,
    model: Any,
    spec: Any,
    pixels: np.ndarray,
    labels: np.ndarray,
    validation: tuple[np.ndarray, np.ndarray],
    trainable_layers: list[str] | None,
    epochs: int,
    learning_rate: float,
    batch_size: int,
    seed: int,
    int8_io: str,
) -> None:
    job_dir.mkdir(parents=True, exist_ok=True)
    weights: dict[str, Any] = {
        f"{layer.name}/{i}": np.asarray(w) for layer in model.layers for i, w in enumerate(layer.get_weights())
    }
    np.savez(job_dir / WEIGHTS, **weights)
    np.save(job_dir / TRAIN_X, pixels)
    np.save(job_dir / TRAIN_Y, labels.astype(np.int64))
    np.save(job_dir / VAL_X, validation[0])
    np.save(job_dir / VAL_Y, validation[1].astype(np.int64))
    job = {
        "spec": spec.architecture(),
        "normalization": normalization_of(model),
        "trainable_layers": trainable_layers,
        "epochs": epochs,
        "learning_rate": learning_rate,
        "batch_size": batch_size,
        "seed": seed,
        "int8_io": int8_io,
    }
    (job_dir / JOB).write_text(json.dumps(job, indent=2))


def trainable_layers(model: Any, spec: Any, fine_tune: Any) -> list[str]:
    """The layers training updated: the head, plus the top of the base that fine-tuning unfroze (as in
    ``trainer.stages``). QAT fine-tunes only these; the rest keeps its weights (BatchNormalization never
    trains). Updating the whole ImageNet base on a small dataset cost accuracy (1 point on cats vs dogs)."""
    chosen = [layer for layer in model.layers if layer.name in HEAD_LAYERS]
    if fine_tune.enabled:
        chosen += top_layers(model, get_backbone(spec.backbone), fine_tune.unfreeze_blocks, fine_tune.unfreeze_layers)
    return [layer.name for layer in chosen if layer.weights and type(layer).__name__ != "BatchNormalization"]


def normalization_of(model: Any) -> dict | None:
    """mean and std of the model's Normalization layer (per channel), or None when it has none."""
    try:
        layer = model.get_layer(NORMALIZE)
    except ValueError:
        return None
    mean = np.asarray(layer.mean, np.float64).reshape(-1)
    std = np.sqrt(np.asarray(layer.variance, np.float64).reshape(-1))
    return {"mean": mean.tolist(), "std": np.maximum(std, 1e-7).tolist()}


def run_worker(job_dir: Path, echo=None) -> dict:
    """Run the worker on ``job_dir``; forward its progress lines; its result, or an exception with its error."""
    env = dict(os.environ)
    env["TF_USE_LEGACY_KERAS"] = "1"
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    env["PYTHONUNBUFFERED"] = "1"
    for name in (RESULT, ERROR, MODEL):
        (job_dir / name).unlink(missing_ok=True)
    with open(job_dir / LOG, "w") as log:
        proc = subprocess.Popen(
            python_module_command(WORKER, str(job_dir)),
            stdout=subprocess.PIPE,
            stderr=log,
            stdin=subprocess.DEVNULL,
            env=env,
            text=True,
            **child_popen_kwargs(),  # dies with this process: a killed export leaves no worker training on
        )
        assert proc.stdout is not None  # stdout=PIPE
        try:
            for line in proc.stdout:
                if echo is not None and line.strip():
                    echo(f"    {line.rstrip()}")
            proc.wait()
        finally:
            if proc.poll() is None:  # interrupted: do not leave the worker training
                proc.terminate()
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
            proc.stdout.close()
    if proc.returncode != 0 or not (job_dir / MODEL).is_file():
        error = _read_json(job_dir / ERROR)
        message = error.get("message") if error else None
        if not message:
            tail = (job_dir / LOG).read_text(errors="replace").strip().splitlines()[-5:]
            message = f"worker exited with code {proc.returncode}: " + " | ".join(tail)
        raise EdgeExportError(f"quantization-aware training failed: {message}")
    return _read_json(job_dir / RESULT) or {}


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None
