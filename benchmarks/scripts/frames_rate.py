"""Frames per second of ``predict`` on a video, against the model's own rate (1000 / bare p50), at 1 thread.

    python benchmarks/scripts/frames_rate.py RUN_DIR --data TEST_DIR [--artifact NAME] [--frames 300]
        [--size 640x480] [--codec MJPG] [--repeats 3] [--json OUT]

Writes a video of ``--frames`` frames (the test photos, resized to ``--size``, one per frame) with OpenCV's
writer into a temporary folder, then, ``--repeats`` times, in one process: the bare interpreter call on one
frame's prepared input, timed alone (``--frames`` calls: its p50), and ``classify_frames`` over the whole video
(OpenCV reads and decodes the next frame on another thread while the model runs; the frame is resized and turned
to RGB there too). The rate is frames classified / wall time; the ratio is that rate over 1000 / bare p50 (the
most a loop around the bare call could do), median over repeats.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import click
import numpy as np

from edge_export.benchmarks.machine import describe, machine_info
from edge_export.benchmarks.testset import scan_test_folder
from edge_export.core.run_folder import RunFolder

# the sibling scripts import from this folder at run time; mypy checks them as package modules, unresolved
sys.path.insert(0, str(Path(__file__).resolve().parent))
from compare_reference import artifact_path, recommended_artifact  # type: ignore[import-not-found]  # noqa: E402
from script_cli import finish, json_option  # type: ignore[import-not-found]  # noqa: E402


def write_video(path: Path, photos: list[Path], frames: int, size: tuple[int, int], codec: str) -> Path:
    import cv2

    width, height = size
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*codec), 30.0, (width, height))
    if not writer.isOpened():
        raise RuntimeError(f"OpenCV cannot write {codec} into {path.suffix}")
    for i in range(frames):
        frame = cv2.imread(str(photos[i % len(photos)]))
        if frame is None:
            raise RuntimeError(f"OpenCV cannot read {photos[i % len(photos)]}")
        writer.write(cv2.resize(frame, (width, height), interpolation=cv2.INTER_AREA))
    writer.release()
    return path


def measure(
    run_dir: Path, data: Path, artifact: str | None, frames: int, size: tuple[int, int], codec: str, repeats: int
) -> dict:
    from edge_export.runtime.classifier import Classifier
    from edge_export.runtime.frames import StreamSummary, classify_frames
    from edge_export.runtime.images import load_image

    run = RunFolder(run_dir)
    name = artifact or recommended_artifact(run)
    classifier = Classifier.load(artifact_path(run, name), threads=1)
    photos = list(scan_test_folder(data).files)
    with tempfile.TemporaryDirectory(prefix="frames-rate-") as tmp:
        video = write_video(Path(tmp) / ("clip.avi" if codec == "MJPG" else "clip.mp4"), photos, frames, size, codec)
        prep = classifier.preprocessing
        height, width = prep.size
        x = classifier._model_input(load_image(photos[0], (height, width), prep.pixel_method)[np.newaxis])
        runs: list[dict[str, Any]] = []
        for _ in range(repeats):
            bare = []
            for _ in range(frames):
                started = time.perf_counter_ns()
                classifier.backend.run(x)
                bare.append(time.perf_counter_ns() - started)
            bare_p50 = float(np.percentile(bare, 50)) / 1e6
            summary = StreamSummary(str(video))
            for _ in classify_frames(classifier, str(video), top_k=1, summary=summary):
                pass
            runs.append(
                {
                    "bare_p50_ms": bare_p50,
                    "frames_per_s": summary.fps,
                    "bare_rate": 1000.0 / bare_p50,
                    "ratio": summary.fps / (1000.0 / bare_p50),
                    "frames": summary.frames_classified,
                    "latency_p50_ms": summary.latency(50),
                    "latency_p95_ms": summary.latency(95),
                    "ended": summary.ended,
                }
            )
    return {
        "run_dir": str(run_dir),
        "artifact": name,
        "frames": frames,
        "size": list(size),
        "codec": codec,
        "repeats": runs,
        "ratio": statistics.median(r["ratio"] for r in runs),
        "frames_per_s": statistics.median(r["frames_per_s"] for r in runs),
        "bare_rate": statistics.median(r["bare_rate"] for r in runs),
        "machine": machine_info(),
    }


def render(r: dict) -> str:
    lines = [
        f"{r['artifact']} on a {r['size'][0]}x{r['size'][1]} {r['codec']} video of {r['frames']} frames, 1 thread:"
    ]
    lines += [
        f"  repeat {i}: {x['frames']} frames at {x['frames_per_s']:.1f} frames/s; bare p50 {x['bare_p50_ms']:.3f} ms "
        f"= {x['bare_rate']:.1f}/s; ratio {x['ratio']:.3f}; per-frame model p50 {x['latency_p50_ms']:.3f} ms, "
        f"p95 {x['latency_p95_ms']:.3f} ms ({x['ended']})"
        for i, x in enumerate(r["repeats"], 1)
    ]
    lines.append(
        f"median: {r['frames_per_s']:.1f} frames/s = {r['ratio']:.1%} of 1000 / bare p50 ({r['bare_rate']:.1f}/s)"
    )
    lines.append(f"machine: {describe(r['machine'])}")
    return "\n".join(lines)


def _size(ctx, param, value: str) -> tuple[int, int]:
    try:
        width, height = (int(v) for v in value.lower().split("x"))
    except ValueError:
        raise click.BadParameter("expected WIDTHxHEIGHT, e.g. 640x480") from None
    return width, height


@click.command()
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--data", required=True, type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--artifact", help="artifact name [the run's recommended one]")
@click.option("--frames", default=300, show_default=True, type=click.IntRange(min=10))
@click.option("--size", default="640x480", show_default=True, callback=_size)
@click.option("--codec", default="MJPG", show_default=True, type=click.Choice(["MJPG", "mp4v"]))
@click.option("--repeats", default=3, show_default=True, type=click.IntRange(min=1))
@json_option
def main(run_dir, data, artifact, frames, size, codec, repeats, json_out) -> None:
    finish(lambda: measure(run_dir, data, artifact, frames, size, codec, repeats), render, json_out)


if __name__ == "__main__":
    main()
