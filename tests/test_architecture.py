"""The layers hold: `lint-imports` (import-linter) passes with the contracts in pyproject.toml.

The source folders are mapped into one package by ``[tool.setuptools.package-dir]`` (app -> edge_export,
core -> edge_export.core, trainer -> edge_export.trainer, ...). import-linter reads a package from one
folder, so the test lays the package out as a wheel would (a copy) and lints that.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def stage_package(dest: Path) -> Path:
    """Copy the source folders into ``dest/edge_export/...`` as the installed package lays them out."""
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    mapping = pyproject["tool"]["setuptools"]["package-dir"]
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "scripts")
    for package, folder in sorted(mapping.items(), key=lambda item: item[0].count(".")):
        shutil.copytree(ROOT / folder, dest.joinpath(*package.split(".")), ignore=ignore, dirs_exist_ok=True)
    shutil.copy2(ROOT / "pyproject.toml", dest / "pyproject.toml")
    return dest


def test_layers_and_forbidden_imports(tmp_path):
    pytest.importorskip("importlinter", reason="import-linter is in the dev extra: pip install -e '.[dev]'")
    staged = stage_package(tmp_path)
    env = {**os.environ, "PYTHONPATH": str(staged)}
    proc = subprocess.run(
        [sys.executable, "-c", "import sys; from importlinter.cli import lint_imports_command; sys.exit(lint_imports_command())"],
        cwd=staged, env=env, capture_output=True, text=True, timeout=300,
    )
    report = proc.stdout + proc.stderr
    assert proc.returncode == 0, report
    assert "Contracts: 2 kept, 0 broken." in report, report


def test_a_violation_is_caught(tmp_path):
    """The check can fail: the runtime importing TensorFlow breaks a contract."""
    pytest.importorskip("importlinter", reason="import-linter is in the dev extra: pip install -e '.[dev]'")
    staged = stage_package(tmp_path)
    (staged / "edge_export" / "runtime" / "_violation.py").write_text("import tensorflow\nimport edge_export.export\n")
    env = {**os.environ, "PYTHONPATH": str(staged)}
    proc = subprocess.run(
        [sys.executable, "-c", "import sys; from importlinter.cli import lint_imports_command; sys.exit(lint_imports_command())"],
        cwd=staged, env=env, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode != 0
    assert "edge_export.runtime._violation -> tensorflow" in proc.stdout + proc.stderr
