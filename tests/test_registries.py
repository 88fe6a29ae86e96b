"""Tests parametrized over the registries (timm's way): a format or backbone is tested by being registered,
and one that fails does not hide the others.

- formats (export/formats.py ``FORMATS``): each exports the tiny trained model on its own, and its artifact
  passes the runtime check (loads, predicts, agrees with Keras within the budget) and carries the typed
  metadata its registry entry promises;
- backbones (trainer/backbones ``list_backbones()``): each builds with ``weights=none`` at a small size, to
  the model contract, and reports the blocks fine-tuning unfreezes.
"""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from edge_export.core.records.manifest import Manifest
from edge_export.core.run_folder import RunFolder
from edge_export.export.formats import FORMATS
from edge_export.trainer.backbones import list_backbones

SLOW_FORMATS = {"tflite-qat-int8"}  # quantization-aware training in a subprocess: over a minute


def _format_params():
    return [pytest.param(name, marks=pytest.mark.slow) if name in SLOW_FORMATS else name for name in FORMATS]


@pytest.fixture
def fresh_run(tiny_export, tmp_path) -> RunFolder:
    """A copy of the tiny trained run without its export (each format exports into its own)."""
    dest = tmp_path / "run"
    shutil.copytree(tiny_export["run"], dest, ignore=shutil.ignore_patterns("export", "checkpoints", "bench"))
    return RunFolder(dest)


@pytest.mark.parametrize("name", _format_params())
def test_each_format_exports_alone_and_passes_the_runtime_check(name, fresh_run, tiny_export):
    from edge_export.core.config import load_config
    from edge_export.export.exporter import export_run
    from edge_export.runtime.classifier import Classifier
    from edge_export.runtime.metadata import read_model_metadata

    fmt = FORMATS[name]
    config = load_config(fresh_run.config, ["export.qat.epochs=1"])
    manifest = export_run(fresh_run, config.export, run_config=config, formats=name, echo=None)
    assert isinstance(manifest, Manifest) and manifest.formats == [name]
    (artifact,) = manifest.artifacts
    assert artifact.ok, artifact.error
    assert (artifact.name, artifact.format, artifact.precision, artifact.path) == (
        name,
        fmt.family,
        fmt.precision,
        fmt.filename,
    )

    path = fresh_run.export_dir / artifact.path
    meta = read_model_metadata(path)  # the typed record the runtime reads back
    assert (meta.format, meta.precision, meta.backbone) == (name, fmt.precision, "tiny_cnn")
    assert meta.labels == tuple(fresh_run.read_labels())
    assert meta.int8_io == ("uint8" if fmt.integer_io else None)
    assert meta.preprocessing.size == (32, 32)

    classifier = Classifier.load(path)  # labels and preprocessing from the metadata
    assert classifier.model_metadata == meta
    assert classifier.backend.name == {"tflite": "litert", "onnx": "onnxruntime"}[fmt.family]
    probs = classifier.predict_proba(np.zeros((2, 32, 32, 3), np.uint8))
    assert probs.shape == (2, 2) and np.isfinite(probs).all()


def test_the_registry_test_covers_every_format():
    assert [p if isinstance(p, str) else p.values[0] for p in _format_params()] == list(FORMATS)


@pytest.mark.parametrize("name", [spec.name for spec in list_backbones()])
def test_each_backbone_builds_to_the_contract(name):
    from edge_export.core.records.model_spec import ModelSpec
    from edge_export.core.tf_env import import_keras
    from edge_export.trainer.backbones import get_backbone
    from edge_export.trainer.model import base_units, build_classifier

    keras = import_keras()
    spec = get_backbone(name)
    size = 64 if name != "tiny_cnn" else 32
    if spec.fixed_sizes:
        size = min(spec.fixed_sizes)
    try:
        model = build_classifier(keras, ModelSpec(name, size, 3), weights="none")
    except Exception as exc:  # weights=none downloads nothing today; a backbone that must fetch files is skipped
        if any(word in str(exc).lower() for word in ("download", "urlopen", "url fetch failure")):
            pytest.skip(f"{name} needs a download: {exc}")
        raise
    assert tuple(model.input.shape) == (None, size, size, 3)
    probs = model.predict(np.full((2, size, size, 3), 200.0, np.float32), verbose=0)
    assert probs.shape == (2, 3)
    np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-5)
    units = base_units(model, spec)
    assert len(units) >= 3  # blocks to fine-tune
    assert all(layers for _, layers in units)
    # every base layer belongs to exactly one unit
    flat = [layer.name for _, layers in units for layer in layers]
    assert len(flat) == len(set(flat))
