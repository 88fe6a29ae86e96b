#!/usr/bin/env python3
"""Run this bundle's model on this machine. No TensorFlow needed.

    python run.py predict IMAGE... [--top-k 3] [--json] [--threads N] [--provider cuda] [--model NAME]
    python run.py bench --data TEST_DIR [--out DIR] [--threads 1,0] [--runs 100] [--warmup 10] [--batch-size 8]
    python run.py info

``predict`` and ``bench`` are ``edge-export predict`` / ``edge-export bench`` on the bundled model(s) and
labels, run with the edge-export wheel in wheels/ (the version that made this bundle), so only the
packages in requirements.txt need to be installed. ``bench`` writes DIR/bench.json (accuracy, latency,
memory, and this machine's CPU, cores, OS and library versions) and bench.md.

This file is copied into every bundle by ``edge-export package`` (edge_export/deploy/bundle_main.py).
"""

import json
import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
MISSING_PACKAGES = 3  # exit status when a runtime package is not installed


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
            raise SystemExit("--model needs a name: " + ", ".join(a["name"] for a in artifacts))
        name, argv = argv[i + 1], argv[:i] + argv[i + 2:]
        chosen = [a for a in artifacts if a["name"] == name]
        if not chosen:
            raise SystemExit("no model %r in this bundle (it has: %s)" % (name, ", ".join(a["name"] for a in artifacts)))
        return str(HERE / chosen[0]["path"]), argv
    return str(HERE / artifacts[0]["path"]), argv


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    if sys.version_info < (3, 10):
        sys.stderr.write("error: this bundle needs Python 3.10 or newer (this is %s)\n" % sys.version.split()[0])
        return 2
    info = json.loads((HERE / "bundle.json").read_text())
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(__doc__)
        return 0
    command, rest = argv[0], argv[1:]
    if command == "info":
        print(json.dumps({k: info[k] for k in ("target", "edge_export", "artifacts", "requirements") if k in info}, indent=2))
        return 0
    if command not in ("predict", "bench"):
        sys.stderr.write("error: unknown command %r (use predict, bench or info)\n" % command)
        return 2
    _use_bundled_wheel(info)
    labels = ["--labels", str(HERE / info["labels"])] if info.get("labels") else []
    try:
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
