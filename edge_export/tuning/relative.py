"""Latency relative to a model the user names (``tune --faster-than REF``): timed beside every candidate.

An absolute ceiling in milliseconds measured in another process means little on a shared machine (the same
model's p50 moved by 25% within one tune run), so the reference is timed in the SAME timing round as the
candidates, interleaved with them, and each candidate's latency is its ratio to the reference's in that round.
One round can still be unlucky for one model: a candidate whose ratio lies near the ceiling (within
``tune.latency_near`` of it, either side) is timed again, with the reference, up to ``tune.latency_retimes``
more rounds, and its ratio is the median of its rounds. A candidate far from the ceiling keeps its one round.

``time_relative`` takes any timer (``{key: model path} -> {key: {"p50", "p90", "min"} or an error text}``):
this machine's interleaved timing, a device's own benchmark, or a fake one in tests.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable
from pathlib import Path
from typing import Any

import numpy as np

from edge_export.core.errors import EdgeExportError

Timer = Callable[[dict[Hashable, Path]], dict[Hashable, Any]]
REFERENCE = "__latency_reference__"  # the reference's key in a timing round
SUFFIXES = (".tflite", ".onnx")


def check_reference(path: str | Path) -> Path:
    """The reference model's path, or a clear error (missing, not a model file)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise EdgeExportError(
            "the latency reference model is not a file",
            path=path,
            hint="--faster-than REF.tflite|REF.onnx (tune.latency_reference)",
        )
    if path.suffix.lower() not in SUFFIXES:
        raise EdgeExportError(
            f"the latency reference must be a .tflite or .onnx model, not {path.suffix or 'no suffix'!r}",
            path=path,
            hint="convert it first (edge-export export), or name a .tflite/.onnx file",
        )
    return path


def near(ratio: float, ceiling: float, band: float) -> bool:
    """``ratio`` within ``band`` (a fraction) of ``ceiling`` on either side, on a log scale."""
    return abs(math.log(ratio / ceiling)) <= math.log1p(band)


def time_relative(
    timer: Timer,
    paths: dict[Hashable, Path],
    reference: Path,
    *,
    ceiling: float,
    statistic: str,
    retimes: int,
    band: float,
) -> dict[Hashable, Any]:
    """Time ``paths`` with ``reference`` in every round; re-time those near ``ceiling``. Per key: the timing of
    its median round plus ``reference`` (the reference's timing in that round), ``ratio`` (the median of its
    rounds' ratios, by ``statistic``: p50 or min) and ``ratios`` (every round's); or the timer's error text."""
    rounds: dict[Hashable, list[tuple[dict, dict]]] = {key: [] for key in paths}
    errors: dict[Hashable, str] = {}

    def one_round(keys: list) -> None:
        timed = timer({**{key: paths[key] for key in keys}, REFERENCE: reference})
        ref = timed.get(REFERENCE)
        if not isinstance(ref, dict) or not ref.get(statistic):
            raise EdgeExportError(
                f"the latency reference did not run: {ref or 'not measured'}",
                path=reference,
                hint="check that it runs: edge-export bench REF --data DIR",
            )
        for key in keys:
            result = timed.get(key)
            if isinstance(result, dict) and result.get(statistic):
                rounds[key].append((result, ref))
            else:
                errors[key] = result if isinstance(result, str) else "not measured"

    def ratio(key: Hashable) -> float:
        return float(np.median([r[statistic] / ref[statistic] for r, ref in rounds[key]]))

    one_round(list(paths))
    for _ in range(retimes):
        close = [key for key in paths if key not in errors and near(ratio(key), ceiling, band)]
        if not close:
            break
        one_round(close)
    out: dict[Hashable, Any] = {}
    for key in paths:
        if key in errors:
            out[key] = errors[key]
            continue
        ratios = [r[statistic] / ref[statistic] for r, ref in rounds[key]]
        median = ratio(key)
        closest = min(range(len(ratios)), key=lambda i: abs(ratios[i] - median))  # the round that is the median
        result, ref = rounds[key][closest]
        out[key] = {**result, "reference": dict(ref), "ratio": median, "ratios": [round(r, 4) for r in ratios]}
    return out


__all__ = ["REFERENCE", "Timer", "check_reference", "near", "time_relative"]
