"""Timing: warm-up, then N timed calls with ``time.perf_counter_ns``; percentiles in milliseconds.

The garbage collector is paused while timing so a collection does not land inside one call.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import Any, TypeVar

import numpy as np

K = TypeVar("K", bound=Hashable)  # what names a timed call: a format's name, a (backbone, size, precision) ...

PERCENTILES = {"p50": 50, "p90": 90, "p99": 99}


def time_calls(fn: Callable[[], Any], *, runs: int, warmup: int = 0) -> list[int]:
    """``warmup`` untimed calls, then the duration of each of ``runs`` calls in nanoseconds."""
    if runs < 1:
        raise ValueError("runs must be >= 1")
    for _ in range(warmup):
        fn()
    durations = []
    enabled = gc.isenabled()
    gc.disable()
    try:
        for _ in range(runs):
            start = time.perf_counter_ns()
            fn()
            durations.append(time.perf_counter_ns() - start)
    finally:
        if enabled:
            gc.enable()
    return durations


def time_interleaved(
    fns: Mapping[K, Callable[[], Any]], *, runs: int, warmup: int = 0, block: int = 10
) -> dict[K, list[int]]:
    """Time several calls in alternating blocks of ``block`` runs (order reversed every round), ``runs``
    each: on a shared machine, load that comes and goes then hits all of them alike, so their ratios hold."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    out: dict[K, list[int]] = {name: [] for name in fns}
    names, done, round_ = list(fns), 0, 0
    while done < runs:
        n = min(block, runs - done)
        for name in names if round_ % 2 == 0 else names[::-1]:
            out[name] += time_calls(fns[name], runs=n)
        done, round_ = done + n, round_ + 1
    return out


def summarize(durations_ns: Sequence[int]) -> dict[str, float]:
    """p50/p90/p99/mean/std/min/max in ms (linear-interpolated percentiles, so p50 <= p90 <= p99)."""
    if len(durations_ns) == 0:
        raise ValueError("no durations to summarize")
    ms = np.asarray(durations_ns, dtype=np.float64) / 1e6
    out = {name: float(np.percentile(ms, q)) for name, q in PERCENTILES.items()}
    out.update(
        mean=float(ms.mean()),
        std=float(ms.std(ddof=1)) if len(ms) > 1 else 0.0,
        min=float(ms.min()),
        max=float(ms.max()),
        runs=int(len(ms)),
    )
    return out


def measure(fn: Callable[[], Any], *, runs: int, warmup: int = 0) -> dict[str, float]:
    return summarize(time_calls(fn, runs=runs, warmup=warmup))


def overhead_pct(total_ms: float, bare_ms: float) -> float | None:
    """How much slower ``total`` is than ``bare``, in percent of ``bare``."""
    if not bare_ms or bare_ms <= 0:
        return None
    return (total_ms - bare_ms) / bare_ms * 100.0


def throughput(run_batch: Callable[[], Any], batch_size: int, *, repeats: int, warmup: int = 1) -> dict[str, Any]:
    """Images per second of ``run_batch`` (which handles ``batch_size`` images), from its median time."""
    stats = measure(run_batch, runs=max(1, repeats), warmup=max(1, warmup))
    return {
        "images_per_s": batch_size / (stats["p50"] / 1000.0) if stats["p50"] > 0 else float("inf"),
        "batch_size": int(batch_size),
        "batch_ms": stats,
    }
