#!/usr/bin/env python3
"""Run this bundle's model on this machine. No TensorFlow needed.

    python run.py predict IMAGE... [--top-k 3] [--json] [--threads N] [--provider cuda] [--model NAME]
    python run.py predict VIDEO|CAMERA_INDEX|URL [--every N] [--fps F] [--max-frames N] [--json]   (needs OpenCV)
    python run.py bench --data TEST_DIR [--out DIR] [--threads 1,0] [--runs 100] [--warmup 10] [--batch-size 8]
    python run.py info

Before ``predict`` and ``bench`` run, every model and the wheel are checked against their sha256 in bundle.json.
``predict`` and ``bench`` are ``edge-export predict`` / ``edge-export bench`` on the bundled model(s) and
labels, run with the edge-export wheel in wheels/ (the version that made this bundle), so only the
packages in requirements.txt need to be installed. ``bench`` writes DIR/bench.json (accuracy, latency,
memory, and this machine's CPU, cores, OS and library versions) and bench.md.

This file is copied into every bundle by ``edge-export package`` (edge_export/deploy/bundle_main.py).
"""

# The device runs this file with whatever Python it has: % formatting (no f-strings) and the version check below
# keep it readable by an old Python, which then says what it needs instead of failing with a SyntaxError.
# ruff: noqa: UP031, UP036

import hashlib
import json
import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
MISSING_PACKAGES = 3  # exit status when a runtime package is not installed


class BadBundle(Exception):
    """bundle.json is damaged or names a file outside the bundle."""


def _inside(relative, what):
    """HERE / relative when it stays inside the bundle: no absolute path, no '..', no link out.

    A copy of edge_export.core.untrusted.path_inside in miniature: this script runs before edge_export can be
    imported (the wheel's own path comes from bundle.json).
    """
    if not isinstance(relative, str) or not relative or "\x00" in relative:
        raise BadBundle("bundle.json: %s %r is not a relative path" % (what, relative))
    parts = relative.replace("\\", "/").split("/")
    path = (HERE / relative).resolve()
    if (
        relative.startswith(("/", "\\"))
        or ".." in parts
        or ":" in parts[0]
        or (path != HERE and HERE not in path.parents)
    ):
        raise BadBundle("bundle.json: %s %r points outside the bundle %s" % (what, relative, HERE))
    return path


def read_info():
    """bundle.json, with every path in it checked to stay inside the bundle (HERE / path is then safe)."""
    try:
        info = json.loads((HERE / "bundle.json").read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError) as exc:
        raise BadBundle("cannot read %s: %s" % (HERE / "bundle.json", str(exc)[:200])) from exc
    artifacts = info.get("artifacts") if isinstance(info, dict) else None
    if not isinstance(artifacts, list) or not artifacts or not all(isinstance(a, dict) for a in artifacts):
        raise BadBundle("bundle.json has no list of artifacts: not an edge-export bundle")
    for a in artifacts:
        name = a.get("name")
        if not isinstance(name, str) or not name or "/" in name or "\\" in name or name in (".", ".."):
            raise BadBundle("bundle.json: artifact name %r is not a safe name" % (name,))
        _inside(a.get("path"), "path of artifact %s" % name)
    for key in ("wheel", "requirements", "labels"):
        if info.get(key) is not None or key in ("wheel", "requirements"):
            _inside(info.get(key), key)
    return info


def _sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify(info):
    """Every model and the wheel are the files bundle.json names, byte for byte (their sha256), before anything
    runs: a swapped or damaged model is not run silently, and a missing wheel is not replaced by whatever
    edge_export this machine has installed. Raises BadBundle saying what differs."""
    problems = []
    checks = [(a["path"], a.get("sha256")) for a in info["artifacts"]] + [(info["wheel"], info.get("wheel_sha256"))]
    for relative, expected in checks:
        path = HERE / relative
        if not path.is_file():
            problems.append("%s is missing" % relative)
            continue
        actual = _sha256(path) if isinstance(expected, str) else expected
        if actual != expected:
            problems.append(
                "%s differs from bundle.json (sha256 %s..., expected %s...): replaced or damaged"
                % (relative, actual[:12], expected[:12])
            )
    if problems:
        raise BadBundle(
            "the bundle does not match bundle.json: "
            + "; ".join(problems)
            + " (unpack the bundle again, or package it again with edge-export package)"
        )


def _use_bundled_wheel(info):
    """Import edge_export from the bundled wheel, here and in the benchmark's measuring subprocesses."""
    wheel = str(HERE / info["wheel"])
    sys.path.insert(0, wheel)
    paths = [wheel] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    os.environ["PYTHONPATH"] = os.pathsep.join(paths)


def _pick_model(info, argv):
    """--model NAME (when the bundle holds several models) -> (model path, remaining arguments)."""
    artifacts = info["artifacts"]
    if "--model" in argv:
        i = argv.index("--model")
        if i + 1 >= len(argv):
            raise SystemExit("--model needs a name: " + ", ".join(repr(a["name"]) for a in artifacts))
        name, argv = argv[i + 1], argv[:i] + argv[i + 2 :]
        chosen = [a for a in artifacts if a["name"] == name]
        if not chosen:
            raise SystemExit(
                "no model %r in this bundle (it has: %s)" % (name, ", ".join(repr(a["name"]) for a in artifacts))
            )
        return str(HERE / chosen[0]["path"]), argv
    return str(HERE / artifacts[0]["path"]), argv


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    if sys.version_info < (3, 10):
        sys.stderr.write("error: this bundle needs Python 3.10 or newer (this is %s)\n" % sys.version.split()[0])
        return 2
    try:
        info = read_info()
    except BadBundle as exc:
        sys.stderr.write("error: %s\n" % str(exc).encode("ascii", "backslashreplace").decode())
        return 2
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(__doc__)
        return 0
    command, rest = argv[0], argv[1:]
    if command == "info":
        print(
            json.dumps(
                {k: info[k] for k in ("target", "edge_export", "artifacts", "requirements") if k in info}, indent=2
            )
        )
        return 0
    if command not in ("predict", "bench"):
        sys.stderr.write("error: unknown command %r (use predict, bench or info)\n" % command)
        return 2
    try:
        verify(info)
    except BadBundle as exc:
        sys.stderr.write("error: %s\n" % str(exc).encode("ascii", "backslashreplace").decode())
        return 2
    _use_bundled_wheel(info)
    labels = ["--labels", str(HERE / info["labels"])] if info.get("labels") else []
    try:
        # lazy: edge_export comes from the bundle's wheel, put on sys.path just above (after the checks)
        from edge_export.cli import main as cli_main

        if command == "predict":
            model, rest = _pick_model(info, rest)
            cli_main(["predict", model] + labels + rest)
        else:
            models = [str(HERE / a["path"]) for a in info["artifacts"]]
            cli_main(["bench"] + models + labels + ["--no-keras"] + rest)
    except ImportError as exc:
        name = getattr(exc, "name", None) or str(exc)
        sys.stderr.write(
            "error: missing package %s: install the runtime first: python -m pip install -r %s\n"
            % (name, HERE / info["requirements"])
        )
        return MISSING_PACKAGES
    return 0


if __name__ == "__main__":
    sys.exit(main())
