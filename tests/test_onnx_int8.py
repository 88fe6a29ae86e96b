"""onnx-int8: the same model gives the same bytes (another process, another hash seed, without sympy), one
output row per image, the classifier head in float, the settings in the manifest."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from edge_export.core.hashing import sha256_file
from edge_export.core.run_folder import RunFolder
from edge_export.export.formats import FORMATS

NAMES = ("onnx-fp32", "onnx-int8")


def _copy(tiny_export, dest) -> RunFolder:
    shutil.copytree(tiny_export["run"], dest, ignore=shutil.ignore_patterns("export", "checkpoints", "bench"))
    return RunFolder(dest)


@pytest.fixture(scope="module")
def exported(tiny_export, tmp_path_factory) -> tuple[RunFolder, object]:
    from edge_export.export.exporter import export_run

    run = _copy(tiny_export, tmp_path_factory.mktemp("onnx_int8") / "run")
    manifest = export_run(run, formats=",".join(NAMES), echo=None)
    assert manifest.ok, [(a.name, a.error) for a in manifest.artifacts]
    return run, manifest


def test_onnx_int8_is_byte_identical_in_another_process_without_sympy(exported, tiny_export, tmp_path):
    """Another process with another hash seed, and without sympy (onnxruntime no longer installs it: its
    absence used to switch the quantizer to another graph silently), makes the same files."""
    run, _ = exported
    other = _copy(tiny_export, tmp_path / "run")
    code = (
        "import sys; sys.modules['sympy'] = None\n"  # `import sympy` raises ImportError, as where it is absent
        "from edge_export.cli import main\n"
        f"main(['export', {str(other.root)!r}, '--formats', {','.join(NAMES)!r}])"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345", "TF_CPP_MIN_LOG_LEVEL": "2"}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    for name in NAMES:
        filename = FORMATS[name].filename
        assert sha256_file(other.export_dir / filename) == sha256_file(run.export_dir / filename), name


@pytest.mark.parametrize("name", NAMES)
def test_one_output_row_per_image(exported, name):
    import onnx
    import onnxruntime as ort

    run, _ = exported
    path = run.export_dir / FORMATS[name].filename
    graph = onnx.load_model(str(path)).graph
    (image,), (probabilities,) = graph.input, graph.output
    in_dims = [d.dim_param or d.dim_value for d in image.type.tensor_type.shape.dim]
    out_dims = [d.dim_param or d.dim_value for d in probabilities.type.tensor_type.shape.dim]
    assert in_dims == ["batch", 32, 32, 3] and out_dims == ["batch", 2]  # N x C: the same N, named so
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    for batch in (1, 2, 3):
        pixels = rng.uniform(0, 255, (batch, 32, 32, 3)).astype(np.float32)
        (out,) = session.run(None, {"image": pixels})
        assert out.shape == (batch, 2)
        np.testing.assert_allclose(out.sum(axis=1), 1.0, atol=1e-5)  # float softmax: rows sum to 1


def test_the_classifier_head_stays_float(exported):
    import onnx

    from edge_export.export.onnx import INT8_SETTINGS

    run, manifest = exported
    graph = onnx.load_model(str(run.export_dir / FORMATS["onnx-int8"].filename)).graph
    producer = {out: node for node in graph.node for out in node.output}
    assert producer["probabilities"].op_type == "Softmax"  # not DequantizeLinear: probabilities are not uint8 steps
    head = [node for node in graph.node if node.op_type in ("Gemm", "MatMul")]
    weights = {init.name: init for init in graph.initializer}
    quantized_inputs = {name for node in graph.node if node.op_type == "QuantizeLinear" for name in node.input}
    assert head
    for node in head:  # float weights (a DequantizeLinear here would mean an int8 Dense), float logits
        assert node.input[1] in weights and weights[node.input[1]].data_type == onnx.TensorProto.FLOAT
        assert not quantized_inputs.intersection(node.output)
    convs = [node for node in graph.node if node.op_type == "Conv"]
    assert convs and all(producer[node.input[1]].op_type == "DequantizeLinear" for node in convs)  # int8 body
    assert manifest.artifact("onnx-int8").details["quantization"] == INT8_SETTINGS


def test_head_nodes_follow_the_last_global_pooling():
    import onnx
    from onnx import TensorProto, helper

    from edge_export.export.onnx import head_nodes

    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], name="conv"),
        helper.make_node("GlobalAveragePool", ["c"], ["p1"], name="se_pool"),  # a squeeze-excite pool: not last
        helper.make_node("Mul", ["c", "p1"], ["m"], name="se_mul"),
        helper.make_node("GlobalAveragePool", ["m"], ["p2"], name="pool"),
        helper.make_node("Flatten", ["p2"], ["f"], name="flatten"),
        helper.make_node("Gemm", ["f", "d", "b"], ["logits"], name="dense"),
        helper.make_node("Softmax", ["logits"], ["y"], name="softmax"),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 4, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2])],
    )
    assert head_nodes(helper.make_model(graph)) == ["flatten", "dense", "softmax"]
    assert head_nodes(onnx.ModelProto()) == []


def test_the_settings_benchmark_scores_each_setting_on_validation(tiny_export, tmp_path):
    from click.testing import CliRunner

    from edge_export.export.onnx import INT8_SETTINGS

    from conftest import load_script

    script = load_script("onnx_int8_settings")
    run = _copy(tiny_export, tmp_path / "run")
    out = tmp_path / "settings.json"
    before = sorted(p.relative_to(run.root) for p in run.root.rglob("*"))
    result = CliRunner().invoke(
        script.main, [str(run.root), "--settings", "shipped,percentile-head-int8,u8u8", "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    rows = {row["name"]: row for row in json.loads(out.read_text())["rows"]}
    assert rows["shipped"]["settings"] == INT8_SETTINGS and rows["percentile-head-int8"]["settings"]["head"] == "int8"
    for row in rows.values():
        for split in ("validation", "validation_shifted"):  # clean and under the seeded shifts
            scores = row[split]
            assert scores["images"] == 12 and row["size_bytes"] > 0 and row["p50_ms_1thread"] > 0
            for key in ("top1_agreement", "kernels_vs_float", "float_top1_agreement"):
                assert 0 <= scores[key] <= 1, (row["name"], split, key)
    assert len({row["sha256"] for row in rows.values()}) == 3
    assert sorted(p.relative_to(run.root) for p in run.root.rglob("*")) == before  # the run folder is untouched


@pytest.mark.parametrize(
    "weights, activations, weight_type, activation_type",
    [
        ("int8 per channel", "uint8 per tensor", "INT8", "UINT8"),  # the shipped U8S8
        ("uint8 per channel", "uint8 per tensor", "UINT8", "UINT8"),
        ("int8 per channel", "int8 per tensor", "INT8", "INT8"),
    ],
)
def test_the_settings_types_reach_the_graph(tiny_export, tmp_path, weights, activations, weight_type, activation_type):
    """The manifest's words are what the quantizer was told: a conv's weights and its input have those types."""
    import onnx

    from edge_export.core.config import load_config
    from edge_export.export import onnx as onnx_export
    from edge_export.export.context import ExportContext
    from edge_export.export.onnx import INT8_SETTINGS, _save

    run = _copy(tiny_export, tmp_path / "run")
    config = load_config(run.config)
    ctx = ExportContext(run, config.export, config)
    try:
        work = tmp_path / "work"
        work.mkdir()
        _save(onnx_export.fp32_model(ctx), work / "fp32.onnx")
        settings = {**INT8_SETTINGS, "weights": weights, "activations": activations}
        onnx_export.quantize(work / "fp32.onnx", work / "int8.onnx", ctx.representative(), work, settings)
    finally:
        ctx.close()
    graph = onnx.load_model(str(work / "int8.onnx")).graph
    types = {init.name: init.data_type for init in graph.initializer}
    producer = {out: node for node in graph.node for out in node.output}
    conv = next(node for node in graph.node if node.op_type == "Conv")
    assert types[producer[conv.input[1]].input[0]] == getattr(onnx.TensorProto, weight_type)  # stored weights
    zero_point = producer[conv.input[0]].input[2]  # DequantizeLinear(x, scale, zero_point) of the input
    assert types[zero_point] == getattr(onnx.TensorProto, activation_type)


def test_an_unknown_type_setting_is_refused():
    from edge_export.export.onnx import _quant_type

    class QuantType:
        QUInt8, QInt8 = "u8", "s8"

    assert _quant_type("uint8 per tensor", "per tensor", QuantType) == "u8"
    with pytest.raises(ValueError, match="int4 per tensor"):
        _quant_type("int4 per tensor", "per tensor", QuantType)
