"""Parity: an artifact, run by the runtime ``Classifier``, against the Keras model on the same images."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edge_export.core.untrusted import finite_array
from edge_export.runtime.classifier import Classifier

# Images per call, for the Keras model and for the artifacts. Small, for memory: a Keras functional model called
# eagerly keeps every layer's output until the call returns, and TensorFlow's CPU allocator keeps the largest pool
# it ever held, for the rest of the export (EfficientNet-Lite0 at 288 px: 4.5 GB resident after batches of 32,
# 1.1 GB after 8); ONNX Runtime's and LiteRT's buffers grow with the batch too (onnx-fp32: 1.0 vs 0.3 GB). The
# outputs are the same bits whatever the batch (measured on every format; tests/test_export.py checks Keras).
BATCH = 8


@dataclass
class Parity:
    images: int
    top1_agreement: float  # fraction of images where artifact and Keras pick the same class
    max_abs_diff: float  # largest |probability difference| over all images and classes
    accuracy: float  # the artifact's accuracy (fraction)
    keras_accuracy: float
    accuracy_drop: float  # (keras_accuracy - accuracy) in percentage points

    def to_dict(self) -> dict[str, Any]:
        return {k: (round(v, 6) if isinstance(v, float) else v) for k, v in asdict(self).items()}


def keras_probabilities(model: Any, pixels: np.ndarray) -> np.ndarray:
    """The Keras model's outputs on ``pixels``, BATCH at a time, through one traced graph (any batch size): called
    eagerly, layer by layer, the same model took 3.6x as long (EfficientNet-Lite0 at 224 px, 1,000 photos: 43 s
    vs 12 s on 2 cores), the largest part of an int8 + fp16 export. A model that cannot be traced runs eagerly."""
    # lazy: TensorFlow (seconds to import, the train extra); the parity check of a Keras model needs it
    import tensorflow as tf

    def batch(i: int) -> np.ndarray:  # float32 one batch at a time: the whole set as float32 would be 4x the pixels
        return pixels[i : i + BATCH].astype(np.float32)

    signature = [tf.TensorSpec((None, *pixels.shape[1:]), tf.float32)]
    graph = tf.function(lambda x: model(x, training=False), input_signature=signature)
    out: list[np.ndarray] = []
    try:
        out += [np.asarray(graph(batch(0)))] if len(pixels) else []
    except (TypeError, ValueError, NotImplementedError, tf.errors.OpError):
        graph = lambda x: model(x, training=False)  # noqa: E731
        out += [np.asarray(graph(batch(0)))]
    out += [np.asarray(graph(batch(i))) for i in range(BATCH, len(pixels), BATCH)]
    return np.concatenate(out).astype(np.float32)


def onnx_probabilities(run: Any, pixels: np.ndarray) -> np.ndarray:
    """The run's reference model.onnx (an imported ONNX model) on ``pixels``: the reference its artifacts are
    checked against, as ``keras_probabilities`` is for model.keras."""
    return artifact_probabilities(run.model_onnx, pixels)[0].astype(np.float32)


def artifact_probabilities(path: str | Path, pixels: np.ndarray) -> tuple[np.ndarray, Classifier]:
    classifier = Classifier.load(path, threads=os.cpu_count())  # accuracy does not depend on threads: use all
    out = [classifier.predict_proba(pixels[i : i + BATCH]) for i in range(0, len(pixels), BATCH)]
    return np.concatenate(out), classifier


def compare(probs: np.ndarray, reference: np.ndarray, labels: np.ndarray) -> Parity:
    if probs.shape != reference.shape:
        raise ValueError(f"artifact output shape {probs.shape} differs from the Keras model's {reference.shape}")
    finite_array(reference, what="the Keras model's outputs")
    finite_array(probs, what="the artifact's outputs")  # a nan is a failed artifact, never a score
    accuracy = float(np.mean(probs.argmax(axis=1) == labels))
    keras_accuracy = float(np.mean(reference.argmax(axis=1) == labels))
    return Parity(
        images=int(len(labels)),
        top1_agreement=float(np.mean(probs.argmax(axis=1) == reference.argmax(axis=1))),
        max_abs_diff=float(np.max(np.abs(probs - reference))),
        accuracy=accuracy,
        keras_accuracy=keras_accuracy,
        accuracy_drop=(keras_accuracy - accuracy) * 100.0,
    )


def check_budget(parity: Parity, budget: float) -> str | None:
    """None if the accuracy drop is within ``budget`` points, else the failure message."""
    if parity.accuracy_drop <= budget + 1e-9:
        return None
    return (
        f"accuracy {parity.accuracy:.2%} is {parity.accuracy_drop:.2f} points below the Keras model's "
        f"{parity.keras_accuracy:.2%} on {parity.images} validation images, over the budget of {budget:g} "
        f"point(s) (export.accuracy_budget)"
    )
