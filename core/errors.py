"""The errors a user can fix (bad input, bad config, missing thing), in one shape.

The CLI prints them as one message and the dashboard shows them next to their fields; anything
else is a bug and keeps its traceback (in logs, never on a page). Errors that report several
problems at once carry them as ``problems: dict[str, str]`` (field or file -> what is wrong).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from enum import Enum
from typing import Any


class SegTuneError(ValueError):
    """Bad input or configuration; the message names the bad value and what to do instead."""


class ProblemsError(SegTuneError):
    """Several problems found at once; ``problems`` maps each field (or file) to what is wrong."""

    title = "Invalid input"

    def __init__(self, problems: Mapping[str, str]) -> None:
        self.problems = dict(problems)
        lines = "\n".join(f"  - {field}: {message}" for field, message in self.problems.items())
        super().__init__(f"{self.title} ({len(self.problems)} problem(s)):\n{lines}")


def add_problem(problems: dict[str, str], field: str, message: str) -> None:
    """Record ``message`` under ``field``; a second problem of the same field is joined to the first."""
    problems[field] = f"{problems[field]}; {message}" if field in problems else message


def unknown_option(kind: str, value: Any, valid: Iterable[Any], limit: int = 40) -> str:
    """The one wording for a name that is not in a registry: ``unknown loss 'x'; valid: [...]``."""
    options = [option.value if isinstance(option, Enum) else option for option in valid]  # 'binary', not <Mode.BINARY>
    shown = options if len(options) <= limit else [*options[:limit], "..."]
    return f"unknown {kind} {value!r}; valid: {shown}"
