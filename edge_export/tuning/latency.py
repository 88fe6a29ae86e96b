"""The device latency table of ``tune``: one number per backbone x input size x precision.

Latency does not depend on the trained weights, so each combination is measured once, on a RANDOM-WEIGHT
model: built with the trainer's ``build_classifier`` (``weights="none"``), converted by the export's own
TFLite converters (``export.tflite.convert_int8`` / ``convert_fp16``: the same conversion a build makes,
calibrated on a few random images). On this machine every model's bare 1-thread interpreter call (what
bench reports as latency) is timed in interleaved blocks in one process (``benchmarks.latency``), so load
from other processes that comes and goes hits all of them alike and their ratios hold; for ``ssh://``
devices the models go in one bundle and the device's own benchmark times them (``deploy.remote``, bench's
SSH path). Each result is one record in ``TUNE_DIR/latency/`` (written atomically, with a fingerprint of
what it depends on), so a re-run never measures a combination again.

A latency table measured elsewhere can be given instead (``tune.latency_table``: a JSON file mapping
``"BACKBONE-SIZE-PRECISION"`` to ``{"p50_ms": ..., "p90_ms": ..., "size_bytes": ...}``), which is also how
tests put a fake device in.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Callable, Hashable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from edge_export.benchmarks.latency import summarize, time_interleaved
from edge_export.benchmarks.suite import bench_run
from edge_export.core import __version__
from edge_export.core.atomic import atomic_path, write_json
from edge_export.core.config import BenchConfig, Config, ExportConfig
from edge_export.core.echo import Echo
from edge_export.core.errors import EdgeExportError
from edge_export.core.hashing import fingerprint, sha256_file
from edge_export.core.pause import pause_point
from edge_export.core.records.bench import LOCAL
from edge_export.core.records.model_spec import ModelSpec
from edge_export.core.records.tune import LatencyRecord, read_kept
from edge_export.core.run_folder import TuneFolder
from edge_export.core.tf_env import import_keras
from edge_export.core.untrusted import finite_number, read_json
from edge_export.deploy.remote import RemoteSettings, bench_on_devices, connect_devices
from edge_export.deploy.ssh import SshDevice
from edge_export.export.context import load_converter
from edge_export.export.formats import get_format
from edge_export.runtime.backends import Backend
from edge_export.runtime.classifier import Classifier
from edge_export.runtime.metadata import ModelMetadata
from edge_export.runtime.preprocessing import Preprocessing
from edge_export.trainer.model import build_classifier
from edge_export.tuning.relative import Timer, check_reference, time_relative
from edge_export.tuning.space import PRECISION_FORMATS

# what measures latency: [(backbone, image size, precision), ...] -> {that tuple: LatencyRecord}, all in one go
# (so a local measurement can interleave every model in one process: load that comes and goes on a shared
# machine then hits them alike, and their ratios hold)
Combo = tuple[str, int, str]  # (backbone, image_size, precision)
Measure = Callable[[Sequence[Combo]], dict]
LATENCY_IMAGES = 2  # generated images per class for the latency benchmark (its accuracy is meaningless)
CALIBRATION_IMAGES = 8  # random calibration images: the int8 model's speed does not depend on them


def latency_fingerprint(
    config: Config, backbone: str, size: int, precision: str, classes: int, remote: Any = None
) -> str:
    """Of everything a latency number depends on: the model, the device, how it is timed, the reference, and
    for an ssh:// device the settings that decide what runs there (its Python, folder, venv, ssh options)."""
    t = config.tune
    relative = None
    if t.latency_reference is not None:  # the ratio depends on the reference file and on how it is re-timed
        relative = (
            sha256_file(Path(t.latency_reference).expanduser()),
            t.ratio_ceiling,
            t.latency_retimes,
            t.latency_near,
            t.latency_statistic,
        )
    device = None
    if t.device.strip() != LOCAL and remote is not None:
        device = [list(remote.ssh_options), remote.python, remote.remote_dir, remote.setup, remote.system_site_packages]
    return fingerprint(
        "tune-latency",
        __version__,
        2,
        backbone,
        size,
        precision,
        classes,
        config.export.int8_io,
        t.device,
        t.latency_runs,
        t.latency_warmup,
        t.latency_table,
        *([relative] if relative else []),
        *([device] if device else []),
    )


class LatencyTable:
    """Cached latency records of ``folder``; ``measure`` fills in what is missing (or stale)."""

    def __init__(
        self, folder: TuneFolder, config: Config, classes: int, measure: Measure, echo: Echo, remote: Any = None
    ):
        self.folder, self.config, self.classes, self.measure, self.echo = folder, config, classes, measure, echo
        self.remote = remote  # an ssh:// device's settings: part of every record's key

    def cached(self, backbone: str, size: int, precision: str) -> LatencyRecord | None:
        """The record measured earlier with the same key; a failure is never replayed as a result (the cause may
        be fixed now): it is measured again."""
        record = read_kept(
            self.folder.latency_record(f"{backbone}-{size}-{precision}"),
            LatencyRecord,
            self._fingerprint(backbone, size, precision),
            lambda text: self.echo(f"latency: {text}"),
            "measuring again",
        )
        if record is not None and not record.ok:
            self.echo(f"latency: {record.key} failed last time ({record.error}): measuring again")
            return None
        return record

    def _fingerprint(self, backbone: str, size: int, precision: str) -> str:
        return latency_fingerprint(self.config, backbone, size, precision, self.classes, self.remote)

    def get(self, combos: Sequence[Combo]) -> dict:
        """Every combination's record: cached ones read, the others measured together, each written atomically."""
        found = {c: self.cached(*c) for c in combos}
        missing = [c for c, r in found.items() if r is None]
        if missing:
            try:
                measured = self.measure(missing)
            except EdgeExportError as exc:
                measured = {
                    c: LatencyRecord(*c, self.config.tune.device, status="failed", error=exc.message) for c in missing
                }
            for c in missing:
                record = measured.get(c) or LatencyRecord(
                    *c, self.config.tune.device, status="failed", error="not measured"
                )
                record.fingerprint = self._fingerprint(*c)
                write_json(self.folder.latency_record(record.key), record.to_dict())  # one record, atomically
                pause_point(f"tune.latency.{record.key}")
                found[c] = record
        return found


MAX_TABLE_NUMBER = 1e9  # ms or bytes in a latency table: above it a number is a typo, not a measurement


def _bounded(value: Any, what: str, path: Any) -> float:
    number = finite_number(value, what=what, source=path, minimum=0)
    if number > MAX_TABLE_NUMBER:
        raise EdgeExportError(
            f"{what} is {number:g}, not a plausible latency or size (at most {MAX_TABLE_NUMBER:g})",
            path=path,
            hint="fix the latency table (milliseconds and bytes)",
        )
    return number


def table_measure(path: str | Path, device: str) -> Measure:
    """A ``Measure`` that reads a latency table measured earlier (JSON: key -> p50_ms, p90_ms, size_bytes)."""
    table = read_json(path, what="the latency table (tune.latency_table)")
    if not isinstance(table, dict):
        raise EdgeExportError(
            "the latency table is not a JSON object",
            path=path,
            hint='write {"BACKBONE-SIZE-PRECISION": {"p50_ms": 3.4, "p90_ms": 3.6, "size_bytes": 4000000}}',
        )

    def number(entry: dict[str, Any], key: str, k: str) -> float | None:
        return None if entry.get(k) is None else _bounded(entry[k], f"{key}: {k}", path)

    def measure(combos: Sequence[Combo]) -> dict:
        out = {}
        for backbone, size, p in combos:
            key = f"{backbone}-{size}-{p}"
            entry = table.get(key)
            if not isinstance(entry, dict) or entry.get("p50_ms") is None:
                out[(backbone, size, p)] = LatencyRecord(
                    backbone, size, p, device, status="failed", error=f"not in the latency table {path}"
                )
                continue
            size_bytes = number(entry, key, "size_bytes")
            out[(backbone, size, p)] = LatencyRecord(
                backbone,
                size,
                p,
                device,
                p50_ms=number(entry, key, "p50_ms"),
                p90_ms=number(entry, key, "p90_ms"),
                min_ms=number(entry, key, "min_ms"),
                size_bytes=None if size_bytes is None else int(size_bytes),
            )
        return out

    return measure


# ---------------------------------------------------------------------------------- measuring for real


class RandomWeightExport:
    """A random-weight model as a ``ConversionSource`` (export/source.py): what the tune times (no run folder)."""

    def __init__(self, model: Any, backbone: str, size: int, labels: list[str], config: ExportConfig, workdir: Path):
        self.model, self.config, self.workdir = model, config, workdir
        self.labels = labels
        self.backbone = backbone
        self.preprocessing = Preprocessing(size=(size, size))
        self._memo: dict[str, Any] = {}
        self._size = size

    def memo(self, key: str, make: Callable[[], Any]) -> Any:
        if key not in self._memo:
            self._memo[key] = make()
        return self._memo[key]

    @property
    def input_shape(self) -> tuple[None, int, int, int]:
        return (None, self._size, self._size, 3)

    def model_copy(self) -> None:
        return None  # random weights: nothing to correct or choose

    def onnx_graph(self) -> None:  # a Keras model: the ONNX formats convert it
        return None

    def judging_photos(self) -> None:
        return None

    def representative(self) -> np.ndarray:
        rng = np.random.default_rng(0)
        return rng.integers(0, 256, (CALIBRATION_IMAGES, self._size, self._size, 3), dtype=np.uint8)

    def metadata(self, fmt: Any, *, opset: int | None = None, calibration_images: int | None = None, qat: Any = None):
        return ModelMetadata(
            labels=tuple(self.labels),
            preprocessing=self.preprocessing,
            backbone=self.backbone,
            format=fmt.name,
            precision=fmt.precision,
            int8_io=self.config.int8_io if fmt.integer_io else None,
            edge_export=__version__,
            calibration_images=calibration_images,
        )


def device_measure(folder: TuneFolder, config: Config, labels: list[str], echo: Echo, remote: Any = None) -> Measure:
    """A ``Measure`` that exports random-weight models and times them on ``config.tune.device``.

    Local: the bare 1-thread interpreter call of every model (what bench reports as latency), all models
    timed in interleaved blocks in this one process (``benchmarks.latency.time_interleaved``). SSH: the
    models go to the device in one bundle and its own benchmark times them (``deploy.remote``).
    """
    device = config.tune.device.strip()
    ssh = None
    if device != LOCAL:
        settings = remote or RemoteSettings()  # ssh options, remote Python and folder: as bench's --device
        ssh = (connect_devices([SshDevice.parse(device)], settings), settings)  # checked before any work

    def measure(combos: Sequence[Combo]) -> dict:
        paths: dict[Combo, Path] = {}
        records: dict[Combo, LatencyRecord] = {}
        seconds: dict[Combo, float] = {}
        by_pair: dict[tuple[str, int], list[str]] = {}
        for backbone, size, p in combos:
            by_pair.setdefault((backbone, size), []).append(p)
        for (backbone, size), precisions in by_pair.items():
            started = time.perf_counter()
            made, errors = _export_random(folder, config, labels, backbone, size, precisions)
            each = (time.perf_counter() - started) / len(precisions)
            for p in precisions:
                seconds[(backbone, size, p)] = each
                if p in made:
                    paths[(backbone, size, p)] = made[p]
                else:
                    records[(backbone, size, p)] = LatencyRecord(
                        backbone, size, p, device, seconds=round(each, 2), status="failed", error=errors[p]
                    )
            echo(
                f"latency: exported random-weight {backbone} {size} ({', '.join(precisions)}) "
                f"in {each * len(precisions):.0f}s"
            )
        if not paths:
            return records
        started = time.perf_counter()
        timer = (
            (lambda p: _time_local(p, config))
            if ssh is None
            else (lambda p: _time_on_device(folder, p, config, labels, ssh, echo))
        )
        timed = timed_with_reference(timer, paths, config)
        each = (time.perf_counter() - started) / len(paths)
        for combo, path in paths.items():
            records[combo] = latency_record(
                combo, device, timed.get(combo), path.stat().st_size, round(seconds[combo] + each, 2)
            )
        return records

    return measure


def timed_with_reference(timer: Timer, paths: dict, config: Config) -> dict:
    """``timer(paths)``; with ``tune.latency_reference``, every round with the reference and the candidates near
    the ratio ceiling re-timed (tuning/relative.py)."""
    t = config.tune
    ceiling = t.ratio_ceiling  # set whenever a reference is
    if t.latency_reference is None or ceiling is None:
        return timer(paths)
    return time_relative(
        timer,
        paths,
        check_reference(t.latency_reference),
        ceiling=ceiling,
        statistic=t.latency_statistic,
        retimes=t.latency_retimes,
        band=t.latency_near,
    )


def latency_record(combo: Combo, device: str, result: Any, size_bytes: int | None, seconds: float) -> LatencyRecord:
    """One combination's record from a timer's result (``{"p50", "p90", "min"}`` [+ reference, ratio, ratios]) or
    its error text."""
    if not isinstance(result, dict):
        return LatencyRecord(*combo, device, seconds=seconds, status="failed", error=result or "not measured")
    reference = result.get("reference") or {}
    return LatencyRecord(
        *combo,
        device,
        p50_ms=result["p50"],
        p90_ms=result["p90"],
        min_ms=result.get("min"),
        size_bytes=size_bytes,
        seconds=seconds,
        reference_p50_ms=reference.get("p50"),
        reference_min_ms=reference.get("min"),
        ratio=result.get("ratio"),
        ratios=list(result.get("ratios") or []),
    )


def _export_random(
    folder: TuneFolder, config: Config, labels: list[str], backbone: str, size: int, precisions: Sequence[str]
) -> tuple[dict[str, Path], dict[str, str]]:
    """The random-weight model of ``backbone`` at ``size`` converted to each precision (files kept in
    TUNE_DIR/latency/models/, atomically: a re-run after a kill converts only what is missing)."""
    made: dict[str, Path] = {}
    errors: dict[str, str] = {}
    fp = fingerprint("tune-random-model", __version__, backbone, size, len(labels), config.export.int8_io)[:12]
    todo = []
    for p in precisions:
        out = folder.latency_model(f"{backbone}-{size}-{p}-{fp}")
        if out.is_file():
            made[p] = out
        else:
            todo.append((p, out))
    if not todo:
        return made, errors
    keras = import_keras()
    spec = ModelSpec(backbone=backbone, image_size=size, num_classes=len(labels), dropout=0.0, weights="none")
    model = build_classifier(keras, spec, weights="none")
    workdir = Path(tempfile.mkdtemp(prefix="edge-export-tune-"))
    try:
        ctx = RandomWeightExport(model, backbone, size, labels, config.export, workdir)
        for p, out in todo:
            fmt = get_format(PRECISION_FORMATS[p])
            try:
                with atomic_path(out) as tmp:
                    # the TFLite converters take any ConversionSource; export.context types them all for the
                    # exporter's ExportContext (the QAT converter's)
                    load_converter(fmt)(ctx, fmt, tmp)
                made[p] = out
            except Exception as exc:  # a converter failure is this combination's, not the search's
                text = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else ""
                errors[p] = f"conversion failed: {type(exc).__name__}: {text}"
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return made, errors


def _time_local(paths: dict, config: Config) -> dict:
    """Bare 1-thread calls of every model, interleaved in this process: {combo: {"p50", "p90"} or an error}."""
    calls: dict[Hashable, Callable[[], Any]] = {}
    out: dict[Hashable, Any] = {}
    rng = np.random.default_rng(0)
    for combo, path in paths.items():
        try:
            clf = Classifier.load(path, threads=1)
            size = tuple(clf.preprocessing.size)
            pixels = rng.integers(0, 256, (1, *size, 3), dtype=np.uint8)  # size is (height, width)
            x = clf._model_input(pixels)
            calls[combo] = _bare_call(clf.backend, x)
        except Exception as exc:  # a model that does not load is this combination's failure
            out[combo] = f"does not run: {type(exc).__name__}: {exc}"
    if calls:
        t = config.tune
        # the keys are combos (and the reference's name): benchmarks.latency types them as names (str) only
        timed = time_interleaved(calls, runs=t.latency_runs, warmup=t.latency_warmup, block=5)
        out.update({combo: summarize(d) for combo, d in timed.items()})
    return out


def _bare_call(backend: Backend, x: np.ndarray) -> Callable[[], Any]:
    """The model's bare interpreter call on ``x`` (what bench times as latency)."""
    return lambda: backend.run(x)


def _time_on_device(folder: TuneFolder, paths: dict, config: Config, labels: list[str], ssh: tuple, echo: Echo) -> dict:
    """The models in one bundle, benchmarked by the device itself (bench's SSH path): {combo: latency or error}."""
    devices, settings = ssh
    images = _latency_images(folder, labels)
    t = config.tune
    bench_config = BenchConfig(threads=[1], runs=t.latency_runs, warmup=t.latency_warmup, batch_size=1)
    outcome = bench_run(
        None,
        data=images,
        models=list(paths.values()),
        config=bench_config,
        out=folder.latency_bench("device"),
        keras=False,
        echo=None,
    )
    outcome = bench_on_devices(outcome, devices, data=images, config=bench_config, settings=settings, echo=echo)
    name = devices[0].address.name
    error = outcome.result.device_errors.get(name)
    rows = {r.name: r for r in outcome.result.rows if r.device == name}
    out: dict[Hashable, Any] = {}
    for combo, path in paths.items():
        row = rows.get(path.stem)
        if error or row is None or not row.ok or row.p50_ms is None:
            out[combo] = f"on {name}: {error or (row.error if row is not None else 'not measured')}"
        else:
            out[combo] = {
                "p50": row.p50_ms,
                "p90": (row.latency_ms or {}).get("p90"),
                "min": (row.latency_ms or {}).get("min"),
            }
    return out


def _latency_images(folder: TuneFolder, labels: list[str]) -> Path:
    """A few generated images per class (the benchmark needs a test folder; only their timing is used)."""
    root = folder.latency_images
    if root.is_dir():
        return root
    tmp = root.with_name(root.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    rng = np.random.default_rng(0)
    for label in labels:
        (tmp / label).mkdir(parents=True, exist_ok=True)
        for i in range(LATENCY_IMAGES):
            Image.fromarray(rng.integers(0, 256, (96, 128, 3), dtype=np.uint8)).save(tmp / label / f"{i}.png")
    tmp.rename(root)
    return root
