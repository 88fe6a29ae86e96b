"""The run folder: the one owner of every file name in it and in its sub-folders.

Nobody else spells these names: code asks ``RunFolder`` (and ``ExportFiles``, ``BenchFiles``,
``DeployFiles`` for the sub-folders' names) for paths.

The run record (``RUN_DIR/run.json``, below ``RunFolder``): which files one ``train`` wrote, with their sha256.
``train`` removes the old record before it writes anything and writes the new one last, after
model.keras. A run folder whose record is missing, or does not match its files, holds files from two
runs (e.g. an interrupted ``train`` left the old model.keras beside the new labels.txt): no reader
pairs them. Readers call ``RunFolder.verify()``, which returns the record or raises a clear error.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from edge_export.core import __version__
from edge_export.core.atomic import write_json
from edge_export.core.errors import EdgeExportError
from edge_export.core.hashing import sha256_file
from edge_export.core.untrusted import printable, read_json


class ExportFiles:
    """File names in ``RUN/export/`` (artifact file names come from the format registry)."""

    MANIFEST = "manifest.json"  # written last: its presence means a finished export
    MODEL_CARD = "model_card.json"
    LABELS = "labels.txt"


class BenchFiles:
    """File names in ``RUN/bench/`` (or a bench ``--out`` folder)."""

    JSON = "bench.json"
    MARKDOWN = "bench.md"
    DEVICES = "devices"  # one sub-folder per remote device, holding that device's bench.json
    PLOT_ACCURACY = "accuracy_vs_latency.png"
    PLOT_CONFUSION = "confusion_matrices.png"


class ReportFiles:
    """File names in ``RUN/report_files/``: the build report's pictures (report.md links them; report.html
    embeds them)."""

    CONFUSION = "confusion_matrix.png"  # the recommended artifact's (up to 40 classes)
    GALLERY_PREFIX = "misclassified-"  # misclassified-01.jpg ...: thumbnails of the worst errors

    @classmethod
    def gallery(cls, index: int) -> str:
        return f"{cls.GALLERY_PREFIX}{index:02d}.jpg"


class DeployFiles:
    """File names in ``RUN/deploy/`` (the recommended artifact keeps its export file name)."""

    RECOMMENDATION = "recommendation.json"
    LABELS = ExportFiles.LABELS
    MODEL_CARD = ExportFiles.MODEL_CARD


class TuneFolder:
    """``edge-export tune --out TUNE_DIR``: every file name in it. The candidates' training runs are run
    folders under ``runs/`` (``RunFolder``), one per backbone x size x fine-tune depth."""

    RESULT = "tune.json"  # written at the end of every search (also a resumed one)
    TABLE = "tune.md"
    PLOT = "pareto.png"  # validation accuracy vs device latency, the chosen candidate marked
    CHOSEN_CONFIG = "chosen.yaml"  # `edge-export build --config TUNE_DIR/chosen.yaml`
    LATENCY = "latency"  # one record per backbone x size x precision (+ the random-weight models, bench output)
    CANDIDATES = "candidates"  # one record per finished candidate, written atomically
    RUNS = "runs"  # the training run folders
    IMAGES = "latency/images"  # the few generated images the latency benchmark decodes
    BUILD = "build"  # --build: the chosen configuration's build
    DATA = "data"  # the data the candidates train on: links to DATA/train and DATA/validation (never test/)
    DISTILL = "distill"  # the teacher's targets, shared by every distilled candidate (runs/*-kd/distill link here)
    TEACHER = "teacher"  # tune.distill=auto: the build's own model, trained here as a teacher (under runs/)

    def __init__(self, root: str | Path):
        self.root = Path(root)

    @property
    def result(self) -> Path:
        return self.root / self.RESULT

    @property
    def table(self) -> Path:
        return self.root / self.TABLE

    @property
    def plot(self) -> Path:
        return self.root / self.PLOT

    @property
    def chosen_config(self) -> Path:
        return self.root / self.CHOSEN_CONFIG

    @property
    def latency_dir(self) -> Path:
        return self.root / self.LATENCY

    def latency_record(self, key: str) -> Path:
        return self.latency_dir / f"{key}.json"

    def latency_model(self, key: str) -> Path:
        return self.latency_dir / "models" / f"{key}.tflite"

    def latency_bench(self, key: str) -> Path:
        return self.latency_dir / "bench" / key

    @property
    def latency_images(self) -> Path:
        return self.root / self.IMAGES

    def candidate_record(self, key: str) -> Path:
        return self.root / self.CANDIDATES / f"{key}.json"

    def run(self, key: str) -> RunFolder:
        return RunFolder(self.root / self.RUNS / key)

    @property
    def build_dir(self) -> Path:
        return self.root / self.BUILD

    @property
    def data_view(self) -> Path:
        return self.root / self.DATA


class RunFolder:
    MODEL = "model.keras"
    # an imported ONNX model (export/import_model.py, export/onnx_source.py): the reference in place of model.keras
    MODEL_ONNX = "model.onnx"
    MODEL_FILES = (MODEL, MODEL_ONNX)  # a run holds one of them: its reference model
    LABELS = "labels.txt"
    CONFIG = "config.yaml"
    HISTORY = "history.json"
    METRICS = "metrics.json"
    CURVES = "learning_curves.png"
    DATASET = "dataset.json"
    MODEL_SPEC = "model_spec.json"
    RUN_RECORD = "run.json"  # written last by train: the sha256 of every file below (``write_record`` below)
    RECORDED = (MODEL, LABELS, CONFIG, MODEL_SPEC, DATASET, METRICS, HISTORY)  # the files one train writes as a unit
    # ... with model.onnx in model.keras's place for an imported ONNX model (``recorded(MODEL_ONNX)``)
    LOCK = ".lock"  # held (flock) by the one command writing this folder: core/run_lock.py
    TMP = ".tmp"  # that command's temporary files; emptied when a command takes the lock
    CHECKPOINTS = "checkpoints"
    DISTILL = "distill"  # a distilled train's views and teacher targets, in chunks (trainer/distill.py)
    EXPORT = "export"
    BENCH = "bench"
    DEPLOY = "deploy"
    PACKAGE = "package"
    BUILD_STATE = ".build"  # the build's stage fingerprints
    REPORT_JSON, REPORT_MD, REPORT_HTML = "report.json", "report.md", "report.html"
    REPORT_FILES = "report_files"  # the report's pictures (ReportFiles)

    def __init__(self, root: str | Path):
        self.root = Path(root)

    @classmethod
    def new_default(cls, base: str | Path = "runs") -> RunFolder:
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        return cls(Path(base) / f"train-{stamp}")

    def create(self) -> RunFolder:
        self.root.mkdir(parents=True, exist_ok=True)
        return self

    @property
    def model(self) -> Path:
        return self.root / self.MODEL

    @property
    def model_onnx(self) -> Path:
        return self.root / self.MODEL_ONNX

    @property
    def reference_model(self) -> Path:
        """The run's reference model: model.keras (trained, or a user's Keras model imported), else model.onnx
        (a user's ONNX model imported); model.keras's path when there is neither."""
        return self.model_onnx if not self.model.is_file() and self.model_onnx.is_file() else self.model

    @classmethod
    def recorded(cls, model: str = MODEL) -> tuple[str, ...]:
        """The files one train (or import) writes as a unit, with ``model`` (one of MODEL_FILES) as its model."""
        return (model, *cls.RECORDED[1:])

    def recorded_files(self) -> list[Path]:
        return [self.root / name for name in self.recorded(self.reference_model.name)]

    @property
    def labels(self) -> Path:
        return self.root / self.LABELS

    @property
    def config(self) -> Path:
        return self.root / self.CONFIG

    @property
    def history(self) -> Path:
        return self.root / self.HISTORY

    @property
    def metrics(self) -> Path:
        return self.root / self.METRICS

    @property
    def curves(self) -> Path:
        return self.root / self.CURVES

    @property
    def dataset(self) -> Path:
        return self.root / self.DATASET

    @property
    def model_spec(self) -> Path:
        return self.root / self.MODEL_SPEC

    @property
    def checkpoints(self) -> Path:
        return self.root / self.CHECKPOINTS

    @property
    def export_dir(self) -> Path:
        return self.root / self.EXPORT

    @property
    def export_manifest(self) -> Path:
        return self.export_dir / ExportFiles.MANIFEST

    @property
    def export_model_card(self) -> Path:
        return self.export_dir / ExportFiles.MODEL_CARD

    @property
    def export_labels(self) -> Path:
        return self.export_dir / ExportFiles.LABELS

    @property
    def bench_dir(self) -> Path:
        return self.root / self.BENCH

    @property
    def bench_json(self) -> Path:
        return self.bench_dir / BenchFiles.JSON

    @property
    def bench_md(self) -> Path:
        return self.bench_dir / BenchFiles.MARKDOWN

    @property
    def bench_plot_accuracy(self) -> Path:
        return self.bench_dir / BenchFiles.PLOT_ACCURACY

    @property
    def bench_plot_confusion(self) -> Path:
        return self.bench_dir / BenchFiles.PLOT_CONFUSION

    @property
    def build_state_dir(self) -> Path:
        return self.root / self.BUILD_STATE

    @property
    def report_json(self) -> Path:  # the build report, with its recommendation
        return self.root / self.REPORT_JSON

    @property
    def report_md(self) -> Path:
        return self.root / self.REPORT_MD

    @property
    def report_html(self) -> Path:
        return self.root / self.REPORT_HTML

    @property
    def report_files(self) -> Path:
        return self.root / self.REPORT_FILES

    @property
    def deploy_dir(self) -> Path:  # the recommended artifact, copied by `build`
        return self.root / self.DEPLOY

    @property
    def deploy_recommendation(self) -> Path:
        return self.deploy_dir / DeployFiles.RECOMMENDATION

    @property
    def package_dir(self) -> Path:  # bundles written by `edge-export package`
        return self.root / self.PACKAGE

    @property
    def lock_file(self) -> Path:
        return self.root / self.LOCK

    @property
    def tmp_dir(self) -> Path:
        return self.root / self.TMP

    @property
    def run_record(self) -> Path:
        return self.root / self.RUN_RECORD

    def verify(self) -> RunRecord:
        """The run record (``RunRecord``) after checking that every file train wrote belongs to one run;
        a clear EdgeExportError when the record is missing or a file does not match (an interrupted train).
        Every reader that pairs the model with its labels, config or spec calls this first."""
        return verify_run(self)

    def read_labels(self) -> list[str]:
        if not self.labels.is_file():
            raise EdgeExportError("labels.txt is missing", path=self.labels, hint="re-run `edge-export train`")
        return [line for line in self.labels.read_text().splitlines() if line.strip()]

    def require_model(self) -> Path:
        """The reference model's path (model.keras, or an imported model.onnx); a clear error when there is none."""
        path = self.reference_model
        if not path.is_file():
            raise EdgeExportError(
                "no trained model in this run folder",
                path=path,
                hint="run `edge-export train --out RUN_DIR` first, or point at a finished run",
            )
        return path


# The run record ---------------------------------------------------------------------------------------------

RECORD_VERSION = 1
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_RUN_ID = re.compile(r"^[0-9a-f]{32}$")


@dataclass(frozen=True)
class RunRecord:
    run_id: str
    files: dict[str, str]  # file name in the run folder -> sha256, every name in RunFolder.recorded(its model)
    created: str

    @property
    def model_name(self) -> str:
        """model.keras, or model.onnx for an imported ONNX model."""
        return next(name for name in RunFolder.MODEL_FILES if name in self.files)

    @property
    def model_sha256(self) -> str:
        return self.files[self.model_name]


def forget_record(run: RunFolder) -> None:
    """First thing a ``train`` does: from here until ``write_record``, the folder holds no valid run."""
    run.run_record.unlink(missing_ok=True)


def write_record(run: RunFolder, model: str = RunFolder.MODEL) -> RunRecord:
    """Last thing a ``train`` does: hash every file it wrote (``model``: its model file's name, one of
    RunFolder.MODEL_FILES) and record them under a new run id."""
    record = RunRecord(
        run_id=uuid.uuid4().hex,
        files={name: sha256_file(run.root / name) for name in RunFolder.recorded(model)},
        created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
    )
    write_json(
        run.run_record,
        {
            "record_version": RECORD_VERSION,
            "run_id": record.run_id,
            "created": record.created,
            "edge_export": __version__,
            "files": record.files,
        },
    )
    return record


def verify_run(run: RunFolder) -> RunRecord:
    """The run record, after checking every recorded file against it; else a clear EdgeExportError."""
    run.require_model()
    where = printable(run.root)
    fix = f"re-run `edge-export train --out {where}`"
    if not run.run_record.is_file():
        raise EdgeExportError(
            f"run folder {where} has no run record ({RunFolder.RUN_RECORD}): train was interrupted, "
            "or an older edge-export made it, so its files may come from different runs",
            path=run.run_record,
            hint=fix,
        )
    record = _parse(read_json(run.run_record, what=RunFolder.RUN_RECORD), run, fix)
    model = record.model_name
    if run.reference_model.name != model:  # model.keras of another run beside an imported model.onnx
        raise EdgeExportError(
            f"run folder {where} holds files from different runs ({run.reference_model.name} is not in its run "
            f"record, which names {model})",
            path=run.reference_model,
            hint=fix,
        )
    for name in RunFolder.recorded(model):
        path = run.root / name
        if not path.is_file():
            raise EdgeExportError(
                f"run folder {where} is incomplete: {name} is missing (train was interrupted?)", path=path, hint=fix
            )
        if sha256_file(path) != record.files[name]:
            what = (
                f"{model} does not match its run record: corrupt, truncated or replaced"
                if name == model
                else f"{name} does not match {model}'s run"
            )
            raise EdgeExportError(
                f"run folder {where} holds files from different runs ({what}; train was interrupted?)",
                path=path,
                hint=fix,
            )
    return record


def _parse(data: object, run: RunFolder, fix: str) -> RunRecord:
    record: dict[str, Any] = data if isinstance(data, dict) else {}  # not an object: no run_id, malformed
    files = record.get("files")
    run_id = record.get("run_id")
    if not (
        isinstance(run_id, str)
        and _RUN_ID.match(run_id) is not None
        and isinstance(files, dict)
        and any(set(files) == set(RunFolder.recorded(m)) for m in RunFolder.MODEL_FILES)
        and all(isinstance(v, str) and _SHA256.match(v) for v in files.values())
    ):
        raise EdgeExportError(
            f"{RunFolder.RUN_RECORD} is malformed "
            f"(expected a run_id and the sha256 of {', '.join(RunFolder.RECORDED)})",
            path=run.run_record,
            hint=fix,
        )
    return RunRecord(run_id=run_id, files=dict(files), created=str(record.get("created", "")))
