"""Test-only pause points: stop the process at a named moment, so a test can kill or resume it there.

``pause_point(name)`` does nothing unless the environment variable ``EDGE_EXPORT_PAUSE_AT`` names it
(a comma-separated list of names or shell patterns, e.g. ``train.feature_extraction.epoch.1`` or
``export.artifact.*``). When it does, it writes one JSON line to the process's real stdout (the channel
``build --json`` writes its events to), flushed::

    {"event": "paused", "at": NAME, "pid": PID, ...extra}

and then stops the whole process with SIGSTOP. A test waits for that line instead of guessing a delay,
then sends SIGKILL (a kill at a known moment) or SIGCONT (the process goes on as if nothing happened).
Children keep running while their parent is stopped.

Points (where the stage has done some work, but not all of it):
    train.<stage>.epoch.<n>      after epoch n of a training stage (and its best checkpoint) was saved
    export.artifact.<format>     after an artifact was written and checked, before the manifest
    bench.worker_started         a measuring process was started (extra: ``child``, its pid)
    bench.worker                 in the measuring process itself, before it measures (it stops, alive)
    bench.measured.<name>        after an artifact was measured, before bench.json
    lock.acquired                a command holds its run folder's lock (extra: ``run``)
"""

from __future__ import annotations

import fnmatch
import json
import os
import signal
import sys
from typing import Any

ENV = "EDGE_EXPORT_PAUSE_AT"


def pause_requested(name: str) -> bool:
    wanted = os.environ.get(ENV, "")
    return any(fnmatch.fnmatchcase(name, pattern.strip()) for pattern in wanted.split(",") if pattern.strip())


def pause_point(name: str, **extra: Any) -> None:
    """Stop here (SIGSTOP) after announcing it, if ``EDGE_EXPORT_PAUSE_AT`` names this point; else nothing."""
    if not pause_requested(name):
        return
    line = json.dumps({"event": "paused", "at": name, "pid": os.getpid(), **extra}) + "\n"
    stream = sys.__stdout__
    if stream is not None:
        stream.write(line)
        stream.flush()
    else:  # pragma: no cover - no Python-level stdout (pythonw): the descriptor itself
        os.write(1, line.encode())
    os.kill(os.getpid(), signal.SIGSTOP)
