"""The CLI options of the settings, made from the API's one list of flags (``edge_export.api.FLAGS``)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import click

from edge_export.api import FLAGS


def _threads(ctx: click.Context, param: click.Parameter, value: str | None) -> list[int] | None:
    if value is None:
        return None
    try:
        counts = [int(v) for v in value.split(",") if v.strip()]
    except ValueError:
        raise click.BadParameter(f"expected comma-separated thread counts (0 = all cores), got {value!r}") from None
    if not counts or any(c < 0 for c in counts):
        raise click.BadParameter(f"expected thread counts >= 0, got {value!r}")
    return counts


_CALLBACKS = {"threads": _threads}


def setting_options(names: Sequence[str]) -> Callable:
    """A decorator adding one click option per flag name, in order; each passes its value as ``name``."""

    def decorate(command: Callable) -> Callable:
        for name in reversed(names):
            flag = FLAGS[name]
            if flag.type is bool:
                dashed = flag.cli[2:]
                option = click.option(f"--{dashed}/--no-{dashed}", name, default=None, help=flag.help)
            elif isinstance(flag.type, tuple):
                option = click.option(flag.cli, name, type=click.Choice(flag.type), help=flag.help)
            else:
                option = click.option(flag.cli, name, type=flag.type, callback=_CALLBACKS.get(name), help=flag.help)
            command = option(command)
        return command

    return decorate
