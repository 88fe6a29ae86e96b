"""The build report: ``report.md``, a self-contained ``report.html`` (plots embedded) and ``report.json``."""

from __future__ import annotations

import base64
import html
import io
import json
import platform
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge_export.benchmarks.plots import plot_confusions
from edge_export.benchmarks.render import (
    CONFUSION_MAX_CLASSES,
    per_class_table,
    robustness_table,
    suite_text,
    top_confusions,
)
from edge_export.core import __version__
from edge_export.core.atomic import write_bytes, write_json, write_text
from edge_export.core.errors import EdgeExportError
from edge_export.core.formatting import html_table, markdown_cell, markdown_table, number, percent, size_text
from edge_export.core.records.bench import BenchResult
from edge_export.core.records.manifest import Manifest
from edge_export.core.records.recommendation import Recommendation
from edge_export.core.run_folder import ReportFiles, RunFolder
from edge_export.core.untrusted import printable, read_json
from edge_export.runtime.images import open_rgb


def gather(
    run: RunFolder, dataset_summary: dict, recommendation: Recommendation | None, command: str
) -> dict[str, Any]:
    """report.json's content: what each stage recorded (bench.json through its one reader, ``BenchResult``)."""

    def read(path: Path) -> Any:  # bounded, and a damaged file is an error naming it, not a traceback
        return read_json(path) if path.is_file() else None

    bench = BenchResult.read(run.bench_json) if run.bench_json.is_file() else None
    return {
        "dataset": dataset_summary,
        "train": {"metrics": read(run.metrics), "history": read(run.history), "model": read(run.model_spec)},
        "export": read(run.export_manifest),
        "bench": bench.to_dict() if bench else None,
        "recommendation": recommendation.to_dict() if recommendation else None,
        "machine": (bench.machine if bench else None)
        or {"python": platform.python_version(), "platform": platform.platform()},
        "edge_export": __version__,
        "command": command,
    }


@dataclass
class _Image:
    """A picture of the report: linked from report.md, embedded in report.html."""

    path: Path
    alt: str


@dataclass
class _Note:
    """A paragraph of plain text (untrusted names in it are escaped in HTML)."""

    text: str


@dataclass
class _Gallery:
    """Thumbnails of misclassified test images, worst first: (thumbnail file or None, row of text cells)."""

    items: list[tuple[Path | None, list[str]]]
    header: list[str]


def write_reports(run: RunFolder, report: dict[str, Any]) -> dict[str, Path]:
    images = {
        "Learning curves": run.curves,
        "Accuracy vs latency": run.bench_plot_accuracy,
        "Confusion matrices": run.bench_plot_confusion,
    }
    images = {title: path for title, path in images.items() if path.is_file()}
    sections = _sections(report, run)
    if any(title.startswith("Confusion matrix") for title, _ in sections):
        images.pop("Confusion matrices", None)  # the recommended artifact's is in the report; all models' in bench/
    md = ["# edge-export build report\n"]
    for title, content in sections:
        md += [f"## {title}\n", "\n\n".join(_markdown(block, run) for block in _blocks(content)), ""]
    for title, path in images.items():
        md += [f"## {title}\n", f"![{title}]({path.relative_to(run.root)})", ""]
    html_parts = ["<h1>edge-export build report</h1>"]
    for title, content in sections:
        html_parts.append(f"<h2>{html.escape(title)}</h2>")
        html_parts += [_html(block) for block in _blocks(content)]
    for title, path in images.items():
        data = base64.b64encode(path.read_bytes()).decode()
        html_parts.append(
            f'<h2>{html.escape(title)}</h2><img alt="{html.escape(title)}" src="data:image/png;base64,{data}">'
        )
    page = (
        "<!doctype html><html><head><meta charset='utf-8'><title>edge-export report</title><style>"
        "body{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}"
        "table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}"
        "th{background:#f0f0f0}td:first-child{text-align:left}img{max-width:100%}pre{background:#f6f6f6;padding:.5em}"
        ".gallery{display:flex;flex-wrap:wrap;gap:8px}.gallery figure{margin:0;width:170px;font-size:12px}"
        ".gallery img{width:160px;height:160px;object-fit:contain;background:#eee}"
        "</style></head><body>" + "\n".join(html_parts) + "</body></html>\n"
    )
    return {
        "json": write_json(run.report_json, report),
        "md": write_text(run.report_md, "\n".join(md) + "\n"),
        "html": write_text(run.report_html, page),
    }


def _blocks(content: Any) -> list[Any]:
    return list(content) if isinstance(content, tuple) else [content]


def _markdown(block: Any, run: RunFolder) -> str:
    if isinstance(block, list):
        return markdown_table(block)
    if isinstance(block, _Image):
        return f"![{block.alt}]({block.path.relative_to(run.root).as_posix()})"
    if isinstance(block, _Note):
        return markdown_cell(block.text)
    if isinstance(block, _Gallery):
        rows = [block.header]
        for i, (thumb, cells) in enumerate(block.items, 1):
            picture = f"![misclassified {i}]({thumb.relative_to(run.root).as_posix()})" if thumb else "(unreadable)"
            rows.append([cells[0], picture, *cells[1:]])
        return markdown_table(rows, raw_columns=[1])
    return str(block)


def _html(block: Any) -> str:
    if isinstance(block, list):
        return html_table(block)
    if isinstance(block, _Image):
        data = base64.b64encode(block.path.read_bytes()).decode()
        return f'<img alt="{html.escape(block.alt)}" src="data:image/png;base64,{data}">'
    if isinstance(block, _Note):
        return f"<p>{html.escape(block.text)}</p>"
    if isinstance(block, _Gallery):
        figures = []
        for thumb, cells in block.items:
            img = (
                f'<img alt="" src="data:image/jpeg;base64,{base64.b64encode(thumb.read_bytes()).decode()}">'
                if thumb
                else "<div>(unreadable)</div>"
            )
            caption = "<br>".join(
                f"{html.escape(h)}: {html.escape(printable(c, 200))}" for h, c in zip(block.header[2:], cells[1:])
            )
            figures.append(f"<figure>{img}<figcaption>{html.escape(cells[0])}. {caption}</figcaption></figure>")
        return '<div class="gallery">' + "".join(figures) + "</div>"
    return f"<pre>{html.escape(str(block))}</pre>"


def _sections(report: dict[str, Any], run: RunFolder) -> list[tuple[str, Any]]:
    """report.json's records, each read back through its one reader, as titled tables (or text)."""
    sections: list[tuple[str, Any]] = []
    if report.get("recommendation"):
        rec = Recommendation.from_dict(report["recommendation"], source=run.report_json)
        sections.append(("Recommendation", f"{rec.artifact or 'none'}: {rec.why}"))
    ds = report.get("dataset") or {}
    if ds.get("counts"):
        splits = list(ds["counts"])
        rows = [["class", *splits]] + [
            [c, *[str(ds["counts"][s].get(c, 0)) for s in splits]] for c in ds.get("classes", [])
        ]
        sections.append(("Dataset", rows))
    metrics = (report.get("train") or {}).get("metrics")
    if metrics:
        rows = [["split", "accuracy", "loss", "images"]]
        rows += [
            [s, f"{m['accuracy']:.2%}", f"{m['loss']:.4f}", str(m.get("images", ""))]
            for s, m in metrics.items()
            if isinstance(m, dict) and "accuracy" in m
        ]
        sections.append(("Training (Keras model)", rows))
    if report.get("export"):
        manifest = Manifest.from_dict(report["export"], folder=run.export_dir, source=run.report_json)
        rows = [["artifact", "status", "size", "val accuracy", "drop (pts)", "agreement", "max |Δp|"]]
        for a in manifest.artifacts:
            parity = a.parity or {}
            rows.append(
                [
                    a.name,
                    a.status,
                    size_text(a.size_bytes, ""),
                    percent(a.accuracy, ""),
                    number(a.accuracy_drop, missing=""),
                    percent(parity.get("top1_agreement"), ""),
                    number(parity.get("max_abs_diff"), 4, missing=""),
                ]
            )
        sections.append(("Export and parity (validation split)", rows))
    if report.get("bench"):
        bench = BenchResult.from_dict(report["bench"], source=run.report_json)
        robust = any(r.robustness for r in bench.rows)
        rows = [
            [
                "artifact",
                "status",
                "size",
                "test accuracy",
                *(["shifted accuracy"] if robust else []),
                "agreement",
                "p50 ms",
                "p90 ms",
                "FPS",
                "threads",
            ]
        ]
        for r in bench.rows:
            lat = r.latency_ms or {}
            rows.append(
                [
                    r.id,
                    r.status,
                    size_text(r.size_bytes, ""),
                    percent(r.accuracy, ""),
                    *([percent((r.robustness or {}).get("accuracy"), "")] if robust else []),
                    percent(r.top1_agreement, ""),
                    number(lat.get("p50"), missing=""),
                    number(lat.get("p90"), missing=""),
                    number(r.fps, 1, missing=""),
                    "" if r.threads is None else str(r.threads),
                ]
            )
        sections.append(("Benchmark (test split)", rows))
        recommended = (report.get("recommendation") or {}).get("artifact")
        sections += _bench_details(bench, recommended if isinstance(recommended, str) else None, run)
    machine = report.get("machine") or {}
    if machine:
        rows = [["item", "value"]] + [
            [k, json.dumps(v) if isinstance(v, (dict, list)) else str(v)] for k, v in machine.items()
        ]
        sections.append(("Machine and libraries", rows))
    sections.append(("Reproduce", report.get("command", "")))
    return sections


GALLERY_MAX = 24  # thumbnails of misclassified images in the report (bench.json lists more)
THUMBNAIL = 160  # pixels, the longer side


def _bench_details(bench: BenchResult, recommended: str | None, run: RunFolder) -> list[tuple[str, Any]]:
    """Robustness, per-class precision/recall, the confusion matrix (up to 40 classes, else the most frequent
    confusions) and the gallery of misclassified images, for the recommended artifact (else the first
    measured one)."""
    sections: list[tuple[str, Any]] = []
    robust = robustness_table(bench.local_rows())
    if robust:
        sections.append(
            ("Robustness (test split under camera-like shifts)", (_Note(suite_text(bench.settings)), robust))
        )
    measured = [r for r in bench.local_rows() if r.ok]
    row = next((r for r in measured if r.name == recommended), None) or next(
        (r for r in measured if not r.is_reference), None
    )
    if row is None:
        return sections
    which = f"{row.id}" + (" (recommended)" if row.name == recommended else "")
    table, note = per_class_table(row)
    sections.append((f"Per-class precision and recall: {which}", (table, _Note(note)) if note else table))
    classes = len((row.confusion or {}).get("rows") or [])
    if row.confusion and classes <= CONFUSION_MAX_CLASSES:
        picture = _confusion_picture(bench, row, run)
        if picture is not None:
            sections.append((f"Confusion matrix: {which}", picture))
    elif row.confusion:
        sections.append((f"Most frequent confusions: {which}", top_confusions(row)))
    gallery = _gallery(bench, row, run)
    total = max((row.images or 0) - (row.correct or 0), len(row.misclassified or []))
    if gallery is not None:
        shown = len(gallery.items)
        sections.append(
            (
                f"Misclassified test images: {which}",
                (
                    _Note(
                        f"{shown} of {total}, most confident errors first "
                        f"(all {len(row.misclassified or [])} listed in "
                        f"{run.bench_json.relative_to(run.root).as_posix()})."
                    ),
                    gallery,
                ),
            )
        )
    elif row.misclassified is not None and total == 0:
        sections.append((f"Misclassified test images: {which}", _Note("none: every test image is classified right.")))
    return sections


def _confusion_picture(bench: BenchResult, row: Any, run: RunFolder) -> _Image | None:
    path = run.report_files / ReportFiles.CONFUSION
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        single = BenchResult(rows=[row], settings=bench.settings, data=bench.data)
        written = plot_confusions(single, path)
    except ModuleNotFoundError as exc:  # matplotlib is optional
        if (exc.name or "").split(".")[0] != "matplotlib":
            raise
        return None
    return _Image(written, "confusion matrix") if written else None


def _gallery(bench: BenchResult, row: Any, run: RunFolder) -> _Gallery | None:
    """Thumbnails of the worst errors (decoded with the runtime's decoder; bench.json's paths are checked
    to stay inside its test folder), written as report_files/misclassified-NN.jpg."""
    folder = run.report_files
    if folder.is_dir():  # last report's thumbnails: never shown for this one
        for old in folder.glob(f"{ReportFiles.GALLERY_PREFIX}*.jpg"):
            old.unlink()
    if not row.misclassified:
        return None
    root = bench.data.get("path")
    items: list[tuple[Path | None, list[str]]] = []
    for i, m in enumerate(row.misclassified[:GALLERY_MAX], 1):
        thumb: Path | None = None
        try:
            if not isinstance(root, str):
                raise EdgeExportError("bench.json names no test folder")
            # relative, no '..' (BenchRow.from_dict checked it); and no link out of the test folder either
            source = Path(root) / m["path"]
            if Path(root).resolve() not in source.resolve().parents:
                raise EdgeExportError("misclassified image outside the test folder", path=source)
            image = open_rgb(source, size=(THUMBNAIL, THUMBNAIL))  # a large JPEG decodes at a reduced DCT scale
            image.thumbnail((THUMBNAIL, THUMBNAIL))
            buffer = io.BytesIO()
            image.save(buffer, format="JPEG", quality=85)
            folder.mkdir(parents=True, exist_ok=True)
            thumb = write_bytes(folder / ReportFiles.gallery(i), buffer.getvalue())
        except EdgeExportError:  # moved, unreadable, or a path that leaves the test folder: no picture
            thumb = None
        confidence = m.get("confidence")
        items.append((thumb, [str(i), m["true"], m["predicted"], percent(confidence, "-"), m["path"]]))
    return _Gallery(items, ["#", "image", "true", "predicted", "confidence", "file"])
