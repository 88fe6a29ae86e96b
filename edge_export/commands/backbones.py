"""``edge-export backbones``: the registered backbones, their input size and weight source."""

from __future__ import annotations

import click

import edge_export.trainer.backbones as trainer_backbones  # list_backbones looked up when the command runs
from edge_export.trainer.backbones import BackboneSpec


@click.command()
def backbones() -> None:
    """List the backbones that --backbone accepts."""
    rows = [(b.name, str(b.default_size), b.description, _weights(b)) for b in trainer_backbones.list_backbones()]
    widths = [max(len(r[i]) for r in rows + [("name", "size", "", "")]) for i in range(3)]
    click.echo(f"{'name':<{widths[0]}}  {'size':>{widths[1]}}  description / weights")
    for name, size, description, source in rows:
        click.echo(
            f"{name:<{widths[0]}}  {size:>{widths[1]}}  {description}\n"
            f"{'':<{widths[0] + widths[1] + 4}}weights: {source}"
        )


def _weights(spec: BackboneSpec) -> str:
    """The weight source, and whether it loads without a network (what ``edge-export tune`` searches by default)."""
    if not spec.pretrained:
        return spec.weights_source
    sizes = [s for s in (spec.fixed_sizes or (spec.default_size,)) if spec.weights_offline(s)]
    if not sizes:
        return f"{spec.weights_source}; not available offline yet"
    return f"{spec.weights_source}; available offline" + (
        f" ({', '.join(map(str, sizes))} px)" if spec.fixed_sizes else ""
    )
