"""``edge-export predict MODEL IMAGE...``: classify images with the TF-free runtime."""

from __future__ import annotations

import json

import click


def _floats3(ctx: click.Context, param: click.Parameter, value: str | None) -> tuple[float, ...] | None:
    if value is None:
        return None
    try:
        values = tuple(float(v) for v in value.split(","))
    except ValueError:
        raise click.BadParameter(f"expected R,G,B numbers, got {value!r}") from None
    if len(values) == 1:
        values *= 3
    if len(values) != 3:
        raise click.BadParameter(f"expected 1 or 3 comma-separated numbers, got {value!r}")
    return values


def _size(ctx: click.Context, param: click.Parameter, value: str | None) -> tuple[int, int] | None:
    if value is None:
        return None
    parts = value.lower().split("x")
    try:
        values = tuple(int(v) for v in parts)
    except ValueError:
        raise click.BadParameter(f"expected HxW (e.g. 224x224) or one number, got {value!r}") from None
    if len(values) == 1:
        values *= 2
    if len(values) != 2:
        raise click.BadParameter(f"expected HxW, got {value!r}")
    return values


@click.command()
@click.argument("model", type=click.Path(dir_okay=False))
@click.argument("images", nargs=-1, required=True, type=click.Path())
@click.option("--top-k", default=5, show_default=True, type=click.IntRange(min=1), help="Predictions per image.")
@click.option("--labels", "labels_file", type=click.Path(dir_okay=False), help="labels.txt (overrides the model's).")
@click.option("--mean", callback=_floats3, help="Per-channel mean R,G,B subtracted from 0-255 pixels.")
@click.option("--std", callback=_floats3, help="Per-channel std R,G,B the pixels are divided by.")
@click.option("--size", callback=_size, help="Input size HxW (models without a fixed size).")
@click.option("--threads", type=click.IntRange(min=1), help="CPU threads for the interpreter.")
@click.option("--provider", "providers", multiple=True, help="ONNX Runtime provider (cpu, cuda, tensorrt); repeatable.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
def predict(model, images, top_k, labels_file, mean, std, size, threads, providers, as_json) -> None:
    """Classify IMAGE files with MODEL (.tflite or .onnx)."""
    from edge_export.native_stderr import native_stderr_captured
    from edge_export.runtime.classifier import Classifier

    with native_stderr_captured():  # LiteRT's delegate notice; replayed if loading or predicting fails
        classifier = Classifier.load(
            model,
            labels=labels_file,
            mean=mean,
            std=std,
            size=size,
            threads=threads,
            providers=list(providers) or None,
        )
        results = classifier.predict(list(images), top_k=top_k)
    if as_json:
        payload = [
            {"image": image, "predictions": [p._asdict() for p in predictions]}
            for image, predictions in zip(images, results)
        ]
        click.echo(json.dumps(payload, indent=2))
        return
    for image, predictions in zip(images, results):
        click.echo(image)
        width = max(len(p.label) for p in predictions)
        for p in predictions:
            click.echo(f"  {p.label:<{width}}  {p.probability:.4f}")

