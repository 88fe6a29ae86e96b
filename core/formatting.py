"""The one set of text formatters for tables on screen, in Markdown and in HTML reports.

``missing`` is what a value that was not measured shows as ("-" in tables on screen, "" in the build report).
"""

from __future__ import annotations

import html
import re
from collections.abc import Sequence

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2066-\u2069]")  # as core.untrusted.printable


def size_text(n: int | float | None, missing: str = "-") -> str:
    """Bytes as MB (two decimals) from 1 MB, else KB (one decimal)."""
    if n is None:
        return missing
    if n >= 1e6:
        return f"{n / 1e6:.2f} MB"
    return f"{n / 1e3:.1f} KB"


def percent(x: float | None, missing: str = "-") -> str:
    """A fraction as a percentage with two decimals: 0.98765 -> 98.77%."""
    return f"{x:.2%}" if x is not None else missing


def milliseconds(x: float | None, missing: str = "-") -> str:
    """Milliseconds with about 3 significant digits (sub-millisecond models stay readable)."""
    if x is None:
        return missing
    return f"{x:.0f}" if x >= 100 else f"{x:.1f}" if x >= 10 else f"{x:.2f}" if x >= 1 else f"{x:.3f}"


def rate(x: float | None, missing: str = "-") -> str:
    """Per-second rates (FPS, images/s): whole numbers from 100, else one decimal."""
    if x is None:
        return missing
    return f"{x:.0f}" if x >= 100 else f"{x:.1f}"


def number(x: float | None, digits: int = 2, missing: str = "-") -> str:
    return f"{x:.{digits}f}" if x is not None else missing


def markdown_cell(text: object) -> str:
    """Text (a class name from a folder, a header such as ``max |Δp|``) as one Markdown table cell: '\\',
    '|' and '<' escaped (no split cell, no HTML tag), line breaks and other control characters written
    as escapes (a row stays one line)."""
    text = str(text).replace("\\", "\\\\").replace("|", "\\|").replace("<", "\\<")
    return _CONTROL.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), text)


def markdown_table(rows: Sequence[Sequence[str]], raw_columns: Sequence[int] = ()) -> str:
    """The first row is the header; every cell goes through ``markdown_cell``, except body cells in
    ``raw_columns`` (Markdown made here, e.g. an image link), whose '|' and line breaks are still escaped."""

    def raw(text: object) -> str:
        return _CONTROL.sub(" ", str(text).replace("|", "\\|"))

    cells = [[markdown_cell(c) for c in rows[0]]]
    cells += [[raw(c) if i in raw_columns else markdown_cell(c) for i, c in enumerate(r)] for r in rows[1:]]
    lines = ["| " + " | ".join(cells[0]) + " |", "|" + "|".join("---" for _ in cells[0]) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in cells[1:]]
    return "\n".join(lines)


def html_table(rows: Sequence[Sequence[str]]) -> str:
    """The first row is the header; every cell escaped."""
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in rows[0])
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in r) + "</tr>" for r in rows[1:])
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
