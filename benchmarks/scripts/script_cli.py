"""What the scripts behind the README's numbers share on the command line: the photo-sample options and the
end (print the table, write the JSON, or one error line and exit status 2)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from edge_export.core.atomic import write_json
from edge_export.core.errors import EdgeExportError


def sample_options(repeats_help: str = "Repeats per photo.") -> Callable[[Callable], Callable]:
    """RUN_DIR, --data, --artifact, --every, --images and --repeats: a run's artifact timed over every Nth photo."""

    def decorate(command: Callable) -> Callable:
        for option in reversed(
            [
                click.argument("run_dir", type=click.Path(path_type=Path)),
                click.option(
                    "--data", required=True, type=click.Path(path_type=Path), help="Test folder (<class>/ images)."
                ),
                click.option(
                    "--artifact", help="Which of the run's artifacts [the build's recommended one, else tflite-int8]."
                ),
                click.option(
                    "--every", default=10, show_default=True, type=click.IntRange(min=1), help="Every Nth photo."
                ),
                click.option("--images", type=click.IntRange(min=1), help="At most this many photos."),
                click.option("--repeats", default=5, show_default=True, type=click.IntRange(min=1), help=repeats_help),
            ]
        ):
            command = option(command)
        return command

    return decorate


def json_option(command: Callable) -> Callable:
    return click.option(
        "--json", "json_out", type=click.Path(path_type=Path), help="Also write the numbers to this JSON file."
    )(command)


def finish(
    compute: Callable[[], dict[str, Any]], render: Callable[[dict[str, Any]], str], json_out: Path | None
) -> None:
    """Run ``compute``; print ``render`` of its result and write it to ``json_out``. A user's error (an
    EdgeExportError) is one line and exit status 2, not a traceback."""
    try:
        result = compute()
    except EdgeExportError as exc:
        click.secho(f"error: {exc}", fg="red", err=True)
        raise SystemExit(2) from None
    click.echo(render(result))
    if json_out:
        write_json(json_out, result)
