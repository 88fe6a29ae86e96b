"""Several machines in one benchmark report: each artifact row has a ``target`` ("local", or a device such
as ``pi@raspberrypi``), and ``bench.json`` has ``targets`` (target -> the machine it ran on).

``merge_target`` adds a device's own report (made there by the same benchmark, from a bundle) to the
local one. Row names stay the artifact names; ``row_id`` (``name@target`` off the local machine) tells
rows apart in lists and plots.
"""

from __future__ import annotations

from typing import Any

LOCAL = "local"
# what the device cannot know about a model file: taken from the local row of the same artifact
FROM_LOCAL_ROW = ("format", "precision", "path", "source")


def row_id(entry: dict[str, Any]) -> str:
    target = entry.get("target") or LOCAL
    return entry["name"] if target == LOCAL else f"{entry['name']}@{target}"


def is_multi_target(report: dict[str, Any]) -> bool:
    return len(report.get("targets") or {}) > 1 or any((a.get("target") or LOCAL) != LOCAL for a in report.get("artifacts", []))


def merge_target(report: dict[str, Any], target: str, remote: dict[str, Any], min_accuracy: float | None) -> dict[str, Any]:
    """Add ``remote`` (a bench.json made on ``target``) to ``report`` in place; returns ``report``."""
    local_rows = {a["name"]: a for a in report["artifacts"] if (a.get("target") or LOCAL) == LOCAL}
    for entry in remote.get("artifacts", []):
        row = dict(entry)
        row["target"] = target
        local = local_rows.get(row["name"])
        if local is not None:
            row.update({k: local[k] for k in FROM_LOCAL_ROW if k in local})
        row["top1_agreement"] = None  # the Keras reference runs locally only
        row["below_min_accuracy"] = bool(
            min_accuracy is not None and row.get("status") == "ok" and row.get("accuracy") is not None and row["accuracy"] < min_accuracy
        )
        report["artifacts"].append(row)
    report.setdefault("targets", {})[target] = remote.get("machine") or {}
    report.setdefault("target_runs", {})[target] = {
        "threads_used": (remote.get("settings") or {}).get("threads_used"),
        "data": (remote.get("data") or {}).get("path"),
        "images": (remote.get("data") or {}).get("images"),
        "created": remote.get("created"),
        "edge_export": remote.get("edge_export"),
        "seconds": remote.get("seconds"),
    }
    return refresh_status(report)


def record_target_error(report: dict[str, Any], target: str, message: str) -> dict[str, Any]:
    report.setdefault("target_errors", {})[target] = message
    return refresh_status(report)


def refresh_status(report: dict[str, Any]) -> dict[str, Any]:
    report["failed"] = [row_id(a) for a in report["artifacts"] if a["status"] != "ok"]
    report["below_min_accuracy"] = [row_id(a) for a in report["artifacts"] if a.get("below_min_accuracy")]
    report["ok"] = not report["failed"] and not report["below_min_accuracy"] and not report.get("target_errors")
    return report
