"""The recommendation rule: the fastest exported artifact within the accuracy budget and the size limit.

Pure records in, a ``Recommendation`` out (no TensorFlow, no files): tests/test_recommend.py.
"""

from __future__ import annotations

from edge_export.core.records.bench import KERAS, BenchResult
from edge_export.core.records.recommendation import Candidate, Recommendation

ACCURACY, SIZE = "the accuracy budget", "the size limit"


def recommend(
    bench: BenchResult, accuracy_budget: float, max_size_mb: float | None, stale: list[str] | None = None
) -> Recommendation:
    """Pick from the rows measured on this machine (rows of other devices are not candidates for it).

    The reference is the Keras model's accuracy (else the most accurate artifact); a candidate may be
    ``accuracy_budget`` points below it and at most ``max_size_mb``; the fastest p50 wins, and of equal
    p50s the first in bench order. Failed rows are never candidates. ``stale`` (names whose bench numbers
    are of files that changed since) means no recommendation at all: the numbers are not of these files.
    """
    if stale:
        return Recommendation(
            None,
            (
                f"stale: bench/bench.json measured {', '.join(stale)} as it was before (changed or removed since): "
                "re-run bench (`edge-export build --stages bench`)"
            ),
            accuracy_budget=accuracy_budget,
            max_size_mb=max_size_mb,
        )
    rows = [r for r in bench.local_rows() if r.ok]
    keras = next((r for r in rows if r.is_reference and r.accuracy is not None), None)
    # (row, its accuracy) of every measured artifact
    artifacts = [(r, r.accuracy) for r in rows if not r.is_reference and r.accuracy is not None]
    if not artifacts:
        return Recommendation(
            None, "no artifact was measured successfully", accuracy_budget=accuracy_budget, max_size_mb=max_size_mb
        )
    keras_accuracy = keras.accuracy if keras else None
    reference = keras_accuracy if keras_accuracy is not None else max(accuracy for _, accuracy in artifacts)
    reference_name = (
        ("the Keras model" if keras.format == KERAS else "the imported model as given")
        if keras
        else "the most accurate artifact"
    )
    floor = reference - accuracy_budget / 100.0
    limit = max_size_mb * 1e6 if max_size_mb else None

    candidates = []
    for r, accuracy in artifacts:
        reasons = []
        if accuracy < floor - 1e-12:
            reasons.append(
                f"accuracy {accuracy:.2%} < {floor:.2%} ({accuracy_budget:g} point(s) below {reference_name})"
            )
        size_bytes = r.size_bytes or 0
        if limit is not None and size_bytes > limit:
            reasons.append(f"size {size_bytes / 1e6:.2f} MB > {max_size_mb:g} MB")
        candidates.append(Candidate(r.name, r.p50_ms, r.accuracy, r.size_bytes, reasons))

    device = bench.machine.get("cpu") or "this machine"
    # (p50, candidate) of every candidate within the constraints
    ok = [(c.p50_ms, c) for c in candidates if not c.rejected and c.p50_ms is not None]
    if not ok:
        failed = [
            what
            for what, word in ((ACCURACY, "accuracy"), (SIZE, "size"))
            if all(any(reason.startswith(word) for reason in c.rejected) for c in candidates)
        ]
        which = " and ".join(failed) or f"{ACCURACY} or {SIZE}"
        return Recommendation(
            None,
            f"no artifact meets {which}",
            candidates,
            device,
            accuracy_budget=accuracy_budget,
            max_size_mb=max_size_mb,
        )
    p50, best = min(ok, key=lambda pair: pair[0])  # min keeps the first of equal p50s
    size = best.size_bytes / 1e6 if best.size_bytes is not None else 0.0
    why = (
        f"fastest within the budget on {device}: p50 {p50:.2f} ms, accuracy {best.accuracy:.2%} "
        f"(>= {floor:.2%}: {accuracy_budget:g} point(s) below {reference_name} at {reference:.2%})"
        + (f", size {size:.2f} MB <= {max_size_mb:g} MB" if limit else f", size {size:.2f} MB")
    )
    return Recommendation(best.name, why, candidates, device, accuracy_budget=accuracy_budget, max_size_mb=max_size_mb)
