"""The one exception type users see.

Every error meant for a person carries what went wrong, the file it concerns (when there is one)
and how to fix it. The CLI prints it without a traceback (``--debug`` shows one).
"""

from __future__ import annotations

from pathlib import Path


class EdgeExportError(Exception):
    """A user-facing error: a message, optionally the file it is about, and a hint to fix it."""

    def __init__(self, message: str, *, path: str | Path | None = None, hint: str | None = None):
        self.message = message
        self.path = Path(path) if path is not None else None
        self.hint = hint
        super().__init__(self.__str__())

    def __str__(self) -> str:
        text = self.message
        if self.path is not None and str(self.path) not in text:
            text = f"{self.path}: {text}"
        if self.hint:
            text = f"{text}\n  fix: {self.hint}"
        return text
