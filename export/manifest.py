"""What an export records: ``manifest.json`` (every artifact with its checks), ``model_card.json`` (what
the model is, what it was trained on, how it scores, which tools made it) and the table on screen."""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from edge_export.core import __version__
from edge_export.core.errors import EdgeExportError
from edge_export.export.formats import FORMATS
from edge_export.export.layout import ExportFolder
from edge_export.core.run_folder import RunFolder
from edge_export.core.untrusted import path_inside, printable, read_json, safe_name
from edge_export.core.versions import installed_versions

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


def read_manifest(run: RunFolder, hint: str = "run `edge-export export` on it first") -> list[dict[str, Any]]:
    """The artifact entries of RUN_DIR/export/manifest.json, checked; a clear error when missing or malformed.

    The one reader of the manifest: every entry's ``name`` is a safe name (unique), its ``path`` (when
    set) stays inside the export folder, ``sha256`` is 64 hex digits and ``size_bytes`` a non-negative
    integer. ``run.export_dir / entry["path"]`` is then safe to open, copy or replace.
    """
    folder = ExportFolder(run)
    path = folder.manifest
    if not path.is_file():
        raise EdgeExportError(
            "the run folder has no finished export (export/manifest.json is missing)", path=run.root, hint=hint
        )
    document = read_json(path, what="export manifest")
    artifacts = document.get("artifacts") if isinstance(document, dict) else None
    if not isinstance(artifacts, list):
        raise EdgeExportError("malformed manifest (no list of artifacts)", path=path, hint="re-run `edge-export export`")
    names: set[str] = set()
    for entry in artifacts:
        check_artifact_entry(entry, folder.root, path)
        if entry["name"] in names:
            raise EdgeExportError(f"malformed manifest: artifact {entry['name']!r} is listed twice", path=path,
                                  hint="re-run `edge-export export`")
        names.add(entry["name"])
    return artifacts


_SHA256 = re.compile(r"^[0-9a-f]{64}$")


def check_artifact_entry(entry: Any, folder: Path, source: Path) -> dict[str, Any]:
    """One artifact entry (a manifest's or a bundle.json's): safe name, path inside ``folder``, sane checks."""
    if not isinstance(entry, dict):
        raise EdgeExportError("malformed artifact entry (not an object)", path=source,
                              hint="the file was edited or comes from elsewhere: re-create it with edge-export")
    name = safe_name(entry.get("name"), what="artifact name", source=source)
    if entry.get("path") is not None:
        path_inside(folder, entry["path"], what=f"path of artifact {name}", source=source)
    sha = entry.get("sha256")
    if sha is not None and not (isinstance(sha, str) and _SHA256.match(sha)):
        raise EdgeExportError(f"artifact {name}: sha256 {printable(repr(sha), 80)} is not 64 hex digits", path=source,
                              hint="the file was edited or comes from elsewhere: re-create it with edge-export")
    size = entry.get("size_bytes")
    if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 0):
        raise EdgeExportError(f"artifact {name}: size_bytes {printable(repr(size), 80)} is not a non-negative integer",
                              path=source, hint="the file was edited or comes from elsewhere: re-create it with edge-export")
    for key in ("status", "format", "precision"):
        if entry.get(key) is not None and not isinstance(entry[key], str):
            raise EdgeExportError(f"artifact {name}: {key} is not a string", path=source,
                                  hint="the file was edited or comes from elsewhere: re-create it with edge-export")
    return entry


def versions() -> dict[str, str | None]:
    return {**installed_versions(LIBRARIES), "python": platform.python_version()}


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def build_manifest(
    *, ctx: Any, formats: list[str], results: list[ArtifactResult], keras: dict[str, Any], seconds: float,
    kept: list[dict[str, Any]] = (),
) -> dict[str, Any]:
    """The manifest of this export's ``results`` merged with ``kept``: entries an earlier export of the same
    model.keras made for other formats. ``settings.formats`` are the formats this export made; each entry
    records the settings it was made with."""
    settings = dataclasses.asdict(ctx.config)
    made = [{**r.to_dict(), "settings": settings} for r in results]
    order = list(FORMATS)
    artifacts = sorted([*kept, *made], key=lambda a: order.index(a["name"]) if a["name"] in order else len(order))
    failed = [a["name"] for a in artifacts if a.get("status") != "ok"]
    return {
        "manifest_version": MANIFEST_VERSION,
        "edge_export": __version__,
        "created": now(),
        "model": {
            "path": os.path.relpath(ctx.run.model, ctx.folder.root),  # relative to the export folder
            "sha256": ctx.record.model_sha256,  # the run record's: checked against model.keras when the export began
            "run_id": ctx.record.run_id,
            "backbone": ctx.spec.backbone,
            "image_size": ctx.spec.image_size,
            "num_classes": ctx.spec.num_classes,
        },
        "labels": ctx.folder.relative(ctx.folder.labels),
        "settings": {**settings, "formats": formats},
        "keras": keras,
        "artifacts": artifacts,
        "ok": not failed,
        "failed": failed,
        "seconds": round(seconds, 2),
    }


def made_from(run: RunFolder) -> dict[str, Any]:
    """The manifest's ``model`` section: the sha256 and run id of the model.keras the export was made from."""
    document = read_json(ExportFolder(run).manifest, what="export manifest")
    model = document.get("model") if isinstance(document, dict) else None
    return model if isinstance(model, dict) else {}


def check_made_from(run: RunFolder, record: Any) -> None:
    """Refuse an export made from another model.keras than the run's (``record``: ``run.verify()``)."""
    if made_from(run).get("sha256") != record.model_sha256:
        raise EdgeExportError(
            "export/ was made from another model.keras (an earlier train): its artifacts do not belong to this run",
            path=ExportFolder(run).manifest, hint=f"re-run `edge-export export {printable(run.root)}`",
        )


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
