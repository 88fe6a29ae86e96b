"""Training data read from disk in batches: tf.data over the pixel cache and the frozen-base activations.

Nothing here holds a whole split in memory: pixels come from ``runtime.pixel_cache`` files, the frozen base's
activations are written batch by batch to a ``.npy`` in a temporary folder, and ``tf.data`` reads rows back
with positioned reads (``DiskArray.take``).

Same results as Keras on in-memory arrays, at equal seed: :func:`fit_dataset` builds the training order
exactly as Keras's ``ArrayDataAdapter`` does for ``fit(x, y, shuffle=True, batch_size=B)`` (one
``tf.random.shuffle`` of all indices per epoch, in a ``tf.data`` map of the same shape, so the same op seed),
then gathers those rows from disk instead of from an in-memory tensor; batches for predict/evaluate are the
same consecutive slices. tests/test_pixel_cache.py checks the order against Keras's own adapter.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from edge_export.runtime.pixel_cache import DiskArray, NpyWriter


def _take(x: Any, indices: np.ndarray) -> np.ndarray:
    return x.take(indices) if isinstance(x, DiskArray) else x[indices]


def fit_dataset(x: Any, y: np.ndarray, batch_size: int, shuffle: bool | str) -> Any:
    """A tf.data dataset of (x, y) batches in exactly the order ``keras.Model.fit(x, y, shuffle=...)`` uses."""
    import tensorflow as tf  # lazy: TensorFlow (seconds to import, the train extra); only training needs it

    n = int(len(y))
    full = n // batch_size
    partial = n % batch_size

    # -- as keras/src/trainers/data_adapters/array_data_adapter.py get_tf_dataset (keep the same shape:
    #    the shuffle's op seed comes from its place in the traced function)
    indices_dataset = tf.data.Dataset.range(1)

    def permutation(_):
        indices = tf.range(n, dtype=tf.int64)
        if shuffle and shuffle != "batch":
            indices = tf.random.shuffle(indices)
        return indices

    indices_dataset = indices_dataset.map(permutation).prefetch(1)

    def slice_batch_indices(indices):
        num_in_full_batch = full * batch_size
        first_k_indices = tf.slice(indices, [0], [num_in_full_batch])
        first_k_indices = tf.reshape(first_k_indices, [full, batch_size])
        flat_dataset = tf.data.Dataset.from_tensor_slices(first_k_indices)
        if partial:
            index_remainder = tf.data.Dataset.from_tensors(tf.slice(indices, [num_in_full_batch], [partial]))
            flat_dataset = flat_dataset.concatenate(index_remainder)
        return flat_dataset

    indices_dataset = indices_dataset.flat_map(slice_batch_indices)
    return _gather(indices_dataset, x, y, full + (1 if partial else 0), bool(shuffle))


def ordered_dataset(x: Any, y: np.ndarray | None, batch_size: int) -> Any:
    """Consecutive batches (as Keras slices validation and predict data), read from disk."""
    import tensorflow as tf  # lazy: TensorFlow (seconds to import, the train extra); only training needs it

    n = len(x)
    steps = -(-n // batch_size)
    starts = tf.data.Dataset.range(steps).map(
        lambda s: tf.range(s * batch_size, tf.minimum((s + 1) * batch_size, n), dtype=tf.int64)
    )
    return _gather(starts, x, y, steps, False)


def _gather(indices_dataset: Any, x: Any, y: np.ndarray | None, steps: int, shuffled: bool) -> Any:
    import tensorflow as tf  # lazy: TensorFlow (seconds to import, the train extra); only training needs it

    x_dtype = tf.as_dtype(np.dtype(x.dtype))
    row_shape = tuple(x.shape[1:])

    if y is None:

        def load(i):
            out = tf.numpy_function(lambda idx: _take(x, idx), [i], x_dtype, stateful=False)
            out.set_shape((None, *row_shape))
            return out
    else:
        labels = np.asarray(y)
        y_dtype = tf.as_dtype(labels.dtype)

        def load(i):
            xb, yb = tf.numpy_function(
                lambda idx: (_take(x, idx), labels[idx]), [i], (x_dtype, y_dtype), stateful=False
            )
            xb.set_shape((None, *row_shape))
            yb.set_shape((None, *labels.shape[1:]))
            return xb, yb

    dataset = indices_dataset.map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    options = tf.data.Options()
    options.experimental_optimization.apply_default_optimizations = False
    if shuffled:
        options.experimental_external_state_policy = tf.data.experimental.ExternalStatePolicy.IGNORE
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    dataset = dataset.with_options(options)
    dataset = dataset.apply(tf.data.experimental.assert_cardinality(steps))
    return dataset.prefetch(tf.data.AUTOTUNE)


CHUNK_ROWS = 128  # rows read from disk per model.predict call (rounded up to whole batches): 32 MB at 288 px


def predict_batches(
    model: Any,
    x: Any,
    batch_size: int,
    transform: Callable[[np.ndarray], np.ndarray] | None = None,
    rows: int | None = None,
):
    """Yield ``model``'s outputs chunk by chunk: ``model.predict`` on consecutive chunks of whole batches, so
    the model runs exactly the batches ``model.predict(x, batch_size)`` would (and any strategy splits them
    as it would)."""
    chunk = batch_size * max(1, -(-CHUNK_ROWS // batch_size))
    n = len(x) if rows is None else min(rows, len(x))
    for start in range(0, n, chunk):
        part = x[start : min(start + chunk, n)]
        if transform is not None:
            part = transform(part)
        yield np.asarray(model.predict(part, batch_size=batch_size, verbose=0))


def predict(model: Any, x: Any, batch_size: int, rows: int | None = None) -> np.ndarray:
    """``model.predict`` over (the first ``rows``) rows on disk; for small outputs (probabilities)."""
    outs = list(predict_batches(model, x, batch_size, rows=rows))
    return np.concatenate(outs) if outs else np.zeros((0, *model.output.shape[1:]), np.float32)


class ActivationStore:
    """Frozen-base activations on disk: one ``.npy`` per split, in a temporary folder removed on close."""

    def __init__(self, folder: str | Path | None = None):
        self.folder = Path(tempfile.mkdtemp(prefix="edge-export-activations-", dir=folder))

    def compute(self, name: str, model: Any, x: Any, batch_size: int, transforms=(None,)) -> DiskArray:
        """``model``'s outputs for ``x`` (then for each further transform of ``x``, appended), as a DiskArray."""
        writer: NpyWriter | None = None
        try:
            for transform in transforms:
                for out in predict_batches(model, x, batch_size, transform):
                    if writer is None:
                        writer = NpyWriter(self.folder / f"{name}.npy", out.dtype, out.shape[1:])
                    writer.write(out)
        except BaseException:
            if writer is not None:
                writer.abort()
            raise
        if writer is None:
            writer = NpyWriter(self.folder / f"{name}.npy", np.dtype(np.float32), tuple(model.output.shape[1:]))
        return writer.close()

    def close(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


def mirrored(batch: np.ndarray) -> np.ndarray:
    return batch[:, :, ::-1]
