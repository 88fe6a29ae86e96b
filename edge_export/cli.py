"""The ``edge-export`` command line: parse, load config, call the layers. No business logic here.

Heavy imports (TensorFlow) happen inside the commands that need them, so ``--help`` is fast.
"""

from __future__ import annotations

import errno
import importlib
import os
import sys

import click

from edge_export.core import __version__
from edge_export.core.errors import EdgeExportError
from edge_export.core.out_folder import CHECKED
from edge_export.core.tf_env import missing_train_extra
from edge_export.core.untrusted import printable

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
    "tune": "edge_export.commands.tune:tune",
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
    CHECKED.clear()
    try:
        cli.main(args=argv, prog_name="edge-export", standalone_mode=False)
    except (EdgeExportError, OSError, ModuleNotFoundError) as exc:
        error = exc if isinstance(exc, EdgeExportError) else _user_error(exc)
        if debug or error is None:
            raise
        click.secho(f"error: {error}", fg="red", err=True)
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


# OSErrors that are about the place written to, not a bug: errno -> (what happened, how to fix it)
_WRITE_ERRORS = {
    errno.ENOSPC: (
        "no space left on the device",
        "free space on the file system holding {folder} (df -h {folder}), or choose another --out",
    ),
    errno.EDQUOT: ("disk quota exceeded", "free space in your quota on {folder}, or choose another --out"),
    errno.EROFS: ("read-only file system", "choose a writable --out"),
    errno.EACCES: ("permission denied", "fix the permissions of {path}, or choose a folder you can write to (--out)"),
    errno.EPERM: (
        "operation not permitted",
        "fix the permissions of {path}, or choose a folder you can write to (--out)",
    ),
}
_NO_FILE_NAMED = (errno.ENOSPC, errno.EDQUOT)  # a write() names no file; atomic writes add it where they can


def _user_error(exc: BaseException) -> EdgeExportError | None:
    """A one-line error for a full disk, a read-only or forbidden place, or a missing [train] extra; None: a bug."""
    if isinstance(exc, ModuleNotFoundError):
        return missing_train_extra(exc)
    if not isinstance(exc, OSError) or exc.errno is None:
        return None
    known = _WRITE_ERRORS.get(exc.errno)
    if known is None:
        return None
    what, fix = known
    if not exc.filename:
        if exc.errno not in _NO_FILE_NAMED:
            return None  # e.g. EPERM from a signal: not about a place written to
        if not CHECKED:
            return EdgeExportError(f"{what} ({exc.strerror or exc})", hint=fix.format(folder="the output folder"))
        folder = printable(os.path.abspath(CHECKED[-1]))
        return EdgeExportError(f"{what} while writing in {folder}", hint=fix.format(folder=folder))
    path = os.fsdecode(exc.filename)
    folder = os.path.dirname(os.path.abspath(path))
    return EdgeExportError(
        f"{printable(path)}: {what}", hint=fix.format(folder=printable(folder), path=printable(path))
    )


if __name__ == "__main__":  # pragma: no cover
    main()
