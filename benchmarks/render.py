"""The benchmark's outputs: the table on screen and ``bench.md`` (``bench.json`` is ``BenchResult.to_dict()``).

``bench.json`` holds one row per measured model under ``artifacts`` (the Keras reference, when
measured, is the row with format "keras"); each row's top-level ``threads`` / ``latency_ms`` are
those of the FIRST thread count, and ``by_threads`` has them all. Each row has a device (the machine
it was measured on, "local" here; its ``target`` key on disk), and the result maps each device to its machine.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from edge_export.core import __version__
from edge_export.benchmarks.machine import describe
from edge_export.core.formatting import markdown_table, milliseconds, number, percent, rate, size_text
from edge_export.core.records.bench import BENCH_VERSION, KERAS, LOCAL, BenchResult, BenchRow


def build_report(
    *,
    rows: list[BenchRow],
    skipped: list[dict[str, Any]],
    data: dict[str, Any],
    settings: dict[str, Any],
    machine: dict[str, Any],
    run_dir: str | None,
    seconds: float,
) -> BenchResult:
    return BenchResult(
        rows=rows,
        machine=machine,
        data=data,
        settings=settings,
        devices={LOCAL: machine},
        skipped=skipped,
        run_dir=run_dir,
        created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        edge_export=__version__,
        seconds=round(seconds, 1),
        reference=KERAS if any(r.is_reference and r.ok for r in rows) else None,
        format_version=BENCH_VERSION,
    )


# ----------------------------------------------------------------------------- table


def table_rows(result: BenchResult) -> list[list[str]]:
    """One row per measured model. With several devices a device column follows the name and the
    latency columns are the REQUESTED thread counts (0 = all cores differs between machines)."""
    multi = result.multi_device
    threads = result.settings["threads"] if multi else result.settings["threads_used"]
    batch = result.settings["batch_size"]
    header = ["artifact", *(["device"] if multi else []), "format", "status", "size", "accuracy", "agree"]
    header += [f"p50 ms @{t}t" if t else "p50 ms @all" for t in threads]
    header += ["FPS", f"img/s @{batch}", "e2e ms", "overhead", "RSS MB"]
    table = [header]
    for r in result.rows:
        status = r.status if not r.below_min_accuracy else "below-min"
        table.append(
            [
                r.name,
                *([r.device] if multi else []),
                f"{r.format}/{r.precision or '?'}",
                status,
                size_text(r.size_bytes),
                percent(r.accuracy),
                percent(r.top1_agreement),
                *[milliseconds(r.latency_at(t, requested=multi)) for t in threads],
                rate(r.fps),
                rate(r.throughput_ips),
                milliseconds(r.e2e_p50),
                f"{r.overhead_pct:+.0f}%" if r.overhead_pct is not None else "-",
                number((r.memory or {}).get("peak_rss_mb"), 0),
            ]
        )
    return table


def render_table(result: BenchResult) -> str:
    rows = table_rows(result)
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    left = 4 if result.multi_device else 3  # name, (device,) format, status: left-aligned
    lines = [
        "  ".join(c.ljust(w) if i < left else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))) for r in rows
    ]
    lines += _footer(result)
    return "\n".join(lines)


def _footer(result: BenchResult) -> list[str]:
    s, d = result.settings, result.data
    lines = [
        f"{d['images']} test images, {len(d['classes'])} classes ({d['path']}); latency: {s['runs']} runs after "
        f"{s['warmup']} warm-up, one image, bare backend call; FPS = 1000/p50 at {s['threads_used'][0]} thread(s); "
        f"e2e = Classifier.predict(path); overhead = predict_proba over the bare call",
    ]
    for r in result.rows:
        if not r.ok:
            lines.append(f"FAILED {r.id}: {r.error}")
    for sk in result.skipped:
        lines.append(f"skipped {sk['name']}: {sk['reason']}")
    below = [r for r in result.rows if r.below_min_accuracy]
    if below:
        lines.append(f"below --min-accuracy {s['min_accuracy']:.2%}: " + ", ".join(f"{r.id} ({r.accuracy:.2%})" for r in below))
    if result.multi_device:
        lines += [f"device {name}: {describe(info) if info.get('cpu') else '?'}" for name, info in result.devices.items()]
    for name, message in result.device_errors.items():
        lines.append(f"FAILED device {name}: {message}")
    return lines


# ----------------------------------------------------------------------------- markdown


def render_markdown(result: BenchResult, plots: dict[str, str] | None = None) -> str:
    rows = table_rows(result)
    s, d = result.settings, result.data
    out = [
        "# Benchmark",
        "",
        *(
            [f"- device {name}: {describe(info) if info.get('cpu') else '?'}" for name, info in result.devices.items()]
            if result.multi_device else [f"- machine: {describe(result.machine)}"]
        ),
        f"- data: {d['path']}: {d['images']} images, classes {', '.join(d['classes'])}"
        + (f" ({len(d['skipped'])} unreadable skipped)" if d.get("skipped") else ""),
        f"- latency: one image, {s['runs']} timed runs after {s['warmup']} warm-up; threads {s['threads_used']}"
        f" (requested {s['threads']}, 0 = all cores); throughput at batch {s['batch_size']}",
        f"- created {result.created}, edge-export {result.edge_export}",
        "",
        markdown_table(rows),
        "",
        "FPS = 1000 / p50 at the first thread count. *e2e* = `Classifier.predict(path)` (decode, resize, "
        "normalize/quantize, run, dequantize); *overhead* = `predict_proba` on a preloaded image over the bare "
        "backend call; RSS = peak resident memory of the process that measured the model.",
        "",
    ]
    for sk in result.skipped:
        out.append(f"- skipped {sk['name']}: {sk['reason']}")
    for r in result.rows:
        if not r.ok:
            out.append(f"- FAILED {r.id}: {r.error}")
    for name, message in result.device_errors.items():
        out.append(f"- FAILED device {name}: {message}")
    if result.below_min_accuracy:
        out.append(f"- below min accuracy {s['min_accuracy']:.2%}: {', '.join(result.below_min_accuracy)}")
    out += ["", "## Latency by thread count", ""]
    lat = [["artifact", "threads", "p50", "p90", "p99", "mean", "std", "predict_proba p50", "e2e p50", "decode p50", "overhead", "e2e overhead", "img/s"]]
    for r in result.rows:
        for e in r.by_threads or []:
            l = e["latency_ms"]
            lat.append([
                r.id, str(e["threads"]), milliseconds(l["p50"]), milliseconds(l["p90"]), milliseconds(l["p99"]), milliseconds(l["mean"]),
                milliseconds(l["std"]), milliseconds((e.get("predict_proba_ms") or {}).get("p50")), milliseconds(e.get("e2e_p50")),
                milliseconds((r.decode_ms or {}).get("p50")),
                f"{e['overhead_pct']:+.1f}%" if e.get("overhead_pct") is not None else "-",
                f"{e['e2e_overhead_pct']:+.1f}%" if e.get("e2e_overhead_pct") is not None else "-",
                rate((e.get("throughput") or {}).get("images_per_s")),
            ])
    out += [markdown_table(lat), "", "All times in ms.", ""]
    out += ["## Per-class metrics", ""]
    for r in result.rows:
        if not r.ok:
            continue
        out += [f"### {r.id}", "", f"accuracy {r.accuracy:.2%}, macro F1 {r.macro_f1:.4f}", ""]
        pc = [["class", "precision", "recall", "F1", "support"]]
        for c in r.per_class or []:
            pc.append([c["label"], f"{c['precision']:.4f}", f"{c['recall']:.4f}", f"{c['f1']:.4f}", str(c["support"])])
        out += [markdown_table(pc), ""]
        conf = r.confusion
        if conf and len(conf["columns"]) <= 12:
            cm = [["true \\ predicted", *conf["columns"]]]
            cm += [[name, *map(str, row)] for name, row in zip(conf["rows"], conf["matrix"])]
            out += [markdown_table(cm), ""]
    if plots:
        out += ["## Plots", ""]
        out += [f"![{title}]({name})" for title, name in plots.items()]
        out.append("")
    return "\n".join(out)
