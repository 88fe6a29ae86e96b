"""The tools a contributor runs from the repository root pass on the tree as it is: the type checker (mypy, strict
on core and runtime), the linter and the formatter (ruff). Their settings are in pyproject.toml."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def run(*cmd: str, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run(list(cmd), cwd=ROOT, capture_output=True, text=True, timeout=timeout)


def test_mypy_passes():
    pytest.importorskip("mypy", reason="mypy is in the dev extra: pip install -e '.[dev]'")
    proc = run(sys.executable, "-m", "mypy")
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-2000:]
    assert "Success: no issues found" in proc.stdout


def ruff() -> str:
    found = shutil.which("ruff")
    if found is None:
        pytest.skip("ruff is in the dev extra: pip install -e '.[dev]'")
    return found


def test_ruff_check_passes():
    proc = run(ruff(), "check", ".")
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-2000:]


def test_the_tree_is_formatted():
    proc = run(ruff(), "format", "--check", ".")
    assert proc.returncode == 0, "run `ruff format .`:\n" + proc.stdout[-4000:] + proc.stderr[-2000:]
