"""What a user would write around the bare model call instead of our runtime, timed beside ``predict(path)``.

Two pipelines, each ending in the same input conversion and the same bare backend call as the runtime:

* ``opencv``: ``cv2.imread`` -> ``cv2.cvtColor(BGR2RGB)`` -> ``cv2.resize(INTER_LINEAR)`` (the fastest hand-written
  pipeline we know of; where OpenCV is installed);
* ``pillow``: ``Image.open`` -> ``convert("RGB")`` -> ``resize(BILINEAR)`` (most tutorials).

``e2e_sample`` times ``predict(path)``, the bare call and the OpenCV pipeline over a sample of photos, interleaved
per photo (median of its runs per photo, then the median and p90 over photos): what ``bench`` reports as e2e, and
the gap to the hand-written pipeline, on the same photos and the same model.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import numpy as np
from PIL import Image

from edge_export.runtime.images import load_image, opencv_installed
from edge_export.runtime.quantization import quantize

HAND_WRITTEN = {
    "opencv": "cv2.imread -> cv2.cvtColor(BGR2RGB) -> cv2.resize(INTER_LINEAR) -> the bare call",
    "pillow": "Image.open -> convert('RGB') -> resize(BILINEAR) -> the bare call (most tutorials)",
}
E2E_PHOTOS = 20  # photos in bench's end-to-end sample


def hand_written(kind: str, classifier: Any, photo: str) -> np.ndarray:
    """One photo through the ``kind`` pipeline and ``classifier``'s bare backend call: the raw output."""
    height, width = classifier.input_size
    if kind == "opencv":
        import cv2  # lazy: OpenCV is optional (the video and train extras) and 80 MB; only its pipeline needs it

        bgr = cv2.imread(str(photo))
        if bgr is None:  # a file OpenCV cannot decode (cvtColor would fail on it with a less clear error)
            raise ValueError(f"OpenCV cannot read {photo}")
        pixels = cv2.resize(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), (width, height), interpolation=cv2.INTER_LINEAR)
    elif kind == "pillow":
        with Image.open(photo) as image:
            pixels = np.asarray(image.convert("RGB").resize((width, height), Image.Resampling.BILINEAR))
    else:
        raise ValueError(f"unknown hand-written pipeline {kind!r}")
    prep, spec = classifier.preprocessing, classifier.backend.input_spec
    return classifier.backend.run(quantize(prep.normalize(pixels[np.newaxis]), spec))


def sample(files: Sequence[Any], count: int = E2E_PHOTOS) -> list[str]:
    """Every k-th file (the list is sorted by class, then name), at most ``count``: spread over the classes."""
    step = max(1, -(-len(files) // count))
    return [str(f) for f in list(files)[::step][:count]]


def _spread(values: Sequence[float]) -> dict[str, float]:
    return {"p50": float(np.percentile(values, 50)), "p90": float(np.percentile(values, 90))}


def e2e_sample(classifier: Any, photos: Sequence[str], runs: int) -> dict[str, Any]:
    """predict(path), the bare call on that photo's input and (where OpenCV is installed) the OpenCV pipeline, one
    after the other per run, ``runs`` split over the photos (at least 3 each)."""
    prep = classifier.preprocessing
    per_photo: dict[str, list[float]] = {"bare": [], "e2e": [], "opencv": []}
    kinds = ["bare", "e2e"] + (["opencv"] if opencv_installed() else [])
    repeats = max(3, runs // max(1, len(photos)))
    for photo in photos:
        x = quantize(
            prep.normalize(load_image(photo, tuple(prep.size), prep.pixel_method)[np.newaxis]),
            classifier.backend.input_spec,
        )
        # called in this iteration only; the defaults bind this photo's values all the same
        calls = {
            "bare": lambda x=x: classifier.backend.run(x),
            "e2e": lambda photo=photo: classifier.predict(photo, top_k=1),
            "opencv": lambda photo=photo: hand_written("opencv", classifier, photo),
        }
        times: dict[str, list[int]] = {k: [] for k in kinds}
        for k in kinds:  # warm-up: the file into the page cache, the interpreter's first call
            calls[k]()
        for r in range(repeats):
            for k in kinds if r % 2 == 0 else kinds[::-1]:
                started = time.perf_counter_ns()
                calls[k]()
                times[k].append(time.perf_counter_ns() - started)
        for k in kinds:
            per_photo[k].append(float(np.median(times[k])) / 1e6)
    e2e = _spread(per_photo["e2e"])
    out: dict[str, Any] = {
        "e2e_ms": {**e2e, "photos": len(photos), "runs_per_photo": repeats},
        "e2e_p50": e2e["p50"],
        "e2e_overhead_pct": float(np.median(np.divide(per_photo["e2e"], per_photo["bare"])) - 1.0) * 100.0,
        "opencv_ms": None,
        "e2e_vs_opencv": None,
    }
    if per_photo["opencv"]:
        opencv = _spread(per_photo["opencv"])
        out.update(opencv_ms=opencv, e2e_vs_opencv=e2e["p50"] / opencv["p50"])
    return out
