"""The README cannot drift from the code: its Python blocks run, its ``edge-export`` commands parse.

- Every ```python block runs, in order, in one namespace (notebook-style), in a working folder this test
  prepares: a tiny generated image folder at ``../shared/data/cats_vs_dogs_small`` (where the README's
  real data set lives), tiny training settings in ``edge-export.yaml`` (written by ``edge-export config``,
  as the README says to), and a ``photo.jpg``. A block that needs the real data or minutes of work may be
  marked ``<!-- test: skip (why) -->`` on the line directly above it; such blocks are few and named.
- Every ``edge-export ...`` command in a ```bash / ```console block or an inline code span names a
  command whose ``--help`` works, uses only options that command has, and only valid ``key=value``
  settings.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from conftest import BUILD_FAST, cli_main, write_image_folder

README = Path(__file__).resolve().parents[1] / "README.md"
SKIP = re.compile(r"<!--\s*test:\s*skip\s*\((?P<why>[^)]+)\)\s*-->")
MAX_SKIPPED = 2
FENCE = re.compile(r"^```(?P<lang>[a-z]*)\s*$")


def blocks() -> list[dict]:
    """Fenced code blocks: language, code, line number, and the skip marker above it (if any)."""
    lines = README.read_text().splitlines()
    out, i = [], 0
    while i < len(lines):
        match = FENCE.match(lines[i])
        if not match:
            i += 1
            continue
        start, lang = i, match["lang"]
        i += 1
        body = []
        while i < len(lines) and not lines[i].startswith("```"):
            body.append(lines[i])
            i += 1
        above = lines[start - 1] if start else ""
        skip = SKIP.search(above)
        out.append({"lang": lang, "code": "\n".join(body), "line": start + 1, "skip": skip["why"] if skip else None})
        i += 1
    return out


def commands() -> list[tuple[int, list[str]]]:
    """(line, argv after ``edge-export``) of every edge-export command shown in the README."""
    text = README.read_text()
    found: list[tuple[int, str]] = []
    for block in blocks():
        if block["lang"] not in ("bash", "console", "sh", ""):
            continue
        code = block["code"].replace("\\\n", " ")
        for n, line in enumerate(code.splitlines()):
            if block["lang"] in ("console", "") and not line.startswith("$ "):
                continue  # output, not a command
            found.append((block["line"] + n + 1, line.removeprefix("$ ")))
    fenced = False
    for number, line in enumerate(text.splitlines(), 1):  # inline code spans of the prose
        if line.startswith("```"):
            fenced = not fenced
        elif not fenced:
            found += [(number, m[1]) for m in re.finditer(r"`([^`]*edge-export [^`]*)`", line)]
    out = []
    for line, command in found:
        for segment in re.split(r"&&|\|\||;|\|(?!\|)", command):
            try:
                words = shlex.split(segment, comments=True)
            except ValueError:
                continue
            if "edge-export" in words:
                out.append((line, words[words.index("edge-export") + 1 :]))
    return out


def test_readme_has_python_blocks_and_few_skipped():
    python = [b for b in blocks() if b["lang"] == "python"]
    assert len(python) >= 2
    skipped = [(b["line"], b["skip"]) for b in python if b["skip"]]
    assert len(skipped) <= MAX_SKIPPED, f"too many skipped README blocks: {skipped}"
    assert all(why.strip() for _, why in skipped)


def test_readme_shows_commands():
    shown = {argv[0] for _, argv in commands() if argv}
    assert {"build", "train", "export", "bench", "predict", "package", "config"} <= shown


@pytest.mark.parametrize("line, argv", commands(), ids=lambda v: str(v) if isinstance(v, int) else " ".join(v)[:60])
def test_readme_command_parses(capsys, line, argv):
    import click

    from edge_export.cli import COMMANDS, cli
    from edge_export.core.config import load_config

    if not argv or argv[0].startswith("-"):
        code, _ = cli_main(capsys, *(argv or ["--help"]))
        assert code == 0
        return
    name = argv[0]
    assert name in COMMANDS, f"README line {line}: no command {name!r}"
    code, helptext = cli_main(capsys, name, "--help")
    assert code == 0 and "Usage:" in helptext
    command = cli.get_command(click.Context(cli), name)
    options = {opt for p in command.params if isinstance(p, click.Option) for opt in (*p.opts, *p.secondary_opts)}
    for word in argv[1:]:
        if word.startswith("--"):
            flag = word.split("=", 1)[0]
            assert flag in options, f"README line {line}: `edge-export {name}` has no option {flag}"
            hidden = [p for p in command.params if flag in getattr(p, "opts", ()) and getattr(p, "hidden", False)]
            assert not hidden, f"README line {line}: {flag} is an old name kept as a hidden alias; show the new one"
        elif re.fullmatch(r"[a-z_]+(\.[a-z_0-9]+)+=.*", word):
            load_config(None, [word])  # a known key and a valid value (else EdgeExportError)


@pytest.mark.filterwarnings("ignore")
def test_readme_python_blocks_run(tmp_path, monkeypatch, capsys):
    from PIL import Image

    data = write_image_folder(
        tmp_path / "shared" / "data" / "cats_vs_dogs_small", {"train": 12, "validation": 6, "test": 6}
    )
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    code, text = cli_main(capsys, "config", *BUILD_FAST)  # tiny settings, saved as the README says
    assert code == 0
    (work / "edge-export.yaml").write_text(text)
    Image.open(next((data / "test" / "red").iterdir())).convert("RGB").save(work / "photo.jpg")

    namespace: dict = {"__name__": "__readme__"}
    ran = 0
    for block in blocks():
        if block["lang"] != "python" or block["skip"]:
            continue
        try:
            exec(compile(block["code"], f"README.md:{block['line']}", "exec"), namespace)
        except Exception as exc:  # noqa: BLE001  (the report names the block)
            pytest.fail(f"README.md python block at line {block['line']} failed: {type(exc).__name__}: {exc}")
        ran += 1
    assert ran >= 2
