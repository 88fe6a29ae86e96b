"""The benchmark's record: ``BenchRow`` (one model measured on one device) and ``BenchResult`` (bench.json).

``BenchResult.from_dict`` is the one reader of a bench.json (the local one, a device's, the copy inside
report.json): it checks the format version and the types of what consumers use, and raises
``EdgeExportError`` naming the file. On disk the keys are those bench.json always had: a row's device is
its ``target`` key, the result's devices are ``targets`` / ``target_runs`` / ``target_errors`` (read back
under their new names too).

Vocabulary: a *model* (or artifact) is what is measured, a *device* is where ("local", or an SSH device
such as ``pi@raspberrypi``). ``BenchRow.id`` (``name@device`` off the local machine) tells rows apart.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from edge_export.core.errors import EdgeExportError
from edge_export.core.records import check_format_version
from edge_export.core.untrusted import finite_number, printable, printable_strings, read_json

BENCH_VERSION = 1
LOCAL = "local"  # the device the benchmark ran on
KERAS = "keras"  # the format (and row name) of the run's model.keras: the accuracy reference
SOURCE = "source"  # the format (and row name) of an imported ONNX model's model.onnx: the reference in its place
REFERENCES = (KERAS, SOURCE)
STATUSES = ("ok", "failed")

# bench.json key -> BenchRow attribute, where they differ
_ROW_KEYS = {"target": "device"}
_BASE = ("name", "target", "format", "precision", "path", "source", "size_bytes", "sha256", "status")
_FAILED = ("error", "accuracy", "top1_agreement", "threads", "latency_ms", "below_min_accuracy")
_OK = (
    "accuracy",
    "top1_agreement",
    "threads",
    "latency_ms",
    "fps",
    "e2e_p50",
    "overhead_pct",
    "e2e_overhead_pct",
    "predict_proba_ms",
    "e2e_ms",
    "opencv_ms",
    "e2e_vs_opencv",
    "decode_ms",
    "throughput_ips",
    "throughput",
    "peak_rss_mb",
    "memory",
    "backend",
    "input",
    "dynamic_batch",
    "images",
    "correct",
    "macro_f1",
    "macro_precision",
    "macro_recall",
    "per_class",
    "confusion",
    "by_threads",
    "below_min_accuracy",
    "seconds",
    "misclassified",
    "robustness",
)
_NUMBERS = (
    "accuracy",
    "top1_agreement",
    "fps",
    "e2e_p50",
    "overhead_pct",
    "e2e_overhead_pct",
    "e2e_vs_opencv",
    "throughput_ips",
    "peak_rss_mb",
    "macro_f1",
    "macro_precision",
    "macro_recall",
    "seconds",
)
_INTS = ("size_bytes", "threads", "images", "correct")
_TEXTS = ("format", "precision", "path", "source", "sha256", "error", "backend")
_MAPS = (
    "latency_ms",
    "predict_proba_ms",
    "e2e_ms",
    "opencv_ms",
    "decode_ms",
    "throughput",
    "memory",
    "input",
    "confusion",
    "robustness",
)
_LISTS = ("per_class", "by_threads", "misclassified")
# bench.json's free-text parts, escaped on reading (core.untrusted.printable_strings): the whole document's and a row's
DESCRIPTIVE = (
    "machine",
    "targets",
    "devices",
    "target_runs",
    "device_runs",
    "target_errors",
    "device_errors",
    "created",
    "edge_export",
    "skipped",
    "failed",
    "below_min_accuracy",
)
ROW_DESCRIPTIVE = ("name", "error", "backend", "format", "precision", "source", "by_threads", "memory", "input")


def _escaped(document: dict[str, Any], keys: tuple[str, ...]) -> dict[str, Any]:
    """``document`` with the values of ``keys`` through ``printable_strings``, the others as they are."""
    return {k: printable_strings(v) if k in keys else v for k, v in document.items()}


@dataclass
class BenchRow:
    """One model measured on one device. ``latency_ms`` etc. are those of the FIRST thread count;
    ``by_threads`` has every thread count. A failed row has ``error`` and no measurements."""

    name: str
    format: str
    status: str = "ok"
    device: str = LOCAL
    precision: str | None = None
    path: str | None = None
    source: str | None = None  # "manifest" | "argument" | "run"
    size_bytes: int | None = None
    sha256: str | None = None  # of the file measured: a later export or train makes this row stale
    error: str | None = None
    accuracy: float | None = None
    top1_agreement: float | None = None  # with the Keras model, by label name
    threads: int | None = None
    latency_ms: dict[str, float] | None = None  # p50, p90, p99, mean, std, ...
    fps: float | None = None
    e2e_p50: float | None = None
    overhead_pct: float | None = None
    e2e_overhead_pct: float | None = None
    predict_proba_ms: dict[str, Any] | None = None
    e2e_ms: dict[str, Any] | None = None  # predict(path) over a sample of test photos: p50, p90 over photos
    opencv_ms: dict[str, Any] | None = (
        None  # the hand-written OpenCV pipeline on the same photos (benchmarks/hand_written.py)
    )
    e2e_vs_opencv: float | None = None  # e2e p50 / opencv p50
    decode_ms: dict[str, Any] | None = None
    throughput_ips: float | None = None
    throughput: dict[str, Any] | None = None
    peak_rss_mb: float | None = None
    memory: dict[str, Any] | None = None
    backend: str | None = None
    input: dict[str, Any] | None = None
    dynamic_batch: Any = None
    images: int | None = None
    correct: int | None = None
    macro_f1: float | None = None
    macro_precision: float | None = None
    macro_recall: float | None = None
    per_class: list[dict[str, Any]] | None = None
    confusion: dict[str, Any] | None = None
    by_threads: list[dict[str, Any]] | None = None
    below_min_accuracy: bool = False  # ``below(min_accuracy)`` when it was measured (or merged)
    seconds: float | None = None
    # wrongly classified test images, most confident first: {path (relative to data.path), true, predicted,
    # confidence}; at most bench.misclassified of them (images - correct is the total)
    misclassified: list[dict[str, Any]] | None = None
    robustness: dict[str, Any] | None = None  # accuracy under benchmarks/robustness.py's suite: accuracy, by_shift, ...
    extra: dict[str, Any] = field(default_factory=dict)  # keys this version does not know: kept as they were

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def is_reference(self) -> bool:
        """The run's Keras model (or an imported ONNX model as given): the accuracy reference, never a candidate
        and never below the minimum."""
        return self.format in REFERENCES

    @property
    def id(self) -> str:
        return self.name if self.device == LOCAL else f"{self.name}@{self.device}"

    @property
    def p50_ms(self) -> float | None:
        return (self.latency_ms or {}).get("p50")

    def below(self, min_accuracy: float | None) -> bool:
        """The one rule for "below minimum accuracy" (bench's verdict and the build's gate): a measured
        model (not the Keras reference) whose accuracy is under ``min_accuracy``. A failed (unmeasured)
        row is not "below": it is failed, which fails both bench and the build on its own."""
        return (
            min_accuracy is not None
            and self.ok
            and not self.is_reference
            and self.accuracy is not None
            and self.accuracy < min_accuracy
        )

    def latency_at(self, threads: int | None, *, requested: bool = False) -> float | None:
        """p50 at ``threads`` (used, or requested with ``requested``: 0 = all cores differs between devices)."""
        key = "threads_requested" if requested else "threads"
        for entry in self.by_threads or []:
            if entry.get(key) == threads:
                return (entry.get("latency_ms") or {}).get("p50")
        return None

    def to_dict(self) -> dict[str, Any]:
        keys = _BASE + (_OK if self.ok else _FAILED)
        out = {key: getattr(self, _ROW_KEYS.get(key, key)) for key in keys}
        out.update(self.extra)
        return out

    @classmethod
    def from_dict(cls, data: Any, *, source: str | Path | None = None) -> BenchRow:
        if not isinstance(data, dict):
            raise EdgeExportError("a bench row is not a JSON object", path=source, hint="re-run bench")
        name = data.get("name")
        if not isinstance(name, str) or not name or len(name) > 300:
            raise EdgeExportError(
                f"a bench row has no usable name ({printable(repr(name), 80)})", path=source, hint="re-run bench"
            )
        what = f"bench row {printable(name, 80)}"
        status = data.get("status", "ok")
        if status not in STATUSES:
            raise EdgeExportError(
                f"{what}: status {printable(repr(status), 40)} is not one of {', '.join(STATUSES)}", path=source
            )
        device = data.get("target", data.get("device")) or LOCAL
        if not isinstance(device, str):
            raise EdgeExportError(f"{what}: device {printable(repr(device), 80)} is not a name", path=source)
        known = {f.name for f in fields(cls)} - {"extra"}
        values: dict[str, Any] = {"name": name, "status": status, "device": device}
        extra: dict[str, Any] = {}
        for key, value in data.items():
            attr = _ROW_KEYS.get(key, key)
            if key in ("name", "status", "target", "device"):
                continue
            if attr not in known:
                extra[key] = value
                continue
            values[attr] = _checked(key, value, what, source)
        values.setdefault("format", "?")
        values["below_min_accuracy"] = bool(values.get("below_min_accuracy"))
        return cls(**values, extra=extra)


def _checked(key: str, value: Any, what: str, source: str | Path | None) -> Any:
    if value is None:
        return None
    if key in _NUMBERS:
        return finite_number(value, what=f"{what}: {key}", source=source)
    if key in _INTS:
        number = finite_number(value, what=f"{what}: {key}", source=source)
        if number != int(number):
            raise EdgeExportError(f"{what}: {key} is {number!r}, expected a whole number", path=source)
        return int(number)
    if key in _TEXTS and not isinstance(value, str):
        raise EdgeExportError(f"{what}: {key} is not text", path=source, hint="re-run bench")
    if key in _MAPS and not isinstance(value, dict):
        raise EdgeExportError(f"{what}: {key} is not a JSON object", path=source, hint="re-run bench")
    if key in _LISTS and not (isinstance(value, list) and all(isinstance(v, dict) for v in value)):
        raise EdgeExportError(f"{what}: {key} is not a list of JSON objects", path=source, hint="re-run bench")
    if key == "misclassified":
        return [_misclassified_entry(v, what, source) for v in value]
    if key == "robustness":
        return _robustness(value, what, source)
    if key == "latency_ms":
        for k, v in value.items():
            if v is not None and not (isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)):
                raise EdgeExportError(f"{what}: latency_ms.{printable(k, 40)} is not a finite number", path=source)
    return value


def _fraction(value: Any, what: str, source: str | Path | None) -> float:
    number = finite_number(value, what=what, source=source)
    if not 0.0 <= number <= 1.0:
        raise EdgeExportError(f"{what} is {number!r}, expected a fraction 0..1", path=source, hint="re-run bench")
    return number


def _misclassified_entry(entry: dict[str, Any], what: str, source: str | Path | None) -> dict[str, Any]:
    """One misclassified image: its path must be relative and stay inside the test folder (the report
    opens it), its names text of bounded length, its confidence a fraction."""
    path = entry.get("path")
    if (
        not isinstance(path, str)
        or not path
        or len(path) > 4096
        or "\x00" in path
        or path.startswith(("/", "\\"))
        or ".." in path.replace("\\", "/").split("/")
        or re.match(r"^[A-Za-z]:", path)
    ):
        raise EdgeExportError(
            f"{what}: misclassified path {printable(repr(path), 120)} is not a path inside the test folder",
            path=source,
            hint="re-run bench",
        )
    out: dict[str, Any] = {"path": path}
    for key in ("true", "predicted"):
        value = entry.get(key)
        if not isinstance(value, str) or len(value) > 1000:
            raise EdgeExportError(
                f"{what}: misclassified {key} {printable(repr(value), 80)} is not a class name",
                path=source,
                hint="re-run bench",
            )
        out[key] = value
    confidence = entry.get("confidence")
    out["confidence"] = (
        None if confidence is None else _fraction(confidence, f"{what}: misclassified confidence", source)
    )
    return out


def _robustness(value: dict[str, Any], what: str, source: str | Path | None) -> dict[str, Any]:
    out = dict(value)
    out["accuracy"] = _fraction(value.get("accuracy"), f"{what}: robustness.accuracy", source)
    for key in ("images", "correct"):
        if value.get(key) is not None:
            out[key] = _checked(key, value[key], f"{what}: robustness", source)
    by_shift = value.get("by_shift") or {}
    if not isinstance(by_shift, dict) or not all(isinstance(v, dict) for v in by_shift.values()):
        raise EdgeExportError(
            f"{what}: robustness.by_shift is not a JSON object of objects", path=source, hint="re-run bench"
        )
    out["by_shift"] = {
        str(name): {
            **v,
            "accuracy": None
            if v.get("accuracy") is None
            else _fraction(v["accuracy"], f"{what}: robustness.by_shift.{printable(name, 40)}.accuracy", source),
        }
        for name, v in by_shift.items()
    }
    return out


@dataclass
class BenchResult:
    """A benchmark: its rows (one per model and device), the test data, the settings and the machines."""

    rows: list[BenchRow]
    machine: dict[str, Any] = field(default_factory=dict)  # the machine bench ran on (the local device)
    data: dict[str, Any] = field(default_factory=dict)  # test set summary: path, images, classes, skipped
    settings: dict[str, Any] = field(default_factory=dict)  # threads, threads_used, runs, warmup, min_accuracy, ...
    devices: dict[str, dict[str, Any]] = field(default_factory=dict)  # device -> its machine ("targets")
    device_runs: dict[str, dict[str, Any]] = field(default_factory=dict)  # device -> how it ran ("target_runs")
    device_errors: dict[str, str] = field(default_factory=dict)  # device -> why nothing was measured there
    skipped: list[dict[str, Any]] = field(default_factory=list)  # manifest entries not measured, with why
    run_dir: str | None = None
    created: str | None = None
    edge_export: str | None = None
    seconds: float | None = None
    reference: str | None = None  # the reference row's name ("keras", "source") when it was measured
    format_version: int = BENCH_VERSION
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def failed(self) -> list[str]:
        return [r.id for r in self.rows if not r.ok]

    @property
    def below_min_accuracy(self) -> list[str]:
        return [r.id for r in self.rows if r.below_min_accuracy]

    @property
    def ok(self) -> bool:
        return not self.failed and not self.below_min_accuracy and not self.device_errors

    @property
    def multi_device(self) -> bool:
        return len(self.devices) > 1 or any(r.device != LOCAL for r in self.rows)

    @property
    def min_accuracy(self) -> float | None:
        return self.settings.get("min_accuracy")

    def local_rows(self) -> list[BenchRow]:
        return [r for r in self.rows if r.device == LOCAL]

    def problems(self, min_accuracy: float | None) -> list[str]:
        """Why this benchmark does not pass, with the one ``BenchRow.below`` rule (bench's exit status
        and the build's gate): failed rows, rows below ``min_accuracy``, devices that could not measure."""
        out = [f"could not measure {r.id}: {r.error or 'failed'}" for r in self.rows if not r.ok]
        out += [
            f"{r.id}: accuracy {r.accuracy:.2%} below the minimum {min_accuracy:.2%}"
            for r in self.rows
            if r.below(min_accuracy)
        ]
        out += [f"could not measure on {name}: {message}" for name, message in self.device_errors.items()]
        return out

    def to_dict(self) -> dict[str, Any]:
        out = {
            "bench_version": self.format_version,
            "edge_export": self.edge_export,
            "created": self.created,
            "run_dir": self.run_dir,
            "data": self.data,
            "settings": self.settings,
            "reference": self.reference,
            "artifacts": [r.to_dict() for r in self.rows],
            "skipped": self.skipped,
            "failed": self.failed,
            "below_min_accuracy": self.below_min_accuracy,
            "ok": self.ok,
            "machine": self.machine,
            "targets": self.devices,
            "seconds": self.seconds,
        }
        if self.device_runs:
            out["target_runs"] = self.device_runs
        if self.device_errors:
            out["target_errors"] = self.device_errors
        out.update(self.extra)
        return out

    @classmethod
    def from_dict(cls, data: Any, *, source: str | Path | None = None) -> BenchResult:
        version = check_format_version(data, "bench_version", BENCH_VERSION, what="bench.json", source=source)
        # what only describes (a device's CPU, OS and versions, errors, reasons, dates) reaches screens and reports:
        # through the printable filter here, once; names and paths the report opens (data, misclassified) are kept
        # as they are and filtered where they are shown
        data = _escaped(data, DESCRIPTIVE)
        rows = data.get("artifacts", [])
        if not isinstance(rows, list):
            raise EdgeExportError("bench.json: artifacts is not a list", path=source, hint="re-run bench")
        rows = [_escaped(r, ROW_DESCRIPTIVE) if isinstance(r, dict) else r for r in rows]

        def mapping(*keys: str) -> dict[str, Any]:
            for key in keys:
                value = data.get(key)
                if value is not None:
                    if not isinstance(value, dict):
                        raise EdgeExportError(
                            f"bench.json: {key} is not a JSON object", path=source, hint="re-run bench"
                        )
                    return value
            return {}

        skipped = data.get("skipped") or []
        if not isinstance(skipped, list):
            raise EdgeExportError("bench.json: skipped is not a list", path=source, hint="re-run bench")
        seconds = data.get("seconds")
        known = {
            "bench_version",
            "edge_export",
            "created",
            "run_dir",
            "data",
            "settings",
            "reference",
            "artifacts",
            "skipped",
            "failed",
            "below_min_accuracy",
            "ok",
            "machine",
            "targets",
            "devices",
            "target_runs",
            "device_runs",
            "target_errors",
            "device_errors",
            "seconds",
        }
        return cls(
            rows=[BenchRow.from_dict(r, source=source) for r in rows],
            machine=mapping("machine"),
            data=mapping("data"),
            settings=mapping("settings"),
            devices=mapping("targets", "devices"),
            device_runs=mapping("target_runs", "device_runs"),
            device_errors={str(k): str(v) for k, v in mapping("target_errors", "device_errors").items()},
            skipped=[s for s in skipped if isinstance(s, dict)],
            run_dir=data.get("run_dir") if isinstance(data.get("run_dir"), str) else None,
            created=data.get("created") if isinstance(data.get("created"), str) else None,
            edge_export=data.get("edge_export") if isinstance(data.get("edge_export"), str) else None,
            seconds=None if seconds is None else finite_number(seconds, what="bench.json: seconds", source=source),
            reference=data.get("reference") if isinstance(data.get("reference"), str) else None,
            format_version=version,
            extra={k: v for k, v in data.items() if k not in known},
        )

    @classmethod
    def read(cls, path: str | Path) -> BenchResult:
        """A bench.json file (bounded read); EdgeExportError naming it when it is missing or damaged."""
        return cls.from_dict(read_json(path), source=path)
