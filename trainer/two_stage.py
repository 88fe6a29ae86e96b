"""The two stages of the transfer-learning recipe.

1. Feature extraction: base frozen (BatchNorm in inference mode), a new head trained either on cached
   features (the base runs once: seconds per epoch) or with augmentation and the base in the loop.
2. Fine-tuning: the top blocks of the base unfrozen (BatchNorm kept frozen) at a low learning rate.
   Without augmentation the frozen bottom of the base is computed once and cached; that is exactly
   the same computation as running the whole model, only faster.
"""

from __future__ import annotations

import logging
import math
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edge_export.core.config import AugmentConfig, TrainConfig
from edge_export.core.errors import EdgeExportError
from edge_export.core.run_folder import RunFolder
from edge_export.core.tf_env import import_keras
from edge_export.trainer.backbones import BackboneSpec
from edge_export.trainer.callbacks import BestCheckpoint
from edge_export.trainer.model import CLASSIFIER, DROPOUT, POOL, base_layers, base_units
from edge_export.trainer.streaming import ActivationStore, fit_dataset, mirrored, ordered_dataset, predict

log = logging.getLogger(__name__)

LOSS = "sparse_categorical_crossentropy"
SOFT_LOSS = "categorical_crossentropy"  # distillation: soft targets; with one-hot validation it equals LOSS


def _targets(data: dict, soft_targets: np.ndarray | None) -> np.ndarray:
    return data["train"].labels if soft_targets is None else soft_targets


@dataclass
class SplitArrays:
    pixels: Any  # uint8 N x H x W x 3: a DiskArray (the pixel cache) or an ndarray; Keras casts each batch to float32
    labels: np.ndarray


@dataclass
class StageResult:
    name: str
    history: dict[str, list[float]] = field(default_factory=dict)
    best_val_loss: float = math.inf
    best_epoch: int | None = None
    seconds: float = 0.0


@dataclass
class TrainingOutcome:
    stages: list[StageResult]
    probabilities: dict[str, np.ndarray]  # split -> N x C predicted by the final model
    cache_seconds: float = 0.0


def train_two_stages(
    model: Any,
    backbone: BackboneSpec,
    cfg: TrainConfig,
    data: dict[str, SplitArrays],
    run: RunFolder,
    class_weight: dict[int, float] | None = None,
    soft_targets: np.ndarray | None = None,
) -> TrainingOutcome:
    """Call under the strategy's scope (trainer/distribute.py); ``cfg.batch_size`` is the global batch.
    ``soft_targets``: N x C targets of the training split (distillation, trainer/distill.py) in place of its labels;
    validation keeps the hard labels (as one-hot), so val_loss is the same measure."""
    keras = import_keras()
    for layer in base_layers(model):
        layer.trainable = False
    fine = cfg.fine_tune
    top = top_layers(model, backbone, fine.unfreeze_blocks, fine.unfreeze_layers) if fine.enabled else []
    stages: list[StageResult] = []
    verbose = 1 if sys.stdout.isatty() else 2

    # What the frozen part computes once, if anything: the input of the first fine-tuned layer.
    cut = _cut_tensor(model, top) if fine.enabled and not fine.augment else None
    t0 = time.perf_counter()
    acts: dict[str, Any] = {}  # frozen-base activations per split, on disk (trainer/streaming.py)
    store = ActivationStore()
    try:
        return _train(
            model, cfg, data, run, class_weight, keras, top, stages, verbose, cut, t0, acts, store, soft_targets
        )
    finally:
        store.close()


def _train(
    model, cfg, data, run, class_weight, keras, top, stages, verbose, cut, t0, acts, store, soft_targets=None
) -> TrainingOutcome:
    fine = cfg.fine_tune
    # the targets of the cached training activations: labels, or (distillation) soft targets, validation one-hot
    train_labels = data["train"].labels if soft_targets is None else soft_targets
    val_labels = data["validation"].labels
    if soft_targets is not None:
        val_labels = np.eye(soft_targets.shape[1], dtype=np.float32)[val_labels]
    if cut is not None or (cfg.feature_extraction.enabled and cfg.feature_extraction.mode == "cached"):
        source = cut if cut is not None else model.get_layer(POOL).input
        log.info("caching frozen-base activations (%s) for %s", _shape(source), ", ".join(data))
        bottom = keras.Model(model.input, source)
        for name, d in data.items():
            # mirror images as extra training examples (cache_flipped): exact, not an approximation
            flips = (None, mirrored) if name == "train" and cfg.cache_flipped else (None,)
            acts[name] = store.compute(name, bottom, d.pixels, cfg.batch_size, flips)
        if cfg.cache_flipped:  # (a mirrored photo keeps its photo's targets)
            train_labels = np.concatenate([train_labels, train_labels])
    cache_seconds = time.perf_counter() - t0

    fe = cfg.feature_extraction
    if fe.enabled:
        t = time.perf_counter()
        if fe.mode == "cached":
            from_acts = keras.Model(
                cut if cut is not None else model.get_layer(POOL).input, model.get_layer(POOL).output
            )
            pooled = {n: store.compute(f"pooled-{n}", from_acts, a, 256) for n, a in acts.items()}
            head_in = keras.Input(pooled["train"].shape[1:], name="pooled_features")
            head = keras.Model(head_in, model.get_layer(CLASSIFIER)(model.get_layer(DROPOUT)(head_in)))
            x_train, y_train, x_val = pooled["train"], train_labels, pooled["validation"]
        else:
            head = _augmented(model, cfg.augment, model.input.shape[1:])
            x_train, y_train, x_val = data["train"].pixels, _targets(data, soft_targets), data["validation"].pixels
        stage = _fit(
            "feature_extraction",
            head,
            model,
            x_train,
            y_train,
            x_val,
            val_labels,
            fe.learning_rate,
            fe.epochs,
            fe.patience,
            cfg,
            run,
            verbose,
            class_weight=class_weight,
        )
        stage.seconds = time.perf_counter() - t
        stages.append(stage)

    if fine.enabled:
        t = time.perf_counter()
        for layer in top:
            layer.trainable = not isinstance(layer, keras.layers.BatchNormalization)
        if cut is not None:
            trained = keras.Model(cut, model.output)
            x_train, y_train, x_val = acts["train"], train_labels, acts["validation"]
        else:
            trained = _augmented(model, cfg.augment, model.input.shape[1:])
            x_train, y_train, x_val = data["train"].pixels, _targets(data, soft_targets), data["validation"].pixels
        baseline = stages[-1].best_val_loss if stages else math.inf
        stage = _fit(
            "fine_tune",
            trained,
            model,
            x_train,
            y_train,
            x_val,
            val_labels,
            fine.learning_rate,
            fine.epochs,
            fine.patience,
            cfg,
            run,
            verbose,
            baseline=baseline,
            class_weight=class_weight,
        )
        stage.seconds = time.perf_counter() - t
        stages.append(stage)
        for layer in base_layers(model):
            layer.trainable = False

    # Predictions of the final model; from the cache where possible (same computation, no second pass).
    if acts and (cut is not None or not fine.enabled):
        top = keras.Model(cut if cut is not None else model.get_layer(POOL).input, model.output)
        probabilities = {n: predict(top, a, 256, rows=len(data[n].labels)) for n, a in acts.items()}
    else:
        probabilities = {n: predict(model, d.pixels, cfg.batch_size) for n, d in data.items()}
    return TrainingOutcome(stages=stages, probabilities=probabilities, cache_seconds=cache_seconds)


def _fit(
    name: str,
    trained: Any,
    full_model: Any,
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_val: np.ndarray,
    y_val: np.ndarray,
    lr: float,
    epochs: int,
    patience: int,
    cfg: TrainConfig,
    run: RunFolder,
    verbose: int,
    baseline: float = math.inf,
    class_weight: dict[int, float] | None = None,
) -> StageResult:
    keras = import_keras()
    soft = np.asarray(y_train).ndim == 2  # distillation: soft targets (validation one-hot)
    # ("accuracy" is categorical accuracy against soft targets: the argmax of the target, as Keras resolves it)
    trained.compile(optimizer=keras.optimizers.Adam(lr), loss=SOFT_LOSS if soft else LOSS, metrics=["accuracy"])
    if math.isfinite(baseline):  # never end a stage worse than it started
        baseline = float(trained.evaluate(ordered_dataset(x_val, y_val, 256), verbose=0)[0])
    checkpoint = BestCheckpoint(
        full_model,
        run.checkpoints / f"{name}_best.keras",
        baseline=baseline,
        stage=name,
        diverged_hint=f"lower train.{name}.learning_rate (now {lr:g}) and train again",
    )
    stop = keras.callbacks.EarlyStopping(monitor="val_loss", patience=patience)
    log.info("stage %s: %d trainable weights, lr %g, up to %d epochs", name, len(trained.trainable_weights), lr, epochs)
    history = trained.fit(  # batches read from disk, in the order fit(x_train, y_train, shuffle=True) would use
        fit_dataset(x_train, y_train, cfg.batch_size, shuffle=True),
        validation_data=ordered_dataset(x_val, y_val, cfg.batch_size),
        epochs=epochs,
        shuffle=False,
        callbacks=[checkpoint, stop],
        verbose=verbose,
        class_weight=class_weight,
    )
    return StageResult(
        name=name,
        history={k: [float(v) for v in vals] for k, vals in history.history.items()},
        best_val_loss=checkpoint.best,
        best_epoch=checkpoint.best_epoch,
    )


def _augmented(model: Any, aug: AugmentConfig, input_shape: Any) -> Any:
    keras = import_keras()
    inputs = keras.Input(input_shape, name="pixels")
    x = inputs
    if aug.flip:
        x = keras.layers.RandomFlip("horizontal")(x)
    if aug.rotation:
        x = keras.layers.RandomRotation(aug.rotation)(x)
    if aug.zoom:
        x = keras.layers.RandomZoom(aug.zoom)(x)
    return keras.Model(inputs, model(x))


def top_layers(model: Any, backbone: BackboneSpec, blocks: int, layers: int | None) -> list[Any]:
    """The top of the base that fine-tuning unfreezes: the last ``layers`` layers, else the last ``blocks`` blocks."""
    if layers is not None:
        chosen = base_layers(model)[-layers:]
    else:
        units = base_units(model, backbone)
        if blocks > len(units):
            raise EdgeExportError(
                f"train.fine_tune.unfreeze_blocks={blocks} but {backbone.name} has {len(units)} blocks",
                hint=f"choose 1..{len(units)}",
            )
        chosen = [layer for _, unit in units[-blocks:] for layer in unit]
    if not any(layer.weights for layer in chosen):
        raise EdgeExportError("the layers chosen for fine-tuning have no weights", hint="unfreeze more blocks")
    return chosen


def _cut_tensor(model: Any, unfrozen: list[Any]) -> Any:
    """The single tensor feeding the fine-tuned part, if the graph allows one (else None: run in the loop)."""
    first = unfrozen[0]
    cut = first.input
    if isinstance(cut, (list, tuple)):
        return None
    try:
        import_keras().Model(cut, model.output)
    except Exception:  # the top depends on more than this tensor (e.g. a skip connection across the cut)
        log.info("cannot cache below %s; fine-tuning with the whole base in the loop", first.name)
        return None
    return cut


def _shape(tensor: Any) -> str:
    return "x".join(str(d) for d in tensor.shape[1:])
