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
from edge_export.core.run_folder import RunFolder
from edge_export.core.untrusted import read_json


def gather(run: RunFolder, dataset_summary: dict, recommendation: dict | None, command: str) -> dict[str, Any]:
    def read(path: Path) -> Any:  # bounded, and a damaged file is an error naming it, not a traceback
        return read_json(path) if path.is_file() else None

    bench = read(run.bench_dir / "bench.json")
    if bench:  # keep report.json readable: drop per-image predictions
        bench = {**bench, "artifacts": [{k: v for k, v in a.items() if k != "predicted_labels"} for a in bench.get("artifacts", [])]}
    return {
        "dataset": dataset_summary,
        "train": {"metrics": read(run.metrics), "history": read(run.history), "model": read(run.model_spec)},
        "export": read(run.export_dir / "manifest.json"),
        "bench": bench,
        "recommendation": recommendation,
        "machine": (bench or {}).get("machine") or {"python": platform.python_version(), "platform": platform.platform()},
        "edge_export": __version__,
        "command": command,
    }


def write_reports(run: RunFolder, report: dict[str, Any]) -> dict[str, Path]:
    images = {
        "Learning curves": run.curves,
        "Accuracy vs latency": run.bench_dir / "accuracy_vs_latency.png",
        "Confusion matrices": run.bench_dir / "confusion_matrices.png",
    }
    images = {title: path for title, path in images.items() if path.is_file()}
    sections = _sections(report)
    md = [f"# edge-export build report\n"]
    for title, rows in sections:
        md += [f"## {title}\n", _md_table(rows) if isinstance(rows, list) else rows, ""]
    for title, path in images.items():
        md += [f"## {title}\n", f"![{title}]({path.relative_to(run.root)})", ""]
    html_parts = [f"<h1>edge-export build report</h1>"]
    for title, rows in sections:
        html_parts.append(f"<h2>{html.escape(title)}</h2>")
        html_parts.append(_html_table(rows) if isinstance(rows, list) else f"<pre>{html.escape(rows)}</pre>")
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
        "json": write_json(run.root / "report.json", report),
        "md": write_text(run.root / "report.md", "\n".join(md) + "\n"),
        "html": write_text(run.root / "report.html", page),
    }


def _sections(report: dict[str, Any]) -> list[tuple[str, Any]]:
    sections: list[tuple[str, Any]] = []
    rec = report.get("recommendation")
    if rec:
        sections.append(("Recommendation", f"{rec.get('artifact') or 'none'}: {rec.get('why')}"))
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
    manifest = report.get("export")
    if manifest:
        rows = [["artifact", "status", "size", "val accuracy", "drop (pts)", "agreement", "max |Δp|"]]
        for a in manifest.get("artifacts", []):
            p = a.get("parity") or {}
            rows.append([
                a["name"], a.get("status", ""), _size(a.get("size_bytes")), _pct(p.get("accuracy")),
                _num(p.get("accuracy_drop")), _pct(p.get("top1_agreement")), _num(p.get("max_abs_diff"), 4),
            ])
        sections.append(("Export and parity (validation split)", rows))
    bench = report.get("bench")
    if bench:
        rows = [["artifact", "status", "size", "test accuracy", "agreement", "p50 ms", "p90 ms", "FPS", "threads"]]
        for a in bench.get("artifacts", []):
            lat = a.get("latency_ms") or {}
            rows.append([
                a["name"], a.get("status", ""), _size(a.get("size_bytes")), _pct(a.get("accuracy")),
                _pct(a.get("top1_agreement")), _num(lat.get("p50")), _num(lat.get("p90")), _num(a.get("fps"), 1), str(a.get("threads", "")),
            ])
        sections.append(("Benchmark (test split)", rows))
    machine = report.get("machine") or {}
    if machine:
        rows = [["item", "value"]] + [[k, json.dumps(v) if isinstance(v, (dict, list)) else str(v)] for k, v in machine.items()]
        sections.append(("Machine and libraries", rows))
    sections.append(("Reproduce", report.get("command", "")))
    return sections


def _md_table(rows: list[list[str]]) -> str:
    out = ["| " + " | ".join(rows[0]) + " |", "|" + "---|" * len(rows[0])]
    out += ["| " + " | ".join(r) + " |" for r in rows[1:]]
    return "\n".join(out)


def _html_table(rows: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in rows[0])
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in rows[1:])
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _size(n: int | None) -> str:
    return "" if n is None else f"{n / 1e6:.2f} MB"


def _pct(x: float | None) -> str:
    return "" if x is None else f"{x:.2%}"


def _num(x: float | None, digits: int = 2) -> str:
    return "" if x is None else f"{x:.{digits}f}"
