"""Where predict(path)'s time goes around the model: decode and resize variants against the bare call, per photo.

    python benchmarks/scripts/decode_cost.py RUN_DIR --data TEST_DIR [--artifact NAME] [--every 10] [--repeats 5]
        [--json OUT]

For every ``--every``-th photo of the test folder and each repeat, one call each (adjacent, so load that comes
and goes hits them alike), timed in the calling thread's CPU time (everything here runs on that thread):

    bare            the artifact's interpreter call on the photo's prepared input (1 thread)
    decode 1/1      Pillow's JPEG decode at full size (the runtime's decoder is Pillow, with libjpeg-turbo)
    decode 1/2, 1/4, 1/8   the same file decoded at a reduced DCT scale (Pillow's draft mode), forced whatever
                    the photo's size: the cost floor of a decoder that still reads every coefficient
    resize <method> resizing the full decode to the model's input with each method the runtime offers
    load_image      what the runtime does: decode (reduced only for photos at least twice the input) + resize

Per photo the median over repeats is kept; the report gives the median and p90 over photos, in ms and as a
share of the bare call (per photo, then the median). It answers "how much of the end-to-end overhead could a
faster decode or resize take out" on this CPU: a decode share that alone exceeds a target means no resize
setting meets it.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
import numpy as np

from edge_export.benchmarks.machine import describe, machine_info
from edge_export.benchmarks.testset import scan_test_folder
from edge_export.core.errors import EdgeExportError
from edge_export.core.run_folder import RunFolder

# the sibling scripts import from this folder at run time; mypy checks them as package modules, unresolved
sys.path.insert(0, str(Path(__file__).resolve().parent))
from compare_reference import artifact_path, recommended_artifact  # type: ignore[import-not-found]  # noqa: E402 (the sibling script: same artifact rules)
from script_cli import finish, json_option, sample_options  # type: ignore[import-not-found]  # noqa: E402

SCALES = (1, 2, 4, 8)


def _decode(path: Path, scale: int) -> Any:
    from PIL import Image

    with Image.open(path) as image:
        if scale > 1 and image.format in ("JPEG", "MPO"):
            image.draft("RGB", (max(1, image.size[0] // scale), max(1, image.size[1] // scale)))
        image.load()
        return image.convert("RGB") if image.mode != "RGB" else image.copy()


def decode_cost(
    run: RunFolder | str | Path,
    data: str | Path,
    *,
    artifact: str | None = None,
    every: int = 10,
    images: int | None = None,
    repeats: int = 5,
) -> dict[str, Any]:
    """The per-photo costs described in the module doc, for the run's ``artifact`` (default: the recommended one)."""
    from edge_export.runtime.classifier import Classifier
    from edge_export.runtime.images import RESIZE_METHODS, load_image

    if every < 1 or repeats < 1 or (images is not None and images < 1):
        raise EdgeExportError("every, repeats and images must be >= 1")
    run = run if isinstance(run, RunFolder) else RunFolder(run)
    artifact = artifact or recommended_artifact(run)
    clf = Classifier.load(artifact_path(run, artifact), threads=1)
    size, method = clf.input_size, clf.preprocessing.pixel_method
    photos = scan_test_folder(data).files[::every][:images]
    kinds = ["bare", *(f"decode 1/{s}" for s in SCALES), *(f"resize {m}" for m in RESIZE_METHODS), "load_image"]
    clock = time.thread_time_ns
    readable = []
    for photo in photos:  # an unreadable photo is left out, with a note, like everywhere else
        try:
            load_image(photo, size, method)
            readable.append(photo)
        except EdgeExportError as exc:
            print(f"left out: {exc}", file=sys.stderr)
    if not readable:
        raise EdgeExportError("no readable photo to time", path=data)
    photos = readable
    times = {kind: np.zeros((repeats, len(photos))) for kind in kinds}
    for i, photo in enumerate(photos):
        full = _decode(photo, 1)
        x = clf._model_input(load_image(photo, size, method)[np.newaxis])
        # called in this iteration only; the defaults bind this photo's values all the same
        calls: dict[str, Callable[..., Any]] = {"bare": lambda x=x: clf.backend.run(x)}
        for s in SCALES:
            calls[f"decode 1/{s}"] = lambda s=s, photo=photo: _decode(photo, s)
        for m, resample in RESIZE_METHODS.items():
            calls[f"resize {m}"] = lambda resample=resample, full=full: np.asarray(
                full.resize((size[1], size[0]), resample)
            )
        calls["load_image"] = lambda photo=photo: load_image(photo, size, method)
        for call in calls.values():  # warm-up
            call()
        for r in range(repeats):
            for kind, call in calls.items():
                start = clock()
                call()
                times[kind][r, i] = (clock() - start) / 1e6
    per_photo = {kind: np.median(t, axis=0) for kind, t in times.items()}
    bare = per_photo["bare"]
    return {
        "run_dir": str(run.root),
        "artifact": artifact,
        "data": str(data),
        "photos": [str(p) for p in photos],
        "input": list(size),
        "resize": method,
        "repeats": repeats,
        "clock": "thread CPU time",
        "ms": {k: {"p50": float(np.median(v)), "p90": float(np.percentile(v, 90))} for k, v in per_photo.items()},
        "share_of_bare_pct": {k: float(np.median(v / bare) * 100.0) for k, v in per_photo.items() if k != "bare"},
        "machine": machine_info(),
    }


def render(result: dict[str, Any]) -> str:
    lines = [f"{'':14s}  {'p50 ms':>8s}  {'p90 ms':>8s}  {'share of bare':>13s}"]
    for kind, ms in result["ms"].items():
        share = result["share_of_bare_pct"].get(kind)
        lines.append(
            f"{kind:14s}  {ms['p50']:8.3f}  {ms['p90']:8.3f}  {'' if share is None else f'{share:12.1f}%':>13s}"
        )
    lines += [
        f"{result['artifact']} ({result['input'][0]}x{result['input'][1]}, resize {result['resize']}), "
        f"{len(result['photos'])} photos of {result['data']}, {result['clock']}, "
        f"median of {result['repeats']} per photo",
        f"machine: {describe(result['machine'])}",
    ]
    return "\n".join(lines)


@click.command()
@sample_options()
@json_option
def main(run_dir, data, artifact, every, images, repeats, json_out) -> None:
    """Decode and resize costs against RUN_DIR's artifact, per photo, on this CPU."""
    finish(
        lambda: decode_cost(run_dir, data, artifact=artifact, every=every, images=images, repeats=repeats),
        render,
        json_out,
    )


if __name__ == "__main__":  # pragma: no cover
    main()
