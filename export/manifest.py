"""What an export records: ``manifest.json`` (every artifact with its checks), ``model_card.json`` (what
the model is, what it was trained on, how it scores, which tools made it) and the table on screen."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import platform
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from edge_export import __version__
from edge_export.errors import EdgeExportError
from edge_export.export.layout import ExportFolder
from edge_export.run_folder import RunFolder
from edge_export.versions import installed_versions

MANIFEST_VERSION = 1
LIBRARIES = (
    "tensorflow", "keras", "tf_keras", "tensorflow-model-optimization", "tf2onnx", "onnx", "onnxruntime",
    "ai-edge-litert", "numpy",
)


@dataclass
class ArtifactResult:
    name: str
    format: str  # family: tflite | onnx
    precision: str
    path: str | None = None  # relative to the export folder; None when nothing was written
    size_bytes: int | None = None
    sha256: str | None = None
    status: str = "ok"  # ok | failed
    error: str | None = None
    parity: dict[str, Any] | None = None
    input: dict[str, Any] | None = None  # dtype, scale, zero_point of the model input
    seconds: float | None = None  # conversion + check
    details: dict[str, Any] = field(default_factory=dict)  # converter extras (calibration images, QAT history)

    def fail(self, message: str) -> None:
        self.status, self.error = "failed", message

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        extras = d.pop("details")
        if d["error"] is None:
            d.pop("error")
        return {**d, **extras}


def sha256_of(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def read_manifest(run: RunFolder, hint: str = "run `edge-export export` on it first") -> list[dict[str, Any]]:
    """The artifact entries of RUN_DIR/export/manifest.json; a clear error when it is missing or malformed."""
    path = ExportFolder(run).manifest
    if not path.is_file():
        raise EdgeExportError(
            "the run folder has no finished export (export/manifest.json is missing)", path=run.root, hint=hint
        )
    try:
        artifacts = json.loads(path.read_text())["artifacts"]
        if not isinstance(artifacts, list):
            raise TypeError("artifacts is not a list")
    except (ValueError, KeyError, TypeError) as exc:
        raise EdgeExportError(f"malformed manifest ({exc})", path=path, hint="re-run `edge-export export`") from None
    return artifacts


def versions() -> dict[str, str | None]:
    return {**installed_versions(LIBRARIES), "python": platform.python_version()}


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def build_manifest(
    *, ctx: Any, formats: list[str], results: list[ArtifactResult], keras: dict[str, Any], seconds: float
) -> dict[str, Any]:
    failed = [r.name for r in results if r.status != "ok"]
    settings = dataclasses.asdict(ctx.config)
    settings["formats"] = formats
    return {
        "manifest_version": MANIFEST_VERSION,
        "edge_export": __version__,
        "created": now(),
        "model": {
            "path": os.path.relpath(ctx.run.model, ctx.folder.root),  # relative to the export folder
            "sha256": sha256_of(ctx.run.model),
            "backbone": ctx.spec.backbone,
            "image_size": ctx.spec.image_size,
            "num_classes": ctx.spec.num_classes,
        },
        "labels": ctx.folder.relative(ctx.folder.labels),
        "settings": settings,
        "keras": keras,
        "artifacts": [r.to_dict() for r in results],
        "ok": not failed,
        "failed": failed,
        "seconds": round(seconds, 2),
    }


def build_model_card(ctx: Any, manifest: dict[str, Any]) -> dict[str, Any]:
    dataset = _read_json(ctx.run.dataset) or {}
    metrics = _read_json(ctx.run.metrics) or {}
    return {
        "model": {
            "backbone": ctx.spec.backbone,
            "image_size": ctx.spec.image_size,
            "num_classes": ctx.spec.num_classes,
            "labels": ctx.labels,
            "preprocessing": ctx.preprocessing.to_dict(),
            "weights": ctx.model_spec_data.get("weights"),
            "source": manifest["model"],
        },
        "training_data": {
            "classes": dataset.get("classes", ctx.labels),
            "counts": dataset.get("counts"),
            "validation_from_train": dataset.get("validation_from_train"),
            "root": dataset.get("root"),
        },
        "metrics": {k: v for k, v in metrics.items() if k != "timing_seconds"},
        "export": {
            "settings": manifest["settings"],
            "keras": manifest["keras"],
            "ok": manifest["ok"],
        },
        "artifacts": [
            {
                "name": a["name"],
                "path": a["path"],
                "format": a["format"],
                "precision": a["precision"],
                "size_bytes": a["size_bytes"],
                "sha256": a["sha256"],
                "status": a["status"],
                "accuracy": (a.get("parity") or {}).get("accuracy"),
                "accuracy_drop": (a.get("parity") or {}).get("accuracy_drop"),
            }
            for a in manifest["artifacts"]
        ],
        "versions": versions(),
        "created": manifest["created"],
    }


def render_table(manifest: dict[str, Any]) -> str:
    header = ("artifact", "status", "size", "accuracy", "drop", "agree", "max diff", "time")
    rows = [header]
    for a in manifest["artifacts"]:
        p = a.get("parity") or {}
        rows.append((
            a["name"],
            a["status"],
            _size(a.get("size_bytes")),
            f"{p['accuracy']:.2%}" if "accuracy" in p else "-",
            f"{p['accuracy_drop']:+.2f}" if "accuracy_drop" in p else "-",
            f"{p['top1_agreement']:.2%}" if "top1_agreement" in p else "-",
            f"{p['max_abs_diff']:.4f}" if "max_abs_diff" in p else "-",
            f"{a['seconds']:.0f}s" if a.get("seconds") is not None else "-",
        ))
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(header))]
    lines = ["  ".join(str(c).ljust(w) if i < 2 else str(c).rjust(w) for i, (c, w) in enumerate(zip(r, widths))) for r in rows]
    keras = manifest.get("keras") or {}
    if "accuracy" in keras:
        lines.append(f"keras model: accuracy {keras['accuracy']:.2%} on {keras['images']} {keras['split']} images")
    return "\n".join(lines)


def _size(n: int | None) -> str:
    if n is None:
        return "-"
    if n >= 1e6:
        return f"{n / 1e6:.2f} MB"
    return f"{n / 1e3:.1f} KB"


def _read_json(path: Path) -> Any:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
