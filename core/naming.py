"""Names users give to datasets and studies, which double as folder names, and the class labels they declare."""

from __future__ import annotations

import re
import unicodedata

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_CONTROL = ("Cc", "Zl", "Zp")  # C0/C1 controls (NUL, tab, CR, LF, DEL ...) and the Unicode line/paragraph separators


def is_valid_name(name: str) -> bool:
    """1-64 letters, digits, '-', '_' or '.', starting with a letter or digit; never '..'.

    A full match (not ``$``, which accepts a trailing newline) keeps names safe on every filesystem.
    """
    return isinstance(name, str) and bool(_NAME.fullmatch(name)) and ".." not in name


def class_name_problem(name: str) -> str:
    """Why ``name`` cannot be a class label, or '': a control character (NUL, line break, tab, ...)
    would be stored verbatim and then break tables, CSV rows and terminals that show the label."""
    bad = sorted({char for char in name if unicodedata.category(char) in _CONTROL})
    if not bad:
        return ""
    shown = ", ".join(f"U+{ord(char):04X}" for char in bad)
    return f"class name {name!r} holds control character(s) {shown}; use printable characters only"
