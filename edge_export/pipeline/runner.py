"""Run the build's stages in order, skipping those whose fingerprint is unchanged; then report and recommend."""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from edge_export.core.atomic import copy_file, remove_partials, write_json
from edge_export.core.config import Config
from edge_export.core.echo import Echo
from edge_export.core.records.bench import BenchResult
from edge_export.core.records.recommendation import Recommendation
from edge_export.core.run_folder import DeployFiles, RunFolder
from edge_export.export.dependents import stale_bench
from edge_export.export.manifest import read_manifest  # checked names and paths: nothing lands outside deploy/
from edge_export.pipeline.recommend import recommend
from edge_export.pipeline.report import gather, write_reports
from edge_export.pipeline.stages import BuildContext, get_stages
from edge_export.pipeline.state import StageState
from edge_export.trainer.datasets import scan_dataset
from edge_export.trainer.named_datasets import resolve_data


@dataclass
class BuildResult:
    ran: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)  # gates that failed (non-zero exit)
    recommendation: Recommendation | None = None
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
    echo: Echo = print,
    event: Event | None = None,
    debug: bool = False,
) -> BuildResult:
    event = event or (lambda e: None)
    result = BuildResult()
    dataset = scan_dataset(
        resolve_data(config.data.path), config.data.validation_split, config.train.seed, config.data.split
    )
    run.create()
    for folder in (run.root, run.export_dir, run.bench_dir, run.checkpoints):
        remove_partials(folder)  # leftovers of a killed build: never used, never mistaken for results
    results: dict[str, object] = {}
    ctx = BuildContext(config=config, run=run, dataset=dataset, echo=echo, debug=debug, results=results)
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
        results[stage.name] = stage.run(ctx)
        seconds = time.perf_counter() - t
        state.mark_done(stage.name, fp, run.root, stage.outputs(ctx), seconds)  # a stage never changes its own inputs
        result.ran.append(stage.name)
        result.seconds[stage.name] = round(seconds, 1)
        event({"event": "stage_finished", "stage": stage.name, "seconds": round(seconds, 1)})
        echo(f"== {stage.name}: done in {seconds:.0f}s")

    bench = BenchResult.read(run.bench_json) if run.bench_json.is_file() else None
    result.failures += _gates(run, config, bench)
    if bench is not None:
        stale = stale_bench(run, bench)  # measured files that an export or a train replaced since
        result.recommendation = recommend(bench, config.build.accuracy_budget, config.build.max_size_mb, stale=stale)
        _deploy(run, result.recommendation)
        if result.recommendation.artifact is None:
            result.failures.append(f"no recommendation: {result.recommendation.why}")
    report = gather(run, dataset.summary(), result.recommendation, command)
    result.reports = write_reports(run, report)
    event(
        {
            "event": "build_finished",
            "ok": result.ok,
            "failures": result.failures,
            "recommendation": result.recommendation.artifact if result.recommendation else None,
            "report": str(result.reports["html"]),
        }
    )
    return result


def _gates(run: RunFolder, config: Config, bench: BenchResult | None) -> list[str]:
    """Export entries that failed; bench rows that failed or are below bench.min_accuracy, by the same
    rule as bench's own verdict (``BenchResult.problems``, ``BenchRow.below``)."""
    failures = []
    if run.export_manifest.is_file():
        for a in read_manifest(run).artifacts:
            if not a.ok:
                failures.append(f"export {a.name}: {a.error or 'failed'}")
    if bench is not None:
        failures += [f"bench: {problem}" for problem in bench.problems(config.bench.min_accuracy)]
    return failures


def _deploy(run: RunFolder, recommendation: Recommendation) -> None:
    """Copy the recommended artifact with its labels and model card to RUN_DIR/deploy/ (replacing the old)."""
    deploy = run.deploy_dir
    name = recommendation.artifact
    if deploy.exists():
        shutil.rmtree(deploy)
    if not name:
        return
    entry = read_manifest(run).artifact(name)
    if entry is None or not entry.path:
        return
    deploy.mkdir()
    copy_file(run.export_dir / entry.path, deploy / Path(entry.path).name)
    copy_file(run.export_labels, deploy / DeployFiles.LABELS)
    if run.export_model_card.is_file():
        copy_file(run.export_model_card, deploy / DeployFiles.MODEL_CARD)
    recommendation.sha256 = entry.sha256  # what was recommended: readers notice a re-export
    write_json(run.deploy_recommendation, recommendation.to_dict())
