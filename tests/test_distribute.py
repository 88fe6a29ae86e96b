"""tf.distribute (train.distribute), mixed precision and class weights, on the tiny backbone on CPU.

The distributed runs compare with the default strategy at the SAME global batch and learning rate: the
distributed runs get half the per-replica batch and half the learning rates, which the linear scaling
(trainer/distribute.py) doubles back. Then the arithmetic is the same (each replica's mean gradient over
half of every batch, averaged over the two replicas = the mean over the whole batch) and only the order
of floating-point sums differs, so the losses agree to about 1e-6 and the accuracies are equal. Dropout is
0 because each replica draws its own dropout mask. The training split is whole batches: a last partial
batch is weighted differently (Keras divides each replica's mean loss by the number of replicas, so a
batch of 1 split 1 + 0 takes half a step); with 25 training images the final losses differed by 0.009.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edge_export.core.config import load_config
from edge_export.core.errors import EdgeExportError
from edge_export.core.run_folder import RunFolder
from edge_export.trainer.distribute import (
    CLASS_IMBALANCE_RATIO,
    class_weights,
    parse_tf_config,
    resolve_mixed_precision,
)

from conftest import cli_main, write_image_folder

LOSS_TOLERANCE = 1e-4  # observed: equal to 1e-6 or better; see the module docstring

COMMON = [
    "model.backbone=tiny_cnn",
    "model.weights=none",
    "model.dropout=0",
    "train.feature_extraction.epochs=2",
    "train.fine_tune.epochs=1",
]
DEFAULT = ["train.batch_size=8", "train.feature_extraction.learning_rate=0.05", "train.fine_tune.learning_rate=0.001"]
HALVED = ["train.batch_size=4", "train.feature_extraction.learning_rate=0.025", "train.fine_tune.learning_rate=0.0005"]

# oneDNN's CPU convolution fails on an empty per-replica batch (trainer/distribute.py _check_cpu_replicas)
CPU_REPLICAS_ENV = {**os.environ, "TF_ENABLE_ONEDNN_OPTS": "0"}

# A fresh process: logical devices must be configured before TensorFlow initializes.
MIRRORED_CHILD = r"""
import json, sys
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
from edge_export.core.config import load_config
from edge_export.core.run_folder import RunFolder
from edge_export.trainer.run import train_run
data, out, runs = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
results = {name: train_run(load_config(None, [f"data.path={data}", *overrides]), RunFolder(f"{out}/{name}"))
           for name, overrides in runs.items()}
print("RESULTS " + json.dumps(results))
"""


def _data(root: Path) -> Path:
    # 24 training images: whole batches of 8 (see the module docstring); 12 validation and 12 test images:
    # their last batch of 4 is split across the replicas when predicting
    return write_image_folder(root, {"train": 12, "validation": 6, "test": 6})


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> dict:
    """The default strategy and MirroredStrategy over two logical CPUs, trained in one child process."""
    base = tmp_path_factory.mktemp("distribute")
    data = _data(base / "data")
    runs = {
        "none": [*COMMON, *DEFAULT, "train.distribute=none"],
        "mirrored": [*COMMON, *HALVED, "train.distribute=mirrored"],
    }
    proc = subprocess.run(
        [sys.executable, "-c", MIRRORED_CHILD, str(data), str(base / "runs"), json.dumps(runs)],
        capture_output=True,
        text=True,
        timeout=900,
        env=CPU_REPLICAS_ENV,
    )
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULTS ")]
    assert proc.returncode == 0 and lines, proc.stderr[-3000:]
    return {"data": data, "runs": base / "runs", **json.loads(lines[-1][len("RESULTS ") :])}


def _same_result(a: dict, b: dict) -> None:
    for split in ("train", "validation", "test"):
        assert a[split]["accuracy"] == b[split]["accuracy"], split
        assert abs(a[split]["loss"] - b[split]["loss"]) < LOSS_TOLERANCE, (split, a[split]["loss"], b[split]["loss"])


def test_mirrored_on_two_logical_cpus_matches_the_default_strategy(reference):
    default, mirrored = reference["none"], reference["mirrored"]
    assert default["training"]["strategy"] == "none" and default["training"]["replicas"] == 1
    assert mirrored["training"]["strategy"] == "mirrored" and mirrored["training"]["replicas"] == 2
    # per-replica batch 4 x 2 replicas, learning rates x 2: the default's global batch and learning rates
    assert mirrored["training"]["global_batch_size"] == default["training"]["global_batch_size"] == 8
    assert mirrored["training"]["learning_rates"] == default["training"]["learning_rates"]
    assert default["validation"]["accuracy"] >= 0.9  # it learned (the classes differ by colour)
    _same_result(default, mirrored)
    assert RunFolder(reference["runs"] / "mirrored").model.is_file()


def _free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def test_two_workers_train_together_and_only_the_chief_writes(reference, tmp_path):
    cluster = {"worker": [f"127.0.0.1:{p}" for p in _free_ports(2)]}
    outs = [tmp_path / "chief", tmp_path / "worker1"]
    procs, logs = [], []
    for index, out in enumerate(outs):
        env = {
            **CPU_REPLICAS_ENV,
            "TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}}),
        }
        log = open(tmp_path / f"worker{index}.log", "w")
        logs.append(log)
        cmd = [
            sys.executable,
            "-m",
            "edge_export.cli",
            "train",
            "--data",
            str(reference["data"]),
            "--out",
            str(out),
            *COMMON,
            *HALVED,
            "train.distribute=multi_worker",
        ]
        procs.append(subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT))
    try:
        codes = [p.wait(timeout=900) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
        for log in logs:
            log.close()
    assert codes == [0, 0], [(tmp_path / f"worker{i}.log").read_text()[-3000:] for i in range(2)]

    chief = RunFolder(outs[0])
    chief.verify()  # a complete run folder: every recorded file with its sha256
    assert not outs[1].exists() or not any(outs[1].rglob("*.keras"))  # the other worker wrote to scratch
    metrics = json.loads(chief.metrics.read_text())
    training = metrics["training"]
    assert (training["strategy"], training["workers"], training["replicas"], training["chief"]) == (
        "multi_worker",
        2,
        2,
        True,
    )
    assert training["global_batch_size"] == 8
    # predictions gathered from both workers come back in order: same accuracies and losses as one process
    _same_result(reference["none"], metrics)


# ----------------------------------------------------------------------------------------- TF_CONFIG


@pytest.mark.parametrize(
    "text, expected",
    [
        (None, "not set"),
        ("{cluster", "not valid JSON"),
        ('{"task": {"type": "worker", "index": 0}}', '"cluster" and a "task"'),
        ('{"cluster": {"worker": ["no-port"]}, "task": {"type": "worker", "index": 0}}', "host:port"),
        ('{"cluster": {"ps": ["a:1"]}, "task": {"type": "worker", "index": 0}}', 'no "worker"'),
        ('{"cluster": {"worker": ["a:1"]}, "task": {"type": "evaluator", "index": 0}}', "task must be"),
        ('{"cluster": {"worker": ["a:1", "b:1"]}, "task": {"type": "worker", "index": 2}}', "index 2"),
    ],
)
def test_bad_tf_config_is_a_clear_error(text, expected):
    with pytest.raises(EdgeExportError) as info:
        parse_tf_config(text)
    assert "TF_CONFIG" in info.value.message and expected in info.value.message
    assert "TF_CONFIG=" in info.value.hint


def test_tf_config_parses():
    cluster, task, index = parse_tf_config(
        '{"cluster": {"worker": ["a:1", "b:2"]}, "task": {"type": "worker", "index": 1}}'
    )
    assert cluster == {"worker": ["a:1", "b:2"]} and (task, index) == ("worker", 1)


def test_multi_worker_without_tf_config_fails_before_writing(capsys, monkeypatch, image_folder, tmp_path):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    out = tmp_path / "run"
    code, text = cli_main(
        capsys, "train", "--data", str(image_folder), "--out", str(out), *COMMON, "train.distribute=multi_worker"
    )
    assert code != 0 and "TF_CONFIG" in text and "Traceback" not in text
    assert not out.exists()


# -------------------------------------------------------------------------------- class weights


def test_balanced_class_weights():
    labels = np.array([0] * 4 + [1] * 12)
    assert class_weights(labels, 2, "auto") == {0: 16 / (2 * 4), 1: 16 / (2 * 12)}
    assert class_weights(labels, 2, "none") is None
    assert class_weights(np.array([0] * 10 + [1] * 10), 2, "auto") is None  # balanced
    at_threshold = np.array([0] * 10 + [1] * int(10 * CLASS_IMBALANCE_RATIO))
    assert class_weights(at_threshold, 2, "auto") is None  # "beyond" the threshold only
    weights = class_weights(np.array([0] * 2 + [1] * 3 + [2] * 5), 3, "auto")
    assert weights == pytest.approx({0: 10 / 6, 1: 10 / 9, 2: 10 / 15})
    counts = np.array([2, 3, 5])
    assert sum(weights[i] * counts[i] for i in range(3)) == pytest.approx(10)  # the total weight is unchanged


def test_class_weight_auto_on_an_unbalanced_set_is_applied_and_recorded(tmp_path):
    from edge_export.trainer.run import train_run

    data = write_image_folder(tmp_path / "data", {"train": 12, "validation": 4})
    for png in sorted((data / "train" / "red").glob("*.png"))[:8]:
        png.unlink()  # blue 12, red 4
    fast = [
        f"data.path={data}",
        *COMMON,
        "train.batch_size=8",
        "train.fine_tune.enabled=false",
        "train.feature_extraction.epochs=1",
    ]
    results = {}
    for setting in ("auto", "none"):
        run = RunFolder(tmp_path / setting)
        train_run(load_config(None, [*fast, f"train.class_weight={setting}"]), run)
        results[setting] = (json.loads(run.metrics.read_text())["training"], json.loads(run.history.read_text()))
    auto, none = results["auto"][0], results["none"][0]
    assert auto["class_weight"] == "auto" and auto["class_weights"] == {"blue": round(16 / 24, 6), "red": 2.0}
    assert none["class_weight"] == "none" and none["class_weights"] is None
    # the weights reach fit(): the weighted training loss differs from the unweighted one at equal seed
    loss = {s: h["feature_extraction"]["loss"][0] for s, (_, h) in results.items()}
    assert abs(loss["auto"] - loss["none"]) > 1e-4, loss


# ------------------------------------------------------------------------------ mixed precision


def test_mixed_precision_auto_is_float32_on_cpu():
    import tensorflow as tf

    if tf.config.list_physical_devices("GPU"):
        pytest.skip("a GPU is visible: auto means mixed_float16 here")
    assert resolve_mixed_precision("auto") == "float32"
    assert resolve_mixed_precision("off") == "float32"
    assert resolve_mixed_precision("mixed_float16") == "mixed_float16"  # asked for explicitly (slow on CPU)


def test_mixed_float16_keeps_the_softmax_float32_and_saves_a_float32_model(image_folder, tmp_path):
    from edge_export.core.tf_env import import_keras
    from edge_export.trainer.model import CLASSIFIER, ModelSpec, build_classifier
    from edge_export.trainer.run import train_run

    keras = import_keras()
    keras.mixed_precision.set_dtype_policy("mixed_float16")
    try:
        model = build_classifier(keras, ModelSpec("tiny_cnn", 32, 2), weights="none")
    finally:
        keras.mixed_precision.set_dtype_policy("float32")
    assert model.get_layer("block0_conv").compute_dtype == "float16"
    assert model.get_layer(CLASSIFIER).compute_dtype == "float32" and model.output.dtype == "float32"

    run = RunFolder(tmp_path / "run")
    metrics = train_run(
        load_config(
            None,
            [
                f"data.path={image_folder}",
                *COMMON,
                "train.batch_size=8",
                "train.feature_extraction.epochs=1",
                "train.mixed_precision=mixed_float16",
            ],
        ),
        run,
    )
    assert metrics["training"]["mixed_precision"] == "mixed_float16"
    assert keras.mixed_precision.dtype_policy().name == "float32"  # the process's policy is restored
    saved = keras.models.load_model(run.model)
    assert {layer.dtype_policy.name for layer in saved.layers} == {"float32"}
    assert np.isfinite(metrics["validation"]["loss"])
