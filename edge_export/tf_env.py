"""Importing TensorFlow/Keras quietly and reproducibly. Only commands that need them call this."""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from typing import Any, Iterator


@contextlib.contextmanager
def _native_stderr_captured() -> Iterator[None]:
    """Hide the C++ start-up chatter TensorFlow writes to fd 2 (CUDA probes etc.); replay it on failure."""
    try:
        saved = os.dup(2)
    except OSError:  # no real stderr (e.g. some embedded interpreters)
        yield
        return
    with tempfile.TemporaryFile() as capture:
        sys.stderr.flush()
        os.dup2(capture.fileno(), 2)
        try:
            yield
        except BaseException:
            os.dup2(saved, 2)
            capture.seek(0)
            sys.stderr.write(capture.read().decode(errors="replace"))
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def import_keras() -> Any:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    if "tensorflow" not in sys.modules:
        with _native_stderr_captured():
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
