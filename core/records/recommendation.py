"""The build's recommendation: which exported artifact to deploy, and why (``Recommendation``).

Written to ``RUN/deploy/recommendation.json`` and inside ``report.json`` (``"recommendation"``);
``Recommendation.from_dict`` is the one reader of both (``read_recommendation`` looks in report.json
first, then deploy/). The rule that makes one is ``edge_export.pipeline.recommend.recommend``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edge_export.core.errors import EdgeExportError
from edge_export.core.records import check_format_version
from edge_export.core.run_folder import RunFolder
from edge_export.core.untrusted import finite_number, printable, read_json, safe_name

RECOMMENDATION_VERSION = 1


@dataclass
class Candidate:
    """One measured artifact considered, with why it was rejected (empty: within every constraint)."""

    name: str
    p50_ms: float | None
    accuracy: float | None
    size_bytes: int | None
    rejected: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "p50_ms": self.p50_ms,
            "accuracy": self.accuracy,
            "size_bytes": self.size_bytes,
            "rejected": list(self.rejected),
        }

    @classmethod
    def from_dict(cls, data: Any, *, source: str | Path | None = None) -> Candidate:
        if not isinstance(data, dict) or not isinstance(data.get("name"), str):
            raise EdgeExportError(
                "a recommendation candidate has no name", path=source, hint="re-run `edge-export build`"
            )

        def number(key: str) -> float | None:
            value = data.get(key)
            return (
                None
                if value is None
                else finite_number(value, what=f"candidate {printable(data['name'], 80)}: {key}", source=source)
            )

        size = number("size_bytes")
        rejected = data.get("rejected") or []
        return cls(
            data["name"],
            number("p50_ms"),
            number("accuracy"),
            None if size is None else int(size),
            [str(r) for r in rejected] if isinstance(rejected, list) else [str(rejected)],
        )


@dataclass
class Recommendation:
    """``artifact`` (an exported artifact's name) or None with ``why`` naming the constraint that failed."""

    artifact: str | None
    why: str
    candidates: list[Candidate] = field(default_factory=list)
    device: str | None = None  # the machine the numbers were measured on (its CPU)
    accuracy_budget: float | None = None  # points below the Keras model's accuracy
    max_size_mb: float | None = None
    sha256: str | None = None  # of the recommended artifact when it was deployed: readers notice a re-export
    format_version: int = RECOMMENDATION_VERSION

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "recommendation_version": self.format_version,
            "artifact": self.artifact,
            "why": self.why,
            "device": self.device,
            "budget": {"accuracy_points": self.accuracy_budget, "max_size_mb": self.max_size_mb},
            "candidates": [c.to_dict() for c in self.candidates],
        }
        if self.sha256 is not None:
            out["sha256"] = self.sha256
        return out

    @classmethod
    def from_dict(cls, data: Any, *, source: str | Path | None = None) -> Recommendation:
        version = check_format_version(
            data, "recommendation_version", RECOMMENDATION_VERSION, what="recommendation", source=source
        )
        artifact = data.get("artifact")
        if artifact is not None:
            artifact = safe_name(artifact, what="recommended artifact", source=source)
        why = data.get("why")
        candidates = data.get("candidates") or []
        if not isinstance(candidates, list):
            raise EdgeExportError(
                "recommendation: candidates is not a list", path=source, hint="re-run `edge-export build`"
            )
        budget = data.get("budget") if isinstance(data.get("budget"), dict) else {}

        def number(value: Any, what: str) -> float | None:
            return None if value is None else finite_number(value, what=f"recommendation: {what}", source=source)

        sha = data.get("sha256")
        device = data.get("device", data.get("target"))  # "target": the name before issue 10
        return cls(
            artifact=artifact,
            why=why if isinstance(why, str) else "",
            candidates=[Candidate.from_dict(c, source=source) for c in candidates],
            device=device if isinstance(device, str) else None,
            accuracy_budget=number(budget.get("accuracy_points"), "budget.accuracy_points"),
            max_size_mb=number(budget.get("max_size_mb"), "budget.max_size_mb"),
            sha256=sha if isinstance(sha, str) else None,
            format_version=version,
        )


def read_recommendation(run: RunFolder) -> Recommendation | None:
    """The build's recommendation that names an artifact: report.json's, else deploy/recommendation.json's;
    None when neither does. A file that cannot be read (damaged JSON) counts as absent (the manifest decides
    what exists), but one that names an unsafe artifact is an EdgeExportError naming it."""
    for path in (run.report_json, run.deploy_recommendation):
        if not path.is_file():
            continue
        try:
            data = read_json(path)
        except EdgeExportError:
            continue
        if path == run.report_json:
            data = data.get("recommendation") if isinstance(data, dict) else None
        if not isinstance(data, dict) or not data.get("artifact"):
            continue
        return Recommendation.from_dict(data, source=path)
    return None
