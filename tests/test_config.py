"""Config: defaults < YAML file < overrides; unknown keys and bad values fail before any work."""

from __future__ import annotations

import pytest

from edge_export.core.config import load_config
from edge_export.core.errors import EdgeExportError


def test_precedence_and_sources(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(
        "model:\n  backbone: mobilenet_v2\n  image_size: 160\ntrain:\n  fine_tune:\n    learning_rate: 1e-4\n"
    )
    config = load_config(path, ["model.image_size=192"])
    assert config.model.backbone == "mobilenet_v2"
    assert config.model.image_size == 192
    assert config.train.fine_tune.learning_rate == pytest.approx(1e-4)
    assert config.train.batch_size == 32
    assert config.sources["model.backbone"] == str(path)
    assert config.sources["model.image_size"] == "override"
    assert config.sources["train.batch_size"] == "default"
    assert load_config(None, {"train.seed": 7}).train.seed == 7


def test_round_trip_through_yaml(tmp_path):
    config = load_config(None, ["train.fine_tune.enabled=false", "train.feature_extraction.mode=augmented"])
    path = tmp_path / "resolved.yaml"
    path.write_text(config.to_yaml())
    assert load_config(path).to_dict() == config.to_dict()


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["train.epochs=3"], "unknown config key 'train.epochs'"),
        (["modle.backbone=x"], "unknown config key 'modle'"),
        (["train.batch_size=abc"], "train.batch_size"),
        (["train.batch_size=0"], "train.batch_size"),
        (["train.feature_extraction.mode=fast"], "cached, augmented"),
        (["train.fine_tune.learning_rate=2"], "learning_rate"),
        (["data.validation_split=1.5"], "validation_split"),
        (["model.dropout=true"], "model.dropout"),
        (["model.resize=lanczos"], "model.resize"),
        (["noequals"], "not key=value"),
        (["train.feature_extraction.enabled=false", "train.fine_tune.enabled=false"], "at least one"),
        # seeds NumPy/TensorFlow accept: unsigned 32-bit (a bad one used to fail after config.yaml was written)
        (["train.seed=-5"], "train.seed: expected an integer 0..4294967295"),
        (["train.seed=4294967296"], "train.seed: expected an integer 0..4294967295"),
        (["export.representative_seed=-1"], "export.representative_seed"),
        # YAML's non-finite floats: a traceback (int(inf)) or silently accepted before
        (["train.batch_size=.inf"], "bad config value inf for train.batch_size: expected a finite number"),
        (["train.batch_size=.nan"], "bad config value nan for train.batch_size: expected a finite number"),
        (["train.feature_extraction.learning_rate=.nan"], "train.feature_extraction.learning_rate: expected a finite"),
        (["train.fine_tune.learning_rate=nan"], "train.fine_tune.learning_rate: expected a finite"),
        (["export.accuracy_budget=.inf"], "export.accuracy_budget: expected a finite"),
        (["build.accuracy_budget=-.inf"], "build.accuracy_budget: expected a finite"),
        (["build.max_size_mb=.inf"], "build.max_size_mb: expected a finite"),
        (["bench.min_accuracy=.nan"], "bench.min_accuracy: expected a finite"),
        (["model.dropout=.nan"], "model.dropout: expected a finite"),
        (["data.validation_split=.nan"], "data.validation_split: expected a finite"),
        (["train.augment.zoom=.nan"], "train.augment.zoom: expected a finite"),
        (["bench.threads=.nan"], "bench.threads"),
    ],
)
def test_bad_values_are_clear_errors(overrides, message):
    with pytest.raises(EdgeExportError, match=message.replace("(", r"\(")):
        load_config(None, overrides)


def test_bad_files(tmp_path):
    with pytest.raises(EdgeExportError, match="not found"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: [unclosed\n")
    with pytest.raises(EdgeExportError, match="invalid YAML"):
        load_config(bad)
    listy = tmp_path / "list.yaml"
    listy.write_text("- a\n- b\n")
    with pytest.raises(EdgeExportError, match="mapping"):
        load_config(listy)


def test_every_float_setting_rejects_non_finite_values():
    from edge_export.core.config import flatten

    floats = [k for k, v in flatten(load_config().to_dict()).items() if isinstance(v, float)]
    floats += ["bench.min_accuracy", "build.max_size_mb"]  # optional floats (default None)
    assert len(floats) >= 10
    for key in floats:
        for text in (".nan", ".inf", "-.inf", "nan", "inf"):
            with pytest.raises(EdgeExportError, match=f"{key}.*expected a finite number"):
                load_config(None, [f"{key}={text}"])


def test_seed_bounds_are_inclusive():
    assert load_config(None, ["train.seed=0"]).train.seed == 0
    assert load_config(None, ["train.seed=4294967295"]).train.seed == 2**32 - 1


def test_a_scalar_is_a_one_element_list():
    assert load_config(None, ["bench.threads=1"]).bench.threads == [1]
    assert load_config(None, {"bench.threads": 0}).bench.threads == [0]
    assert load_config(None, ["bench.threads=1,0"]).bench.threads == [1, 0]
    assert load_config(None, ["export.formats=tflite-int8"]).export.formats == ["tflite-int8"]
    assert load_config(None, ["build.stages=train"]).build.stages == ["train"]
    with pytest.raises(EdgeExportError, match="bench.threads"):
        load_config(None, ["bench.threads=true"])


def test_scalar_list_in_a_file(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("bench:\n  threads: 2\n")
    assert load_config(path).bench.threads == [2]


def test_resize_setting_names_the_runtime_methods():
    import typing

    from edge_export.core.config import ModelConfig
    from edge_export.runtime.images import RESIZE_METHODS

    assert set(typing.get_args(typing.get_type_hints(ModelConfig)["resize"])) == set(RESIZE_METHODS)
    assert load_config(None, ["model.resize=nearest"]).model.resize == "nearest"
    assert load_config(None, []).model.resize == "bilinear"


def test_a_choice_spelled_like_a_yaml_boolean_is_the_choice(tmp_path):
    """YAML 1.1 reads ``off`` as false: train.mixed_precision=off (a choice of auto, off, mixed_float16) was
    refused as 'bad config value False', in a file and as an override."""
    from edge_export.core.config import load_config

    assert load_config(None, ["train.mixed_precision=off"]).train.mixed_precision == "off"
    path = tmp_path / "c.yaml"
    path.write_text("train:\n  mixed_precision: off\n")
    assert load_config(path).train.mixed_precision == "off"
    with pytest.raises(EdgeExportError, match="bad config value True"):
        load_config(None, ["train.mixed_precision=on"])  # no choice is spelled like true: still an error
