"""Child processes that die with their parent.

Every long-lived child of ours (the benchmark's measuring worker, the QAT worker) is started with
``**child_popen_kwargs()``. On Linux the child asks the kernel for SIGKILL when its parent dies
(``prctl(PR_SET_PDEATHSIG, SIGKILL)``, set between fork and exec, so there is no moment without it),
then checks that its parent is still the one that started it: a parent killed before the request
took effect is noticed too, and the child exits at once. So ``kill -9`` of the command leaves no
worker running on (burning CPU and skewing every later measurement).

The signal is sent when the *thread* that started the child ends, so start children from a thread
that lives as long as the child is needed (the main thread, as everywhere here).
Elsewhere (macOS, Windows) nothing is set: children end with their parent's pipes at best.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
import sys
from collections.abc import Callable
from typing import Any

PR_SET_PDEATHSIG = 1


def _load_prctl() -> Callable[..., int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        prctl = libc.prctl
    except (OSError, AttributeError):  # pragma: no cover - an unusual libc
        return None
    prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
    prctl.restype = ctypes.c_int
    return prctl


_PRCTL = _load_prctl()  # looked up once, in the parent: the child between fork and exec only calls it


def child_popen_kwargs() -> dict[str, Any]:
    """Keyword arguments for ``subprocess.Popen``/``run`` that make the child die with this process."""
    if _PRCTL is None:
        return {}
    parent = os.getpid()
    prctl = _PRCTL

    def die_with_parent() -> None:  # runs in the child, after fork, before exec
        prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent:  # the parent died before the request took effect
            os._exit(1)

    return {"preexec_fn": die_with_parent}


def python_module_command(module: str, *args: str) -> list[str]:
    """``python -m MODULE ARGS`` for a child of ours, with the working directory *not* on its path
    (``-P``, Python 3.11+): a folder named like one of our packages where the user stands cannot shadow
    the installed edge_export."""
    safe_path = ["-P"] if sys.version_info >= (3, 11) else []
    return [sys.executable, *safe_path, "-m", module, *args]
