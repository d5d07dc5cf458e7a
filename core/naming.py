"""Names users give to datasets and studies, which double as folder names."""

from __future__ import annotations

import re

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


def is_valid_name(name: str) -> bool:
    """1-64 letters, digits, '-', '_' or '.', starting with a letter or digit; never '..'.

    A full match (not ``$``, which accepts a trailing newline) keeps names safe on every filesystem.
    """
    return isinstance(name, str) and bool(_NAME.fullmatch(name)) and ".." not in name
