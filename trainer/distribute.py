"""Where training runs: a ``tf.distribute`` strategy, mixed precision and class weights, from the train settings.

- ``train.distribute``: ``none`` = TensorFlow's default strategy (one device); ``mirrored`` =
  ``MirroredStrategy`` over every local GPU (over the logical CPU devices when there is no GPU: that is what
  the tests use); ``auto`` = ``mirrored`` when more than one GPU is visible, else ``none``; ``multi_worker`` =
  ``MultiWorkerMirroredStrategy`` configured by the standard ``TF_CONFIG`` environment variable (the TF
  training operator on Kubernetes sets it; on Slurm or with ``ssh`` you set it yourself).
- ``train.batch_size`` is per replica: the global batch is ``batch_size x replicas`` and each learning rate
  is multiplied by the number of replicas (the linear scaling rule, Goyal et al. 2017, "Accurate, Large
  Minibatch SGD"; TensorFlow's distributed-training guides scale the batch by ``num_replicas_in_sync`` and
  leave the learning rate to the user). With one replica nothing changes.
- Data: every ``tf.data`` input has the auto-shard policy DATA (trainer/streaming.py's datasets; Keras's
  own for NumPy arrays): each worker takes its part of every global batch (FILE, the default, cannot shard
  data that is not read from files). Predictions gathered from the workers come back in order.
- CPUs as replicas (tests; CPU clusters) need ``TF_ENABLE_ONEDNN_OPTS=0``: see :func:`_check_cpu_replicas`.
- Keras 3 needs two fixes to train under MultiWorkerMirroredStrategy: :func:`_patch_keras_symbolic_build`.
- Only the chief (task ``chief``, else ``worker`` 0) writes the run folder; other workers train into a
  scratch folder that is removed at the end.

The strategy must exist before TensorFlow runs its first operation (collective ops are configured at
start-up): :func:`make_distribution` is the first thing training does.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from typing import Any

import numpy as np

from edge_export.core.errors import EdgeExportError

log = logging.getLogger(__name__)

TF_CONFIG = "TF_CONFIG"
TF_CONFIG_EXAMPLE = '{"cluster": {"worker": ["host1:12345", "host2:12345"]}, "task": {"type": "worker", "index": 0}}'
CLASS_IMBALANCE_RATIO = 1.5  # class_weight=auto balances when max/min training images per class exceeds this


@dataclass
class Distribution:
    strategy: Any  # a tf.distribute.Strategy
    kind: str  # "none", "mirrored" or "multi_worker" (what "auto" resolved to)
    replicas: int  # strategy.num_replicas_in_sync
    workers: int = 1
    task: str = "chief"  # "chief", or "worker <i>" / "chief <i>" in a TF_CONFIG cluster
    is_chief: bool = True

    def scale(self, per_replica_batch: int, learning_rate: float) -> tuple[int, float]:
        """(global batch, learning rate) for this many replicas: both grow linearly with them."""
        return per_replica_batch * self.replicas, learning_rate * self.replicas

    def record(self) -> dict:
        return {
            "strategy": self.kind,
            "replicas": self.replicas,
            "workers": self.workers,
            "task": self.task,
            "chief": self.is_chief,
        }


_MADE: dict[str, Distribution] = {}


def make_distribution(setting: str) -> Distribution:
    """The strategy ``train.distribute`` asks for (see the module docstring); one of each kind per process:
    TensorFlow allows one MultiWorkerMirroredStrategy per process, and a second MirroredStrategy over the
    same CPU devices mixes up the two strategies' collective operations ("Shape mismatch in the collective
    instance") when a process trains twice."""
    import tensorflow as tf  # lazy: TensorFlow (seconds to import, the train extra); only training needs it

    gpus = tf.config.list_physical_devices("GPU")
    kind = "mirrored" if setting == "auto" and len(gpus) > 1 else "none" if setting == "auto" else setting
    if kind not in _MADE:
        _MADE[kind] = _make_distribution(kind, gpus)
    return _MADE[kind]


def _make_distribution(setting: str, gpus: list) -> Distribution:
    import tensorflow as tf  # lazy: TensorFlow (seconds to import, the train extra); only training needs it

    if setting == "multi_worker":
        cluster, task_type, index = parse_tf_config(os.environ.get(TF_CONFIG))
        if not gpus and sum(len(cluster.get(k, [])) for k in ("chief", "worker")) > 1:
            _check_cpu_replicas("multi_worker")
        strategy = tf.distribute.MultiWorkerMirroredStrategy()
        _patch_keras_symbolic_build()
        chief = task_type == "chief" or (task_type == "worker" and index == 0 and "chief" not in cluster)
        workers = sum(len(cluster.get(k, [])) for k in ("chief", "worker"))
        return Distribution(
            strategy, "multi_worker", strategy.num_replicas_in_sync, workers, f"{task_type} {index}", chief
        )
    if setting == "mirrored":
        devices = None if gpus else [d.name for d in tf.config.list_logical_devices("CPU")]
        if devices and len(devices) > 1:
            _check_cpu_replicas("mirrored")
        strategy = tf.distribute.MirroredStrategy(devices=devices)
        return Distribution(strategy, "mirrored", strategy.num_replicas_in_sync)
    return Distribution(tf.distribute.get_strategy(), "none", 1)


def _check_cpu_replicas(setting: str) -> None:
    """Several CPU replicas need TensorFlow's oneDNN CPU kernels off: when a last partial batch leaves a
    replica an empty batch (fewer images than replicas), the oneDNN convolution returns a wrongly shaped
    tensor and training fails ("Incompatible shapes: [8] vs. [0,32,32,3]"); the plain kernels handle it."""
    # lazy: TensorFlow (seconds to import, the train extra); only training needs it
    from tensorflow.python.util import _pywrap_util_port

    if _pywrap_util_port.IsMklEnabled():
        raise EdgeExportError(
            f"train.distribute={setting} on CPUs needs TensorFlow's oneDNN CPU kernels off",
            hint="set TF_ENABLE_ONEDNN_OPTS=0 in the environment of every worker (read when TensorFlow starts)",
        )


def parse_tf_config(text: str | None) -> tuple[dict[str, list], str, int]:
    """(cluster, task type, task index) from TF_CONFIG's JSON, or an error naming TF_CONFIG and its fix."""
    hint = f"set {TF_CONFIG} on every worker, e.g. {TF_CONFIG}='{TF_CONFIG_EXAMPLE}' (index 1 on the second)"
    if not text:
        raise EdgeExportError(
            f"train.distribute=multi_worker needs the {TF_CONFIG} environment variable, which is not set", hint=hint
        )
    try:
        config = json.loads(text)
    except ValueError as exc:
        raise EdgeExportError(f"{TF_CONFIG} is not valid JSON ({exc})", hint=hint) from None
    cluster = config.get("cluster") if isinstance(config, dict) else None
    task = config.get("task") if isinstance(config, dict) else None
    if not isinstance(cluster, dict) or not isinstance(task, dict):
        raise EdgeExportError(f'{TF_CONFIG} needs a "cluster" and a "task" object', hint=hint)
    for role, addresses in cluster.items():
        if not isinstance(addresses, list) or not all(isinstance(a, str) and ":" in a for a in addresses):
            raise EdgeExportError(f'{TF_CONFIG}: cluster "{role}" must be a list of "host:port" strings', hint=hint)
    if not cluster.get("worker") and not cluster.get("chief"):
        raise EdgeExportError(f'{TF_CONFIG}: the cluster lists no "worker" (or "chief")', hint=hint)
    task_type, index = task.get("type"), task.get("index", 0)
    if task_type not in ("chief", "worker") or isinstance(index, bool) or not isinstance(index, int):
        raise EdgeExportError(
            f'{TF_CONFIG}: task must be {{"type": "worker" or "chief", "index": <int>}}, got {task!r}', hint=hint
        )
    if not 0 <= index < len(cluster.get(task_type, [])):
        raise EdgeExportError(
            f"{TF_CONFIG}: task index {index} is not in cluster {task_type!r} "
            f"({len(cluster.get(task_type, []))} listed)",
            hint=hint,
        )
    return cluster, task_type, index


def resolve_mixed_precision(setting: str) -> str:
    """The Keras dtype policy for ``train.mixed_precision``: mixed_float16 on a GPU only (``auto``), never on CPU."""
    if setting == "off":
        return "float32"
    import tensorflow as tf  # lazy: TensorFlow (seconds to import, the train extra); only training needs it

    if not tf.config.list_physical_devices("GPU"):
        if setting == "mixed_float16":
            log.warning("train.mixed_precision=mixed_float16 without a GPU: float16 on CPU is slow, not faster")
        else:
            return "float32"
    return "mixed_float16"


def class_weights(labels: np.ndarray, num_classes: int, setting: str) -> dict[int, float] | None:
    """Balanced weights n / (classes x count) for ``train.class_weight=auto`` when the training classes are
    unbalanced (largest / smallest count > CLASS_IMBALANCE_RATIO); None (every image weighs 1) otherwise."""
    if setting == "none":
        return None
    counts = np.bincount(np.asarray(labels, dtype=np.int64), minlength=num_classes)
    if counts.min() == 0 or counts.max() / counts.min() <= CLASS_IMBALANCE_RATIO:
        return None  # a class with no training image: the dataset scan refuses it before this
    total = int(counts.sum())
    return {i: total / (num_classes * int(c)) for i, c in enumerate(counts)}


def _patch_keras_symbolic_build() -> None:
    """Let Keras 3's ``fit`` run under MultiWorkerMirroredStrategy (keras-team/keras#20585, open): two fixes.

    Before training, ``TensorFlowTrainer._maybe_symbolic_build`` takes one batch to build the model and
    the optimizer and, when the batch is per-replica, averages it with ``strategy.reduce("MEAN", ...)``;
    under MultiWorkerMirroredStrategy that call fails ("Attempt to convert a value (PerReplica...)"). Only
    the batch's shapes matter there, so this takes this worker's first replica's batch instead. Then each
    step's scalar loss and metrics go through ``strategy.reduce("MEAN", v, axis=0)``, which fails for a
    scalar; they are averaged with ``axis=None`` (an all-reduce: every worker sees the same val_loss, so
    early stopping and the best checkpoint decide alike). Other strategies keep Keras's own code; applied
    once, only in a multi_worker process.
    """
    import tensorflow as tf  # lazy: TensorFlow (seconds to import, the train extra); only training needs it
    from keras.src.backend.tensorflow import trainer as tf_trainer  # lazy: Keras (imports TensorFlow), as above

    TensorFlowTrainer = tf_trainer.TensorFlowTrainer
    original = TensorFlowTrainer._maybe_symbolic_build
    if getattr(original, "_edge_export_patched", False):
        return
    original_reduce = tf_trainer.reduce_per_replica

    def reduce_per_replica(values: Any, strategy: Any, reduction: str) -> Any:
        # Keras reduces each step's outputs with strategy.reduce("MEAN", v, axis=0), which fails for the
        # scalar losses and metrics; a scalar is averaged over the replicas (axis=None) instead.
        if reduction in ("auto", "mean") and isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):

            def mean(v: Any) -> Any:
                local = (
                    strategy.experimental_local_results(v)[0] if isinstance(v, tf.distribute.DistributedValues) else v
                )
                return strategy.reduce("MEAN", v, axis=0 if len(local.shape) else None)

            return tf.nest.map_structure(mean, values)
        return original_reduce(values, strategy, reduction)

    def _maybe_symbolic_build(self: Any, iterator: Any = None, data_batch: Any = None) -> Any:
        strategy = self._distribute_strategy
        if iterator is None or not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
            return original(self, iterator=iterator, data_batch=data_batch)
        for _, _, it in iterator:
            batch = next(it)
            data_batch = tf.nest.map_structure(
                lambda v: (
                    strategy.experimental_local_results(v)[0] if isinstance(v, tf.distribute.DistributedValues) else v
                ),
                batch,
            )
            break
        return original(self, iterator=None, data_batch=data_batch)

    _maybe_symbolic_build.__dict__["_edge_export_patched"] = True  # the marker the getattr above reads
    TensorFlowTrainer._maybe_symbolic_build = _maybe_symbolic_build
    tf_trainer.reduce_per_replica = reduce_per_replica
