"""``edge-export predict MODEL IMAGE...``: classify images with the TF-free runtime."""

from __future__ import annotations

import itertools
import json
import os
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click

from edge_export.core.errors import EdgeExportError
from edge_export.core.native_stderr import native_stderr_captured
from edge_export.core.untrusted import printable
from edge_export.runtime.backends.onnx_runtime import check_providers
from edge_export.runtime.classifier import Classifier, NormalizationUnknownWarning, Prediction
from edge_export.runtime.frames import StreamSummary, classify_frames, describe_source, is_frame_source
from edge_export.runtime.images import find_images


def _numbers(value: str | None, sep: str, count: int, cast: type, form: str) -> tuple | None:
    """``"a<sep>b..."`` or one number (repeated ``count`` times) -> a tuple of ``count`` numbers."""
    if value is None:
        return None
    try:
        values = tuple(cast(v) for v in value.lower().split(sep))
    except ValueError:
        raise click.BadParameter(f"expected {form} or one number, got {value!r}") from None
    if len(values) == 1:
        values *= count
    if len(values) != count:
        raise click.BadParameter(f"expected {form} or one number, got {value!r}")
    return values


def _floats3(ctx: click.Context, param: click.Parameter, value: str | None) -> tuple[float, ...] | None:
    return _numbers(value, ",", 3, float, "R,G,B numbers")


def _size(ctx: click.Context, param: click.Parameter, value: str | None) -> tuple[int, int] | None:
    return _numbers(value, "x", 2, int, "HxW (e.g. 224x224)")


NO_IMAGES = "no image files in this folder"


def _expand_folders(arguments: tuple[str, ...]) -> list[tuple[str, str | None]]:
    """IMAGE arguments with each folder replaced by the image files below it (sorted; hidden names and
    non-regular files left out, as in training): (path, None) each. A folder that cannot be read or holds no
    image stays in its place as (folder, why)."""
    entries: list[tuple[str, str | None]] = []
    for argument in arguments:
        if not os.path.isdir(argument):
            entries.append((argument, None))
        elif not os.access(argument, os.R_OK | os.X_OK):
            entries.append((argument, "cannot read this folder (permission denied)"))
        else:
            found = [str(path) for path in find_images(Path(argument)).files]
            entries += [(path, None) for path in found] or [(argument, NO_IMAGES)]
    return entries


@click.command()
@click.argument("model", type=click.Path(dir_okay=False))
@click.argument("images", nargs=-1, required=True, type=click.Path())
@click.option("--top-k", default=5, show_default=True, type=click.IntRange(min=1), help="Predictions per image.")
@click.option("--labels", "labels_file", type=click.Path(dir_okay=False), help="labels.txt (overrides the model's).")
@click.option(
    "--mean",
    callback=_floats3,
    help="Per-channel mean R,G,B subtracted from 0-255 pixels [default: the model's metadata].",
)
@click.option(
    "--std", callback=_floats3, help="Per-channel std R,G,B the pixels are divided by [default: the model's metadata]."
)
@click.option("--size", callback=_size, help="Input size HxW (models without a fixed size).")
@click.option("--threads", type=click.IntRange(min=1), help="CPU threads for the interpreter.")
@click.option("--provider", "providers", multiple=True, help="ONNX Runtime provider (cpu, cuda, tensorrt); repeatable.")
@click.option(
    "--max-image-pixels",
    type=click.IntRange(min=1),
    metavar="N",
    help="Refuse images larger than N pixels (width x height) before decoding [default: 64000000].",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text (a video: one JSON line per frame).")
@click.option(
    "--every",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Video, camera or stream: classify one frame in N.",
)
@click.option(
    "--fps",
    type=click.FloatRange(min=0, min_open=True),
    help="Video, camera or stream: classify at most this many frames per second (of video time).",
)
@click.option(
    "--max-frames", type=click.IntRange(min=1), help="Video, camera or stream: stop after this many classified frames."
)
@click.option(
    "--stall-timeout",
    type=click.FloatRange(min=0, min_open=True),
    default=10.0,
    show_default=True,
    help="Video, camera or stream: stop when no frame arrives for this many seconds.",
)
def predict(
    model,
    images,
    top_k,
    labels_file,
    mean,
    std,
    size,
    threads,
    providers,
    max_image_pixels,
    as_json,
    every,
    fps,
    max_frames,
    stall_timeout,
) -> None:
    """Classify IMAGE files (or every image below a folder) with MODEL (.tflite or .onnx), or the frames of one
    video file, camera (its index: 0) or stream URL (rtsp://, http://...).

    Labels and normalization come from the model's edge_export metadata, else (a .tflite file) its
    standard TFLite metadata (TFLITE_METADATA), else the flags; a float model with none of them is fed
    0-255 pixels with a warning that names --mean/--std.

    Results print as they come (with --json, as one document at the end): the next files decode on another
    core while the model runs. Every image
    gets its result; an image that cannot be used (unreadable, not a regular file, over the
    pixel limit) gets an error line naming it instead, and the exit status is then 1.
    """
    load = dict(
        labels=labels_file,
        mean=mean,
        std=std,
        size=size,
        threads=threads,
        providers=list(providers) or None,
        max_pixels=max_image_pixels,
    )
    if any(is_frame_source(a) for a in images):
        if len(images) != 1:
            raise click.UsageError("give one video, camera or stream at a time (not mixed with images)")
        _predict_frames(model, images[0], load, top_k, as_json, every, fps, max_frames, stall_timeout)
        return
    entries = _expand_folders(images)
    images = [path for path, why in entries if why is None]
    results: Iterator[list[Prediction] | EdgeExportError] = iter(())
    if images:  # else only folders without a usable image: the model is not even loaded
        with native_stderr_captured():  # LiteRT's delegate notice; replayed if loading or predicting fails
            classifier = _load_classifier(model, load)
            # results one at a time, printed as they come (the next files decode while the model runs); the
            # first model call happens in here, where LiteRT's delegate notice is captured
            stream = classifier.predict_iter(images, top_k=top_k)  # a bad image does not stop the others
            results = itertools.chain([next(stream)], stream)
        _say_warnings(classifier)
    failed = 0
    payload: list[dict[str, Any]] = []
    for image, why in entries:  # in order: a result on stdout, or an error line on stderr
        r = EdgeExportError(why) if why else next(results)
        if isinstance(r, EdgeExportError):
            failed += 1
            click.secho(f"error: {printable(image, 1000)}: {printable(r.message, 500)}", fg="red", err=True)
            payload.append({"image": image, "error": r.message})
        elif as_json:
            payload.append({"image": image, "predictions": [p._asdict() for p in r]})
        else:
            click.echo(printable(image, 1000))
            labels = [printable(p.label, 80) for p in r]
            width = max(len(label) for label in labels)
            for label, p in zip(labels, r):
                click.echo(f"  {label:<{width}}  {p.probability:.4f}")
    if as_json:
        click.echo(json.dumps(payload, indent=2))
    if failed:
        folders = sum(why is not None for _, why in entries)
        counted = f"{len(entries)} image(s)" + (
            f" and folder(s) ({folders} folder(s) without a usable image)" if folders else ""
        )
        click.secho(f"{failed} of {counted} failed", fg="red", err=True)
        sys.exit(1)


def _load_classifier(model: str, load: dict[str, Any]) -> Classifier:
    """The model as ``Classifier.load(model, **load)``, after the --provider names are checked (a name ONNX Runtime
    does not offer is an error naming the ones it does, before any work). A float model's unknown normalization is
    not a Python warning here: ``_say_warnings`` prints it once."""
    if load["providers"]:
        check_providers(load["providers"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NormalizationUnknownWarning)
        return Classifier.load(model, **load)


def _say_warnings(classifier: Classifier) -> None:
    """What the classifier noted while loading (e.g. a float model whose normalization nobody said), one line each."""
    for note in classifier.warnings:
        click.secho(f"warning: {printable(note, 1000)}", fg="yellow", err=True)


def _predict_frames(
    model: str,
    source: str,
    load: dict[str, Any],
    top_k: int,
    as_json: bool,
    every: int,
    fps: float | None,
    max_frames: int | None,
    stall_timeout: float,
) -> None:
    """One line per classified frame as it comes (``--json``: one JSON object per line), then the summary:
    frames read and classified, frames/s, the model's p50/p95 per frame. Exit status 1 when the source stopped
    early (a read error, a stall); the frames classified before are printed all the same."""
    with native_stderr_captured():
        classifier = _load_classifier(model, load)
    _say_warnings(classifier)
    summary = StreamSummary(describe_source(source))
    try:
        for r in classify_frames(
            classifier,
            source,
            top_k=top_k,
            every=every,
            fps=fps,
            stall_timeout_s=stall_timeout,
            max_frames=max_frames,
            summary=summary,
        ):
            if as_json:
                click.echo(json.dumps(r.to_dict()))
            else:
                when = f" {r.time_s:8.3f}s" if r.time_s is not None else ""
                shown = ", ".join(f"{printable(p.label, 80)} {p.probability:.4f}" for p in r.predictions)
                click.echo(f"frame {r.frame:6d}{when}  {shown}")
    except KeyboardInterrupt:
        pass  # the summary below says "interrupted"; the frames before were printed
    finally:
        if as_json:
            click.echo(json.dumps(summary.to_dict()))
        else:
            click.echo(summary.text(), err=True)
    if not summary.ok:
        click.secho(
            f"error: {summary.source}: stopped early ({summary.ended}"
            f"{': ' + summary.message if summary.message else ''}); {summary.frames_classified} frame(s) classified",
            fg="red",
            err=True,
        )
        sys.exit(1)
