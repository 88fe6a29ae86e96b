"""The benchmark's outputs: the table on screen and ``bench.md`` (``bench.json`` is ``BenchResult.to_dict()``).

``bench.json`` holds one row per measured model under ``artifacts`` (the Keras reference, when
measured, is the row with format "keras"); each row's top-level ``threads`` / ``latency_ms`` are
those of the FIRST thread count, and ``by_threads`` has them all. Each row has a device (the machine
it was measured on, "local" here; its ``target`` key on disk), and the result maps each device to its machine.
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from edge_export.benchmarks.machine import describe
from edge_export.core import __version__
from edge_export.core.formatting import markdown_table, milliseconds, number, percent, rate, size_text
from edge_export.core.records.bench import BENCH_VERSION, LOCAL, BenchResult, BenchRow
from edge_export.core.run_folder import BenchFiles
from edge_export.core.untrusted import printable


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
        reference=next((r.name for r in rows if r.is_reference and r.ok), None),
        format_version=BENCH_VERSION,
    )


# ----------------------------------------------------------------------------- table


def table_rows(result: BenchResult) -> list[list[str]]:
    """One row per measured model. With several devices a device column follows the name and the
    latency columns are the REQUESTED thread counts (0 = all cores differs between machines)."""
    multi = result.multi_device
    threads = result.settings["threads"] if multi else result.settings["threads_used"]
    batch = result.settings["batch_size"]
    robust = any(r.robustness for r in result.rows)
    header = [
        "artifact",
        *(["device"] if multi else []),
        "format",
        "status",
        "size",
        "accuracy",
        "agree",
        *(["shifted"] if robust else []),
    ]
    header += [f"p50 ms @{t}t" if t else "p50 ms @all" for t in threads]
    header += ["FPS", f"img/s @{batch}", "e2e ms", "x OpenCV", "overhead", "RSS MB"]
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
                *([percent((r.robustness or {}).get("accuracy"))] if robust else []),
                *[milliseconds(r.latency_at(t, requested=multi)) for t in threads],
                rate(r.fps),
                rate(r.throughput_ips),
                milliseconds(r.e2e_p50),
                f"{r.e2e_vs_opencv:.2f}x" if r.e2e_vs_opencv is not None else "-",
                f"{r.overhead_pct:+.0f}%" if r.overhead_pct is not None else "-",
                number((r.memory or {}).get("peak_rss_mb"), 0),
            ]
        )
    return table


def render_table(result: BenchResult) -> str:
    rows = table_rows(result)
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    left = 4 if result.multi_device else 3  # name, (device,) format, status: left-aligned
    lines = ["  ".join(c.ljust(w) if i < left else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))) for r in rows]
    lines += _footer(result)
    return "\n".join(lines)


def _e2e_image(settings: dict) -> str:
    """Which photos the end-to-end time is taken over (a sample of the test split; older results: one photo of
    median size, or none said)."""
    if settings.get("e2e_photos"):
        return (
            f", median over {settings['e2e_photos']} test photos (one in every few, all classes); x OpenCV = e2e / "
            "the hand-written OpenCV pipeline (imread, cvtColor, resize, the same model call) on the same photos"
        )
    image = settings.get("e2e_image")
    return f" on {printable(Path(image).name, 80)}, the test photo of median size" if image else ""


def _footer(result: BenchResult) -> list[str]:
    s, d = result.settings, result.data
    lines = [
        f"{d['images']} test images, {len(d['classes'])} classes ({printable(d['path'])}); "
        f"latency: {s['runs']} runs after "
        f"{s['warmup']} warm-up, one image, bare backend call; FPS = 1000/p50 at {s['threads_used'][0]} thread(s); "
        f"e2e = Classifier.predict(path){_e2e_image(s)}; overhead = predict_proba over the bare call",
    ]
    if any(r.robustness for r in result.rows):
        lines.append(
            "shifted = accuracy on the test images under camera-like shifts (JPEG, crop, brightness, blur, "
            "noise; benchmarks/robustness.py; bench.robustness=false turns it off)"
        )
    for r in result.rows:
        if not r.ok:
            lines.append(f"FAILED {r.id}: {r.error}")
    for sk in result.skipped:
        lines.append(f"skipped {sk['name']}: {sk['reason']}")
    below = [r for r in result.rows if r.below_min_accuracy]
    if below:
        lines.append(
            f"below --min-accuracy {s['min_accuracy']:.2%}: " + ", ".join(f"{r.id} ({r.accuracy:.2%})" for r in below)
        )
    if result.multi_device:
        lines += [
            f"device {name}: {describe(info) if info.get('cpu') else '?'}" for name, info in result.devices.items()
        ]
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
            if result.multi_device
            else [f"- machine: {describe(result.machine)}"]
        ),
        f"- data: {printable(d['path'])}: {d['images']} images, "
        f"classes {', '.join(printable(c, 80) for c in d['classes'])}"
        + (f" ({len(d['skipped'])} unreadable skipped)" if d.get("skipped") else ""),
        f"- latency: one image, {s['runs']} timed runs after {s['warmup']} warm-up; threads {s['threads_used']}"
        f" (requested {s['threads']}, 0 = all cores); throughput at batch {s['batch_size']}",
        f"- created {result.created}, edge-export {result.edge_export}",
        "",
        markdown_table(rows),
        "",
        "FPS = 1000 / p50 at the first thread count. *e2e* = `Classifier.predict(path)` (decode, resize, "
        f"normalize/quantize, run, dequantize){_e2e_image(s)}; "
        "*overhead* = `predict_proba` on a preloaded image over the bare "
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
    lat = [
        [
            "artifact",
            "threads",
            "p50",
            "p90",
            "p99",
            "mean",
            "std",
            "predict_proba p50",
            "e2e p50",
            "decode p50",
            "overhead",
            "e2e overhead",
            "img/s",
        ]
    ]
    for r in result.rows:
        for e in r.by_threads or []:
            bare = e["latency_ms"]
            lat.append(
                [
                    r.id,
                    str(e["threads"]),
                    milliseconds(bare["p50"]),
                    milliseconds(bare["p90"]),
                    milliseconds(bare["p99"]),
                    milliseconds(bare["mean"]),
                    milliseconds(bare["std"]),
                    milliseconds((e.get("predict_proba_ms") or {}).get("p50")),
                    milliseconds(e.get("e2e_p50")),
                    milliseconds((r.decode_ms or {}).get("p50")),
                    f"{e['overhead_pct']:+.1f}%" if e.get("overhead_pct") is not None else "-",
                    f"{e['e2e_overhead_pct']:+.1f}%" if e.get("e2e_overhead_pct") is not None else "-",
                    rate((e.get("throughput") or {}).get("images_per_s")),
                ]
            )
    out += [markdown_table(lat), "", "All times in ms.", ""]
    robust = robustness_table(result.rows)
    if robust:
        out += ["## Robustness (accuracy under camera-like shifts)", "", suite_text(s), "", markdown_table(robust), ""]
    out += ["## Per-class metrics", ""]
    for r in result.rows:
        if not r.ok:
            continue
        out += [f"### {r.id}", "", f"accuracy {r.accuracy:.2%}, macro F1 {r.macro_f1:.4f}", ""]
        table, note = per_class_table(r)
        out += [markdown_table(table), *(["", note] if note else []), ""]
        conf = r.confusion
        if conf and len(conf["columns"]) <= 12:
            cm = [["true \\ predicted", *conf["columns"]]]
            cm += [[name, *map(str, row)] for name, row in zip(conf["rows"], conf["matrix"])]
            out += [markdown_table(cm), ""]
        elif conf:
            out += ["Most frequent confusions:", "", markdown_table(top_confusions(r)), ""]
        wrong = misclassified_table(r, 10)
        if wrong:
            total = (r.images or 0) - (r.correct or 0)
            out += [
                f"Misclassified ({min(10, len(r.misclassified or []))} of {total}, most confident first; "
                f"{len(r.misclassified or [])} listed in {BenchFiles.JSON}):",
                "",
                markdown_table(wrong),
                "",
            ]
    if plots:
        out += ["## Plots", ""]
        out += [f"![{title}]({name})" for title, name in plots.items()]
        out.append("")
    return "\n".join(out)


# ----------------------------------------------------------------------------- views shared with the build report

CONFUSION_MAX_CLASSES = 40  # up to this many classes a confusion matrix (with names) is readable; beyond: sorted tables
PER_CLASS_SHOWN = 40  # beyond CONFUSION_MAX_CLASSES, the per-class table shows the worst this many


def per_class_table(row: BenchRow, limit: int = PER_CLASS_SHOWN) -> tuple[list[list[str]], str]:
    """Per-class precision/recall/F1/support: in class order up to ``CONFUSION_MAX_CLASSES`` classes; beyond,
    sorted worst first (F1, then recall) and cut at ``limit`` rows. Returns (table, a note or "")."""
    classes = list(row.per_class or [])
    note = ""
    if len(classes) > CONFUSION_MAX_CLASSES:
        classes.sort(key=lambda c: (c["f1"], c["recall"], c["label"]))
        if len(classes) > limit:
            note = f"The {limit} classes with the lowest F1 of {len(classes)} (all in {BenchFiles.JSON})."
            classes = classes[:limit]
        else:
            note = "Sorted by F1, lowest first."
    table = [["class", "precision", "recall", "F1", "support"]]
    table += [
        [c["label"], f"{c['precision']:.4f}", f"{c['recall']:.4f}", f"{c['f1']:.4f}", str(c["support"])]
        for c in classes
    ]
    return table, note


def top_confusions(row: BenchRow, n: int = 20) -> list[list[str]]:
    """The ``n`` most frequent (true, predicted) pairs of different classes, with their share of the true class."""
    conf = row.confusion or {}
    names, columns, matrix = conf.get("rows") or [], conf.get("columns") or [], conf.get("matrix") or []
    pairs = [
        (int(count), t, p)
        for t, counts in enumerate(matrix)
        for p, count in enumerate(counts)
        if count and (p >= len(names) or p != t)
    ]
    pairs.sort(key=lambda x: (-x[0], x[1], x[2]))
    table = [["true", "predicted", "images", "share of true class"]]
    for count, t, p in pairs[:n]:
        total = sum(matrix[t]) or 1
        table.append([names[t], columns[p] if p < len(columns) else "?", str(count), percent(count / total)])
    return table


def suite_text(settings: dict[str, Any]) -> str:
    """One sentence on the robustness suite a benchmark used (its settings, read from a bench.json)."""
    found = settings.get("robustness")
    suite: dict[str, Any] = found if isinstance(found, dict) else {}
    found_shifts = suite.get("shifts")
    shifts: dict[str, Any] = found_shifts if isinstance(found_shifts, dict) else {}
    listed = "; ".join(f"{printable(name, 40)}: {printable(text, 200)}" for name, text in shifts.items())
    return (
        f"Each test image under one shift, chosen (like its random parameters) by a hash of the seed "
        f"({printable(suite.get('seed'), 40)}) and its path: {listed or 'see benchmarks/robustness.py'}."
    )


def robustness_table(rows: list[BenchRow]) -> list[list[str]]:
    """One row per model measured under the suite: clean accuracy, shifted accuracy, accuracy per shift."""
    measured = [(r, r.robustness) for r in rows if r.ok and r.robustness]
    if not measured:
        return []
    shifts = list(dict.fromkeys(name for _, robustness in measured for name in (robustness.get("by_shift") or {})))
    table = [["artifact", "accuracy", "shifted", "drop (pts)", *shifts]]
    for r, robustness in measured:
        by = robustness.get("by_shift") or {}
        shifted = robustness["accuracy"]
        table.append(
            [
                r.id,
                percent(r.accuracy),
                percent(shifted),
                number(None if r.accuracy is None else (r.accuracy - shifted) * 100),
                *[percent((by.get(name) or {}).get("accuracy")) for name in shifts],
            ]
        )
    return table


def misclassified_table(row: BenchRow, n: int = 10) -> list[list[str]]:
    if not row.misclassified:
        return []
    table = [["#", "image", "true", "predicted", "confidence"]]
    for i, m in enumerate(row.misclassified[:n], 1):
        table.append([str(i), m["path"], m["true"], m["predicted"], percent(m.get("confidence"))])
    return table
