"""Detached background processes and their log files, shared by tuning workers and tasks."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


def spawn_detached(command: Sequence[str], env: Mapping[str, str], log_path: Path) -> subprocess.Popen:
    """Start ``command`` in its own session, output appended to ``log_path``.

    Its own session keeps it out of the caller's process group: it survives the dashboard or
    terminal that started it, and their Ctrl-C.
    """
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        return subprocess.Popen(
            list(command),
            cwd=REPO_ROOT,
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def tail_file(path: Path | str, lines: int = 50) -> str:
    """The last ``lines`` lines of a text file, or "" when it does not exist (yet)."""
    path = Path(path)
    if lines < 1 or not path.is_file():
        return ""
    with path.open("rb") as handle:
        handle.seek(0, os.SEEK_END)
        handle.seek(max(0, handle.tell() - 200 * lines - 4096))  # enough bytes for ``lines`` log lines
        text = handle.read().decode("utf-8", errors="replace")
    return "\n".join(text.splitlines()[-lines:])
