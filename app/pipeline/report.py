"""The build report: ``report.md``, a self-contained ``report.html`` (plots embedded) and ``report.json``."""

from __future__ import annotations

import base64
import html
import json
import platform
from pathlib import Path
from typing import Any

from edge_export.core import __version__
from edge_export.core.atomic import write_json, write_text
from edge_export.core.formatting import html_table, markdown_table, number, percent, size_text
from edge_export.core.records.bench import BenchResult
from edge_export.core.records.manifest import Manifest
from edge_export.core.records.recommendation import Recommendation
from edge_export.core.run_folder import RunFolder
from edge_export.core.untrusted import read_json


def gather(run: RunFolder, dataset_summary: dict, recommendation: Recommendation | None, command: str) -> dict[str, Any]:
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
        "machine": (bench.machine if bench else None) or {"python": platform.python_version(), "platform": platform.platform()},
        "edge_export": __version__,
        "command": command,
    }


def write_reports(run: RunFolder, report: dict[str, Any]) -> dict[str, Path]:
    images = {
        "Learning curves": run.curves,
        "Accuracy vs latency": run.bench_plot_accuracy,
        "Confusion matrices": run.bench_plot_confusion,
    }
    images = {title: path for title, path in images.items() if path.is_file()}
    sections = _sections(report, run)
    md = [f"# edge-export build report\n"]
    for title, rows in sections:
        md += [f"## {title}\n", markdown_table(rows) if isinstance(rows, list) else rows, ""]
    for title, path in images.items():
        md += [f"## {title}\n", f"![{title}]({path.relative_to(run.root)})", ""]
    html_parts = [f"<h1>edge-export build report</h1>"]
    for title, rows in sections:
        html_parts.append(f"<h2>{html.escape(title)}</h2>")
        html_parts.append(html_table(rows) if isinstance(rows, list) else f"<pre>{html.escape(rows)}</pre>")
    for title, path in images.items():
        data = base64.b64encode(path.read_bytes()).decode()
        html_parts.append(f'<h2>{html.escape(title)}</h2><img alt="{html.escape(title)}" src="data:image/png;base64,{data}">')
    page = (
        "<!doctype html><html><head><meta charset='utf-8'><title>edge-export report</title><style>"
        "body{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}"
        "table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}"
        "th{background:#f0f0f0}td:first-child{text-align:left}img{max-width:100%}pre{background:#f6f6f6;padding:.5em}"
        "</style></head><body>" + "\n".join(html_parts) + "</body></html>\n"
    )
    return {
        "json": write_json(run.report_json, report),
        "md": write_text(run.report_md, "\n".join(md) + "\n"),
        "html": write_text(run.report_html, page),
    }


def _sections(report: dict[str, Any], run: RunFolder) -> list[tuple[str, Any]]:
    """report.json's records, each read back through its one reader, as titled tables (or text)."""
    sections: list[tuple[str, Any]] = []
    if report.get("recommendation"):
        rec = Recommendation.from_dict(report["recommendation"], source=run.report_json)
        sections.append(("Recommendation", f"{rec.artifact or 'none'}: {rec.why}"))
    ds = report.get("dataset") or {}
    if ds.get("counts"):
        splits = list(ds["counts"])
        rows = [["class", *splits]] + [[c, *[str(ds["counts"][s].get(c, 0)) for s in splits]] for c in ds.get("classes", [])]
        sections.append(("Dataset", rows))
    metrics = (report.get("train") or {}).get("metrics")
    if metrics:
        rows = [["split", "accuracy", "loss", "images"]]
        rows += [[s, f"{m['accuracy']:.2%}", f"{m['loss']:.4f}", str(m.get("images", ""))] for s, m in metrics.items() if isinstance(m, dict) and "accuracy" in m]
        sections.append(("Training (Keras model)", rows))
    if report.get("export"):
        manifest = Manifest.from_dict(report["export"], folder=run.export_dir, source=run.report_json)
        rows = [["artifact", "status", "size", "val accuracy", "drop (pts)", "agreement", "max |Δp|"]]
        for a in manifest.artifacts:
            parity = a.parity or {}
            rows.append([
                a.name, a.status, size_text(a.size_bytes, ""), percent(a.accuracy, ""), number(a.accuracy_drop, missing=""),
                percent(parity.get("top1_agreement"), ""), number(parity.get("max_abs_diff"), 4, missing=""),
            ])
        sections.append(("Export and parity (validation split)", rows))
    if report.get("bench"):
        bench = BenchResult.from_dict(report["bench"], source=run.report_json)
        rows = [["artifact", "status", "size", "test accuracy", "agreement", "p50 ms", "p90 ms", "FPS", "threads"]]
        for r in bench.rows:
            lat = r.latency_ms or {}
            rows.append([
                r.id, r.status, size_text(r.size_bytes, ""), percent(r.accuracy, ""), percent(r.top1_agreement, ""),
                number(lat.get("p50"), missing=""), number(lat.get("p90"), missing=""), number(r.fps, 1, missing=""), "" if r.threads is None else str(r.threads),
            ])
        sections.append(("Benchmark (test split)", rows))
    machine = report.get("machine") or {}
    if machine:
        rows = [["item", "value"]] + [[k, json.dumps(v) if isinstance(v, (dict, list)) else str(v)] for k, v in machine.items()]
        sections.append(("Machine and libraries", rows))
    sections.append(("Reproduce", report.get("command", "")))
    return sections
