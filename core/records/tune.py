"""``edge-export tune``'s records: one latency measurement (``LatencyRecord``, one file per backbone x size x
precision in ``TUNE_DIR/latency/``), one candidate (``CandidateRecord``, one file per finished candidate in
``TUNE_DIR/candidates/``) and the search's result (``TuneResult``, ``TUNE_DIR/tune.json``).

``from_dict`` is the one reader of each: numbers and names from the files are untrusted (core.untrusted).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal, overload

from edge_export.core.errors import EdgeExportError
from edge_export.core.records import check_format_version
from edge_export.core.untrusted import finite_number, printable, read_json

TUNE_VERSION = 1

# a candidate's status: what happened to it (only "done" candidates have a measured quantized accuracy)
DONE, PRUNED, FAILED = "done", "pruned", "failed"
NOT_PROMOTED, NOT_QUANTIZED, SKIPPED = "not_promoted", "not_quantized", "skipped_budget"
STATUSES = (DONE, PRUNED, FAILED, NOT_PROMOTED, NOT_QUANTIZED, SKIPPED)


def read_kept(path: Path, record_type: Any, fingerprint: str, echo: Any, redo: str) -> Any:
    """The record an earlier run kept at ``path`` (``record_type.read``) when its fingerprint is ``fingerprint``;
    else None (missing, stale, or unusable: said through ``echo`` with what happens instead, ``redo``)."""
    if not path.is_file():
        return None
    try:
        record = record_type.read(path)
    except EdgeExportError as exc:
        echo(f"{path.name} is unusable ({exc.message}); {redo}")
        return None
    return record if record.fingerprint == fingerprint else None


def _number(data: dict[str, Any], key: str, what: str, source: Any) -> float | None:
    value = data.get(key)
    return None if value is None else finite_number(value, what=f"{what}: {key}", source=source)


@overload
def _text(data: dict[str, Any], key: str, what: str, source: Any, optional: Literal[False] = False) -> str: ...


@overload
def _text(data: dict[str, Any], key: str, what: str, source: Any, optional: bool) -> str | None: ...


def _text(data: dict[str, Any], key: str, what: str, source: Any, optional: bool = False) -> str | None:
    value = data.get(key)
    if value is None and optional:
        return None
    if not isinstance(value, str):
        raise EdgeExportError(
            f"{what}: {key} is not a string", path=source, hint="delete the file; tune measures it again"
        )
    return printable(value, 400)


def _of_type(data: dict[str, Any], key: str, kind: type, what: str, source: Any, hint: str) -> Any:
    """``data[key]``: a ``kind`` (list or dict), empty when absent; anything else is a malformed record."""
    value = data.get(key)
    if value is None:
        return kind()
    if not isinstance(value, kind):
        raise EdgeExportError(
            f"{what}: {key} is not {'a list' if kind is list else 'an object'}", path=source, hint=hint
        )
    return value


def model_key(backbone: str, size: int, blocks: int, distilled: bool = False) -> str:
    """The name of one trained model of a search (its run folder under TUNE_DIR/runs)."""
    return f"{backbone}-{size}-ft{blocks}" + ("-kd" if distilled else "")


def candidate_key(backbone: str, size: int, blocks: int, precision: str, distilled: bool = False) -> str:
    """The name of one candidate: its trained model and the precision it is exported at."""
    return f"{model_key(backbone, size, blocks, distilled)}-{precision}"


@dataclass
class LatencyRecord:
    """A random-weight model of one backbone x size x precision timed on the device (1 thread)."""

    backbone: str
    image_size: int
    precision: str
    device: str
    p50_ms: float | None = None
    p90_ms: float | None = None
    size_bytes: int | None = None
    seconds: float = 0.0  # export + measurement
    min_ms: float | None = None  # the fastest call: the uncontended time on a busy (shared) machine
    status: str = "ok"  # or "failed" (error says why)
    error: str | None = None
    fingerprint: str = ""  # of what the number depends on; another one means: measure again
    # with tune.latency_reference: the reference timed in the same round (tuning/relative.py), and this model's
    # latency as a ratio to it (tune.latency_statistic; the median of its rounds, ``ratios``)
    reference_p50_ms: float | None = None
    reference_min_ms: float | None = None
    ratio: float | None = None
    ratios: list[float] = field(default_factory=list)

    @property
    def key(self) -> str:
        return f"{self.backbone}-{self.image_size}-{self.precision}"

    @property
    def ok(self) -> bool:
        return self.status == "ok" and self.p50_ms is not None

    def statistic(self, name: str) -> float | None:
        """``p50`` or ``min`` in ms (tune.latency_statistic); None when not measured."""
        return {"p50": self.p50_ms, "min": self.min_ms}[name]

    def to_dict(self) -> dict[str, Any]:
        return {"format_version": TUNE_VERSION, **asdict(self)}

    @classmethod
    def from_dict(cls, data: Any, *, source: str | Path | None = None) -> LatencyRecord:
        check_format_version(data, "format_version", TUNE_VERSION, what="a tune latency record", source=source)
        what = "tune latency record"
        size = _number(data, "size_bytes", what, source)
        return cls(
            backbone=_text(data, "backbone", what, source),
            image_size=int(_number(data, "image_size", what, source) or 0),
            precision=_text(data, "precision", what, source),
            device=_text(data, "device", what, source),
            p50_ms=_number(data, "p50_ms", what, source),
            p90_ms=_number(data, "p90_ms", what, source),
            size_bytes=None if size is None else int(size),
            seconds=_number(data, "seconds", what, source) or 0.0,
            min_ms=_number(data, "min_ms", what, source),
            status=_text(data, "status", what, source),
            error=_text(data, "error", what, source, optional=True),
            fingerprint=_text(data, "fingerprint", what, source),
            reference_p50_ms=_number(data, "reference_p50_ms", what, source),
            reference_min_ms=_number(data, "reference_min_ms", what, source),
            ratio=_number(data, "ratio", what, source),
            ratios=[
                finite_number(v, what=f"{what}: ratios", source=source)
                for v in _of_type(data, "ratios", list, what, source, "delete the file; tune measures it again")
            ],
        )

    @classmethod
    def read(cls, path: Path) -> LatencyRecord:
        return cls.from_dict(read_json(path), source=path)


@dataclass
class CandidateRecord:
    """One point of the search space and what the search learned about it."""

    backbone: str
    image_size: int
    fine_tune_blocks: int  # 0: head only (train.fine_tune.enabled=false)
    precision: str
    status: str = SKIPPED
    val_accuracy: float | None = None  # of the quantized artifact on the validation split (parity)
    keras_val_accuracy: float | None = None  # the trained Keras model's (the screen before quantizing)
    p50_ms: float | None = None  # the random-weight model of this backbone x size x precision, on the device
    p90_ms: float | None = None
    min_ms: float | None = None
    latency_ms: float | None = None  # what the search ranks and limits by: p50_ms or min_ms (tune.latency_statistic)
    latency_ratio: float | None = None  # latency_ms / the reference's, timed together (tune.latency_reference)
    size_bytes: int | None = None
    robustness_accuracy: float | None = None  # under the bench's camera-like shifts, when measured
    seconds: dict[str, float] = field(default_factory=dict)  # latency / train / export of its model (shared)
    reasons: list[str] = field(default_factory=list)  # why pruned, failed or not evaluated
    run_dir: str | None = None  # the candidate's training run folder, relative to TUNE_DIR
    fingerprint: str = ""
    distilled: bool = False  # trained with a teacher's soft targets (tune.distill)

    @property
    def key(self) -> str:
        return candidate_key(self.backbone, self.image_size, self.fine_tune_blocks, self.precision, self.distilled)

    def to_dict(self) -> dict[str, Any]:
        return {"format_version": TUNE_VERSION, "key": self.key, **asdict(self)}

    @classmethod
    def from_dict(cls, data: Any, *, source: str | Path | None = None) -> CandidateRecord:
        check_format_version(data, "format_version", TUNE_VERSION, what="a tune candidate record", source=source)
        what = f"tune candidate {printable(data.get('key'), 80)}"
        status = _text(data, "status", what, source)
        if status not in STATUSES:
            raise EdgeExportError(
                f"{what}: unknown status {status!r}", path=source, hint="delete the file; tune redoes it"
            )
        redo = "delete the file; tune redoes it"
        seconds, reasons = (
            _of_type(data, "seconds", dict, what, source, redo),
            _of_type(data, "reasons", list, what, source, redo),
        )
        size = _number(data, "size_bytes", what, source)
        return cls(
            backbone=_text(data, "backbone", what, source),
            image_size=int(_number(data, "image_size", what, source) or 0),
            fine_tune_blocks=int(_number(data, "fine_tune_blocks", what, source) or 0),
            precision=_text(data, "precision", what, source),
            status=status,
            val_accuracy=_number(data, "val_accuracy", what, source),
            keras_val_accuracy=_number(data, "keras_val_accuracy", what, source),
            p50_ms=_number(data, "p50_ms", what, source),
            p90_ms=_number(data, "p90_ms", what, source),
            min_ms=_number(data, "min_ms", what, source),
            latency_ms=_number(data, "latency_ms", what, source),
            latency_ratio=_number(data, "latency_ratio", what, source),
            size_bytes=None if size is None else int(size),
            robustness_accuracy=_number(data, "robustness_accuracy", what, source),
            seconds={
                printable(k, 40): finite_number(v, what=f"{what}: seconds", source=source) for k, v in seconds.items()
            },
            reasons=[printable(r, 400) for r in reasons],
            run_dir=_text(data, "run_dir", what, source, optional=True),
            fingerprint=_text(data, "fingerprint", what, source),
            distilled=data.get("distilled") is True,
        )

    @classmethod
    def read(cls, path: Path) -> CandidateRecord:
        return cls.from_dict(read_json(path), source=path)


@dataclass
class TuneResult:
    """tune.json: every candidate, the chosen one and why, the constraints, where the time went."""

    candidates: list[CandidateRecord]
    chosen: str | None  # a candidate key, or None (why says which constraint no candidate met)
    why: str
    binding: list[str]  # the constraints that decided the choice (e.g. "max_latency_ms")
    constraints: dict[str, Any]
    device: str
    seconds: dict[str, float]  # per phase: latency, train_heads, fine_tune, quantize, robustness, total
    chosen_config: str | None = None  # the config file (TUNE_DIR-relative) that `edge-export build --config` takes
    space: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def candidate(self, key: str | None) -> CandidateRecord | None:
        return next((c for c in self.candidates if c.key == key), None)

    def to_dict(self) -> dict[str, Any]:
        return {
            "format_version": TUNE_VERSION,
            "chosen": self.chosen,
            "why": self.why,
            "binding": list(self.binding),
            "constraints": self.constraints,
            "device": self.device,
            "seconds": self.seconds,
            "chosen_config": self.chosen_config,
            "space": self.space,
            "notes": list(self.notes),
            "candidates": [c.to_dict() for c in self.candidates],
        }

    @classmethod
    def from_dict(cls, data: Any, *, source: str | Path | None = None) -> TuneResult:
        check_format_version(data, "format_version", TUNE_VERSION, what="tune.json", source=source)
        candidates = data.get("candidates")
        if not isinstance(candidates, list):
            raise EdgeExportError("tune.json has no candidate list", path=source, hint="re-run `edge-export tune`")

        def of_type(key: str, kind: type) -> Any:
            return _of_type(data, key, kind, "tune.json", source, "re-run `edge-export tune`")

        seconds = of_type("seconds", dict)
        return cls(
            candidates=[CandidateRecord.from_dict(c, source=source) for c in candidates],
            chosen=_text(data, "chosen", "tune.json", source, optional=True),
            why=_text(data, "why", "tune.json", source),
            binding=[printable(b, 80) for b in of_type("binding", list)],
            constraints=of_type("constraints", dict),
            device=_text(data, "device", "tune.json", source),
            seconds={
                printable(k, 40): finite_number(v, what="tune.json: seconds", source=source) for k, v in seconds.items()
            },
            chosen_config=_text(data, "chosen_config", "tune.json", source, optional=True),
            space=of_type("space", dict),
            notes=[printable(n, 400) for n in of_type("notes", list)],
        )

    @classmethod
    def read(cls, path: Path) -> TuneResult:
        return cls.from_dict(read_json(path), source=path)
