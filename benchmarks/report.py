"""The benchmark's records: the table on screen, ``bench.json`` and ``bench.md``.

``bench.json`` holds one entry per measured model under ``artifacts`` (the Keras reference, when
measured, is the entry with format "keras"); each entry's top-level ``threads`` / ``latency_ms`` are
those of the FIRST thread count, and ``by_threads`` has them all. Each entry has a ``target`` (the
machine it was measured on, "local" here; see ``targets``) and ``targets`` maps each target to its machine.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from edge_export.core import __version__
from edge_export.benchmarks.machine import describe
from edge_export.benchmarks.targets import LOCAL, is_multi_target, row_id

BENCH_VERSION = 1


def build_report(
    *,
    artifacts: list[dict[str, Any]],
    skipped: list[dict[str, Any]],
    data: dict[str, Any],
    settings: dict[str, Any],
    machine: dict[str, Any],
    run_dir: str | None,
    seconds: float,
) -> dict[str, Any]:
    failed = [a["name"] for a in artifacts if a["status"] != "ok"]
    below = [a["name"] for a in artifacts if a.get("below_min_accuracy")]
    return {
        "bench_version": BENCH_VERSION,
        "edge_export": __version__,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "run_dir": run_dir,
        "data": data,
        "settings": settings,
        "reference": "keras" if any(a["format"] == "keras" and a["status"] == "ok" for a in artifacts) else None,
        "artifacts": artifacts,
        "skipped": skipped,
        "failed": failed,
        "below_min_accuracy": below,
        "ok": not failed and not below,
        "machine": machine,
        "targets": {LOCAL: machine},
        "seconds": round(seconds, 1),
    }


# ----------------------------------------------------------------------------- table


def table_rows(report: dict[str, Any]) -> list[list[str]]:
    """One row per measured model. With several targets (machines) a target column follows the name and
    the latency columns are the REQUESTED thread counts (0 = all cores differs between machines)."""
    multi = is_multi_target(report)
    key = "threads_requested" if multi else "threads"
    threads = report["settings"]["threads"] if multi else report["settings"]["threads_used"]
    batch = report["settings"]["batch_size"]
    header = ["artifact", *(["target"] if multi else []), "format", "status", "size", "accuracy", "agree"]
    header += [f"p50 ms @{t}t" if t else "p50 ms @all" for t in threads]
    header += ["FPS", f"img/s @{batch}", "e2e ms", "overhead", "RSS MB"]
    rows = [header]
    for a in report["artifacts"]:
        by = {e.get(key): e for e in a.get("by_threads") or []}
        status = a["status"] if not a.get("below_min_accuracy") else "below-min"
        rows.append(
            [
                a["name"],
                *([a.get("target") or LOCAL] if multi else []),
                f"{a['format']}/{a.get('precision') or '?'}",
                status,
                size_text(a.get("size_bytes")),
                _pct(a.get("accuracy")),
                _pct(a.get("top1_agreement")),
                *[_ms(by.get(t, {}).get("latency_ms", {}).get("p50")) for t in threads],
                _rate(a.get("fps")),
                _rate(a.get("throughput_ips")),
                _ms(a.get("e2e_p50")),
                f"{a['overhead_pct']:+.0f}%" if a.get("overhead_pct") is not None else "-",
                _num((a.get("memory") or {}).get("peak_rss_mb"), 0),
            ]
        )
    return rows


def render_table(report: dict[str, Any]) -> str:
    rows = table_rows(report)
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    left = 4 if is_multi_target(report) else 3  # name, (target,) format, status: left-aligned
    lines = [
        "  ".join(c.ljust(w) if i < left else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))) for r in rows
    ]
    lines += _footer(report)
    return "\n".join(lines)


def _footer(report: dict[str, Any]) -> list[str]:
    s, d = report["settings"], report["data"]
    lines = [
        f"{d['images']} test images, {len(d['classes'])} classes ({d['path']}); latency: {s['runs']} runs after "
        f"{s['warmup']} warm-up, one image, bare backend call; FPS = 1000/p50 at {s['threads_used'][0]} thread(s); "
        f"e2e = Classifier.predict(path); overhead = predict_proba over the bare call",
    ]
    for a in report["artifacts"]:
        if a["status"] != "ok":
            lines.append(f"FAILED {row_id(a)}: {a.get('error')}")
    for sk in report.get("skipped") or []:
        lines.append(f"skipped {sk['name']}: {sk['reason']}")
    if report["below_min_accuracy"]:
        lines.append(
            f"below --min-accuracy {s['min_accuracy']:.2%}: "
            + ", ".join(f"{row_id(a)} ({a['accuracy']:.2%})" for a in report["artifacts"] if a.get("below_min_accuracy"))
        )
    if is_multi_target(report):
        lines += [f"target {name}: {describe(info) if info.get('cpu') else '?'}" for name, info in report["targets"].items()]
    for name, message in (report.get("target_errors") or {}).items():
        lines.append(f"FAILED target {name}: {message}")
    return lines


# ----------------------------------------------------------------------------- markdown


def render_markdown(report: dict[str, Any], plots: dict[str, str] | None = None) -> str:
    rows = table_rows(report)
    s, d = report["settings"], report["data"]
    out = [
        "# Benchmark",
        "",
        *(
            [f"- target {name}: {describe(info) if info.get('cpu') else '?'}" for name, info in report["targets"].items()]
            if is_multi_target(report) else [f"- machine: {describe(report['machine'])}"]
        ),
        f"- data: {d['path']}: {d['images']} images, classes {', '.join(d['classes'])}"
        + (f" ({len(d['skipped'])} unreadable skipped)" if d.get("skipped") else ""),
        f"- latency: one image, {s['runs']} timed runs after {s['warmup']} warm-up; threads {s['threads_used']}"
        f" (requested {s['threads']}, 0 = all cores); throughput at batch {s['batch_size']}",
        f"- created {report['created']}, edge-export {report['edge_export']}",
        "",
        _md_table(rows),
        "",
        "FPS = 1000 / p50 at the first thread count. *e2e* = `Classifier.predict(path)` (decode, resize, "
        "normalize/quantize, run, dequantize); *overhead* = `predict_proba` on a preloaded image over the bare "
        "backend call; RSS = peak resident memory of the process that measured the model.",
        "",
    ]
    for sk in report.get("skipped") or []:
        out.append(f"- skipped {sk['name']}: {sk['reason']}")
    for a in report["artifacts"]:
        if a["status"] != "ok":
            out.append(f"- FAILED {row_id(a)}: {a.get('error')}")
    for name, message in (report.get("target_errors") or {}).items():
        out.append(f"- FAILED target {name}: {message}")
    if report["below_min_accuracy"]:
        out.append(f"- below min accuracy {s['min_accuracy']:.2%}: {', '.join(report['below_min_accuracy'])}")
    out += ["", "## Latency by thread count", ""]
    lat = [["artifact", "threads", "p50", "p90", "p99", "mean", "std", "predict_proba p50", "e2e p50", "decode p50", "overhead", "e2e overhead", "img/s"]]
    for a in report["artifacts"]:
        for e in a.get("by_threads") or []:
            l = e["latency_ms"]
            lat.append([
                row_id(a), str(e["threads"]), _ms(l["p50"]), _ms(l["p90"]), _ms(l["p99"]), _ms(l["mean"]),
                _ms(l["std"]), _ms((e.get("predict_proba_ms") or {}).get("p50")), _ms(e.get("e2e_p50")),
                _ms((a.get("decode_ms") or {}).get("p50")),
                f"{e['overhead_pct']:+.1f}%" if e.get("overhead_pct") is not None else "-",
                f"{e['e2e_overhead_pct']:+.1f}%" if e.get("e2e_overhead_pct") is not None else "-",
                _rate((e.get("throughput") or {}).get("images_per_s")),
            ])
    out += [_md_table(lat), "", "All times in ms.", ""]
    out += ["## Per-class metrics", ""]
    for a in report["artifacts"]:
        if a["status"] != "ok":
            continue
        out += [f"### {row_id(a)}", "", f"accuracy {a['accuracy']:.2%}, macro F1 {a['macro_f1']:.4f}", ""]
        pc = [["class", "precision", "recall", "F1", "support"]]
        for c in a["per_class"]:
            pc.append([c["label"], f"{c['precision']:.4f}", f"{c['recall']:.4f}", f"{c['f1']:.4f}", str(c["support"])])
        out += [_md_table(pc), ""]
        conf = a["confusion"]
        if len(conf["columns"]) <= 12:
            cm = [["true \\ predicted", *conf["columns"]]]
            cm += [[r, *map(str, row)] for r, row in zip(conf["rows"], conf["matrix"])]
            out += [_md_table(cm), ""]
    if plots:
        out += ["## Plots", ""]
        out += [f"![{title}]({name})" for title, name in plots.items()]
        out.append("")
    return "\n".join(out)


def _md_table(rows: list[list[str]]) -> str:
    esc = [[str(c).replace("|", "\\|") for c in r] for r in rows]
    lines = ["| " + " | ".join(esc[0]) + " |", "|" + "|".join("---" for _ in esc[0]) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in esc[1:]]
    return "\n".join(lines)


# ----------------------------------------------------------------------------- formatting


def size_text(n: int | None) -> str:
    if n is None:
        return "-"
    if n >= 1e6:
        return f"{n / 1e6:.2f} MB"
    return f"{n / 1e3:.1f} KB"


def _pct(x: float | None) -> str:
    return f"{x:.2%}" if x is not None else "-"


def _ms(x: float | None) -> str:
    """Milliseconds with about 3 significant digits (sub-millisecond models stay readable)."""
    if x is None:
        return "-"
    return f"{x:.0f}" if x >= 100 else f"{x:.1f}" if x >= 10 else f"{x:.2f}" if x >= 1 else f"{x:.3f}"


def _rate(x: float | None) -> str:
    if x is None:
        return "-"
    return f"{x:.0f}" if x >= 100 else f"{x:.1f}"


def _num(x: float | None, digits: int = 2) -> str:
    return f"{x:.{digits}f}" if x is not None else "-"
