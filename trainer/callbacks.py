"""Training callbacks: keep the best weights by val_loss and checkpoint the full model atomically."""

from __future__ import annotations

import functools
import math
from pathlib import Path
from typing import Any

from edge_export.core.atomic import atomic_path
from edge_export.core.errors import EdgeExportError
from edge_export.core.pause import pause_point
from edge_export.core.tf_env import import_keras


def BestCheckpoint(
    full_model: Any,
    path: Path | None,
    baseline: float = math.inf,
    stage: str = "train",
    diverged_hint: str | None = None,
) -> Any:
    """A ``_BestCheckpoint`` on the Keras this process uses (chosen when training starts, not at import)."""
    return _best_checkpoint_class(import_keras())(full_model, path, baseline, stage, diverged_hint)


@functools.cache
def _best_checkpoint_class(keras: Any) -> type:
    class _BestCheckpoint(_BestCheckpointLogic, keras.callbacks.Callback):  # our methods first
        pass

    return _BestCheckpoint


class _BestCheckpointLogic:
    """Track the lowest val_loss; save ``full_model`` (not the trained sub-model) on each improvement.

    At the end of training the best weights are restored, so a stage never leaves the model worse
    than ``baseline`` (the val_loss it started from). A loss that is not a finite number (training diverged)
    stops the run with an error naming the setting to change (``diverged_hint``): restoring the initial weights
    and reporting success would hide it.
    """

    def __init__(
        self,
        full_model: Any,
        path: Path | None,
        baseline: float = math.inf,
        stage: str = "train",
        diverged_hint: str | None = None,
    ):
        super().__init__()
        self.stage = stage
        self.diverged_hint = diverged_hint
        self.full_model = full_model
        self.path = path
        self.best = baseline
        self.best_epoch: int | None = None
        self._initial = full_model.get_weights()
        self._best_weights: list | None = None

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        for key in ("loss", "val_loss"):
            value = (logs or {}).get(key)
            if value is not None and not math.isfinite(float(value)):
                raise EdgeExportError(
                    f"training diverged in stage {self.stage}: {key} is {float(value)} after epoch {epoch + 1}; "
                    "nothing is saved from this run",
                    hint=self.diverged_hint or "lower the learning rate",
                )
        val_loss = (logs or {}).get("val_loss")
        if val_loss is not None and val_loss < self.best:
            self.best, self.best_epoch = float(val_loss), epoch
            self._best_weights = self.full_model.get_weights()
            if self.path is not None:
                with atomic_path(self.path) as tmp:
                    self.full_model.save(tmp)
        pause_point(f"train.{self.stage}.epoch.{epoch + 1}")  # tests: kill or resume mid-training here

    def on_train_end(self, logs: dict | None = None) -> None:
        self.full_model.set_weights(self._best_weights if self._best_weights is not None else self._initial)
