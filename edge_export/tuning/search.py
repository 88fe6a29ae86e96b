"""The search of ``edge-export tune``: what makes it cheap, in order.

1. Latency (latency.py): one random-weight model per backbone x size x precision, timed on the device;
   candidates over ``tune.max_latency_ms`` or ``tune.max_size_mb`` are pruned before any training.
2. Cheap heads first: for every (backbone, size) left, the head alone is trained on frozen-base features
   (the trainer's cached mode: the base runs once per backbone x size and every head epoch reuses its
   activations) and scored on the validation split.
3. Successive halving: only the best ``tune.promote`` of the (backbone, size) pairs, the accuracy/latency
   frontier first, are fine-tuned at the space's depths (1..3 blocks), shallowest first and only while going
   deeper pays (``tune.depth_patience``: depths in a row without a gain before the pair stops). Each depth is
   its own training run, which caches the frozen part below ITS cut (the trainer's cached fine-tuning): the
   frozen pass is shared by the model's int8 and fp16 candidates, not yet across depths.
4. Distillation (``tune.distill``: "auto" or a run folder), near the frontier only: the teacher is the named
   run, or the more accurate of the search's best trained model (of equals, the fastest) and the build's own
   model (``model.*`` as configured: the default build's), trained once into ``TUNE_DIR/runs/teacher`` unless
   the search trained that backbone and size itself. The ``tune.distill_top`` trained models the frontier ranks
   first (those below the teacher first, one per backbone x size) are trained again with its soft targets
   (train.distill.*); their run folders share ``TUNE_DIR/distill``, so the teacher labels the photos and views
   once for all students.
5. Quantization only near the frontier: the ``tune.quantize_top`` trained models most likely to win are
   exported (int8 / fp16, the build's converters) and their artifacts' validation accuracy measured (the
   export's parity check on the validation split), with the accuracy under the bench's camera-like shifts
   (``benchmarks.robustness``) on the validation images. Candidates train on ``TUNE_DIR/data``: links to
   the data's train/ and validation/ only, so test images are never read.
6. The choice (``choose``): with ``tune.min_accuracy``, the fastest candidate at or above it; else the
   most accurate within the latency and size limits; robustness breaks ties (and is a constraint with
   ``tune.min_robustness``). Latency is ``tune.latency_statistic`` (p50, or min on a busy machine). The
   result says which constraint bound the choice.

Every training run is a build (``pipeline.runner.build``: stages train, then export) in its own run
folder under ``TUNE_DIR/runs/``, so a killed search resumes each one like ``build`` (finished stages are
skipped by fingerprint); every finished candidate is one record in ``TUNE_DIR/candidates/`` written
atomically, and a re-run with the same settings keeps it instead of redoing it.
"""

from __future__ import annotations

import copy
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edge_export.benchmarks.robustness import evaluate
from edge_export.core import __version__
from edge_export.core.atomic import remove_partials, write_json
from edge_export.core.config import Config, load_config
from edge_export.core.echo import Echo
from edge_export.core.errors import EdgeExportError
from edge_export.core.hashing import fingerprint
from edge_export.core.pause import pause_point
from edge_export.core.records.tune import (
    DONE,
    FAILED,
    NOT_PROMOTED,
    NOT_QUANTIZED,
    PRUNED,
    SKIPPED,
    CandidateRecord,
    TuneResult,
    model_key,
    read_kept,
)
from edge_export.core.run_folder import RunFolder, TuneFolder
from edge_export.core.run_lock import locked_run
from edge_export.core.untrusted import read_json
from edge_export.export.data import load_images
from edge_export.export.manifest import read_manifest
from edge_export.pipeline.runner import build
from edge_export.runtime.classifier import Classifier
from edge_export.trainer.backbones import get_backbone
from edge_export.trainer.datasets import Split, scan_dataset
from edge_export.trainer.named_datasets import resolve_data
from edge_export.trainer.run import recorded_config
from edge_export.tuning.latency import LatencyTable, Measure, device_measure, table_measure
from edge_export.tuning.output import write_outputs
from edge_export.tuning.space import PRECISION_FORMATS, Point, candidate_config, pareto, search_space

Event = Callable[[dict], None]
QUANT_SLACK = 0.01  # with min_accuracy: a model this far below it (Keras, validation) may still be quantized


@dataclass
class Search:
    config: Config
    folder: TuneFolder
    echo: Echo
    event: Event
    deadline: float | None
    train_config: Config  # ``config`` with data.path = the validation-only view (no test/)
    records: dict[str, CandidateRecord] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    model_seconds: dict[str, dict[str, float]] = field(default_factory=dict)
    listing: str = ""
    teacher: str | None = None  # the distillation teacher's run folder, once chosen (step 4)
    teacher_accuracy: float | None = None

    def over_budget(self) -> bool:
        return self.deadline is not None and time.perf_counter() > self.deadline

    def add_time(self, phase: str, seconds: float) -> None:
        self.seconds[phase] = round(self.seconds.get(phase, 0.0) + seconds, 2)

    def candidate_fingerprint(self, p: Point) -> str:
        c = self.config.to_dict()
        t = c["tune"]
        return fingerprint(
            "tune-candidate",
            __version__,
            p.key,
            self.listing,
            c["data"],
            c["model"],
            c["train"],
            c["export"],
            t["device"],
            t["max_latency_ms"],
            t["max_size_mb"],
            t["latency_table"],
            t["latency_reference"],
            t["max_latency_ratio"],
            t["latency_runs"],
            t["latency_warmup"],
            t["latency_statistic"],
            *([t["distill"]] if p.distilled else []),  # (an undistilled candidate's does not change with it)
        )

    def finish(self, record: CandidateRecord) -> None:
        """A candidate is final: its one record, atomically (a re-run keeps it)."""
        write_json(self.folder.candidate_record(record.key), record.to_dict())
        self.event(
            {
                "event": "tune_candidate",
                "key": record.key,
                "status": record.status,
                "val_accuracy": record.val_accuracy,
                "latency_ms": record.latency_ms,
            }
        )
        pause_point(f"tune.candidate.{record.key}")  # tests: kill after a finished candidate


def tune(
    config: Config,
    folder: TuneFolder,
    *,
    measure: Measure | None = None,
    echo: Echo = print,
    event: Event | None = None,
    remote: Any = None,
) -> TuneResult:
    """Run (or resume) the search of ``config.tune`` into ``folder``; returns what tune.json holds.

    ``measure``: how a backbone x size x precision is timed (default: random-weight models on
    ``tune.device``, or ``tune.latency_table``); tests pass a fake device here. ``remote``: the
    ``deploy.remote.RemoteSettings`` of an ssh:// device (ssh options, its Python, its folder).
    """
    started = time.perf_counter()
    t = config.tune
    event = event or (lambda e: None)
    points, notes = search_space(config)
    dataset = scan_dataset(
        resolve_data(config.data.path), config.data.validation_split, config.train.seed, config.data.split
    )
    folder.root.mkdir(parents=True, exist_ok=True)
    for sub in (folder.root / TuneFolder.CANDIDATES, folder.latency_dir):
        if sub.is_dir():
            remove_partials(sub)
    deadline = started + t.budget_minutes * 60 if t.budget_minutes else None
    listing = fingerprint(dataset.listing())
    s = Search(
        config, folder, echo, event, deadline, _without_test(config, dataset.root, folder, echo), listing=listing
    )
    if measure is None:
        measure = (
            table_measure(t.latency_table, t.device)
            if t.latency_table
            else device_measure(folder, config, dataset.class_names, echo, remote)
        )
    table = LatencyTable(folder, config, dataset.num_classes, measure, echo, remote)

    kept = 0
    for p in points:
        record = _earlier(s, p)
        if record is None:
            record = CandidateRecord(
                p.backbone,
                p.image_size,
                p.fine_tune_blocks,
                p.precision,
                fingerprint=s.candidate_fingerprint(p),
                distilled=p.distilled,
            )
        else:
            kept += 1
        s.records[p.key] = record
    echo(
        f"tune: {len(points)} candidates ({len({p.backbone for p in points})} backbone(s), sizes "
        f"{sorted({p.image_size for p in points})}, fine-tune blocks {sorted({p.fine_tune_blocks for p in points})}, "
        f"precisions {list(dict.fromkeys(p.precision for p in points))}) on {t.device}"
        + (f"; {kept} finished earlier, kept" if kept else "")
    )

    _latency(s, points, table)
    heads = _heads(s, points)
    _fine_tune(s, points, heads)
    _distil(s, points)
    _quantize(s, points)
    for r in s.records.values():
        if r.status == SKIPPED and not r.reasons:
            r.reasons.append("not reached within the budget (tune.budget_minutes)")
    s.seconds["total"] = round(time.perf_counter() - started, 2)
    chosen, why, binding = choose(list(s.records.values()), config)
    result = TuneResult(
        candidates=sorted(
            s.records.values(), key=lambda r: (r.backbone, r.image_size, r.fine_tune_blocks, r.precision)
        ),
        chosen=chosen,
        why=why,
        binding=binding,
        constraints={
            "max_latency_ms": t.max_latency_ms,
            "max_size_mb": t.max_size_mb,
            "min_accuracy": t.min_accuracy,
            "budget_minutes": t.budget_minutes,
            "max_latency_ratio": t.ratio_ceiling,
            "latency_reference": t.latency_reference,
        },
        device=t.device,
        seconds=s.seconds,
        space={
            "backbones": sorted({p.backbone for p in points}),
            "image_sizes": sorted({p.image_size for p in points}),
            "fine_tune_blocks": sorted({p.fine_tune_blocks for p in points}),
            "precisions": list(t.precisions),
            "candidates": len(points),
            "latency_statistic": t.latency_statistic,
            **(
                {"distill": t.distill, "distill_teacher": s.teacher, "distill_teacher_accuracy": s.teacher_accuracy}
                if t.distill
                else {}
            ),
        },
        notes=notes,
    )
    write_outputs(folder, result, config, echo)
    event({"event": "tune_finished", "chosen": chosen, "binding": binding})
    return result


def _without_test(config: Config, root: Path, folder: TuneFolder, echo: Echo) -> Config:
    """``config`` training on ``TUNE_DIR/data``: links to the data's train/ and validation/ only, so no
    candidate's training, export or robustness check ever reads a test image (and none is decoded)."""
    if not (root / "test").is_dir():
        return config
    view = folder.data_view
    view.mkdir(exist_ok=True)
    try:
        for split in ("train", "validation"):
            link, target = view / split, (root / split).resolve()
            if not target.is_dir():
                continue
            if link.is_symlink() and Path(os.readlink(link)) == target:
                continue
            tmp = view / f".{split}.partial"
            if tmp.is_symlink() or tmp.exists():
                tmp.unlink()
            tmp.symlink_to(target, target_is_directory=True)
            os.replace(tmp, link)  # atomically (a link to an earlier --data is replaced)
    except OSError as exc:  # no symlinks here (some file systems): train on the data itself
        echo(f"tune: cannot link the data without test/ ({exc.strerror}); the trainer also scores test/, unused")
        return config
    c = copy.deepcopy(config)
    c.data.path = str(view.resolve())
    return load_config(c)


def _earlier(s: Search, p: Point) -> CandidateRecord | None:
    """The finished record of ``p`` from an earlier run of this search (same settings), if any."""
    record = read_kept(
        s.folder.candidate_record(p.key),
        CandidateRecord,
        s.candidate_fingerprint(p),
        lambda text: s.echo(f"tune: {text}"),
        "redoing that candidate",
    )
    return record if record is not None and record.status in (DONE, PRUNED, FAILED) else None


# ------------------------------------------------------------------------------------------ 1. latency


def _latency(s: Search, points: list[Point], table: LatencyTable) -> None:
    t = s.config.tune
    combos = sorted({(p.backbone, p.image_size, p.precision) for p in points}, key=lambda c: (c[1], c[0], c[2]))
    started = time.perf_counter()
    if s.over_budget():  # nothing new is measured: what was measured earlier still counts
        found = {c: table.cached(*c) for c in combos}
        latencies = {c: r for c, r in found.items() if r is not None}
    else:
        latencies = table.get(combos)
    for c in combos:
        record = latencies.get(c)
        if record is None:
            continue
        shown = (
            (
                f"p50 {record.p50_ms:.2f} ms, p90 {record.p90_ms or 0:.2f} ms"
                + (f", min {record.min_ms:.2f} ms" if record.min_ms is not None else "")
            )
            if record.ok
            else f"FAILED: {record.error}"
        )
        if record.ok and record.ratio is not None:
            shown += (
                f", {record.ratio:.2f}x the reference ({t.latency_statistic} {_reference_ms(record, t):.2f} ms"
                f"{f'; median of {len(record.ratios)} rounds' if len(record.ratios) > 1 else ''})"
            )
        if record.ok and record.size_bytes:
            shown += f", {record.size_bytes / 1e6:.2f} MB"
        s.echo(f"latency {record.key} on {record.device}: {shown}")
    s.add_time("latency", time.perf_counter() - started)

    for p in points:
        r = s.records[p.key]
        lat = latencies.get((p.backbone, p.image_size, p.precision))
        if lat is None:
            continue
        r.p50_ms, r.p90_ms, r.min_ms, r.size_bytes = lat.p50_ms, lat.p90_ms, lat.min_ms, lat.size_bytes
        r.latency_ms = lat.statistic(t.latency_statistic)
        r.latency_ratio = lat.ratio
        r.seconds["latency"] = lat.seconds
        if r.status in (DONE, PRUNED, FAILED):
            continue
        if not lat.ok or r.latency_ms is None:
            r.status, r.reasons = FAILED, [f"latency not measured: {lat.error or t.latency_statistic + ' missing'}"]
            s.finish(r)
            continue
        reasons = []
        if t.max_latency_ms is not None and r.latency_ms > t.max_latency_ms:
            reasons.append(f"latency {t.latency_statistic} {r.latency_ms:.2f} ms > max {t.max_latency_ms:g} ms")
        if (
            t.ratio_ceiling is not None
            and t.latency_reference is not None  # (set whenever the ceiling is)
            and (r.latency_ratio is None or r.latency_ratio > t.ratio_ceiling)
        ):
            measured = "not measured" if r.latency_ratio is None else f"{r.latency_ratio:.2f}x"
            reasons.append(
                f"latency ratio {measured} the reference's ({Path(t.latency_reference).name}, timed with it) "
                f"> max {t.ratio_ceiling:g}x"
            )
        if t.max_size_mb is not None and lat.size_bytes is not None and lat.size_bytes > t.max_size_mb * 1e6:
            reasons.append(f"size {lat.size_bytes / 1e6:.2f} MB > max {t.max_size_mb:g} MB")
        if reasons:
            r.status, r.reasons = PRUNED, reasons
            s.finish(r)
    pruned = sum(r.status == PRUNED for r in s.records.values())
    s.echo(f"tune: {pruned} of {len(points)} candidates pruned by the device's limits before any training")


def _known(value: float | None) -> float:
    """A number the candidate has here: the callers consider only candidates that were measured (``_alive``,
    ``choose``'s evaluated ones)."""
    assert value is not None
    return value


def _reference_ms(record: Any, t: Any) -> float:
    return (record.reference_p50_ms if t.latency_statistic == "p50" else record.reference_min_ms) or 0.0


def _alive(s: Search, p: Point) -> bool:
    """Still a candidate: measured, within the limits, not failed (finished ones are alive if done)."""
    r = s.records[p.key]
    return r.latency_ms is not None and r.status in (SKIPPED, DONE, NOT_PROMOTED, NOT_QUANTIZED)


# ---------------------------------------------------------------------------------- training (builds)


def _train(s: Search, backbone: str, size: int, blocks: int, phase: str, teacher: str | None = None) -> float | None:
    """Train (or find trained) the model (distilled from ``teacher``, a run folder, when given); its Keras
    validation accuracy, or None when it failed."""
    key = model_key(backbone, size, blocks, teacher is not None)
    run = s.folder.run(key)
    s.echo(f"tune: {phase} {key}")
    started = time.perf_counter()
    if teacher is not None:
        _share_teacher_pass(s, run.root)
    try:
        config = candidate_config(s.train_config, backbone, size, blocks, teacher=teacher)
        result = _build_candidate(s, key, config, ["train"])
        metrics = read_json(run.metrics)
        accuracy = float(metrics["validation"]["accuracy"])
    except (EdgeExportError, KeyError, TypeError, ValueError) as exc:
        s.echo(f"tune: {key} FAILED: {getattr(exc, 'message', exc)}")
        s.model_seconds.setdefault(key, {})["train"] = round(time.perf_counter() - started, 2)
        s.add_time(phase, time.perf_counter() - started)
        return None
    seconds = time.perf_counter() - started
    s.model_seconds.setdefault(key, {})["train"] = round(result.seconds.get("train", 0.0), 2)
    s.add_time(phase, seconds)
    s.echo(f"tune: {key} validation accuracy {accuracy:.2%} (Keras; {'trained' if result.ran else 'trained earlier'})")
    return accuracy


def _share_teacher_pass(s: Search, run_root: Path) -> None:
    """A distilled candidate's ``distill/`` (the teacher's targets, trainer/distill.py) is a link to
    ``TUNE_DIR/distill``: every student reuses the one teacher pass. Without links, each makes its own."""
    shared, link = s.folder.root / TuneFolder.DISTILL, run_root / RunFolder.DISTILL
    if link.is_symlink() or link.exists():
        return
    try:
        shared.mkdir(exist_ok=True)
        run_root.mkdir(parents=True, exist_ok=True)
        link.symlink_to(Path("..", "..", TuneFolder.DISTILL), target_is_directory=True)
    except OSError as exc:
        s.echo(f"tune: cannot share the teacher's targets between students ({exc.strerror}); each makes its own")


def _build_candidate(s: Search, key: str, config: Any, stages: list[str]) -> Any:
    """Build a candidate's run folder holding its lock (like every command that writes a run folder): a
    ``train --out`` into the same folder meanwhile fails at once, and so does this candidate if one is running."""
    command = f"edge-export tune ({key})"
    with locked_run(s.folder.run(key), command) as run:
        return build(config, run, stages=stages, command=command, echo=_quiet(s.echo))


def _quiet(echo: Echo) -> Echo:
    """The build's own lines, less its dataset table (printed once per trained model otherwise)."""
    return lambda line: echo(f"  {line}") if line.startswith("==") else None


def _heads(s: Search, points: list[Point]) -> dict[tuple[str, int], float]:
    """2. Head only (frozen base, cached features) for every (backbone, size) with a live candidate."""
    pairs: dict[tuple[str, int], float] = {}
    for p in points:
        if _alive(s, p):
            pairs[p.pair] = min(pairs.get(p.pair, math.inf), _known(s.records[p.key].latency_ms))
    heads: dict[tuple[str, int], float] = {}
    for pair in sorted(pairs, key=lambda q: (pairs[q], q)):  # fastest first: what a budget cuts is the slow end
        if s.over_budget() and not s.folder.run(model_key(*pair, 0)).metrics.is_file():
            continue
        accuracy = _train(s, *pair, 0, "train_heads")
        if accuracy is None:
            for p in points:
                if p.pair == pair and _alive(s, p) and s.records[p.key].status != DONE:
                    r = s.records[p.key]
                    r.status, r.reasons = FAILED, ["training the head on frozen features failed (see the run folder)"]
                    r.run_dir = str(Path(TuneFolder.RUNS) / model_key(*pair, 0))
                    s.finish(r)
            continue
        heads[pair] = accuracy
        for p in points:
            if p.pair == pair and p.fine_tune_blocks == 0 and not p.distilled and _alive(s, p):
                s.records[p.key].keras_val_accuracy = accuracy
    return heads


def promote(
    heads: dict[tuple[str, int], float], latency: dict[tuple[str, int], float], fraction: float
) -> list[tuple[str, int]]:
    """Successive halving's cut: the frontier pairs (head accuracy vs latency) first, then the most accurate."""
    pairs = sorted(heads)
    n = max(1, math.ceil(fraction * len(pairs)))
    front = {pairs[i] for i in pareto([(latency[q], heads[q]) for q in pairs])}
    ranked = sorted(pairs, key=lambda q: (q not in front, -heads[q], latency[q], q))
    return ranked[:n]


def _fine_tune(s: Search, points: list[Point], heads: dict[tuple[str, int], float]) -> None:
    """3. Fine-tune the promoted pairs at every depth > 0 of the space."""
    depths = sorted({p.fine_tune_blocks for p in points if p.fine_tune_blocks > 0})
    if not depths or not heads:
        return
    latency: dict[tuple[str, int], float] = {}
    for p in points:
        if _alive(s, p) and p.pair in heads:
            latency[p.pair] = min(latency.get(p.pair, math.inf), _known(s.records[p.key].latency_ms))
    promoted = promote({q: a for q, a in heads.items() if q in latency}, latency, s.config.tune.promote)
    s.echo(
        f"tune: fine-tuning {len(promoted)} of {len(heads)} (backbone, size) pairs: "
        + ", ".join(f"{b}@{sz} (head {heads[(b, sz)]:.2%})" for b, sz in promoted)
    )
    for p in points:
        r = s.records[p.key]
        if p.fine_tune_blocks > 0 and p.pair in heads and p.pair not in promoted and r.status == SKIPPED:
            r.status = NOT_PROMOTED
            r.reasons = [
                f"not promoted: head-only validation accuracy {heads[p.pair]:.2%} ranked below the "
                f"top {s.config.tune.promote:g} of the pairs (frontier first)"
            ]
    for pair in promoted:
        _deepen(s, points, pair, depths, heads[pair])


def _deepen(s: Search, points: list[Point], pair: tuple[str, int], depths: list[int], head: float) -> None:
    """Fine-tune one promoted pair at the space's depths, shallowest first, while going deeper pays: after
    ``tune.depth_patience`` depths in a row that did not beat the pair's best shallower model (the head-only
    model included), the deeper depths are not trained (they, and their distilled twins, say why)."""
    patience = s.config.tune.depth_patience
    best, best_blocks, stale = head, 0, 0
    for blocks in depths:
        at_depth = [p for p in points if p.pair == pair and p.fine_tune_blocks == blocks and _alive(s, p)]
        live = [p for p in at_depth if not p.distilled]
        if not live:
            continue
        if patience is not None and stale >= patience:
            for p in at_depth:
                r = s.records[p.key]
                if r.status == SKIPPED and r.keras_val_accuracy is None:
                    r.status = NOT_PROMOTED
                    r.reasons = [
                        f"not trained: {stale} deeper fine-tuning depth(s) of {pair[0]}@{pair[1]} did not beat its "
                        f"best, {best:.2%} at {best_blocks} block(s) (validation; tune.depth_patience={patience})"
                    ]
            continue
        _train_points(s, live, "fine_tune", "fine-tuning failed")
        accuracy = s.records[live[0].key].keras_val_accuracy
        if accuracy is None:  # failed, or the budget was spent: neither a gain nor a loss
            continue
        if accuracy > best:
            best, best_blocks, stale = accuracy, blocks, 0
        else:
            stale += 1


def _train_points(s: Search, live: list[Point], phase: str, failure: str, teacher: str | None = None) -> None:
    """Train the one model of ``live`` (its candidates, one per precision) unless all are done, or the budget is
    spent and it was not trained earlier; each candidate gets its Keras accuracy, or ``failure``."""
    if not live or all(s.records[p.key].status == DONE for p in live):
        return
    p0 = live[0]
    if s.over_budget() and not s.folder.run(p0.model_key).metrics.is_file():
        return
    accuracy = _train(s, p0.backbone, p0.image_size, p0.fine_tune_blocks, phase, teacher=teacher)
    for p in live:
        r = s.records[p.key]
        if accuracy is None and r.status != DONE:
            r.status, r.reasons = FAILED, [f"{failure} (see the run folder)"]
            r.run_dir = str(Path(TuneFolder.RUNS) / p.model_key)
            s.finish(r)
        elif accuracy is not None:
            r.keras_val_accuracy = accuracy


# --------------------------------------------------------------------------------------- 4. distillation


def _trained_models(s: Search, points: list[Point]) -> dict[str, list[Point]]:
    """The trained models (model key -> their live candidates, one per precision) with a Keras accuracy."""
    models: dict[str, list[Point]] = {}
    for p in points:
        r = s.records[p.key]
        if _alive(s, p) and r.keras_val_accuracy is not None:
            models.setdefault(p.model_key, []).append(p)
    return models


def _estimate(s: Search, model: list[Point]) -> tuple[float, float]:
    """One trained model (its live candidates): the fastest latency among its precisions, its Keras accuracy."""
    return min(_known(s.records[p.key].latency_ms) for p in model), _known(s.records[model[0].key].keras_val_accuracy)


def _frontier_order(s: Search, models: dict[str, list[Point]]) -> list[str]:
    """The trained models, those most likely to win first: the accuracy/latency frontier (Keras accuracy, the
    fastest precision), then the most accurate; with ``tune.min_accuracy``, the fastest that may reach it."""
    t = s.config.tune

    def estimate(k: str) -> tuple[float, float]:
        return _estimate(s, models[k])

    keys = sorted(models)
    front = {keys[i] for i in pareto([estimate(k) for k in keys])}
    floor = None if t.min_accuracy is None else t.min_accuracy - QUANT_SLACK
    if floor is not None and any(estimate(k)[1] >= floor for k in keys):
        # the fastest models that may reach the minimum after quantization, frontier first
        return sorted(keys, key=lambda k: (estimate(k)[1] < floor, k not in front, estimate(k)[0], k))
    return sorted(keys, key=lambda k: (k not in front, -estimate(k)[1], estimate(k)[0], k))


def _distil(s: Search, points: list[Point]) -> None:
    """4. With ``tune.distill``: the ``distill_top`` undistilled trained models the frontier ranks first
    (``pick_students``: those less accurate than the teacher first, one per backbone x size) are trained again from
    the teacher's soft targets; the other distilled candidates are not evaluated."""
    t = s.config.tune
    twins = [p for p in points if p.distilled]
    if not t.distill or not twins:
        return
    models = _trained_models(s, [p for p in points if not p.distilled])
    teacher = _teacher(s, models)
    order = [k for k in _frontier_order(s, models) if teacher is None or s.folder.run(k).root.resolve() != teacher]
    accuracy = {k: _known(s.records[ps[0].key].keras_val_accuracy) for k, ps in models.items()}
    pairs = {k: ps[0].pair for k, ps in models.items()}
    students = pick_students(order, accuracy, pairs, s.teacher_accuracy, t.distill_top)
    for key in students if teacher is not None else []:
        live = [p for p in twins if p.model_key == f"{key}-kd" and _alive(s, p)]
        _train_points(s, live, "distill", "training with the teacher's targets failed", teacher=str(teacher))
    for p in twins:
        r = s.records[p.key]
        if r.status == SKIPPED and r.keras_val_accuracy is None and _alive(s, p):
            r.status = NOT_PROMOTED
            r.reasons = [
                "not distilled: "
                + (
                    "no teacher (see the search's output)"
                    if teacher is None
                    else f"its model is not among the {t.distill_top} trained models nearest the frontier, "
                    "one per backbone and size (tune.distill_top)"
                )
            ]


def pick_students(
    order: list[str],
    accuracy: dict[str, float],
    pairs: dict[str, tuple[str, int]],
    teacher_accuracy: float | None,
    top: int,
) -> list[str]:
    """The ``top`` students, in ``order`` (the frontier's) but those less accurate than the teacher first: one that
    already matches it on the validation photos has nothing to learn that they could show (without the teacher's
    accuracy on the same photos, a named teacher, ``order`` as it is); and one per backbone x size: two depths of
    one pair share most of the network, a second size tells the frontier more."""
    if teacher_accuracy is not None:
        order = sorted(order, key=lambda k: accuracy[k] >= teacher_accuracy)
    students: list[str] = []
    for key in order:
        if len(students) < top and all(pairs[key] != pairs[other] for other in students):
            students.append(key)
    return students


def _teacher(s: Search, models: dict[str, list[Point]]) -> Path | None:
    """The teacher's run folder: ``tune.distill`` when it names one; with ``auto``, the more accurate (Keras,
    validation) of the search's best trained model (of equals, the fastest: it labels every view) and the build's
    own model trained in ``runs/teacher`` (only where the search did not train that backbone and size itself:
    there the search has judged that pair)."""
    t = s.config.tune
    if t.distill != "auto":
        s.teacher = str(Path(str(t.distill)).expanduser().resolve())
        s.echo(f"tune: distillation teacher {s.teacher}")
        return Path(s.teacher)
    started = time.perf_counter()
    run = s.folder.run(TuneFolder.TEACHER)

    def rank(k: str) -> tuple[float, float, str]:  # the most accurate; of those, the cheapest to run over the views
        latency, accuracy = _estimate(s, models[k])
        return accuracy, -latency, k

    best = max(models, key=rank, default=None)
    own: float | None = None
    size = s.config.model.image_size or get_backbone(s.config.model.backbone).default_size
    judged = [k for k, ps in models.items() if ps[0].pair == (s.config.model.backbone, size)]
    if judged and not run.metrics.is_file():
        # the search trained that backbone and size itself (head only at least) and ranked it with the rest
        s.echo(
            f"tune: distillation teacher: the build's own model ({s.config.model.backbone} at {size} px) is not "
            f"trained: the search trained that backbone and size ({', '.join(sorted(judged))}) and judged it "
            "with the rest"
        )
    elif not (s.over_budget() and not run.metrics.is_file()):
        s.echo(
            f"tune: distillation teacher: the build's own model ({s.config.model.backbone} at {size} px), "
            f"trained in {run.root}"
        )
        c = copy.deepcopy(s.train_config)
        c.train.distill.teacher, c.build.stages = None, ["train"]
        try:
            _build_candidate(s, TuneFolder.TEACHER, load_config(recorded_config(c)), ["train"])
            own = float(read_json(run.metrics)["validation"]["accuracy"])
        except (EdgeExportError, KeyError, TypeError, ValueError) as exc:
            s.echo(f"tune: the teacher FAILED: {getattr(exc, 'message', exc)}")
    s.add_time("teacher", time.perf_counter() - started)
    searched = None if best is None else _known(s.records[models[best][0].key].keras_val_accuracy)
    if own is None and searched is None:
        s.echo("tune: no teacher (none trained): no distilled candidate")
        return None
    if own is not None and (searched is None or own >= searched):
        s.teacher, s.teacher_accuracy = str(run.root.resolve()), own
    else:
        assert best is not None and searched is not None
        s.teacher, s.teacher_accuracy = str(s.folder.run(best).root.resolve()), searched
    s.echo(
        f"tune: distillation teacher {s.teacher} (validation accuracy {s.teacher_accuracy:.2%}; "
        + (f"the build's own model {own:.2%}, " if own is not None else "")
        + (f"the search's best {best} {searched:.2%})" if best is not None else "no searched model)")
    )
    return Path(s.teacher)


# ----------------------------------------------------------------------------------------- 5. quantize


def _quantize(s: Search, points: list[Point]) -> None:
    """5. Export the trained models nearest the frontier; their artifacts' validation accuracy is measured."""
    t = s.config.tune
    models = {  # a distilled model is exported with its teacher (its build config): none chosen, none exported
        k: ps for k, ps in _trained_models(s, points).items() if s.teacher is not None or not ps[0].distilled
    }
    done_models = {k for k, ps in models.items() if all(s.records[p.key].status == DONE for p in ps)}
    order = _frontier_order(s, models)
    chosen = [k for k in order if k in done_models]
    chosen += [k for k in order if k not in done_models][: max(0, t.quantize_top - len(chosen))]
    started = time.perf_counter()
    robustness = Robustness(s)
    robust_before = s.seconds.get("robustness", 0.0)
    for k in chosen:
        ps = [p for p in models[k] if s.records[p.key].status != DONE]
        if not ps:
            continue
        if s.over_budget():
            break
        run = s.folder.run(k)
        p0 = ps[0]
        s.echo(f"tune: quantizing {k} ({', '.join(p.precision for p in ps)})")
        t0 = time.perf_counter()
        try:
            _build_candidate(
                s,
                k,
                candidate_config(
                    s.train_config,
                    p0.backbone,
                    p0.image_size,
                    p0.fine_tune_blocks,
                    [p.precision for p in ps],
                    teacher=s.teacher if p0.distilled else None,
                ),
                ["train", "export"],
            )
            manifest = read_manifest(run)
            error = None
        except EdgeExportError as exc:
            manifest, error = None, exc.message
        seconds = time.perf_counter() - t0
        s.model_seconds.setdefault(k, {})["export"] = round(seconds, 2)
        for p in ps:
            r = s.records[p.key]
            r.run_dir = str(Path(TuneFolder.RUNS) / k)
            r.seconds.update(
                {
                    name: round(v / (len(ps) if name == "export" else 1), 2)
                    for name, v in s.model_seconds.get(k, {}).items()
                }
            )
            artifact = manifest.artifact(PRECISION_FORMATS[p.precision]) if manifest is not None else None
            if artifact is None or artifact.accuracy is None:
                r.status = FAILED
                r.reasons = [f"export failed: {error or (artifact.error if artifact else 'no artifact')}"]
            else:
                r.status, r.val_accuracy = DONE, float(artifact.accuracy)
                r.reasons = [] if artifact.ok else [f"export: {artifact.error}"]
                if artifact.size_bytes:
                    r.size_bytes = int(artifact.size_bytes)  # the trained artifact's own size
                s.echo(
                    f"tune: {r.key}: validation accuracy {r.val_accuracy:.2%}, "
                    f"{t.latency_statistic} {r.latency_ms:.2f} ms on {t.device}"
                )
                assert artifact.path is not None  # an artifact with a measured accuracy was written
                robustness.measure(r, run.export_dir / artifact.path)
            s.finish(r)
    s.add_time("quantize", time.perf_counter() - started - (s.seconds.get("robustness", 0.0) - robust_before))
    for ps in models.values():
        for p in ps:
            r = s.records[p.key]
            if r.status == SKIPPED:
                r.status = NOT_QUANTIZED
                r.reasons = [
                    f"not quantized: Keras validation accuracy {r.keras_val_accuracy:.2%} is not among the "
                    f"{t.quantize_top} trained models nearest the frontier (tune.quantize_top)"
                ]
    for r in s.records.values():  # the time of each candidate's model, also for those not quantized
        if r.status in (PRUNED, FAILED) and r.keras_val_accuracy is None:
            continue  # never trained for itself (a model of the same settings may be another precision's)
        for name, v in s.model_seconds.get(
            model_key(r.backbone, r.image_size, r.fine_tune_blocks, r.distilled), {}
        ).items():
            r.seconds.setdefault(name, v)


# --------------------------------------------------------------------------------------- robustness


class Robustness:
    """Accuracy under the bench's camera-like shifts (``benchmarks.robustness.evaluate``, its fixed seed) of a
    quantized candidate, on the VALIDATION images (never test): recorded per candidate, a tie-breaker of the
    choice, and a constraint with ``tune.min_robustness``. The images of each input size are decoded once."""

    def __init__(self, s: Search):
        self.s = s
        self.decoded: dict[tuple, Any] = {}
        self.split: Split | None = None
        self.keys: list[str] = []  # the split's images, relative to the data (set with it)

    def measure(self, r: CandidateRecord, artifact: Path) -> None:
        started = time.perf_counter()
        c = self.s.train_config
        if self.split is None:
            dataset = scan_dataset(resolve_data(c.data.path), c.data.validation_split, c.train.seed, c.data.split)
            self.split = dataset.splits["validation"]
            self.keys = [f.relative_to(dataset.root).as_posix() for f in self.split.files]
        try:
            clf = Classifier.load(artifact, threads=os.cpu_count())
            prep = clf.preprocessing
            height, width = prep.size
            wanted = ((height, width), prep.pixel_method)  # what the device's runtime would feed it
            if wanted not in self.decoded:
                self.decoded[wanted] = load_images(
                    self.split, (height, width), prep.pixel_method, c.data.max_image_pixels
                )
            images = self.decoded[wanted]
            if len(images.labels) != len(self.keys):  # an unreadable image was skipped: keys no longer line up
                self.s.echo(
                    f"tune: robustness of {r.key} not measured: {len(self.keys) - len(images.labels)} "
                    "validation image(s) unreadable"
                )
                return
            r.robustness_accuracy = float(
                evaluate(clf.predict_proba, images.pixels, images.labels, self.keys)["accuracy"]
            )
            self.s.echo(
                f"tune: {r.key}: accuracy under the camera-like shifts (validation) {r.robustness_accuracy:.2%}"
            )
        except (EdgeExportError, ValueError, OSError) as exc:  # an optional measurement: never the search's failure
            self.s.echo(f"tune: robustness of {r.key} not measured: {getattr(exc, 'message', exc)}")
        finally:
            self.s.add_time("robustness", time.perf_counter() - started)


# --------------------------------------------------------------------------------------------- choice


def choose(records: list[CandidateRecord], config: Config) -> tuple[str | None, str, list[str]]:
    """(chosen key or None, why, the constraints that bound the choice). Pure: tests call it on records."""
    t = config.tune
    stat = t.latency_statistic
    done = [r for r in records if r.status == DONE and r.val_accuracy is not None and r.latency_ms is not None]
    pruned_by = {
        name: [r for r in records if r.status == PRUNED and any(x.startswith(word) for x in r.reasons)]
        for name, word in (
            ("max_latency_ms", f"latency {stat}"),
            ("max_latency_ratio", "latency ratio"),
            ("max_size_mb", "size"),
        )
    }
    if not done:
        if records and all(r.status == PRUNED for r in records):
            bound = [n for n, rs in pruned_by.items() if rs]
            fastest = min(
                (r for r in records if r.latency_ms is not None), key=lambda r: _known(r.latency_ms), default=None
            )
            extra = f"; the fastest in the space is {fastest.key} at {fastest.latency_ms:.2f} ms" if fastest else ""
            return None, f"every candidate breaks {' and '.join(bound)}{extra}", bound
        return None, "no candidate was evaluated (see each candidate's reasons in tune.json)", []

    def robust(r: CandidateRecord) -> float:  # tie-breaker: more robust first (unknown last)
        return -(r.robustness_accuracy if r.robustness_accuracy is not None else -1.0)

    fragile = []
    if t.min_robustness is not None:
        fragile = [r for r in done if r.robustness_accuracy is None or r.robustness_accuracy < t.min_robustness - 1e-12]
        done = [r for r in done if r not in fragile]
        if not done:
            return (
                None,
                (
                    f"no evaluated candidate reaches min robustness {t.min_robustness:.2%} (accuracy under the "
                    "camera-like shifts, validation)"
                ),
                ["min_robustness"],
            )

    if t.min_accuracy is not None:
        ok = [r for r in done if _known(r.val_accuracy) >= t.min_accuracy - 1e-12]
        if not ok:
            best = max(done, key=lambda r: (_known(r.val_accuracy), -_known(r.latency_ms)))
            return (
                None,
                (
                    f"no evaluated candidate reaches min accuracy {t.min_accuracy:.2%} on validation; the most "
                    f"accurate is {best.key} at {best.val_accuracy:.2%} ({best.latency_ms:.2f} ms): widen the space "
                    f"(larger sizes, more fine-tuning, other backbones) or relax the limits"
                ),
                ["min_accuracy"],
            )
        chosen = min(ok, key=lambda r: (_known(r.latency_ms), -_known(r.val_accuracy), robust(r), r.key))
        faster = [
            r
            for r in records
            if r is not chosen and r.latency_ms is not None and r.latency_ms < _known(chosen.latency_ms)
        ]
        below = [
            r for r in faster if r.status == DONE and r.val_accuracy is not None and r.val_accuracy < t.min_accuracy
        ]
        unknown = [r for r in faster if r.status in (NOT_PROMOTED, NOT_QUANTIZED, SKIPPED)]
        why = (
            f"the fastest candidate with validation accuracy >= {t.min_accuracy:.2%}: {chosen.key}, "
            f"{chosen.val_accuracy:.2%}, {stat} {chosen.latency_ms:.2f} ms on {t.device}"
        )
        binding = []
        if below:
            binding.append("min_accuracy")
            why += f"; min accuracy bound it: {len(below)} faster evaluated candidate(s) are below it"
        if unknown:
            why += f"; {len(unknown)} faster candidate(s) were not evaluated (successive halving or budget)"
        if not faster:
            why += "; it is the fastest candidate in the space (no constraint bound it)"
    else:
        chosen = max(done, key=lambda r: (_known(r.val_accuracy), -_known(r.latency_ms), -robust(r), r.key))
        why = (
            f"the most accurate candidate within the limits: {chosen.key}, validation accuracy "
            f"{chosen.val_accuracy:.2%}, {stat} {chosen.latency_ms:.2f} ms on {t.device}"
        )
        binding = [n for n, rs in pruned_by.items() if rs]
        for name in binding:
            why += f"; {name} bound it: {len(pruned_by[name])} candidate(s) pruned before training"
        if not binding:
            why += "; no limit removed any candidate"
    beaten = [
        r
        for r in fragile
        if (
            _known(r.latency_ms) < _known(chosen.latency_ms)
            if t.min_accuracy is not None
            else _known(r.val_accuracy) > _known(chosen.val_accuracy)
        )
        and (t.min_accuracy is None or _known(r.val_accuracy) >= t.min_accuracy - 1e-12)
    ]
    if beaten:
        binding.append("min_robustness")
        why += f"; min robustness bound it: {len(beaten)} better candidate(s) are below it"
    if chosen.latency_ratio is not None:
        why += f"; {chosen.latency_ratio:.2f}x the reference's latency (timed with it)"
    if chosen.robustness_accuracy is not None:
        why += f"; accuracy under the camera-like shifts {chosen.robustness_accuracy:.2%}"
    if chosen.size_bytes is not None:
        why += f" (size {chosen.size_bytes / 1e6:.2f} MB)"
    return chosen.key, why, binding
