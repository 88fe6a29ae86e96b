"""``Echo``: the one type of the progress callback every layer takes (a line of text in, nothing out)."""

from __future__ import annotations

from collections.abc import Callable

Echo = Callable[[str], None]


def silent(line: str) -> None:
    """An ``Echo`` that prints nothing."""
