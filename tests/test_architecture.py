"""The layers hold and nothing imports in a circle: `lint-imports` (import-linter) passes, from the repository
root, with the contracts in pyproject.toml, and each contract can fail.

The package is the folder ``edge_export/`` (the lower layers are linked into it from the top level), so the
linter reads the tree where it is: no copy. The failing cases lint a tiny package made here with the same
contracts, so a broken contract is shown without touching the source tree.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LINT = "import sys; from importlinter.cli import lint_imports_command; sys.exit(lint_imports_command())"
CONTRACTS = 3

pytest.importorskip("importlinter", reason="import-linter is in the dev extra: pip install -e '.[dev]'")


def lint_imports(cwd: Path, pythonpath: Path | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    if pythonpath is not None:
        env["PYTHONPATH"] = str(pythonpath)
    return subprocess.run([sys.executable, "-c", LINT], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def test_the_tree_keeps_every_contract():
    proc = lint_imports(ROOT)
    report = proc.stdout + proc.stderr
    assert proc.returncode == 0, report
    assert f"Contracts: {CONTRACTS} kept, 0 broken." in report, report


def python_files(root: Path, packages_only: bool = False) -> list[Path]:
    """The hand-written .py files below ``root`` found as grimp, setuptools and mypy find them (following the links
    into edge_export/); ``packages_only``: in package folders only (not benchmarks/scripts/, which is not
    installed)."""
    found = []
    for folder, _, names in os.walk(root, followlinks=True):
        if packages_only and "__init__.py" not in names and Path(folder) != root:
            continue
        found += [Path(folder) / n for n in sorted(names) if n.endswith(".py") and not n.endswith("_generated.py")]
    return found


def test_the_package_is_the_folder_tools_walk():
    """edge_export/ holds every layer (linked from the top level), so tools that walk a package's folder see all
    of it, and a module found by walking it is the file Python imports."""
    walked = {
        ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        for path in python_files(ROOT / "edge_export")
    }
    for layer in ("core", "trainer", "export", "runtime", "benchmarks"):
        assert (ROOT / "edge_export" / layer).resolve() == (ROOT / layer).resolve()
        assert f"edge_export.{layer}" in walked
    assert "edge_export.core.run_folder" in walked and "edge_export.runtime.backends.litert" in walked
    import edge_export.runtime.backends.litert as litert

    assert Path(litert.__file__).resolve() == (ROOT / "runtime" / "backends" / "litert.py").resolve()


def tiny_package(root: Path) -> Path:
    """A package named edge_export with one empty module per layer of the contracts, and pyproject.toml's
    contracts: what the failing cases break."""
    pkg = root / "edge_export"
    for name in ("", "commands", "tuning", "pipeline", "deploy", "benchmarks", "export", "trainer", "runtime", "core"):
        (pkg / name).mkdir(parents=True, exist_ok=True)
        (pkg / name / "__init__.py").write_text("")
    for name in ("cli.py", "api.py"):
        (pkg / name).write_text("")
    (pkg / "deploy" / "bundle_main.py").write_text("import edge_export.cli\n")
    (root / "pyproject.toml").write_text((ROOT / "pyproject.toml").read_text())
    return pkg


def test_a_layer_violation_is_caught(tmp_path):
    pkg = tiny_package(tmp_path)
    assert lint_imports(tmp_path, tmp_path).returncode == 0  # the tiny package alone keeps every contract
    (pkg / "runtime" / "_violation.py").write_text("import tensorflow\nimport edge_export.export\n")
    proc = lint_imports(tmp_path, tmp_path)
    assert proc.returncode != 0
    assert "edge_export.runtime._violation -> tensorflow" in proc.stdout + proc.stderr
    assert "edge_export.runtime._violation -> edge_export.export" in proc.stdout + proc.stderr


def test_a_new_import_cycle_is_caught_even_inside_a_function(tmp_path):
    """A cycle hidden by an import inside a function is still a cycle."""
    pkg = tiny_package(tmp_path)
    (pkg / "core" / "folder.py").write_text("from edge_export.core.record import Record\n")
    (pkg / "core" / "record.py").write_text(
        "class Record:\n    def verify(self):\n        from edge_export.core.folder import Record  # deferred\n"
    )
    proc = lint_imports(tmp_path, tmp_path)
    report = proc.stdout + proc.stderr
    assert proc.returncode != 0, report
    assert "no import cycles" in report and "BROKEN" in report, report
    assert "No cycles are allowed in edge_export.core" in report, report


HEAVY = ("tensorflow", "keras", "tf_keras", "tf2onnx", "onnx", "onnxruntime", "ai_edge_litert", "cv2", "matplotlib")


def imports_inside_functions(package: Path):
    """(file, line number, its line, the line above) of every import inside a function of the package (its linked
    layers included)."""
    import ast

    for path in python_files(package, packages_only=True):
        source = path.read_text()
        lines = source.splitlines()
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                for inner in ast.walk(node):
                    if isinstance(inner, (ast.Import, ast.ImportFrom)):
                        yield path, inner.lineno, lines[inner.lineno - 1], lines[inner.lineno - 2]


def test_every_import_inside_a_function_says_why():
    """An import inside a function keeps a heavy module (TensorFlow, ONNX, OpenCV, matplotlib ...) out of
    start-up; each says so with a ``# lazy: <why>`` comment on its line or the line above, so a deferred import
    that dodges a cycle or has no reason is visible (cycles are refused by the acyclic_siblings contract)."""
    unmarked = [
        f"{path.relative_to(ROOT)}:{line}: {text.strip()}"
        for path, line, text, above in imports_inside_functions(ROOT / "edge_export")
        if "# lazy:" not in text and not above.strip().startswith("# lazy:")
    ]
    assert not unmarked, "imports inside functions without a '# lazy: <why>' comment:\n" + "\n".join(unmarked)


def test_the_check_for_unmarked_imports_can_fail(tmp_path):
    (tmp_path / "mod.py").write_text("def f():\n    import json\n\n\ndef g():\n    import csv  # lazy: test\n")
    found = [(line, "# lazy:" in text) for _, line, text, _ in imports_inside_functions(tmp_path)]
    assert sorted(found) == [(2, False), (6, True)]


def test_the_cli_and_the_runtime_start_without_heavy_modules():
    """What the lazy imports are for: every command's module and the runtime's classifier import without
    TensorFlow, ONNX, OpenCV or matplotlib."""
    code = (
        "import importlib, pkgutil, sys\n"
        "import edge_export.cli, edge_export.commands, edge_export.runtime.classifier, edge_export.runtime.frames\n"
        "for m in pkgutil.iter_modules(edge_export.commands.__path__):\n"
        "    importlib.import_module('edge_export.commands.' + m.name)\n"
        f"print(sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY!r}))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]", proc.stdout


def test_source_files_named_in_comments_and_docs_exist():
    """A comment, docstring or page that points a reader at ``core/run_lock.py`` names a file that is there (a
    module moved or merged takes its mentions with it)."""
    import re

    folders = "edge_export|core|trainer|export|runtime|benchmarks|tests|docs|commands|pipeline|deploy|tuning"
    mention = re.compile(rf"(?<![\w./-])((?:{folders})/[\w/.-]*\w\.(?:py|md|sh|fbs))\b")
    sources = [
        ROOT / "README.md",
        ROOT / "pyproject.toml",
        *(ROOT / "docs").glob("*.md"),
        *(ROOT / "tests").glob("*.py"),
        *python_files(ROOT / "edge_export"),
    ]
    missing = []
    for source in sources:
        for number, line in enumerate(source.read_text().splitlines(), 1):
            for name in mention.findall(line):
                if "NAME" in name:
                    continue  # a placeholder (benchmarks/scripts/NAME.py)
                bases = (ROOT, ROOT / "edge_export", source.parent)
                if not any((base / name).exists() for base in bases):
                    missing.append(f"{source.relative_to(ROOT)}:{number}: {name}")
    assert not missing, "mentions of files that do not exist:\n" + "\n".join(missing)
