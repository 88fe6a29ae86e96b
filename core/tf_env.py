"""Importing TensorFlow/Keras quietly and reproducibly. Only commands that need them call this."""

from __future__ import annotations

import os
import sys
from typing import Any

from edge_export.core.errors import EdgeExportError
from edge_export.core.native_stderr import native_stderr_captured

# what the [train] extra brings and the base install (a device's) lacks
TRAIN_MODULES = frozenset({"tensorflow", "keras", "tf_keras", "tensorflow_model_optimization", "tf2onnx", "onnx"})
TRAIN_EXTRA = "pip install 'edge-export[train]'"


def missing_train_extra(exc: BaseException, command: str | None = None) -> EdgeExportError | None:
    """The error for an ImportError of a [train] package (None for any other exception)."""
    if not isinstance(exc, ModuleNotFoundError) or (exc.name or "").split(".")[0] not in TRAIN_MODULES:
        return None
    what = f"`edge-export {command}`" if command else "this command"
    return EdgeExportError(f"{what} needs TensorFlow, which is not installed here ({exc})", hint=TRAIN_EXTRA)


def require_tensorflow(command: str) -> None:
    """Called first by the commands that need TensorFlow, before they read data or write any file."""
    import_keras(command)


def import_keras(command: str | None = None) -> Any:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    try:
        if "tensorflow" not in sys.modules:
            with native_stderr_captured():
                # lazy: TensorFlow (seconds to import, the train extra); first import with its C++ chatter hidden
                import tensorflow  # noqa: F401
        import keras  # lazy: Keras (the train extra, imports TensorFlow); only the commands that train/export
        import tensorflow as tf  # lazy: TensorFlow (seconds to import); only the commands that need it
    except ModuleNotFoundError as exc:
        error = missing_train_extra(exc, command)
        if error is None:
            raise
        raise error from None

    tf.get_logger().setLevel("ERROR")  # e.g. retracing notices when predicting splits of different sizes
    return keras


def seed_everything(seed: int) -> None:
    keras = import_keras()
    import tensorflow as tf  # lazy: TensorFlow (seconds to import); imported above, by import_keras

    keras.utils.set_random_seed(seed)
    try:
        tf.config.experimental.enable_op_determinism()
    except RuntimeError:  # already initialized in this process with other settings
        pass
