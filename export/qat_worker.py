"""The quantization-aware training worker: ``python -m edge_export.export.qat_worker JOB_DIR``.

Runs in its own process with ``TF_USE_LEGACY_KERAS=1`` (tensorflow-model-optimization needs tf_keras).
Steps: rebuild the architecture on tf_keras, copy the Keras 3 weights by layer name, swap the
Normalization layer for an equal 1x1 depthwise convolution (tfmot cannot quantize Normalization, and
left float it would keep float SUB/MUL ops in the "integer" model), freeze BatchNormalization (inference
statistics; folded into the convolutions at conversion), ``quantize_apply``, calibrate the activation
ranges, a short fine-tune of the layers training updated (head and fine-tuned top blocks), keeping the
epoch (0 = calibration only) with the best validation accuracy, then a full-integer TFLite conversion.
Progress lines go to stdout; the job protocol is in ``export.qat``.
"""

from __future__ import annotations

import json
import os
import sys
import time
import traceback
from pathlib import Path
from typing import Any

import numpy as np

from edge_export.core.records.model_spec import ModelSpec
from edge_export.export.qat import ERROR, JOB, MODEL, RESULT, TRAIN_X, TRAIN_Y, VAL_X, VAL_Y, WEIGHTS
from edge_export.export.tflite import float_tensors, set_integer_io
from edge_export.trainer.model import NORMALIZE, build_classifier


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m edge_export.export.qat_worker JOB_DIR", file=sys.stderr)
        return 2
    job_dir = Path(argv[0])
    try:
        if "tensorflow" in sys.modules and os.environ.get("TF_USE_LEGACY_KERAS") != "1":
            raise RuntimeError("TensorFlow was imported before TF_USE_LEGACY_KERAS=1 was set")
        os.environ["TF_USE_LEGACY_KERAS"] = "1"
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        result = run_job(job_dir)
    except Exception as exc:  # reported to the parent through error.json
        message = f"{type(exc).__name__}: {exc}".strip()
        (job_dir / ERROR).write_text(json.dumps({"message": message[:2000], "traceback": traceback.format_exc()}))
        traceback.print_exc()
        return 1
    (job_dir / RESULT).write_text(json.dumps(result, indent=2))
    return 0


def run_job(job_dir: Path) -> dict:
    import tensorflow as tf  # lazy: only after main() sets TF_USE_LEGACY_KERAS=1 (tfmot needs tf_keras)
    import tensorflow_model_optimization as tfmot  # lazy: as above
    import tf_keras  # lazy: as above

    tf.get_logger().setLevel("ERROR")
    if not tf.keras.__name__.startswith("tf_keras"):
        raise RuntimeError(f"tf.keras is {tf.keras.__name__}, not tf_keras: TF_USE_LEGACY_KERAS=1 did not take effect")
    job = json.loads((job_dir / JOB).read_text())
    tf_keras.utils.set_random_seed(int(job["seed"]))

    spec = ModelSpec(**job["spec"])
    model = build_classifier(tf_keras, spec, weights="none")
    with np.load(job_dir / WEIGHTS) as weights:
        copy_weights(model, {k: weights[k] for k in weights.files})
    decay = _controllable_ema_decay(tf, tfmot)
    trainable = job.get("trainable_layers")
    qat_model = quantize(model, job.get("normalization"), tf_keras, tfmot, trainable)

    pixels = np.load(job_dir / TRAIN_X, mmap_mode="r")
    labels = np.load(job_dir / TRAIN_Y)
    val_x, val_y = np.load(job_dir / VAL_X, mmap_mode="r"), np.load(job_dir / VAL_Y)
    epochs, batch_size = int(job["epochs"]), int(job["batch_size"])
    batches = _Batches(tf_keras, pixels, labels, batch_size, int(job["seed"]))
    t = time.perf_counter()
    n = calibrate_ranges(tf, qat_model, batches, decay, max_batches=max(1, CALIBRATION_IMAGES // batch_size))
    print(f"qat: activation ranges calibrated on {n} image(s) in {time.perf_counter() - t:.0f}s")
    variables = trained_variables(qat_model, trainable)
    keeper = _BestEpoch(tf, qat_model, val_x, val_y, batch_size, epochs)
    keeper.check(0)
    print(
        f"qat: {len(labels)} training images, {epochs} epoch(s), batch {batch_size}, lr {job['learning_rate']}, "
        f"training {len(variables)} weight tensor(s)"
    )
    t = time.perf_counter()
    history = fine_tune(tf, tf_keras, qat_model, batches, variables, float(job["learning_rate"]), epochs, keeper)
    train_seconds = time.perf_counter() - t
    if not all(np.isfinite(history["loss"])):
        raise RuntimeError(f"quantization-aware training diverged (loss {history['loss']})")
    best = keeper.restore_best()
    print(f"qat: keeping epoch {best} (validation accuracy {keeper.scores[best][0]:.4f})")

    t = time.perf_counter()
    converter = tf.lite.TFLiteConverter.from_keras_model(qat_model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]

    set_integer_io(converter, job["int8_io"], integer_ops_only=False)
    data = converter.convert()
    left = float_tensors(data)
    if left:
        raise RuntimeError(f"the converted model is not full-integer; float tensors: {', '.join(left[:5])}")
    tmp = job_dir / (MODEL + ".partial")
    tmp.write_bytes(data)
    os.replace(tmp, job_dir / MODEL)
    print(f"qat: converted to full-integer TFLite ({len(data) / 1e6:.2f} MB) in {time.perf_counter() - t:.0f}s")
    return {
        "history": {k: [float(v) for v in vs] for k, vs in history.items()},
        "validation": [{"epoch": e, "accuracy": a, "loss": -negloss} for e, (a, negloss) in enumerate(keeper.scores)],
        "best_epoch": best,
        "trained_weights": len(variables),
        "train_seconds": round(train_seconds, 2),
    }


CALIBRATION_IMAGES = 512
EMA_DECAY = 0.999  # tfmot's MovingAverageQuantizer default


def _controllable_ema_decay(tf: Any, tfmot: Any) -> Any:
    """Make the EMA decay of tfmot's activation range trackers a variable we can set.

    tfmot starts every activation range at [-6, 6] and moves it with decay 0.999 per training step, so a
    short fine-tune (tens of steps) would quantize with ranges that are still mostly the initial guess
    (clipping e.g. the linear bottleneck outputs of EfficientNet). ``calibrate_ranges`` first sets the
    ranges to the running average of the observed batch ranges, then training continues at 0.999.
    """
    # lazy: after main() sets TF_USE_LEGACY_KERAS=1 (tfmot needs tf_keras)
    from tensorflow_model_optimization.python.core.quantization.keras import quant_ops

    decay = tf.Variable(EMA_DECAY, trainable=False, dtype=tf.float32, name="qat_range_ema_decay")
    original = getattr(quant_ops.MovingAvgQuantize, "__wrapped__", quant_ops.MovingAvgQuantize)

    def moving_avg_quantize(*args: Any, **kwargs: Any) -> Any:
        kwargs["ema_decay"] = decay
        return original(*args, **kwargs)

    moving_avg_quantize.__dict__["__wrapped__"] = original  # what the getattr above finds on a second call
    quant_ops.MovingAvgQuantize = moving_avg_quantize
    return decay


def calibrate_ranges(tf: Any, model: Any, batches: Any, decay: Any, max_batches: int) -> int:
    """Forward passes in training mode (range tracking on, no weight updates) with decay k/(k+1) at batch k:
    each range ends as the mean of the per-batch ranges. Returns the number of images used."""

    @tf.function
    def forward(x):
        model(x, training=True)

    seen = 0
    for k in range(min(max_batches, len(batches))):
        x, _ = batches[k]
        decay.assign(k / (k + 1))
        forward(tf.constant(x))
        seen += len(x)
    decay.assign(EMA_DECAY)
    return seen


def copy_weights(model: Any, weights: dict[str, np.ndarray]) -> None:
    """Set each layer's weights from ``<layer>/<index>`` arrays; every weight must be matched exactly."""
    by_layer: dict[str, dict[int, np.ndarray]] = {}
    for key, value in weights.items():
        name, _, index = key.rpartition("/")
        by_layer.setdefault(name, {})[int(index)] = value
    used = set()
    for layer in model.layers:
        current = layer.get_weights()
        if not current:
            continue
        source = by_layer.get(layer.name)
        if source is None or len(source) != len(current):
            raise RuntimeError(f"layer {layer.name!r}: the Keras 3 model has no matching weights")
        new = [source[i] for i in range(len(current))]
        for i, (a, b) in enumerate(zip(current, new)):
            if a.shape != b.shape:
                raise RuntimeError(f"layer {layer.name!r} weight {i}: shape {b.shape}, expected {a.shape}")
        layer.set_weights(new)
        used.add(layer.name)
    unused = sorted(set(by_layer) - used)
    if unused:
        raise RuntimeError(f"weights of layer(s) {unused} have no place in the tf_keras model")


def quantize(
    model: Any, normalization: dict | None, tf_keras: Any, tfmot: Any, trainable: list[str] | None = None
) -> Any:
    """The quantization-aware model: a flat functional model where every layer is annotated for tfmot."""
    qk = tfmot.quantization.keras
    layers = tf_keras.layers
    if trainable is not None:
        unknown = sorted(set(trainable) - {layer.name for layer in model.layers})
        if unknown:
            raise RuntimeError(f"trainable layer(s) {unknown} are not in the tf_keras model")

    def annotate(layer: Any) -> Any:
        if isinstance(layer, layers.InputLayer):
            return layer
        if isinstance(layer, layers.BatchNormalization):
            layer.trainable = False  # inference statistics while fine-tuning; folded at conversion
        if layer.name == NORMALIZE and isinstance(layer, layers.Normalization):
            layer = layers.DepthwiseConv2D(1, use_bias=True, name=NORMALIZE, trainable=False)
        return qk.quantize_annotate_layer(layer)

    annotated = tf_keras.models.clone_model(model, clone_function=annotate)
    for wrapper in annotated.layers:
        inner = getattr(wrapper, "layer", None)
        if inner is not None and inner.name == NORMALIZE and isinstance(inner, layers.DepthwiseConv2D):
            if normalization is None:
                raise RuntimeError("the model has a normalization layer but the job has no mean/std")
            mean = np.asarray(normalization["mean"], np.float32)
            std = np.asarray(normalization["std"], np.float32)
            inner.set_weights([(1.0 / std).reshape(1, 1, -1, 1), -mean / std])
    quantized = qk.quantize_apply(annotated)
    _fix_input_range(quantized, 0.0, 255.0)
    return quantized


def trained_variables(model: Any, trainable: list[str] | None) -> list[Any]:
    """The float weights to fine-tune: those of the layers named in ``trainable`` (all when None).

    Chosen explicitly because a tfmot QuantizeWrapper lists its layer's quantized weights as trainable
    even when the layer is frozen. BatchNormalization layers are frozen (never in the list)."""
    chosen, seen = [], set()
    for wrapper in model.layers:
        inner = getattr(wrapper, "layer", wrapper)
        if trainable is not None and inner.name not in trainable:
            continue
        if type(inner).__name__ == "BatchNormalization":
            continue
        for variable in wrapper.trainable_weights:
            if id(variable) not in seen:
                seen.add(id(variable))
                chosen.append(variable)
    if not chosen:
        raise RuntimeError(f"no weights to fine-tune in layers {trainable}")
    return chosen


def fine_tune(
    tf: Any,
    tf_keras: Any,
    model: Any,
    batches: Any,
    variables: list[Any],
    learning_rate: float,
    epochs: int,
    keeper: Any,
) -> dict:
    """A plain training loop (Adam, cross-entropy) over ``variables`` only; ``keeper`` scores each epoch."""
    optimizer = tf_keras.optimizers.Adam(learning_rate)
    loss_fn = tf_keras.losses.SparseCategoricalCrossentropy()

    @tf.function
    def step(x, y):
        with tf.GradientTape() as tape:
            probs = model(x, training=True)
            loss = loss_fn(y, probs)
        optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
        correct = tf.reduce_sum(tf.cast(tf.equal(tf.argmax(probs, axis=1, output_type=tf.int64), y), tf.float32))
        return loss, correct

    history: dict[str, list[float]] = {"loss": [], "accuracy": []}
    for epoch in range(epochs):
        keeper.start()
        total_loss, total_correct, count = 0.0, 0.0, 0
        for i in range(len(batches)):
            x, y = batches[i]
            loss, correct = step(tf.constant(x), tf.constant(y))
            total_loss += float(loss) * len(y)
            total_correct += float(correct)
            count += len(y)
        batches.on_epoch_end()
        history["loss"].append(total_loss / count)
        history["accuracy"].append(total_correct / count)
        keeper.check(epoch + 1, history["loss"][-1])
    return history


def _fix_input_range(model: Any, low: float, high: float) -> None:
    """Start the input quantizer's tracked range at the full pixel range, so the integer model's input
    is raw pixels (scale 1) whatever the training images' extremes, as in the post-training int8 model."""
    (layer,) = [layer for layer in model.layers if type(layer).__name__ == "QuantizeLayer"]
    ranges = {w.name.rsplit("/", 1)[-1].split(":")[0]: w for w in layer.weights}
    mins = [w for n, w in ranges.items() if n.endswith("_min")]
    maxs = [w for n, w in ranges.items() if n.endswith("_max")]
    if len(mins) != 1 or len(maxs) != 1:
        raise RuntimeError(f"unexpected input quantizer weights: {sorted(ranges)}")
    mins[0].assign(low)
    maxs[0].assign(high)


class _BestEpoch:
    """Scores the model on the validation images after calibration (epoch 0) and after each epoch, prints
    a line per epoch, and restores the best weights (accuracy, then loss), quantizer ranges included."""

    def __init__(self, tf: Any, model: Any, val_x: np.ndarray, val_y: np.ndarray, batch_size: int, epochs: int):
        self.model, self.val_x, self.val_y = model, val_x, val_y
        self.batch_size, self.epochs = batch_size, epochs
        self.scores: list[tuple[float, float]] = []  # (accuracy, -loss) per epoch, 0 = before training
        self.best = 0
        self._best_weights: list[Any] | None = None
        self._forward = tf.function(lambda x: model(x, training=False))
        self.start()

    def start(self) -> None:
        self._t = time.perf_counter()

    def check(self, epoch: int, train_loss: float | None = None) -> None:
        val_x, val_y = self.val_x, self.val_y
        probs = np.concatenate(
            [
                self._forward(np.asarray(val_x[i : i + self.batch_size], np.float32)).numpy()
                for i in range(0, len(val_y), self.batch_size)
            ]
        )
        accuracy = float(np.mean(probs.argmax(axis=1) == val_y))
        loss = float(np.mean(-np.log(np.clip(probs[np.arange(len(val_y)), val_y], 1e-7, 1.0))))
        self.scores.append((accuracy, -loss))
        if self._best_weights is None or self.scores[-1] > self.scores[self.best]:
            self.best = epoch
            self._best_weights = [w.copy() for w in self.model.get_weights()]
        train = f"train loss {train_loss:.4f}, " if train_loss is not None else ""
        print(
            f"qat: epoch {epoch}/{self.epochs} {train}validation accuracy {accuracy:.4f} loss {loss:.4f} "
            f"({time.perf_counter() - self._t:.0f}s)"
        )

    def restore_best(self) -> int:
        self.model.set_weights(self._best_weights)
        return self.best


class _Batches:
    """Shuffled float32 batches from uint8 pixels (a tf_keras Sequence, built lazily on the tf_keras module)."""

    def __new__(cls, tf_keras: Any, pixels: np.ndarray, labels: np.ndarray, batch_size: int, seed: int):
        class Batches(tf_keras.utils.Sequence):
            def __init__(self):
                super().__init__()
                self._rng = np.random.default_rng(seed)
                self._order = self._rng.permutation(len(labels))

            def __len__(self):
                return max(1, -(-len(labels) // batch_size))

            def __getitem__(self, i):
                index = np.sort(self._order[i * batch_size : (i + 1) * batch_size])
                return np.asarray(pixels[index], np.float32), labels[index]

            def on_epoch_end(self):
                self._order = self._rng.permutation(len(labels))

        return Batches()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
