"""Run the build's stages in order, skipping those whose fingerprint is unchanged; then report and recommend."""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from edge_export.core.atomic import copy_file, remove_partials, write_json
from edge_export.core.config import Config
from edge_export.export.dependents import stale_bench
from edge_export.export.manifest import read_manifest  # checked names and paths: nothing lands outside deploy/
from edge_export.pipeline.recommend import recommend
from edge_export.pipeline.report import gather, write_reports
from edge_export.pipeline.stages import BuildContext, get_stages
from edge_export.pipeline.state import StageState
from edge_export.core.run_folder import RunFolder
from edge_export.trainer.datasets import scan_dataset
from edge_export.trainer.named_datasets import resolve_data
from edge_export.core.untrusted import read_json


@dataclass
class BuildResult:
    ran: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)  # gates that failed (non-zero exit)
    recommendation: dict | None = None
    seconds: dict[str, float] = field(default_factory=dict)
    reports: dict[str, Path] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.failures


Event = Callable[[dict], None]


def build(
    config: Config,
    run: RunFolder,
    *,
    stages: list[str] | None = None,
    force: bool = False,
    command: str = "",
    echo: Callable[[str], None] = print,
    event: Event | None = None,
    debug: bool = False,
) -> BuildResult:
    event = event or (lambda e: None)
    result = BuildResult()
    dataset = scan_dataset(resolve_data(config.data.path), config.data.validation_split, config.train.seed)
    run.create()
    for folder in (run.root, run.export_dir, run.bench_dir, run.checkpoints):
        remove_partials(folder)  # leftovers of a killed build: never used, never mistaken for results
    ctx = BuildContext(config=config, run=run, dataset=dataset, echo=echo, debug=debug, results={})
    state = StageState(run.root)
    selected = get_stages(stages or config.build.stages)
    echo(f"dataset {dataset.root}\n{dataset.counts_table()}")

    for stage in selected:
        fp = stage.fingerprint(ctx)
        if not force and state.is_done(stage.name, fp, run.root):
            result.skipped.append(stage.name)
            event({"event": "stage_skipped", "stage": stage.name})
            echo(f"== {stage.name}: up to date (fingerprint {fp[:12]}), skipped")
            continue
        state.forget(stage.name)
        event({"event": "stage_started", "stage": stage.name})
        echo(f"== {stage.name}: running")
        t = time.perf_counter()
        ctx.results[stage.name] = stage.run(ctx)
        seconds = time.perf_counter() - t
        state.mark_done(stage.name, stage.fingerprint(ctx), run.root, stage.outputs(ctx), seconds)
        result.ran.append(stage.name)
        result.seconds[stage.name] = round(seconds, 1)
        event({"event": "stage_finished", "stage": stage.name, "seconds": round(seconds, 1)})
        echo(f"== {stage.name}: done in {seconds:.0f}s")

    result.failures += _gates(run, config)
    bench_path = run.bench_dir / "bench.json"
    if bench_path.is_file():
        bench = read_json(bench_path)
        stale = stale_bench(run, bench)  # measured files that an export or a train replaced since
        if stale:
            result.recommendation = {"artifact": None, "candidates": [], "why": (
                f"stale: bench/bench.json measured {', '.join(stale)} as it was before (changed or removed since): "
                "re-run bench (`edge-export build --stages bench`)")}
        else:
            result.recommendation = recommend(bench, config.build.accuracy_budget, config.build.max_size_mb)
        _deploy(run, result.recommendation)
        if result.recommendation["artifact"] is None:
            result.failures.append(f"no recommendation: {result.recommendation['why']}")
    report = gather(run, dataset.summary(), result.recommendation, command)
    result.reports = write_reports(run, report)
    event({"event": "build_finished", "ok": result.ok, "failures": result.failures,
           "recommendation": (result.recommendation or {}).get("artifact"), "report": str(result.reports["html"])})
    return result


def _gates(run: RunFolder, config: Config) -> list[str]:
    failures = []
    if (run.export_dir / "manifest.json").is_file():
        for a in read_manifest(run):
            if a.get("status") != "ok":
                failures.append(f"export {a['name']}: {a.get('error', 'failed')}")
    bench_path = run.bench_dir / "bench.json"
    if bench_path.is_file() and config.bench.min_accuracy is not None:
        for a in read_json(bench_path).get("artifacts", []):
            if a.get("format") != "keras" and (a.get("accuracy") is None or a["accuracy"] < config.bench.min_accuracy):
                failures.append(f"bench {a['name']}: accuracy {a.get('accuracy')} below --min-accuracy {config.bench.min_accuracy}")
    return failures


def _deploy(run: RunFolder, recommendation: dict) -> None:
    """Copy the recommended artifact with its labels and model card to RUN_DIR/deploy/ (replacing the old)."""
    deploy = run.root / "deploy"
    name = recommendation.get("artifact")
    if deploy.exists():
        shutil.rmtree(deploy)
    if not name:
        return
    entry = next((a for a in read_manifest(run) if a["name"] == name), None)
    if entry is None or not entry.get("path"):
        return
    deploy.mkdir()
    copy_file(run.export_dir / entry["path"], deploy / Path(entry["path"]).name)
    copy_file(run.export_dir / "labels.txt", deploy / "labels.txt")
    if (run.export_dir / "model_card.json").is_file():
        copy_file(run.export_dir / "model_card.json", deploy / "model_card.json")
    recommendation["sha256"] = entry.get("sha256")  # what was recommended: readers notice a re-export
    write_json(deploy / "recommendation.json", recommendation)
