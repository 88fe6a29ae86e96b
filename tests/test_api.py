"""The public Python API (``edge_export.api``, re-exported by ``edge_export``) and the checks at its boundary.

Bad settings (every name a registry owns) fail before any work, through the API and through the CLI,
naming the bad value, the flag or key it came from, and the valid ones; no run folder is left.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import edge_export
from edge_export import api
from edge_export.core.config import Config, load_config
from edge_export.core.errors import EdgeExportError

from conftest import BUILD_FAST, cli_main


def test_import_is_cheap_and_the_api_is_reexported():
    code = (
        "import sys, edge_export, edge_export.runtime\n"
        "heavy = [m for m in ('tensorflow', 'keras', 'onnxruntime', 'ai_edge_litert', 'edge_export.api') "
        "if m in sys.modules]\n"
        "assert not heavy, heavy\n"
        "from edge_export import build, train, export, bench, package\n"
        "from edge_export.runtime import Classifier, Preprocessing\n"
        "heavy = [m for m in ('tensorflow', 'keras') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
        "print('ok')\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr
    assert edge_export.build is api.build and edge_export.bench is api.bench
    with pytest.raises(AttributeError):
        edge_export.no_such_thing  # noqa: B018


# ------------------------------------------------------------------- the registries are the only lists


def _formats():
    from edge_export.export.formats import FAMILIES, FORMATS

    return [*FORMATS, *FAMILIES, "all"]


def _backbones():
    from edge_export.trainer.backbones import list_backbones

    return [b.name for b in list_backbones()]


def _stages():
    from edge_export.pipeline.stages import STAGES

    return [s.name for s in STAGES]


@pytest.mark.parametrize("name", _formats())
def test_every_registered_format_is_accepted(name):
    assert api.resolve_config(formats=name).export.formats == [name]


@pytest.mark.parametrize("name", _backbones())
def test_every_registered_backbone_is_accepted(name):
    assert api.resolve_config(backbone=name).model.backbone == name


@pytest.mark.parametrize("name", _stages())
def test_every_registered_stage_is_accepted(name):
    assert api.resolve_config(stages=name).build.stages == [name]


def test_config_defaults_are_registered_names():
    from edge_export.export.formats import AUTO, FORMATS

    defaults = Config()
    assert {f.removesuffix(AUTO) for f in defaults.export.formats} <= set(FORMATS)  # NAME or NAME:auto
    assert set(defaults.build.stages) == set(_stages())
    assert defaults.model.backbone in _backbones()


def test_core_config_keeps_no_copy_of_a_registry():
    source = (Path(edge_export.core.config.__file__)).read_text()
    assert '("train", "export", "bench")' not in source  # the stage names belong to edge_export/pipeline/stages.py


@pytest.mark.parametrize(
    "settings, overrides, said",
    [
        ({"formats": "tflite-int4"}, None, ["formats=", "'tflite-int4'", "tflite-int8", "onnx-fp32"]),
        ({}, {"export.formats": "tflite-int4"}, ["export.formats", "'tflite-int4'", "tflite-int8"]),
        ({"backbone": "resnet9000"}, None, ["backbone=", "'resnet9000'", "mobilenet_v2", "tiny_cnn"]),
        ({"stages": "train,foo"}, None, ["stages=", "'foo'", "train, export, bench"]),
        ({"stages": ["train", "foo"]}, None, ["'foo'"]),
        ({"image_size": 5}, None, ["image_size=", "32..1024"]),
        ({"feature_mode": "fast"}, None, ["feature_mode=", "cached, augmented"]),
        ({"no_such_flag": 1}, None, ["unknown setting 'no_such_flag'", "backbone"]),
    ],
)
def test_bad_settings_fail_in_the_api_before_any_work(tmp_path, settings, overrides, said):
    out = tmp_path / "run"
    with pytest.raises(EdgeExportError) as info:
        api.build(data=str(tmp_path / "no-data"), out=out, overrides=overrides, **settings)
    for text in said:
        assert text in str(info.value)
    assert not out.exists()


@pytest.mark.parametrize(
    "args, said",
    [
        (["export.formats=tflite-int4"], ["export.formats", "'tflite-int4'", "tflite-int8"]),
        (["--formats", "tflite-int4"], ["--formats", "'tflite-int4'", "onnx-int8"]),
        (["--backbone", "resnet9000"], ["--backbone", "'resnet9000'", "efficientnet_lite0"]),
        (["model.backbone=resnet9000"], ["model.backbone", "'resnet9000'"]),
        (["--stages", "train,foo"], ["--stages", "'foo'", "train, export, bench"]),
        (["--image-size", "5"], ["--image-size", "32..1024"]),
        (["--feature-mode", "fast"], ["--feature-mode", "cached"]),
    ],
)
def test_bad_settings_fail_in_the_cli_before_any_work(capsys, tmp_path, args, said):
    out = tmp_path / "run"
    code, output = cli_main(capsys, "build", "--data", str(tmp_path / "no-data"), "--out", str(out), *args)
    assert code != 0
    for text in said:
        assert text in output
    assert "build.stages" not in output or "--stages" not in args
    assert not out.exists()


def test_unknown_provider_flavour_and_device(capsys, tmp_path):
    code, output = cli_main(
        capsys, "predict", str(tmp_path / "m.onnx"), str(tmp_path / "a.jpg"), "--provider", "quantum"
    )
    assert code != 0 and "quantum" in output and "CPUExecutionProvider" in output and "cuda" in output
    with pytest.raises(EdgeExportError, match="(?s)unknown bundle flavour .toaster.*cpu, rpi, jetson"):
        api.package(tmp_path, flavour="toaster")
    code, output = cli_main(capsys, "package", str(tmp_path), "--flavour", "toaster")
    assert code != 0 and "toaster" in output and "rpi" in output
    for option in ("--device", "--target"):  # --target: the old name, kept for one release
        code, output = cli_main(capsys, "bench", str(tmp_path / "m.onnx"), "--data", str(tmp_path), option, "tcp://box")
        assert code != 0 and "tcp://box" in output and "ssh://" in output
    assert not (tmp_path / "bench").exists()


# ------------------------------------------------------------------------------- one list of flags


@pytest.mark.parametrize(
    "command, names",
    [("train", api.TRAIN_FLAGS), ("build", api.BUILD_FLAGS), ("export", api.EXPORT_FLAGS), ("bench", api.BENCH_FLAGS)],
)
def test_cli_options_are_the_api_flags(capsys, command, names):
    code, output = cli_main(capsys, command, "--help")
    assert code == 0
    for name in names:
        assert api.FLAGS[name].cli in output, (command, name)


def test_build_takes_the_train_flags():
    assert set(api.TRAIN_FLAGS) <= set(api.BUILD_FLAGS)
    config = api.resolve_config(
        backbone="mobilenet_v2", image_size=160, weights="none", fine_tune=False, flags=api.BUILD_FLAGS
    )
    assert (config.model.backbone, config.model.image_size, config.model.weights) == ("mobilenet_v2", 160, "none")
    assert config.train.fine_tune.enabled is False
    assert config.sources["model.backbone"] == "override"


def test_precedence_config_overrides_flags(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("model:\n  backbone: mobilenet_v2\ntrain:\n  seed: 3\n")
    config = api.resolve_config(path, {"train.seed": 4, "train.batch_size": 16}, batch_size=12)
    assert (config.model.backbone, config.train.seed, config.train.batch_size) == ("mobilenet_v2", 4, 12)
    again = api.resolve_config(config, ["train.seed=5"])  # a Config object is a starting point too
    assert (again.model.backbone, again.train.seed, again.train.batch_size) == ("mobilenet_v2", 5, 12)
    assert again.sources["model.backbone"] == str(path)


# -------------------------------------------------------------------------- `config` is a config file


def test_config_output_is_a_config_file(capsys, tmp_path):
    code, text = cli_main(
        capsys,
        "config",
        "export.formats=tflite-int8,onnx-fp32",
        "train.fine_tune.learning_rate=2e-5",
        "bench.threads=[1]",
        "model.image_size=160",
    )
    assert code == 0 and "# override" in text and "# default" in text
    saved = tmp_path / "saved.yaml"
    saved.write_text(text)
    loaded = load_config(saved)
    expected = load_config(
        None,
        [
            "export.formats=tflite-int8,onnx-fp32",
            "train.fine_tune.learning_rate=2e-5",
            "bench.threads=[1]",
            "model.image_size=160",
        ],
    )
    assert loaded.to_dict() == expected.to_dict()
    code, again = cli_main(capsys, "config", "--config", str(saved))
    assert code == 0 and f"# {saved}" in again
    assert load_config(_written(tmp_path / "again.yaml", again)).to_dict() == expected.to_dict()


def test_config_show_is_still_accepted(capsys):
    code, text = cli_main(capsys, "config", "--show")
    assert code == 0 and text.startswith("# edge-export config")


def test_config_command_checks_against_the_registries(capsys):
    code, text = cli_main(capsys, "config", "export.formats=tflite-int4")
    assert code != 0 and "'tflite-int4'" in text and "tflite-int8" in text


def _written(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


# ------------------------------------------------------------------------- the verbs, without the CLI


@pytest.mark.filterwarnings("ignore")
def test_build_then_export_then_bench_through_the_api(image_folder, tmp_path):
    lines: list[str] = []
    overrides = [o for o in BUILD_FAST if not o.startswith("model.backbone") and not o.startswith("export.formats")]
    result = api.build(
        data=str(image_folder),
        out=tmp_path / "run",
        backbone="tiny_cnn",
        formats="tflite-int8,onnx-fp32",
        overrides=overrides,
        echo=lines.append,
    )
    assert result.ok, result.failures
    assert result.ran == ["train", "export", "bench"] and any("== train" in line for line in lines)
    assert result.recommendation.artifact in ("tflite-int8", "onnx-fp32")  # a typed record (core/records)

    exported = api.export(tmp_path / "run", formats="tflite-fp16", echo=None)
    assert exported.ok and "tflite-fp16" in exported.manifest.formats
    assert exported.manifest.artifact("tflite-int8") is not None  # earlier artifacts of the same model stay

    outcome = api.bench(
        tmp_path / "run",
        data=image_folder / "test",
        out=tmp_path / "bench",
        runs=5,
        warmup=1,
        threads=[1],
        keras=False,
        echo=None,
    )
    assert outcome.ok and {r.name for r in outcome.result.rows} >= {"tflite-int8", "onnx-fp32", "tflite-fp16"}
