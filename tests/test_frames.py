"""Frames: ``Classifier.predict(..., channels=)``, ``edge-export predict VIDEO|CAMERA|URL`` (runtime/frames.py), on
videos generated here with OpenCV's writer and a tiny real model (red and blue classes: a frame read in the wrong
channel order is classified as the other colour)."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import numpy as np
import pytest

from edge_export.core.errors import EdgeExportError

from conftest import COLORS

cv2 = pytest.importorskip("cv2", reason="OpenCV (the video extra: pip install 'edge-export[video]') is not installed")

FPS = 10.0


def _frame(colour: str, rng, size=(96, 128)) -> np.ndarray:
    """An RGB frame like the training photos of ``colour`` (noise plus a strong channel)."""
    pixels = rng.integers(0, 90, (*size, 3), dtype=np.uint8)
    pixels[..., COLORS[colour]] += 160
    return pixels


def write_video(path: Path, colours: list[str], fps: float = FPS) -> Path:
    """An MJPG .avi, one frame per colour name, written through OpenCV (BGR in, as OpenCV wants)."""
    rng = np.random.default_rng(0)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (128, 96))
    assert writer.isOpened()
    for colour in colours:
        writer.write(cv2.cvtColor(_frame(colour, rng), cv2.COLOR_RGB2BGR))
    writer.release()
    return path


def _predict(*args: str):
    from click.testing import CliRunner

    from edge_export.cli import cli

    return CliRunner().invoke(cli, ["predict", *args])


def _lines(output: str) -> tuple[list[dict], dict]:
    events = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    return [e for e in events if "frame" in e], events[-1]


@pytest.fixture(scope="module")
def model(tiny_export) -> str:
    return str(tiny_export["run"] / "export" / "tflite-int8.tflite")


COLOURS = ["red"] * 10 + ["blue"] * 10


def test_a_video_is_classified_frame_by_frame_in_rgb_order(model, tmp_path):
    video = write_video(tmp_path / "clip.avi", COLOURS)
    result = _predict(model, str(video), "--json", "--top-k", "1")
    assert result.exit_code == 0, result.output
    frames, summary = _lines(result.output)
    assert [f["frame"] for f in frames] == list(range(20))
    assert [f["predictions"][0]["label"] for f in frames] == COLOURS  # BGR frames turned to RGB, not guessed
    assert frames[1]["time_s"] == pytest.approx(1 / FPS, abs=1e-3)
    assert summary["event"] == "summary" and summary["ended"] == "end"
    assert summary["frames_read"] == 20 and summary["frames_classified"] == 20 and summary["frames_per_s"] > 0
    assert 0 < summary["latency_ms"]["p50"] <= summary["latency_ms"]["p95"]

    text = _predict(model, str(video), "--top-k", "1")
    assert text.exit_code == 0
    assert "frame      0    0.000s  red" in text.output and "20 frames read, 20 classified in" in text.output


def test_every_fps_and_max_frames_choose_the_frames(model, tmp_path):
    video = write_video(tmp_path / "clip.avi", COLOURS)
    every = _lines(_predict(model, str(video), "--json", "--every", "3").output)[0]
    assert [f["frame"] for f in every] == [0, 3, 6, 9, 12, 15, 18]
    half = _lines(_predict(model, str(video), "--json", "--fps", str(FPS / 2)).output)
    assert [f["frame"] for f in half[0]] == list(range(0, 20, 2)) and half[1]["frames_read"] == 20
    first = _predict(model, str(video), "--json", "--max-frames", "4")
    frames, summary = _lines(first.output)
    assert first.exit_code == 0 and len(frames) == 4 and summary["ended"] == "max frames"


def test_a_damaged_video_keeps_the_frames_before_and_says_where_it_stopped(model, tmp_path):
    video = write_video(tmp_path / "clip.avi", COLOURS)
    data = video.read_bytes()
    cut = tmp_path / "cut.avi"
    cut.write_bytes(data[: len(data) // 2])  # the header still says 20 frames
    result = _predict(model, str(cut), "--json", "--top-k", "1")
    frames, summary = _lines(result.output)
    assert 0 < len(frames) < 20 and [f["predictions"][0]["label"] for f in frames] == COLOURS[: len(frames)]
    assert summary["frames_classified"] == len(frames)
    assert summary["ended"] == "read error" and f"ended at frame {len(frames)} of 20 (damaged?)" in summary["message"]
    assert result.exit_code == 1 and "stopped early (read error" in result.output


def test_sources_that_cannot_be_opened_are_clear_errors(model, tmp_path):
    result = _predict(model, "97")
    assert isinstance(result.exception, EdgeExportError) and "camera 97 cannot be opened" in str(result.exception)
    result = _predict(model, str(tmp_path / "missing.mp4"))
    assert isinstance(result.exception, EdgeExportError) and "video file not found" in str(result.exception)
    (tmp_path / "text.mp4").write_text("not a video")
    result = _predict(model, str(tmp_path / "text.mp4"))
    assert isinstance(result.exception, EdgeExportError) and "cannot open this video" in str(result.exception)
    result = _predict(model, str(tmp_path / "clip.mp4"), str(tmp_path / "a.png"))
    assert result.exit_code == 2 and "one video, camera or stream at a time" in result.output


def test_a_stream_that_stalls_stops_with_the_frames_before_kept(tiny_export, monkeypatch):
    """A source whose next frame never comes (a camera that hangs): the reader is blocked by construction, so the
    stall is certain, not a matter of the machine's speed."""
    from edge_export.runtime import frames as frames_module
    from edge_export.runtime.classifier import Classifier

    release = threading.Event()
    rgb = _frame("red", np.random.default_rng(1))

    class HangingCamera:
        def __init__(self):
            self.grabbed = 0

        def grab(self):
            self.grabbed += 1
            if self.grabbed > 3:
                release.wait()  # hangs like a driver call until the test ends
                return False
            return True

        def retrieve(self):
            return True, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)

        def get(self, prop):
            return 0.0

        def release(self):
            pass

    monkeypatch.setattr(frames_module, "open_capture", lambda argument: (HangingCamera(), True))
    classifier = Classifier.load(tiny_export["run"] / "export" / "tflite-int8.tflite")
    summary = frames_module.StreamSummary("camera 0")
    try:
        got = list(frames_module.classify_frames(classifier, "0", top_k=1, stall_timeout_s=1.0, summary=summary))
    finally:
        release.set()
    assert [r.frame for r in got] == [0, 1, 2] and all(r.predictions[0].label == "red" for r in got)
    assert summary.ended == "stalled" and not summary.ok and summary.frames_classified == 3
    assert "no frame for 1 s" in summary.text()


def test_arrays_take_an_explicit_channel_order(tiny_export):
    from edge_export.runtime.classifier import Classifier

    classifier = Classifier.load(tiny_export["run"] / "export" / "tflite-int8.tflite")
    rgb = _frame("red", np.random.default_rng(2))
    bgr = np.ascontiguousarray(rgb[..., ::-1])
    assert classifier.predict(rgb, top_k=1)[0][0].label == "red"
    assert classifier.predict(bgr, top_k=1, channels="BGR")[0][0].label == "red"
    assert classifier.predict(bgr, top_k=1)[0][0].label == "blue"  # BGR read as RGB: the other colour
    assert classifier.predict([bgr, bgr], top_k=1, channels="BGR")[1][0].label == "red"
    with pytest.raises(EdgeExportError, match="channels must be one of RGB, BGR"):
        classifier.predict(rgb, channels="bgr!")


def test_without_opencv_a_video_is_an_error_naming_the_extra(model, tmp_path, monkeypatch):
    from conftest import without_module

    without_module(monkeypatch, "cv2")
    result = _predict(model, str(tmp_path / "clip.mp4"))
    assert isinstance(result.exception, EdgeExportError)
    assert "needs OpenCV" in str(result.exception) and "edge-export[video]" in str(result.exception)


def test_frames_rate_script_measures_the_video_against_the_bare_rate(tiny_export):
    """benchmarks/scripts/frames_rate.py (the README's frames/s figure) on the tiny model: it writes a video of the
    test photos, classifies every frame and compares the rate with 1000 / bare p50 measured beside it."""
    from conftest import load_script

    script = load_script("frames_rate")
    result = script.measure(
        tiny_export["run"],
        tiny_export["data"] / "test",
        "tflite-int8",
        frames=12,
        size=(64, 48),
        codec="MJPG",
        repeats=1,
    )
    (run,) = result["repeats"]
    assert run["frames"] == 12 and run["ended"] == "end" and run["frames_per_s"] > 0 and run["bare_p50_ms"] > 0
    assert result["ratio"] == pytest.approx(run["frames_per_s"] * run["bare_p50_ms"] / 1000.0)
    assert "frames/s =" in script.render(result)
