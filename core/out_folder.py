"""The one check of an output folder option (``--out``), made by a command before it does any work."""

from __future__ import annotations

import os
from pathlib import Path

from edge_export.core.errors import EdgeExportError
from edge_export.core.untrusted import printable

# the folders this process's command checked (and so writes to): named by errors that name no file
CHECKED: list[Path] = []


def check_out_folder(path: str | Path, option: str = "--out") -> Path:
    """``path`` is a folder, or can be made one, on a writable file system; else a clear error.

    Not a guarantee (the disk can still fill up, see the CLI's handling of OSError), but the common
    mistakes (a file's name, a file in the way, a read-only or foreign folder) fail before any work.
    """
    path = Path(path)
    target = Path(os.path.abspath(path))
    existing = target
    while not os.path.lexists(existing) and existing != existing.parent:
        existing = existing.parent
    shown = printable(path)
    if not existing.is_dir():  # a file, a dangling link, a device...
        if existing == target:
            raise EdgeExportError(
                f"{option} {shown} is a file, not a folder",
                hint=f"pass a new or existing folder to {option}, or move the file away",
            )
        raise EdgeExportError(
            f"{option} {shown} cannot be made: {printable(existing)} is a file, not a folder",
            hint=f"pass a folder path to {option} that does not go through a file",
        )
    try:
        read_only = bool(os.statvfs(existing).f_flag & os.ST_RDONLY)
    except OSError:
        read_only = False
    if read_only:
        raise EdgeExportError(
            f"{option} {shown} is on a read-only file system ({printable(existing)})",
            hint=f"choose a writable {option}",
        )
    if not os.access(existing, os.W_OK | os.X_OK):
        raise EdgeExportError(
            f"{option} {shown}: no permission to write in {printable(existing)}",
            hint=f"choose a folder you can write to for {option}, or fix its permissions",
        )
    CHECKED.append(path)
    return path


def check_not_inside(out: str | Path, data: str | Path, option: str = "--out", data_option: str = "--data") -> None:
    """Refuse an output folder inside (or equal to) an input folder before any work: written into the data set,
    its folders would become classes, or its files test photos."""
    data_path = Path(data).expanduser()
    if not data_path.is_dir():
        return
    target, source = Path(os.path.realpath(Path(out).expanduser())), Path(os.path.realpath(data_path))
    if target == source or source in target.parents:
        raise EdgeExportError(
            f"{option} {printable(out)} is inside {data_option} {printable(data)}: what is written there would be "
            "read back as data",
            hint=f"pass an {option} folder outside the data set",
        )
