"""What a user's model expects and outputs, decided on photos: try each candidate, keep the clearly best one.

The candidates are the input scales of ``core.records.model_source.INPUT_SCALES`` (0-255 for a model with its
own Rescaling/``preprocess_input`` inside, 0-1, -1-1, ImageNet mean/std) and, where the model's last layer does
not say it, the output kinds its values allow. Each runs on the same seeded sample of validation photos.
"Clearly best" is a paired test (McNemar): the best candidate must be right on clearly more photos where the
runner-up is wrong than the other way round (b - c >= 2 sqrt(b + c), and at least 3), and clearly above the
rate of always answering the largest class. Otherwise the check stops with its table and the flag to pass:
a model is never exported with a preprocessing that makes it guess.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from edge_export.core.errors import EdgeExportError
from edge_export.core.records.model_source import INPUT_SCALES

CHECK_IMAGES = 300  # validation photos the check runs on (all of them when fewer)
FLAGS = {"input_scale": "--input-scale (model.input_scale)", "output": "--output (model.output)"}


@dataclass(frozen=True)
class Candidate:
    input_scale: str
    output: str
    correct: np.ndarray  # bool per photo
    mean_confidence: float

    @property
    def accuracy(self) -> float:
        return float(self.correct.mean()) if len(self.correct) else 0.0

    def row(self) -> dict[str, Any]:
        return {
            "input_scale": self.input_scale,
            "output": self.output,
            "accuracy": round(self.accuracy, 4),
            "images": int(len(self.correct)),
            "mean_confidence": round(self.mean_confidence, 4),
        }


@dataclass(frozen=True)
class Decision:
    input_scale: str
    output: str
    rows: list[dict[str, Any]]  # every candidate tried, best first (empty when nothing was checked)


def probabilities(raw: np.ndarray, output: str) -> np.ndarray:
    """Model outputs -> N x C probabilities, as the wrapper (export/user_model.wrap_model) computes them."""
    raw = raw.astype(np.float64).reshape(len(raw), -1)
    if output == "softmax":
        return raw
    if output == "logits":
        z = np.exp(raw - raw.max(axis=1, keepdims=True))
        return z / z.sum(axis=1, keepdims=True)
    p = raw[:, 0] if output == "sigmoid" else 1.0 / (1.0 + np.exp(-raw[:, 0]))
    return np.stack([1.0 - p, p], axis=1)


def possible_outputs(raw: np.ndarray, units: int) -> list[str]:
    """The output kinds the values allow, when the model's last layer does not state one."""
    flat = raw.reshape(len(raw), -1).astype(np.float64)
    in_unit = bool(np.all(flat >= -1e-6) and np.all(flat <= 1 + 1e-6))
    if units == 1:
        return ["sigmoid", "sigmoid-logit"] if in_unit else ["sigmoid-logit"]
    sums_to_one = in_unit and bool(np.allclose(flat.sum(axis=1), 1.0, atol=1e-3))
    return ["softmax"] if sums_to_one else ["logits"]


def decide(
    run_model: Callable[[np.ndarray], np.ndarray],
    pixels: np.ndarray,
    labels: np.ndarray,
    *,
    units: int,
    input_scales: Sequence[str],
    outputs: Sequence[str] | None,
    echo: Callable[[str], None],
    source: Any = None,
) -> Decision:
    """The clearly best (input scale, output) among the candidates, on ``pixels`` (uint8 N x S x S x 3) with their
    ``labels``; ``outputs`` None: the kinds the values allow. A single candidate is taken as given (a flag)."""
    candidates: list[Candidate] = []
    for scale in input_scales:
        mean, std = INPUT_SCALES[scale]
        x = (pixels.astype(np.float32) - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
        raw = np.asarray(run_model(x))
        for output in outputs or possible_outputs(raw, units):
            probs = probabilities(raw, output)
            if not np.all(np.isfinite(probs)):
                continue
            candidates.append(Candidate(scale, output, probs.argmax(axis=1) == labels, float(probs.max(axis=1).mean())))
    candidates.sort(key=lambda c: (-c.accuracy, -c.mean_confidence))
    rows = [c.row() for c in candidates]
    echo(render(rows))
    if not candidates:
        raise EdgeExportError(
            "the model's outputs are not finite numbers on the check photos",
            path=source,
            hint="check the model: it returns nan or inf",
        )
    best = candidates[0]
    chance = np.bincount(labels).max() / len(labels)
    n = len(labels)
    above_chance = best.correct.sum() - chance * n >= max(3.0, 2.0 * math.sqrt(n * chance * (1 - chance)))
    if not above_chance:
        raise EdgeExportError(
            f"no preprocessing makes the model better than guessing on {n} validation photos (best: "
            f"{best.input_scale}, {best.output}: {best.accuracy:.1%}; "
            f"always answering the largest class: {chance:.1%}). "
            "Are the labels in the model's order, and is its output class scores (not a regression or detection head)?",
            path=source,
            hint="check the class order (--labels FILE) and the data; the table above shows each candidate",
        )
    if len(candidates) == 1:
        return Decision(best.input_scale, best.output, rows)
    runner_up = candidates[1]
    b = int(np.sum(best.correct & ~runner_up.correct))
    c = int(np.sum(~best.correct & runner_up.correct))
    if b - c < max(3.0, 2.0 * math.sqrt(b + c)):
        differs = [k for k in ("input_scale", "output") if getattr(best, k) != getattr(runner_up, k)]
        flags = " and ".join(FLAGS[k] for k in differs) or FLAGS["input_scale"]
        raise EdgeExportError(
            f"cannot tell what the model expects: on {n} validation photos {best.input_scale}/{best.output} "
            f"({best.accuracy:.1%}) and {runner_up.input_scale}/{runner_up.output} ({runner_up.accuracy:.1%}) are "
            f"not clearly apart (right only with the first: {b}, only with the second: {c})",
            path=source,
            hint=f"name it with {flags}, as the model was trained (see the table above)",
        )
    return Decision(best.input_scale, best.output, rows)


def render(rows: list[dict[str, Any]]) -> str:
    lines = [
        "preprocessing check (validation photos):",
        f"  {'input scale':<12} {'output':<14} {'accuracy':>9} {'confidence':>11} {'images':>7}",
    ]
    for row in rows:
        lines.append(
            f"  {row['input_scale']:<12} {row['output']:<14} {row['accuracy']:>9.2%} "
            f"{row['mean_confidence']:>11.3f} {row['images']:>7}"
        )
    return "\n".join(lines)
