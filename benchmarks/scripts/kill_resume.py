"""``kill -9`` of ``edge-export build`` at random moments, then resume: no orphan, no temp folder, same artifacts.

    python benchmarks/scripts/kill_resume.py [--kills 20] [--seed 0] [--work DIR] [--json FILE]

A benchmark, not a test (the moments are random, seeded). On a tiny generated dataset (tiny_cnn):

1. a reference build, uninterrupted;
2. ``--kills`` times: a build on a fresh run folder, or (at random) ``--force`` on the last one (a build
   that overwrites finished outputs), killed with SIGKILL after a random delay in [0, 0.85 x reference time];
   then, after waiting for the killed process: orphans (any live process whose command line names this
   benchmark's work folder: the build's measuring or QAT workers), what is left in the private system
   temp folder given to the build (TMPDIR) and in RUN/.tmp; then the same build again, to completion,
   and its export (sha256 of each artifact in export/manifest.json) and model weights compared with the
   reference's; RUN/.tmp must be gone and TMPDIR still empty afterwards.

Prints a table and a final PASS/FAIL line; writes the rows as JSON. Exit status 0 on PASS, 1 on FAIL.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from edge_export.core.process import child_popen_kwargs

SETTINGS = [
    "model.backbone=tiny_cnn",
    "model.weights=none",
    "train.batch_size=8",
    "train.feature_extraction.epochs=3",
    "train.fine_tune.epochs=2",
    "export.formats=tflite-fp32,tflite-int8,onnx-fp32",
    "export.representative_images=16",
    "export.accuracy_budget=100",
    "bench.runs=5",
    "bench.warmup=1",
    "bench.threads=[1]",
    "build.accuracy_budget=100",
]
KILL_WINDOW = 0.85  # of the reference build's time: a later kill mostly lands after a build finished
ORPHAN_GRACE_S = 10.0  # a killed parent's children get SIGKILL at once; this only covers their reaping


def write_images(root: Path, per_split: dict[str, int], classes=("blue", "red"), seed: int = 0) -> Path:
    """root/<split>/<class>/<i>.png: noise plus a strong colour channel per class."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    for split, count in per_split.items():
        for channel, name in enumerate(classes):
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                pixels = rng.integers(0, 90, (40, 48, 3), dtype=np.uint8)
                pixels[..., 2 - 2 * channel] += 160
                Image.fromarray(pixels).save(folder / f"{name}_{i}.png")
    return root


class Build:
    """``edge-export build --json`` in a child process; its events read as they come."""

    def __init__(self, data: Path, out: Path, tmpdir: Path, *extra: str):
        cmd = [
            sys.executable,
            "-m",
            "edge_export.cli",
            "build",
            "--data",
            str(data),
            "--out",
            str(out),
            "--json",
            *SETTINGS,
            *extra,
        ]
        env = {**os.environ, "TMPDIR": str(tmpdir), "TF_CPP_MIN_LOG_LEVEL": "3"}
        env.pop("EDGE_EXPORT_PAUSE_AT", None)
        self.started = time.monotonic()
        self.proc = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, **child_popen_kwargs()
        )
        self.events: list[dict] = []
        self.stderr = ""
        self._readers = [threading.Thread(target=self._read_events), threading.Thread(target=self._read_stderr)]
        for t in self._readers:
            t.start()

    def _read_events(self) -> None:
        assert self.proc.stdout is not None  # stdout=PIPE
        for line in self.proc.stdout:
            if line.startswith("{"):
                self.events.append(json.loads(line))

    def _read_stderr(self) -> None:
        assert self.proc.stderr is not None  # stderr=PIPE
        self.stderr = self.proc.stderr.read()

    def wait(self, timeout: float) -> int:
        code = self.proc.wait(timeout=timeout)
        for t in self._readers:
            t.join()
        return code

    @property
    def stage(self) -> str:
        """Where the build was: the stage running, or start-up/report."""
        running = "start-up"
        for e in self.events:
            if e["event"] == "stage_started":
                running = e["stage"]
            elif e["event"] in ("stage_finished", "stage_skipped"):
                running = f"after {e['stage']}"
            elif e["event"] == "build_finished":
                running = "finished"
        return running


def _ancestors() -> set[int]:
    """This process and its parents (a ``timeout ... --work DIR`` wrapper names the work folder too)."""
    pids, pid = set(), os.getpid()
    while pid > 1 and pid not in pids:
        pids.add(pid)
        try:
            pid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            break
    return pids


def live_processes_naming(text: str) -> list[tuple[int, str]]:
    """(pid, command line) of every live (not zombie) process whose command line contains ``text``."""
    found, skip = [], _ancestors()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) in skip:
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if text in cmdline and state != "Z":
            found.append((int(entry.name), cmdline))
    return found


def orphans_after_kill(work: Path) -> list[str]:
    """Processes of ours still alive once the killed build is gone (they get ORPHAN_GRACE_S to be reaped)."""
    deadline = time.monotonic() + ORPHAN_GRACE_S
    while True:
        alive = live_processes_naming(str(work))
        if not alive or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    for pid, _ in alive:  # clean up, so one failure does not skew the next rounds
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    return [f"{pid} {cmd[:120]}" for pid, cmd in alive]


def listing(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")) if folder.is_dir() else []


def artifact_digests(run: Path) -> dict[str, str | None]:
    from edge_export.core.run_folder import RunFolder
    from edge_export.export.manifest import read_manifest

    return {a.name: a.sha256 for a in read_manifest(RunFolder(run)).artifacts}


def weights(run: Path) -> list[np.ndarray]:
    from edge_export.core.tf_env import import_keras

    return import_keras().models.load_model(run / "model.keras", compile=False).get_weights()


def same_weights(a: list[np.ndarray], b: list[np.ndarray]) -> bool:
    return len(a) == len(b) and all(x.shape == y.shape and np.array_equal(x, y) for x, y in zip(a, b))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work", type=Path, help="work folder [a new temporary folder]")
    parser.add_argument("--json", type=Path, help="results [WORK/kill_resume.json]")
    parser.add_argument("--timeout", type=float, default=900, help="seconds allowed for one build")
    args = parser.parse_args(argv)

    work = (args.work or Path(tempfile.mkdtemp(prefix="kill-resume-"))).resolve()
    work.mkdir(parents=True, exist_ok=True)
    out_json = args.json or work / "kill_resume.json"
    rng = random.Random(args.seed)
    data = write_images(work / "data", {"train": 10, "validation": 5, "test": 5})

    ref_tmp = work / "tmp-reference"
    ref_tmp.mkdir(exist_ok=True)
    reference = Build(data, work / "reference", ref_tmp)
    if reference.wait(args.timeout) != 0:
        print(f"reference build failed:\n{reference.stderr[-3000:]}", file=sys.stderr)
        return 1
    ref_seconds = time.monotonic() - reference.started
    ref_digests, ref_weights = artifact_digests(work / "reference"), weights(work / "reference")
    print(
        f"reference build: {ref_seconds:.1f}s, artifacts {', '.join(ref_digests)}; "
        f"killing at [0, {KILL_WINDOW * ref_seconds:.1f}]s"
    )

    rows: list[dict[str, Any]] = []
    run: Path | None = None
    for i in range(1, args.kills + 1):
        reuse = run is not None and rng.random() < 0.5
        if not reuse:
            run = work / f"run-{i:02d}"
        assert run is not None  # made above, or the last one reused
        tmp = work / f"tmp-{i:02d}"
        tmp.mkdir()
        delay = rng.uniform(0, KILL_WINDOW * ref_seconds)
        build = Build(data, run, tmp, *(["--force"] if reuse else []))
        time.sleep(max(0.0, build.started + delay - time.monotonic()))
        finished_first = build.proc.poll() is not None
        build.proc.send_signal(signal.SIGKILL)
        build.wait(60)
        row: dict[str, Any] = {
            "round": i,
            "run": run.name,
            "mode": "--force on the last" if reuse else "fresh",
            "kill_at_s": round(delay, 2),
            "stage": build.stage,
            "finished_before_kill": finished_first,
            "orphans": orphans_after_kill(work),
            "system_tmp_after_kill": listing(tmp),
            "run_tmp_after_kill": len(listing(run / ".tmp")),
        }
        again = Build(data, run, tmp)
        row["rerun_status"] = again.wait(args.timeout)
        row["rerun_seconds"] = round(time.monotonic() - again.started, 1)
        row["orphans"] += orphans_after_kill(work)
        row["system_tmp_after_rerun"] = listing(tmp)
        row["run_tmp_after_rerun"] = listing(run / ".tmp")
        if row["rerun_status"] == 0:
            row["same_artifacts"] = artifact_digests(run) == ref_digests
            row["same_weights"] = same_weights(weights(run), ref_weights)
        else:
            row["same_artifacts"] = row["same_weights"] = False
            row["rerun_error"] = again.stderr[-2000:]
        row["ok"] = (
            not row["orphans"]
            and not row["system_tmp_after_kill"]
            and not row["system_tmp_after_rerun"]
            and not row["run_tmp_after_rerun"]
            and row["rerun_status"] == 0
            and row["same_artifacts"]
            and row["same_weights"]
        )
        rows.append(row)
        print(_line(row), flush=True)

    passed = all(r["ok"] for r in rows)
    summary = {
        "kills": len(rows),
        "seed": args.seed,
        "reference_seconds": round(ref_seconds, 1),
        "pass": passed,
        "orphans": sum(len(r["orphans"]) for r in rows),
        "system_tmp_left": sum(len(r["system_tmp_after_kill"]) + len(r["system_tmp_after_rerun"]) for r in rows),
        "run_tmp_left_after_rerun": sum(len(r["run_tmp_after_rerun"]) for r in rows),
        "reruns_failed": sum(r["rerun_status"] != 0 for r in rows),
        "artifacts_differ": sum(not r["same_artifacts"] for r in rows),
        "weights_differ": sum(not r["same_weights"] for r in rows),
        "stages_hit": {s: sum(r["stage"] == s for r in rows) for s in sorted({r["stage"] for r in rows})},
    }
    out_json.write_text(json.dumps({"summary": summary, "rounds": rows}, indent=2) + "\n")
    print(f"wrote {out_json}")
    print(
        ("PASS" if passed else "FAIL")
        + ": "
        + ", ".join(f"{k} {v}" for k, v in summary.items() if k not in ("pass", "seed"))
    )
    if args.work is None and passed:
        shutil.rmtree(work, ignore_errors=True)
    return 0 if passed else 1


HEADER = (
    f"{'#':>2} {'run':<7} {'mode':<20} {'kill s':>6} {'stage at kill':<16} {'orphans':>7} {'sys tmp':>7} "
    f"{'RUN/.tmp':>8} {'rerun':>6} {'same':>5}  ok"
)


def _line(row: dict) -> str:
    if row["round"] == 1:
        print(HEADER)
    tmp = len(row["system_tmp_after_kill"]) + len(row["system_tmp_after_rerun"])
    same = "yes" if row["same_artifacts"] and row["same_weights"] else "NO"
    return (
        f"{row['round']:>2} {row['run']:<7} {row['mode']:<20} {row['kill_at_s']:>6.1f} {row['stage']:<16} "
        f"{len(row['orphans']):>7} {tmp:>7} {row['run_tmp_after_kill']:>3}->{len(row['run_tmp_after_rerun']):<3} "
        f"{row['rerun_status']:>6} {same:>5}  {'ok' if row['ok'] else 'FAIL'}"
    )


if __name__ == "__main__":
    sys.exit(main())
