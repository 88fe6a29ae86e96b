"""Measure one model in a fresh process, so its peak memory is its own:

    python -m edge_export.benchmarks.worker REQUEST.json RESULT.json

REQUEST is a ``measure`` request; RESULT gets the measurements, or ``{"error": ...}`` when the model
could not be measured (exit status 0 either way once RESULT is written). ``run_worker`` is the parent side.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import traceback
from pathlib import Path
from typing import Any

from edge_export.benchmarks.measure import measure_request
from edge_export.core.atomic import write_json
from edge_export.core.errors import EdgeExportError
from edge_export.core.pause import pause_point
from edge_export.core.process import child_popen_kwargs, python_module_command


def run_worker(request: dict[str, Any], workdir: Path, name: str) -> dict[str, Any]:
    """Run ``request`` in a child process; its result dict (``{"error": ...}`` on failure)."""
    req_path, res_path = workdir / f"{name}.request.json", workdir / f"{name}.result.json"
    write_json(req_path, request)
    env = dict(os.environ)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    with subprocess.Popen(
        python_module_command("edge_export.benchmarks.worker", str(req_path), str(res_path)),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        **child_popen_kwargs(),  # dies with this process: a killed benchmark leaves no worker measuring on
    ) as proc:
        try:
            pause_point("bench.worker_started", child=proc.pid)
            stdout, stderr = proc.communicate()
        except BaseException:  # Ctrl-C: do not leave it measuring
            proc.kill()
            raise
    if res_path.is_file():
        try:
            return json.loads(res_path.read_text())
        except ValueError:
            pass
    tail = (stderr or stdout or "").strip().splitlines()[-5:]
    return {"error": f"measuring process exited with status {proc.returncode}: " + " | ".join(tail)}


def measure_safely(request: dict[str, Any]) -> dict[str, Any]:
    """``measure_request`` with failures turned into ``{"error": ...}`` (user errors without a traceback)."""
    try:
        return measure_request(request)
    except EdgeExportError as exc:
        return {"error": str(exc)}
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as exc:  # a crash in one model must not stop the others
        return {"error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 2:
        print("usage: python -m edge_export.benchmarks.worker REQUEST.json RESULT.json", file=sys.stderr)
        return 2
    pause_point("bench.worker")
    request = json.loads(Path(argv[0]).read_text())
    write_json(argv[1], measure_safely(request))
    return 0


if __name__ == "__main__":
    sys.exit(main())
