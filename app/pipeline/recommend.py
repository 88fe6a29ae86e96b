"""The recommendation: the fastest artifact within the accuracy budget and size limit, per measured target."""

from __future__ import annotations

from typing import Any


def recommend(bench: dict[str, Any], accuracy_budget: float, max_size_mb: float | None) -> dict[str, Any]:
    """Pick from ``bench["artifacts"]`` (exported artifacts; the Keras model is the reference).

    Returns ``{"artifact": NAME or None, "why": text, "target": ..., "candidates": [...]}``.
    """
    # rows measured on other machines (bench --target ssh://...) are not candidates for this one
    entries = [a for a in bench.get("artifacts", []) if a.get("status", "ok") == "ok" and a.get("target", "local") == "local"]
    keras = next((a for a in entries if a.get("format") == "keras"), None)
    artifacts = [a for a in entries if a.get("format") != "keras" and a.get("accuracy") is not None]
    if not artifacts:
        return {"artifact": None, "why": "no artifact was measured successfully", "candidates": []}
    reference = keras["accuracy"] if keras else max(a["accuracy"] for a in artifacts)
    reference_name = "the Keras model" if keras else "the most accurate artifact"
    floor = reference - accuracy_budget / 100.0
    limit = max_size_mb * 1e6 if max_size_mb else None

    candidates = []
    for a in artifacts:
        reasons = []
        if a["accuracy"] < floor - 1e-12:
            reasons.append(f"accuracy {a['accuracy']:.2%} < {floor:.2%} ({accuracy_budget:g} point(s) below {reference_name})")
        if limit is not None and a.get("size_bytes", 0) > limit:
            reasons.append(f"size {a['size_bytes'] / 1e6:.2f} MB > {max_size_mb:g} MB")
        candidates.append({"name": a["name"], "p50_ms": _p50(a), "accuracy": a["accuracy"], "size_bytes": a.get("size_bytes"), "rejected": reasons})

    ok = [c for c in candidates if not c["rejected"] and c["p50_ms"] is not None]
    target = bench.get("machine", {}).get("cpu", "this machine")
    if not ok:
        failed_accuracy = all(any("accuracy" in r for r in c["rejected"]) for c in candidates)
        failed_size = all(any("size" in r for r in c["rejected"]) for c in candidates)
        which = " and ".join(n for n, f in (("the accuracy budget", failed_accuracy), ("the size limit", failed_size)) if f) or "the accuracy budget or the size limit"
        return {"artifact": None, "why": f"no artifact meets {which}", "target": target, "candidates": candidates}
    best = min(ok, key=lambda c: c["p50_ms"])
    why = (
        f"fastest within the budget on {target}: p50 {best['p50_ms']:.2f} ms, accuracy {best['accuracy']:.2%} "
        f"(>= {floor:.2%}: {accuracy_budget:g} point(s) below {reference_name} at {reference:.2%})"
        + (f", size {best['size_bytes'] / 1e6:.2f} MB <= {max_size_mb:g} MB" if limit else f", size {best['size_bytes'] / 1e6:.2f} MB")
    )
    return {"artifact": best["name"], "why": why, "target": target, "candidates": candidates}


def _p50(entry: dict[str, Any]) -> float | None:
    latency = entry.get("latency_ms") or {}
    return latency.get("p50")
