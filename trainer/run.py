"""One training run, start to finish: data -> model -> two stages -> run folder."""

from __future__ import annotations

import copy
import dataclasses
import logging
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np

from edge_export.core import __version__
from edge_export.core.atomic import atomic_path, write_json, write_text
from edge_export.core.config import Config, TrainConfig
from edge_export.core.run_folder import RunFolder, forget_record, write_record
from edge_export.core.tf_env import import_keras, seed_everything
from edge_export.trainer.backbones import get_backbone
from edge_export.trainer.curves import plot_learning_curves
from edge_export.trainer.datasets import Dataset, decode_splits, scan_dataset, stream_pixels
from edge_export.trainer.distill import distillation_data, load_teacher, smoothed_targets, targets_fingerprint
from edge_export.trainer.distribute import Distribution, class_weights, make_distribution, resolve_mixed_precision
from edge_export.trainer.model import ModelSpec, build_classifier, model_preprocessing
from edge_export.trainer.named_datasets import KNOWN, resolve_data
from edge_export.trainer.two_stage import SplitArrays, train_two_stages

log = logging.getLogger(__name__)


def prepare_dataset(config: Config) -> Dataset:
    root = resolve_data(config.data.path)
    return scan_dataset(root, config.data.validation_split, config.train.seed, config.data.split)


def train_run(config: Config, run: RunFolder, dataset: Dataset | None = None) -> dict:
    """Train into ``run``; under train.distribute=multi_worker only the chief does: another worker trains
    into a scratch folder, removed at the end, and returns its metrics (its run folder stays untouched)."""
    t_start = time.perf_counter()
    import_keras()

    dist = make_distribution(config.train.distribute)  # first: the strategy must exist before any TF operation
    if dist.is_chief:
        return _train_run(config, run, dataset, dist, t_start)
    log.info(
        "%s of %d workers: training into a scratch folder (only the chief writes the run folder)",
        dist.task,
        dist.workers,
    )
    with tempfile.TemporaryDirectory(prefix="edge-export-worker-") as scratch:
        return _train_run(config, RunFolder(Path(scratch) / "run"), dataset, dist, t_start)


def _train_run(config: Config, run: RunFolder, dataset: Dataset | None, dist: Distribution, t_start: float) -> dict:
    keras = import_keras()

    dataset = dataset or prepare_dataset(config)

    backbone_name = config.model.backbone
    backbone = get_backbone(backbone_name)
    spec = ModelSpec(
        backbone=backbone_name,
        image_size=config.model.image_size or backbone.default_size,
        num_classes=dataset.num_classes,
        dropout=config.model.dropout,
        weights=config.model.weights,
    )
    backbone.check_size(spec.image_size, config.model.weights)
    t = time.perf_counter()  # decoded first: an unusable dataset (a class left with no readable image) writes nothing
    # the pixels are made as the recorded preprocessing says (written with the model below): the runtime makes the same
    preprocessing = model_preprocessing(spec, config.model.resize, config.model.decoder)
    decoded = decode_splits(
        dataset, (spec.image_size, spec.image_size), preprocessing.pixel_method, max_pixels=config.data.max_image_pixels
    )
    data = {name: SplitArrays(pixels, labels) for name, (pixels, labels) in decoded.items()}
    decode_seconds = time.perf_counter() - t
    log.info("decoded %d images in %.1fs", sum(len(d.labels) for d in data.values()), decode_seconds)
    run.create()  # only once the settings are known to be usable: a failed start leaves no empty run folder
    forget_record(run)  # first: until the new record is written last, no reader pairs old and new files
    run.model_onnx.unlink(missing_ok=True)  # an earlier import's ONNX model: this run's model is model.keras
    write_text(run.config, recorded_config(config).to_yaml())
    seed_everything(config.train.seed)

    soft = None
    if config.train.distill.teacher is not None:
        data["train"], soft, distilled = _distilled_train(
            config, dataset, data["train"], spec, run, preprocessing.pixel_method
        )
    if config.train.label_smoothing > 0:
        hard = np.eye(dataset.num_classes, dtype=np.float32)[data["train"].labels] if soft is None else soft
        soft = smoothed_targets(hard, config.train.label_smoothing)
    weights = class_weights(data["train"].labels, dataset.num_classes, config.train.class_weight)
    train_cfg = scaled_train_config(config.train, dist)
    policy = resolve_mixed_precision(config.train.mixed_precision)
    training = {
        **dist.record(),
        "global_batch_size": train_cfg.batch_size,
        "learning_rates": {
            "feature_extraction": train_cfg.feature_extraction.learning_rate,
            "fine_tune": train_cfg.fine_tune.learning_rate,
        },
        "mixed_precision": policy,
        "class_weight": config.train.class_weight,
        "class_weights": {dataset.class_names[i]: round(w, 6) for i, w in weights.items()} if weights else None,
        **({"distill": distilled} if config.train.distill.teacher is not None else {}),
        **({"label_smoothing": config.train.label_smoothing} if config.train.label_smoothing > 0 else {}),
    }
    log.info("training: %s", training)
    previous_policy = keras.mixed_precision.dtype_policy().name
    keras.mixed_precision.set_dtype_policy(policy)
    try:
        with dist.strategy.scope():  # model, optimizers, compile and fit: all under the strategy
            model = build_classifier(keras, spec, weights=config.model.weights)
            outcome = train_two_stages(model, backbone, train_cfg, data, run, class_weight=weights, soft_targets=soft)
    finally:
        keras.mixed_precision.set_dtype_policy(previous_policy)
    if policy != "float32":  # the saved model computes in float32 like any other run: same weights, float32 layers
        trained, model = model, build_classifier(keras, spec, weights="none")
        model.set_weights(trained.get_weights())

    metrics: dict = {}
    for name, d in data.items():
        probs = outcome.probabilities[name]
        accuracy = float(np.mean(probs.argmax(axis=1) == d.labels))
        loss = float(np.mean(-np.log(np.clip(probs[np.arange(len(d.labels)), d.labels], 1e-7, 1.0))))
        metrics[name] = {"accuracy": accuracy, "loss": loss, "images": int(len(d.labels))}
    metrics["training"] = training
    metrics["timing_seconds"] = {
        "decode": round(decode_seconds, 2),
        "cache_features": round(outcome.cache_seconds, 2),
        **{s.name: round(s.seconds, 2) for s in outcome.stages},
        "total": round(time.perf_counter() - t_start, 2),
    }

    write_text(run.labels, "\n".join(dataset.class_names) + "\n")
    write_json(run.dataset, dataset.summary())  # counts of the images used; skipped ones per split and class
    write_json(
        run.history,
        {s.name: {**s.history, "best_epoch": s.best_epoch, "best_val_loss": s.best_val_loss} for s in outcome.stages},
    )
    plot_learning_curves(outcome.stages, run.curves)
    recorded = dataclasses.replace(
        spec,
        preprocessing=preprocessing.to_dict(),
        versions={"edge_export": __version__, "keras": keras.__version__, "python": platform.python_version()},
    )
    write_json(run.model_spec, recorded.to_dict())
    write_json(run.metrics, metrics)
    with atomic_path(run.model) as tmp:
        model.save(tmp)
    write_record(run)  # last: run.json with the sha256 of every file above means one finished run
    return metrics


def _distilled_train(config: Config, dataset: Dataset, train, spec: ModelSpec, run: RunFolder, method: str):
    """The training split with the distillation views added, their soft targets, and what to record about it.
    ``method``: how the student's pixels are made (``Preprocessing.pixel_method``); the views are made the same way."""
    settings = config.train.distill
    assert settings.teacher is not None  # called only when a teacher is set
    teacher = load_teacher(settings.teacher, dataset.class_names)
    split = dataset.splits["train"]
    key = targets_fingerprint(teacher, split.used_files(), train.labels, settings, config.train.seed, method)
    size = (teacher.image_size, teacher.image_size)
    pixels, labels, soft = distillation_data(
        teacher,
        run,
        lambda: stream_pixels(split, size, method, max_pixels=config.data.max_image_pixels)[0],
        np.asarray(train.pixels),
        train.labels,
        settings,
        config.train.seed,
        key,
    )
    record = {
        "teacher": str(teacher.run.root.resolve()),
        "teacher_sha256": teacher.model_sha256,
        "teacher_image_size": teacher.image_size,
        "views": settings.views,
        "weight": settings.weight,
        "temperature": settings.temperature,
        "training_images": int(len(labels)),
    }
    return SplitArrays(pixels, labels), soft, record


def scaled_train_config(train: TrainConfig, dist: Distribution) -> TrainConfig:
    """``train`` with the global batch size and the learning rates for ``dist``'s replicas (unchanged for one)."""
    batch, fe_lr = dist.scale(train.batch_size, train.feature_extraction.learning_rate)
    _, ft_lr = dist.scale(train.batch_size, train.fine_tune.learning_rate)
    return dataclasses.replace(
        train,
        batch_size=batch,
        feature_extraction=dataclasses.replace(train.feature_extraction, learning_rate=fe_lr),
        fine_tune=dataclasses.replace(train.fine_tune, learning_rate=ft_lr),
    )


def recorded_config(config: Config) -> Config:
    """``config`` as config.yaml records it: data.path and build.test_data as absolute paths (a known
    dataset's name stays a name), so the run folder works from any working directory."""
    recorded = copy.deepcopy(config)
    path = config.data.path
    if Path(path).expanduser().exists() or path not in KNOWN:
        recorded.data.path = os.path.abspath(Path(path).expanduser())
    if config.build.test_data:
        recorded.build.test_data = os.path.abspath(Path(config.build.test_data).expanduser())
    return recorded
