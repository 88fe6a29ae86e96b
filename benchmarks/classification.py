"""Classification quality from true and predicted class indices: accuracy, per-class P/R/F1, confusion.

Pure numpy. Predictions outside the test classes (a model with more labels than the test set has
classes, e.g. ImageNet) are given as -1 and counted in an extra "(other)" column of the confusion
matrix; they are wrong for every class. Precision of a class nothing was predicted as is 0 (so is F1).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from edge_export.core.untrusted import finite_array

OTHER = "(other)"


def top1_indices(probabilities: Any, what: str = "model outputs") -> list[int]:
    """The predicted class of each row; a non-finite output is an error (a failure), never a score."""
    return finite_array(probabilities, what=what).argmax(axis=1).tolist()


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> np.ndarray:
    """``num_classes`` x (``num_classes`` + 1) counts: row = true class, column = predicted (last = other)."""
    y_true, y_pred = _check(y_true, y_pred, num_classes)
    columns = np.where(y_pred < 0, num_classes, y_pred)
    matrix = np.zeros((num_classes, num_classes + 1), dtype=np.int64)
    np.add.at(matrix, (y_true, columns), 1)
    return matrix


def classification_metrics(
    y_true: Sequence[int] | np.ndarray, y_pred: Sequence[int] | np.ndarray, class_names: Sequence[str]
) -> dict[str, Any]:
    """Accuracy, per-class precision/recall/F1/support, macro and weighted averages, the confusion matrix."""
    k = len(class_names)
    true, pred = _check(np.asarray(y_true), np.asarray(y_pred), k)
    full = confusion_matrix(true, pred, k)
    tp = np.diag(full[:, :k]).astype(np.float64)
    support = full.sum(axis=1).astype(np.float64)  # images of each true class
    predicted = full[:, :k].sum(axis=0).astype(np.float64)  # images predicted as each class
    precision = np.divide(tp, predicted, out=np.zeros(k), where=predicted > 0)
    recall = np.divide(tp, support, out=np.zeros(k), where=support > 0)
    denom = precision + recall
    f1 = np.divide(2 * precision * recall, denom, out=np.zeros(k), where=denom > 0)
    n = len(true)
    per_class = [
        {
            "label": str(name),
            "precision": float(precision[i]),
            "recall": float(recall[i]),
            "f1": float(f1[i]),
            "support": int(support[i]),
            "predicted": int(predicted[i]),
        }
        for i, name in enumerate(class_names)
    ]
    present = support > 0
    weights = support / support.sum() if n else np.zeros(k)
    has_other = bool(full[:, k].any())
    columns = [str(c) for c in class_names] + ([OTHER] if has_other else [])
    return {
        "images": int(n),
        "correct": int(tp.sum()),
        "accuracy": float(tp.sum() / n) if n else 0.0,
        "macro_precision": float(precision[present].mean()) if present.any() else 0.0,
        "macro_recall": float(recall[present].mean()) if present.any() else 0.0,
        "macro_f1": float(f1[present].mean()) if present.any() else 0.0,
        "weighted_f1": float((f1 * weights).sum()),
        "per_class": per_class,
        "confusion": {
            "rows": [str(c) for c in class_names],
            "columns": columns,
            "matrix": (full if has_other else full[:, :k]).tolist(),
        },
    }


def top1_agreement(a: Sequence[Any], b: Sequence[Any]) -> float:
    """Fraction of positions where two prediction lists (indices or label names) agree."""
    a, b = list(a), list(b)
    if len(a) != len(b):
        raise ValueError(f"prediction lists differ in length ({len(a)} vs {len(b)})")
    if not a:
        return 0.0
    return float(np.mean([x == y for x, y in zip(a, b)]))


def _check(y_true: np.ndarray, y_pred: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    y_true = np.asarray(y_true, dtype=np.int64).reshape(-1)
    y_pred = np.asarray(y_pred, dtype=np.int64).reshape(-1)
    if y_true.shape != y_pred.shape:
        raise ValueError(f"y_true and y_pred differ in length ({len(y_true)} vs {len(y_pred)})")
    if len(y_true) and (y_true.min() < 0 or y_true.max() >= k):
        raise ValueError(f"true class indices must be in 0..{k - 1}")
    if len(y_pred) and y_pred.max() >= k:
        raise ValueError(f"predicted class indices must be in -1..{k - 1}")
    return y_true, np.where(y_pred < 0, -1, y_pred)
