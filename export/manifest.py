"""What an export records: ``manifest.json`` (every artifact with its checks), ``model_card.json`` (what
the model is, what it was trained on, how it scores, which tools made it) and the table on screen."""

from __future__ import annotations

import dataclasses
import json
import os
import platform
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from edge_export.core import __version__
from edge_export.core.errors import EdgeExportError
from edge_export.core.formatting import size_text
from edge_export.core.records.manifest import MANIFEST_VERSION, ArtifactRecord, ExportedModel, Manifest
from edge_export.core.run_folder import RunFolder
from edge_export.core.untrusted import printable, read_json
from edge_export.core.versions import installed_versions
from edge_export.export.formats import FORMATS

LIBRARIES = (
    "tensorflow",
    "keras",
    "tf_keras",
    "tensorflow-model-optimization",
    "tf2onnx",
    "onnx",
    "onnxruntime",
    "ai-edge-litert",
    "numpy",
)


def read_manifest(run: RunFolder, hint: str = "run `edge-export export` on it first") -> Manifest:
    """RUN_DIR/export/manifest.json as a checked ``Manifest``; a clear error when missing or malformed.

    The one reader of the manifest (``Manifest.from_dict`` checks it): every artifact's ``name`` is a safe
    name (unique), its ``path`` (when set) stays inside the export folder, ``sha256`` is 64 hex digits and
    ``size_bytes`` a non-negative integer. ``run.export_dir / artifact.path`` is then safe to open, copy or
    replace.
    """
    path = run.export_manifest
    if not path.is_file():
        raise EdgeExportError(
            "the run folder has no finished export (export/manifest.json is missing)", path=run.root, hint=hint
        )
    return Manifest.from_dict(read_json(path, what="export manifest"), folder=run.export_dir, source=path)


def versions() -> dict[str, str | None]:
    return {**installed_versions(LIBRARIES), "python": platform.python_version()}


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def build_manifest(
    *,
    ctx: Any,
    formats: list[str],
    results: list[ArtifactRecord],
    keras: dict[str, Any],
    seconds: float,
    kept: Sequence[ArtifactRecord] = (),
) -> Manifest:
    """The manifest of this export's ``results`` merged with ``kept``: entries an earlier export of the same
    model.keras made for other formats. ``settings.formats`` are the formats this export made; each entry
    records the settings it was made with."""
    settings = dataclasses.asdict(ctx.config)
    made = [dataclasses.replace(r, details={**r.details, "settings": settings}) for r in results]
    order = list(FORMATS)
    artifacts = sorted([*kept, *made], key=lambda a: order.index(a.name) if a.name in order else len(order))
    return Manifest(
        manifest_version=MANIFEST_VERSION,
        edge_export=__version__,
        created=now(),
        model=ExportedModel(
            path=os.path.relpath(ctx.run.reference_model, ctx.folder.root),  # relative to the export folder
            sha256=ctx.record.model_sha256,  # the run record's: checked against model.keras when the export began
            run_id=ctx.record.run_id,
            backbone=ctx.spec.backbone,
            image_size=ctx.spec.image_size,
            num_classes=ctx.spec.num_classes,
            imported_from=ctx.spec.source.to_dict() if ctx.spec.source is not None else None,
        ),
        labels=ctx.folder.relative(ctx.folder.labels),
        settings={**settings, "formats": formats},
        keras=keras,
        artifacts=artifacts,
        seconds=round(seconds, 2),
    )


def check_made_from(run: RunFolder, record: Any, manifest: Manifest | None = None) -> None:
    """Refuse an export made from another model.keras than the run's (``record``: ``run.verify()``;
    ``manifest``: the run's, read here when not given)."""
    manifest = manifest if manifest is not None else read_manifest(run)
    if manifest.model.sha256 != record.model_sha256:
        raise EdgeExportError(
            "export/ was made from another model.keras (an earlier train): its artifacts do not belong to this run",
            path=run.export_manifest,
            hint=f"re-run `edge-export export {printable(run.root)}`",
        )


def build_model_card(ctx: Any, manifest: Manifest) -> dict[str, Any]:
    dataset = _read_json(ctx.run.dataset) or {}
    metrics = _read_json(ctx.run.metrics) or {}
    return {
        "model": {
            "backbone": ctx.spec.backbone,
            "image_size": ctx.spec.image_size,
            "num_classes": ctx.spec.num_classes,
            "labels": ctx.labels,
            "preprocessing": ctx.preprocessing.to_dict(),
            "input": model_card_input(ctx),
            "weights": ctx.spec.weights,
            "source": manifest.model.to_dict(),  # with imported_from for a model edge-export did not train
        },
        "training_data": {
            "classes": dataset.get("classes", ctx.labels),
            "counts": dataset.get("counts"),
            "validation_from_train": dataset.get("validation_from_train"),
            "root": dataset.get("root"),
        },
        "metrics": {k: v for k, v in metrics.items() if k != "timing_seconds"},
        "export": {
            "settings": manifest.settings,
            "keras": manifest.keras,
            "ok": manifest.ok,
        },
        "artifacts": [
            {
                "name": a.name,
                "path": a.path,
                "format": a.format,
                "precision": a.precision,
                "input_dtype": _input_dtype(ctx, a.name),
                "size_bytes": a.size_bytes,
                "sha256": a.sha256,
                "status": a.status,
                "accuracy": a.accuracy,
                "accuracy_drop": a.accuracy_drop,
            }
            for a in manifest.artifacts
        ],
        "versions": versions(),
        "created": manifest.created,
    }


def model_card_input(ctx: Any) -> dict[str, Any]:
    """How to feed every artifact (the layout, dtype, value range and normalization a client needs)."""
    prep = ctx.preprocessing
    height, width = prep.size
    return {
        "layout": "NHWC",
        "shape": ["batch", height, width, 3],
        "color": "RGB",
        "dtype": "float32, except full-integer TFLite (tflite-int8, tflite-qat-int8): "
        f"{ctx.config.int8_io}, quantized with the input tensor's scale and zero point",
        "value_range": [0, 255],
        "normalization": "inside the model: feed the resized pixels as they are"
        if prep.is_identity
        else "(pixel - mean) / std per channel, before the model (and before quantizing)",
        "mean": list(prep.mean),
        "std": list(prep.std),
        "resize": (
            f"{prep.resize} as PIL resamples "
            f"({'unfiltered' if prep.resize == 'nearest' else 'filtered when shrinking'}), "
            if prep.decoder == "pillow"
            else f"{prep.resize} as cv2.resize interpolates (JPEG decoded by OpenCV, "
            "at a reduced DCT scale when at least twice the input), "
        )
        + "the whole image to "
        f"{height}x{width} (no crop)",
        "output": "probabilities, batch x classes, in the order of labels",
    }


def _input_dtype(ctx: Any, name: str) -> str:
    spec = FORMATS.get(name)
    return ctx.config.int8_io if spec is not None and spec.integer_io else "float32"


def render_table(manifest: Manifest) -> str:
    header = ("artifact", "status", "size", "accuracy", "drop", "agree", "max diff", "time")
    rows = [header]
    for a in manifest.artifacts:
        p = a.parity or {}
        rows.append(
            (
                a.name,
                a.status,
                size_text(a.size_bytes),
                f"{p['accuracy']:.2%}" if "accuracy" in p else "-",
                f"{p['accuracy_drop']:+.2f}" if "accuracy_drop" in p else "-",
                f"{p['top1_agreement']:.2%}" if "top1_agreement" in p else "-",
                f"{p['max_abs_diff']:.4f}" if "max_abs_diff" in p else "-",
                f"{a.seconds:.0f}s" if a.seconds is not None else "-",
            )
        )
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(header))]
    lines = [
        "  ".join(str(c).ljust(w) if i < 2 else str(c).rjust(w) for i, (c, w) in enumerate(zip(r, widths)))
        for r in rows
    ]
    keras = manifest.keras
    if "accuracy" in keras:
        what = "imported ONNX model" if (manifest.model.path or "").endswith(RunFolder.MODEL_ONNX) else "keras model"
        lines.append(f"{what}: accuracy {keras['accuracy']:.2%} on {keras['images']} {keras['split']} images")
    return "\n".join(lines)


def _read_json(path: Path) -> Any:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
