"""The build's stages, in order. Each knows what it depends on (its fingerprint), how to run, and its outputs.

Adding a stage is adding one ``Stage`` entry to ``STAGES``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge_export.benchmarks.suite import bench_run
from edge_export.core import __version__
from edge_export.core.config import Config
from edge_export.core.echo import Echo  # noqa: E402  (the one Echo type)
from edge_export.core.errors import EdgeExportError
from edge_export.core.hashing import fingerprint, sha256_file
from edge_export.core.records.manifest import Manifest
from edge_export.core.run_folder import RunFolder
from edge_export.export.exporter import export_run
from edge_export.export.import_model import import_run, source_path
from edge_export.export.manifest import read_manifest
from edge_export.export.user_model import source_sha256
from edge_export.trainer.datasets import Dataset
from edge_export.trainer.run import train_run


@dataclass
class BuildContext:
    config: Config
    run: RunFolder
    dataset: Dataset
    echo: Echo
    debug: bool = False
    results: dict[str, object] | None = None  # per stage: what it returned (manifest, bench report...)

    @property
    def test_dir(self) -> Path:
        if self.config.build.test_data:
            return Path(self.config.build.test_data)
        if self.dataset.made_split is not None:
            return self.dataset.root  # the bench takes the split's test list from the run's dataset.json
        for split in ("test", "validation"):
            if (self.dataset.root / split).is_dir():
                return self.dataset.root / split
        raise EdgeExportError(
            "no test/ or validation/ folder to benchmark on",
            path=self.dataset.root,
            hint="add a test/ split or set build.test_data",
        )


@dataclass(frozen=True)
class Stage:
    name: str
    fingerprint: Callable[[BuildContext], str]
    run: Callable[[BuildContext], object]  # what the stage made (metrics, manifest, bench report)
    outputs: Callable[[BuildContext], list[Path]]


# ---------------------------------------------------------------------------------------------- train


def _train_fingerprint(ctx: BuildContext) -> str:
    c = ctx.config.to_dict()
    if ctx.config.model.source:  # bring your own model: the file's bytes, not its name, make it the same model
        model = {k: v for k, v in c["model"].items() if k not in ("backbone", "weights", "dropout")}
        model["source"] = source_sha256(source_path(ctx.config))
        return fingerprint("import", __version__, c["data"], model, c["train"]["seed"], ctx.dataset.listing())
    teacher = None
    if ctx.config.train.distill.teacher is not None:  # a retrained teacher is another teacher: train again
        teacher_model = RunFolder(Path(ctx.config.train.distill.teacher).expanduser()).model
        teacher = sha256_file(teacher_model) if teacher_model.is_file() else "missing"
    train = dict(c["train"])
    if not train.get("label_smoothing"):  # added later: off, it leaves the builds made before it unchanged
        train.pop("label_smoothing", None)
    return fingerprint(
        "train", __version__, c["data"], c["model"], train, ctx.dataset.listing(), *([teacher] if teacher else [])
    )


def _train(ctx: BuildContext) -> dict:
    """Train a model; with model.source, import the user's model in its place (export/import_model.py)."""
    if ctx.config.model.source:
        return import_run(ctx.config, ctx.run, ctx.dataset, ctx.echo)
    return train_run(ctx.config, ctx.run, ctx.dataset)


def _train_outputs(ctx: BuildContext) -> list[Path]:
    return [ctx.run.run_record, *ctx.run.recorded_files()]


# --------------------------------------------------------------------------------------------- export


def _export_fingerprint(ctx: BuildContext) -> str:
    record = ctx.run.verify()  # the model and the files beside it are from one train (else a clear error)
    return fingerprint("export", __version__, ctx.config.to_dict()["export"], record.model_sha256, record.run_id)


def _export(ctx: BuildContext) -> Manifest:
    manifest = export_run(ctx.run, ctx.config.export, run_config=ctx.config, echo=ctx.echo, debug=ctx.debug)
    return manifest


def _export_outputs(ctx: BuildContext) -> list[Path]:
    manifest_path = ctx.run.export_manifest
    if not manifest_path.is_file():
        return []
    files = [manifest_path, ctx.run.export_model_card, ctx.run.export_labels]
    files += [ctx.run.export_dir / a.path for a in read_manifest(ctx.run).artifacts if a.path and a.ok]
    return files


# ---------------------------------------------------------------------------------------------- bench


def _bench_fingerprint(ctx: BuildContext) -> str:
    manifest_path = ctx.run.export_manifest
    manifest = sha256_file(manifest_path) if manifest_path.is_file() else None  # any re-export changes it
    record = ctx.run.verify()
    model = (record.model_sha256, record.run_id)
    test_dir = ctx.test_dir
    listing = sorted(f"{p.relative_to(test_dir)}\t{p.stat().st_size}" for p in test_dir.rglob("*") if p.is_file())
    return fingerprint(
        "bench", __version__, ctx.config.to_dict()["bench"], ctx.config.data.max_image_pixels, manifest, model, listing
    )


def _bench(ctx: BuildContext) -> dict[str, Any]:
    outcome = bench_run(
        ctx.run,
        data=ctx.test_dir,
        config=ctx.config.bench,
        echo=ctx.echo,
        max_image_pixels=ctx.config.data.max_image_pixels,
    )
    return outcome.report


def _bench_outputs(ctx: BuildContext) -> list[Path]:
    return [p for p in (ctx.run.bench_json, ctx.run.bench_md) if p.is_file()]


STAGES: list[Stage] = [
    Stage("train", _train_fingerprint, _train, _train_outputs),
    Stage("export", _export_fingerprint, _export, _export_outputs),
    Stage("bench", _bench_fingerprint, _bench, _bench_outputs),
]


def get_stages(names: list[str]) -> list[Stage]:
    known = {s.name: s for s in STAGES}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise EdgeExportError(f"unknown stage(s) {unknown}", hint=f"choose from {', '.join(known)}")
    return [s for s in STAGES if s.name in names]
