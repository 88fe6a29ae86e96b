"""The README and the documentation (docs/, rendered by MkDocs) cannot drift from the code: their Python blocks
run, their ``edge-export`` commands parse, their links resolve.

- The pages are the README, then docs/ in the navigation order of mkdocs.yml; ``mkdocs build --strict`` renders
  docs/ and fails on a broken link, a missing anchor or a page left out of the navigation; the README's own
  links must name files that exist, and the README stays a front door (a few screens).

- Every ```python block runs, in order (README first, then the pages), in one namespace (notebook-style), in a
  working folder this test
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

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
README_MAX_LINES = 250


def pages() -> list[Path]:
    """README.md, then every page of mkdocs.yml's navigation, in order."""
    import yaml

    nav = yaml.safe_load((ROOT / "mkdocs.yml").read_text())["nav"]
    return [README] + [ROOT / "docs" / next(iter(entry.values())) for entry in nav]


SKIP = re.compile(r"<!--\s*test:\s*skip\s*\((?P<why>[^)]+)\)\s*-->")
MAX_SKIPPED = 2
FENCE = re.compile(r"^```(?P<lang>[a-z]*)\s*$")


def blocks() -> list[dict]:
    """Fenced code blocks of every page: language, code, page, line number, and the skip marker above it."""
    return [block for page in pages() for block in page_blocks(page)]


def page_blocks(page: Path) -> list[dict]:
    lines = page.read_text().splitlines()
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
        out.append(
            {
                "lang": lang,
                "code": "\n".join(body),
                "page": page.relative_to(ROOT).as_posix(),
                "line": start + 1,
                "skip": skip["why"] if skip else None,
            }
        )
        i += 1
    return out


def commands() -> list[tuple[str, list[str]]]:
    """("page:line", argv after ``edge-export``) of every edge-export command shown in the README and the pages."""
    found: list[tuple[str, str]] = []
    for block in blocks():
        if block["lang"] not in ("bash", "console", "sh", ""):
            continue
        code = block["code"].replace("\\\n", " ")
        for n, line in enumerate(code.splitlines()):
            if block["lang"] in ("console", "") and not line.startswith("$ "):
                continue  # output, not a command
            found.append((f"{block['page']}:{block['line'] + n + 1}", line.removeprefix("$ ")))
    for page in pages():
        fenced = False
        for number, line in enumerate(page.read_text().splitlines(), 1):  # inline code spans of the prose
            if line.startswith("```"):
                fenced = not fenced
            elif not fenced:
                where = f"{page.relative_to(ROOT).as_posix()}:{number}"
                found += [(where, m[1]) for m in re.finditer(r"`([^`]*edge-export [^`]*)`", line)]
    out = []
    for where, command in found:
        for segment in re.split(r"&&|\|\||;|\|(?!\|)", command):
            try:
                words = shlex.split(segment, comments=True)
            except ValueError:
                continue
            if "edge-export" in words:
                out.append((where, words[words.index("edge-export") + 1 :]))
    return out


def test_readme_has_python_blocks_and_few_skipped():
    python = [b for b in blocks() if b["lang"] == "python"]
    assert len(python) >= 2
    skipped = [(b["page"], b["line"], b["skip"]) for b in python if b["skip"]]
    assert len(skipped) <= MAX_SKIPPED, f"too many skipped blocks: {skipped}"
    assert all(why.strip() for _, _, why in skipped)


def test_readme_shows_commands():
    shown = {argv[0] for _, argv in commands() if argv}
    assert {"build", "train", "export", "bench", "predict", "package", "config"} <= shown


@pytest.mark.parametrize("line, argv", commands(), ids=lambda v: v if isinstance(v, str) else " ".join(v)[:60])
def test_readme_command_parses(capsys, line, argv):
    import click

    from edge_export.cli import COMMANDS, cli
    from edge_export.core.config import load_config

    if not argv or argv[0].startswith("-"):
        code, _ = cli_main(capsys, *(argv or ["--help"]))
        assert code == 0
        return
    name = argv[0]
    assert name in COMMANDS, f"{line}: no command {name!r}"
    code, helptext = cli_main(capsys, name, "--help")
    assert code == 0 and "Usage:" in helptext
    command = cli.get_command(click.Context(cli), name)
    options = {opt for p in command.params if isinstance(p, click.Option) for opt in (*p.opts, *p.secondary_opts)}
    for word in argv[1:]:
        if word.startswith("--"):
            flag = word.split("=", 1)[0]
            assert flag in options, f"{line}: `edge-export {name}` has no option {flag}"
            hidden = [p for p in command.params if flag in getattr(p, "opts", ()) and getattr(p, "hidden", False)]
            assert not hidden, f"{line}: {flag} is an old name kept as a hidden alias; show the new one"
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
            exec(compile(block["code"], f"{block['page']}:{block['line']}", "exec"), namespace)
        except Exception as exc:  # noqa: BLE001  (the report names the block)
            pytest.fail(f"python block at {block['page']}:{block['line']} failed: {type(exc).__name__}: {exc}")
        ran += 1
    assert ran >= 2


def test_the_readme_is_a_front_door():
    """A few screens: what it is, set-up, the main job, the commands, the API, links; the rest lives in docs/."""
    lines = README.read_text().splitlines()
    assert len(lines) <= README_MAX_LINES, f"README.md has {len(lines)} lines; move details to a page under docs/"
    for heading in ("## Set up", "## The main job", "## Commands at a glance", "## Python API", "## Documentation"):
        assert any(line.startswith(heading) for line in lines), heading


def test_the_readme_links_name_files_that_exist():
    text = README.read_text()
    targets = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text)
    assert any(t.startswith("docs/") for t in targets)
    missing = [t for t in targets if "://" not in t and not (ROOT / t).exists()]
    assert not missing, f"README.md links to files that do not exist: {missing}"
    nav = {p.relative_to(ROOT).as_posix() for p in pages()[1:]}
    linked = {t for t in targets if t.startswith("docs/") and t.endswith(".md")}
    assert linked <= nav, f"README.md links to pages outside mkdocs.yml's navigation: {linked - nav}"


def test_the_docs_build_strictly(tmp_path):
    """mkdocs build --strict: a broken link or anchor, or a page left out of the navigation, fails."""
    import subprocess
    import sys

    pytest.importorskip("mkdocs", reason="mkdocs is in the dev extra: pip install -e '.[dev]'")
    site = tmp_path / "site"
    cmd = [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (site / "index.html").is_file() and (site / "tune" / "index.html").is_file()
    on_disk = {p.name for p in (ROOT / "docs").glob("*.md")}
    assert on_disk == {p.name for p in pages()[1:]}, "every page under docs/ is in mkdocs.yml's nav, and only those"


def test_a_broken_docs_link_fails_the_strict_build(tmp_path):
    import shutil
    import subprocess
    import sys

    pytest.importorskip("mkdocs", reason="mkdocs is in the dev extra: pip install -e '.[dev]'")
    shutil.copytree(ROOT / "docs", tmp_path / "docs")
    shutil.copy2(ROOT / "mkdocs.yml", tmp_path / "mkdocs.yml")
    with (tmp_path / "docs" / "index.md").open("a") as f:
        f.write("\nSee [the bench](bench.md#no-such-section).\n")
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict"], cwd=tmp_path, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode != 0
    assert "no-such-section" in proc.stdout + proc.stderr
