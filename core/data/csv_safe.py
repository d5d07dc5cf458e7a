"""Cells of the CSV files SegTune writes, safe to open in a spreadsheet.

A spreadsheet runs a cell that starts with ``=``, ``+``, ``-`` or ``@`` (and, in some, a tab or
carriage return) as a formula: a file name or class label such as ``=HYPERLINK(...)`` would turn a
predictions file into a link or a command. Such text cells get a leading apostrophe, which the
spreadsheet shows as text (the OWASP "CSV injection" advice); numbers -- ``-0.5`` included -- and
every other cell are written unchanged. CSV files meant for people (predict's labels, evaluate's
metrics) write every row through :func:`safe_row`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def safe_cell(value: Any) -> Any:
    """``value`` with a leading apostrophe when it is text a spreadsheet would run as a formula."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS) and not _is_number(value):
        return "'" + value
    return value


def safe_row(values: Iterable[Any]) -> list[Any]:
    return [safe_cell(value) for value in values]


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True
