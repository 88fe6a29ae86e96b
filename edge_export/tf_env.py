"""Importing TensorFlow/Keras quietly and reproducibly. Only commands that need them call this."""

from __future__ import annotations

import os
import sys
from typing import Any

from edge_export.native_stderr import native_stderr_captured


def import_keras() -> Any:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    if "tensorflow" not in sys.modules:
        with native_stderr_captured():
            import tensorflow  # noqa: F401
    import keras
    import tensorflow as tf

    tf.get_logger().setLevel("ERROR")  # e.g. retracing notices when predicting splits of different sizes
    return keras


def seed_everything(seed: int) -> None:
    keras = import_keras()
    import tensorflow as tf

    keras.utils.set_random_seed(seed)
    try:
        tf.config.experimental.enable_op_determinism()
    except RuntimeError:  # already initialized in this process with other settings
        pass
