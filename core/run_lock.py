"""One writer per run folder: an exclusive lock, and the run folder's own temporary area.

Every command that writes a run folder (build, train, export, bench into RUN/bench, package into
RUN/package) runs inside ``locked_run(run)``:

- it takes ``flock(LOCK_EX | LOCK_NB)`` on ``RUN/.lock``. The lock belongs to the open file, so the
  kernel drops it when the process ends in any way (``kill -9`` included): a stale lock never blocks.
  A second command on the same folder fails at once (no waiting) with an error naming the holder,
  whose pid, command line, host and start time are written into the lock file;
- holding the lock, it empties ``RUN/.tmp`` (what a killed command left there: nobody else can be
  using it) and points every temporary file of this process and its children there (Python's
  ``tempfile`` and ``TMPDIR``: ours, TensorFlow's converters', pip's), so a kill leaves nothing in the
  system's temp folder, and the next command on the folder cleans up;
- at the end it empties ``RUN/.tmp`` again and releases the lock. A run folder it created that is
  still empty (a command that failed before writing anything) is removed.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shlex
import shutil
import socket
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

from edge_export.core.errors import EdgeExportError
from edge_export.core.pause import pause_point
from edge_export.core.run_folder import RunFolder
from edge_export.core.untrusted import printable

fcntl: ModuleType | None
try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no flock; the temp area still works, the lock is skipped
    fcntl = None

HINT = "wait for it to finish, or use another --out"


def command_line() -> str:
    """This process's command as a person typed it (``edge-export build --out ...``)."""
    return " ".join(["edge-export", *(shlex.quote(a) for a in sys.argv[1:])])


@contextlib.contextmanager
def locked_run(run: RunFolder, command: str | None = None) -> Iterator[RunFolder]:
    """Hold ``run``'s lock (creating the folder if needed) with temporary files under ``RUN/.tmp``."""
    created = not run.root.exists()
    try:
        run.root.mkdir(parents=True, exist_ok=True)
        fd = os.open(run.lock_file, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except OSError as exc:
        raise EdgeExportError(
            f"cannot use the run folder: {exc.strerror or exc}",
            path=run.root,
            hint="pass a writable folder (or a new name) as --out",
        ) from None
    try:
        try:
            if fcntl is not None:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                raise EdgeExportError(f"cannot lock the run folder: {exc.strerror}", path=run.root) from None
            raise EdgeExportError(f"run folder {printable(run.root)} is in use by {holder(fd)}", hint=HINT) from None
        _write_holder(fd, command or command_line())
        try:
            with _temp_area(run.tmp_dir):
                pause_point("lock.acquired", run=str(run.root))
                yield run
        finally:
            os.ftruncate(fd, 0)  # released: nobody to name (a killed holder's note is never read: no lock)
    finally:
        if created:
            _remove_if_unused(run)
        os.close(fd)  # releases the lock


def holder(fd: int) -> str:
    """Who holds the lock, from what it wrote into the lock file (a file we did not just write)."""
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        info = json.loads(os.read(fd, 4096).decode("utf-8", "replace"))
        pid, cmd, host, started = (info.get(k) for k in ("pid", "command", "host", "started"))
    except (OSError, ValueError, AttributeError):
        return "another process (it has not said which yet)"
    where = f" on {printable(host, 100)}" if host and host != socket.gethostname() else ""
    return f"pid {printable(pid, 20)}{where} ({printable(cmd)}, started {printable(started, 40)})"


def _write_holder(fd: int, command: str) -> None:
    info = {
        "pid": os.getpid(),
        "command": command,
        "host": socket.gethostname(),
        "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }
    data = (json.dumps(info) + "\n").encode()
    os.ftruncate(fd, 0)
    os.lseek(fd, 0, os.SEEK_SET)
    os.write(fd, data)


@contextlib.contextmanager
def _temp_area(folder: Path) -> Iterator[Path]:
    """Empty ``folder``, make it this process's (and its children's) temp folder; empty it at the end."""
    _clear(folder)
    folder.mkdir(exist_ok=True)
    saved_tempdir, saved_env = tempfile.tempdir, os.environ.get("TMPDIR")
    tempfile.tempdir = str(folder.resolve())
    os.environ["TMPDIR"] = tempfile.tempdir
    try:
        yield folder
    finally:
        tempfile.tempdir = saved_tempdir
        if saved_env is None:
            os.environ.pop("TMPDIR", None)
        else:
            os.environ["TMPDIR"] = saved_env
        _clear(folder)


def _clear(folder: Path) -> None:
    if folder.is_symlink() or folder.is_file():
        folder.unlink()
    elif folder.exists():
        shutil.rmtree(folder, ignore_errors=True)


def _remove_if_unused(run: RunFolder) -> None:
    """Remove a run folder this command created if nothing but the lock file is in it."""
    with contextlib.suppress(OSError):
        if {p.name for p in run.root.iterdir()} <= {RunFolder.LOCK}:
            run.lock_file.unlink(missing_ok=True)
            run.root.rmdir()
