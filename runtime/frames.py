"""Frames from a video file, a camera or a stream URL, classified as they come (``edge-export predict VIDEO``).

TF-free. Reading video needs OpenCV (``pip install 'edge-export[video]'``: opencv-python-headless, whose wheels
carry FFmpeg); nothing else in the runtime imports it. A source is named as a user would:

* a video file (``clip.mp4``; any container OpenCV's FFmpeg reads),
* a camera by its index (``0`` = ``/dev/video0``),
* a stream URL (``rtsp://``, ``http(s)://``, ``udp://``, ``tcp://``, ``rtmp://``).

``classify_frames`` reads on one thread and classifies on the calling one, so decoding (and resizing) the next
frame overlaps the model's call on this one; a bounded queue keeps memory flat whatever the length. OpenCV gives
frames in BGR order: they are turned to RGB here, by name, never guessed. ``every`` keeps one frame in N
(the others are skipped with ``grab``, not decoded into pixels); ``fps`` keeps at most that many frames per
second of video time (wall time for a camera). The stream ends at its end, on a read error (a damaged file, a
camera unplugged), when no frame arrives within ``stall_timeout_s``, or on Ctrl-C: every frame classified
before is kept and the summary says how it ended.
"""

from __future__ import annotations

import math
import os
import queue
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

import numpy as np

from edge_export.core.errors import EdgeExportError
from edge_export.core.untrusted import printable
from edge_export.runtime.images import load_image

if TYPE_CHECKING:
    from edge_export.runtime.classifier import Classifier, Prediction

VIDEO_EXTENSIONS = (".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm", ".mpg", ".mpeg", ".wmv", ".flv", ".ts", ".mjpeg")
STREAM_SCHEMES = ("rtsp://", "rtsps://", "http://", "https://", "udp://", "tcp://", "rtmp://")
INSTALL_HINT = "pip install 'edge-export[video]' (OpenCV with FFmpeg, about 80 MB installed)"
QUEUE_FRAMES = 4  # decoded frames waiting for the model at most
DEFAULT_STALL_S = 10.0
ENDED, STALLED, READ_ERROR, INTERRUPTED, LIMIT = "end", "stalled", "read error", "interrupted", "max frames"


def is_frame_source(argument: str) -> bool:
    """A camera index, a stream URL or a file with a video extension (not an image)."""
    text = str(argument)
    return text.isdigit() or text.lower().startswith(STREAM_SCHEMES) or Path(text).suffix.lower() in VIDEO_EXTENSIONS


def describe_source(argument: str) -> str:
    text = str(argument)
    if text.isdigit():
        return f"camera {text}"
    return printable(text, 300)


@dataclass
class FrameResult:
    """One classified frame: its number in the source (0-based), its time in the video (s; None for a camera),
    the top-k, and the model's time on it (ms, predict_proba)."""

    frame: int
    time_s: float | None
    predictions: list[Prediction]
    latency_ms: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "frame": self.frame,
            "time_s": None if self.time_s is None else round(self.time_s, 4),
            "predictions": [p._asdict() for p in self.predictions],
            "latency_ms": round(self.latency_ms, 3),
        }


@dataclass
class StreamSummary:
    source: str
    frames_read: int = 0
    frames_classified: int = 0
    seconds: float = 0.0
    ended: str = ENDED  # end | stalled | read error | interrupted | max frames
    message: str | None = None
    latencies_ms: list[float] = field(default_factory=list, repr=False)

    @property
    def fps(self) -> float:
        """Frames classified per second of wall time (reading, decoding and the model, overlapped)."""
        return self.frames_classified / self.seconds if self.seconds > 0 else 0.0

    def latency(self, q: float) -> float | None:
        return float(np.percentile(self.latencies_ms, q)) if self.latencies_ms else None

    @property
    def ok(self) -> bool:
        return self.ended in (ENDED, LIMIT)

    def to_dict(self) -> dict[str, Any]:
        return {
            "event": "summary",
            "source": self.source,
            "frames_read": self.frames_read,
            "frames_classified": self.frames_classified,
            "seconds": round(self.seconds, 3),
            "frames_per_s": round(self.fps, 2),
            "latency_ms": {"p50": self.latency(50), "p95": self.latency(95)},
            "ended": self.ended,
            "message": self.message,
        }

    def text(self) -> str:
        p50, p95 = self.latency(50), self.latency(95)
        timing = f"; model p50 {p50:.2f} ms, p95 {p95:.2f} ms per frame" if p50 is not None else ""
        how = "" if self.ended == ENDED else f"; stopped: {self.ended}" + (f" ({self.message})" if self.message else "")
        return (
            f"{self.source}: {self.frames_read} frames read, {self.frames_classified} classified in "
            f"{self.seconds:.2f} s = {self.fps:.1f} frames/s{timing}{how}"
        )


def _cv2() -> ModuleType:
    try:
        import cv2  # lazy: OpenCV is optional (the video extra) and 80 MB; only video, cameras and streams need it
    except ImportError:
        raise EdgeExportError(
            "reading video, cameras or streams needs OpenCV, which is not installed", hint=INSTALL_HINT
        ) from None
    return cv2


def open_capture(argument: str) -> tuple[Any, bool]:
    """(an opened cv2.VideoCapture, whether it is live: a camera or a stream) or a clear error."""
    cv2 = _cv2()
    text = str(argument)
    live = text.isdigit() or text.lower().startswith(STREAM_SCHEMES)
    if not live:
        path = Path(text)
        if not path.exists():
            raise EdgeExportError("video file not found", path=path, hint="check the path")
        if not path.is_file():
            raise EdgeExportError("not a regular file: not read as a video", path=path, hint="pass a video file")
        if not os.access(path, os.R_OK):
            raise EdgeExportError("cannot read this video file (permission denied)", path=path)
    capture = cv2.VideoCapture(int(text)) if text.isdigit() else cv2.VideoCapture(text)
    if not capture.isOpened():
        capture.release()
        if text.isdigit():
            raise EdgeExportError(
                f"camera {text} cannot be opened (no /dev/video{text}, or another program holds it)",
                hint="list cameras with `ls /dev/video*`; close other programs using it",
            )
        if live:
            raise EdgeExportError(
                f"cannot open the stream {printable(text, 300)}",
                hint="check the URL, the network and that the stream is on",
            )
        raise EdgeExportError(
            "cannot open this video (not a format OpenCV's FFmpeg reads, or damaged)",
            path=text,
            hint="re-encode it, e.g. ffmpeg -i IN -c:v libx264 OUT.mp4",
        )
    return capture, live


def classify_frames(
    classifier: Classifier,
    argument: str,
    *,
    top_k: int = 5,
    every: int = 1,
    fps: float | None = None,
    stall_timeout_s: float = DEFAULT_STALL_S,
    max_frames: int | None = None,
    summary: StreamSummary | None = None,
) -> Iterator[FrameResult]:
    """Classify the frames of a video, camera or stream as they come; fills ``summary`` (pass one to read it
    after the loop, however it ended). Errors opening the source raise EdgeExportError before any frame."""
    if not isinstance(every, int) or isinstance(every, bool) or every < 1:
        raise EdgeExportError(f"every must be a positive whole number of frames, got {every!r}")
    if fps is not None and not (isinstance(fps, (int, float)) and math.isfinite(fps) and fps > 0):
        raise EdgeExportError(f"fps must be a positive number, got {fps!r}")
    summary = summary if summary is not None else StreamSummary(describe_source(argument))
    capture, live = open_capture(argument)
    cv2 = _cv2()
    size = classifier.input_size
    method = classifier.preprocessing.pixel_method
    frames: queue.Queue[tuple[Any, ...]] = queue.Queue(QUEUE_FRAMES)  # ("frame", ...) or ("end", ...)
    stop = threading.Event()
    total = int(capture.get(cv2.CAP_PROP_FRAME_COUNT) or 0) if not live else 0

    def put(item: tuple[Any, ...]) -> bool:
        while not stop.is_set():
            try:
                frames.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def read() -> None:  # the reader thread: decode, keep, resize; OpenCV and Pillow release the GIL
        index, next_due, started = -1, 0.0, time.monotonic()
        try:
            while not stop.is_set():
                if not capture.grab():
                    short = total and index + 1 < total - 1  # a file that ends before its own frame count
                    put(
                        (
                            "end",
                            READ_ERROR if short else ENDED,
                            f"the video ended at frame {index + 1} of {total} (damaged?)" if short else None,
                        )
                    )
                    return
                index += 1
                summary.frames_read = index + 1
                when = (time.monotonic() - started) if live else capture.get(cv2.CAP_PROP_POS_MSEC) / 1000.0
                if index % every or (fps is not None and when + 1e-9 < next_due):
                    continue
                if fps is not None:
                    next_due = max(next_due + 1.0 / fps, when)
                ok, frame = capture.retrieve()
                if not ok or frame is None or frame.ndim != 3 or frame.shape[2] != 3 or 0 in frame.shape[:2]:
                    put(("end", READ_ERROR, f"frame {index} could not be decoded"))
                    return
                pixels = load_image(np.ascontiguousarray(frame[..., ::-1]), size, method)  # BGR -> RGB, by name
                if not put(("frame", index, None if live else when, pixels)):
                    return
        except Exception as exc:  # a driver or decoder failure: said, the frames before kept
            put(("end", READ_ERROR, f"{type(exc).__name__}: {printable(str(exc), 200)}"))

    reader = threading.Thread(target=read, name="edge-export-frames", daemon=True)
    started = time.perf_counter()
    reader.start()
    try:
        while True:
            if max_frames is not None and summary.frames_classified >= max_frames:
                summary.ended = LIMIT
                return
            try:
                item = frames.get(timeout=stall_timeout_s)
            except queue.Empty:
                summary.ended, summary.message = STALLED, f"no frame for {stall_timeout_s:g} s"
                return
            if item[0] == "end":
                summary.ended, summary.message = item[1], item[2]
                return
            _, index, when, pixels = item
            t0 = time.perf_counter()
            row = classifier.predict_proba(pixels)[0]
            latency = (time.perf_counter() - t0) * 1000.0
            summary.frames_classified += 1
            summary.latencies_ms.append(latency)
            summary.seconds = time.perf_counter() - started
            yield FrameResult(index, when, classifier._top_k(row, top_k), latency)
    except KeyboardInterrupt:
        summary.ended = INTERRUPTED
        raise
    finally:
        summary.seconds = time.perf_counter() - started
        stop.set()
        reader.join(timeout=stall_timeout_s + 5)
        if not reader.is_alive():
            capture.release()  # a reader stuck in a driver call keeps it (released at exit)
