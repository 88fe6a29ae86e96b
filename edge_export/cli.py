"""The ``edge-export`` command line: parse, load config, call the layers. No business logic here.

Heavy imports (TensorFlow) happen inside the commands that need them, so ``--help`` is fast.
"""

from __future__ import annotations

import importlib
import sys

import click

from edge_export import __version__
from edge_export.errors import EdgeExportError

# command name -> "module:attribute"; each module defines one click command.
COMMANDS = {
    "train": "edge_export.commands.train:train",
    "backbones": "edge_export.commands.backbones:backbones",
    "build": "edge_export.commands.build:build",
    "config": "edge_export.commands.build:config_command",
    "predict": "edge_export.commands.predict:predict",
    "bench": "edge_export.commands.bench:bench",
    "export": "edge_export.commands.export:export",
    "package": "edge_export.commands.package:package",
}


class LazyGroup(click.Group):
    """Imports a command's module only when that command runs (or its help is shown)."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        target = COMMANDS.get(name)
        if target is None:
            return None
        module_name, attr = target.split(":")
        return getattr(importlib.import_module(module_name), attr)


@click.group(cls=LazyGroup)
@click.version_option(__version__, prog_name="edge-export")
@click.option("--debug", is_flag=True, help="Show full tracebacks for errors.")
@click.pass_context
def cli(ctx: click.Context, debug: bool) -> None:
    """Train, quantize, export and verify small image classifiers for edge devices."""
    ctx.ensure_object(dict)
    ctx.obj["debug"] = debug


def main(argv: list[str] | None = None) -> None:
    debug = "--debug" in (argv if argv is not None else sys.argv[1:])
    try:
        cli.main(args=argv, prog_name="edge-export", standalone_mode=False)
    except EdgeExportError as exc:
        if debug:
            raise
        click.secho(f"error: {exc}", fg="red", err=True)
        sys.exit(2)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)


if __name__ == "__main__":  # pragma: no cover
    main()
