"""Config: defaults < YAML file < overrides; unknown keys and bad values fail before any work."""

from __future__ import annotations

import pytest

from edge_export.config import load_config
from edge_export.errors import EdgeExportError


def test_precedence_and_sources(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("model:\n  backbone: mobilenet_v2\n  image_size: 160\ntrain:\n  fine_tune:\n    learning_rate: 1e-4\n")
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
        (["noequals"], "not key=value"),
        (["train.feature_extraction.enabled=false", "train.fine_tune.enabled=false"], "at least one"),
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
