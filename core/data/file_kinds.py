"""Only folders and regular files may be read from a dataset source.

Opening a FIFO blocks until someone writes to it, a device can stream forever, and a socket cannot
be opened at all: one such entry in a source would hang ingest (and, on the dashboard, leave the
page waiting). So every entry of a source is looked at with ``stat`` -- which never opens it --
before any file is read, and each one that is not a regular file or a folder is refused by name,
as are links that loop or lead nowhere. Links to folders are followed once each, as the readers
follow them.
"""

from __future__ import annotations

import errno
import os
import stat
from collections import deque
from pathlib import Path

_SHOWN = 10  # entries named before "... and N more"
_KINDS = (
    (stat.S_ISFIFO, "a named pipe (FIFO)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def entry_problem(path: Path) -> str:
    """Why ``path`` (links followed) is neither a regular file nor a folder, or '' when it is one; never opens it."""
    try:
        mode = os.stat(path).st_mode
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return "is a link that loops back on itself; remove or fix the link"
        if exc.errno == errno.ENOENT and os.path.islink(path):
            return "is a link to something that does not exist; remove or fix the link"
        return f"cannot be looked at ({exc.strerror or 'unknown error'})"
    if stat.S_ISREG(mode) or stat.S_ISDIR(mode):
        return ""
    kind = next((name for test, name in _KINDS if test(mode)), "a special file")
    return f"is {kind}, not a regular file; SegTune reads only files and folders: remove it from the dataset"


def special_file_problems(root: Path) -> dict[str, str]:
    """Every entry below ``root`` that is not a regular file or folder (paths relative to ``root``), a few named, then a
    count."""
    found: list[tuple[str, str]] = []
    seen: set[Path] = set()
    pending = deque([Path(root)])
    while pending:
        folder = pending.popleft()
        real = folder.resolve()
        if real in seen:
            continue
        seen.add(real)
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError as exc:
            found.append(
                (folder.relative_to(root).as_posix() or ".", f"cannot be listed ({exc.strerror or 'unknown error'})")
            )
            continue
        for entry in entries:
            path = Path(entry.path)
            problem = entry_problem(path)
            if problem:
                found.append((path.relative_to(root).as_posix(), problem))
            elif entry.is_dir():  # follows a link to a folder (each real folder once: link loops end)
                pending.append(path)
    problems = dict(found[:_SHOWN])
    if len(found) > _SHOWN:
        problems["special files"] = f"... and {len(found) - _SHOWN} more entries that are not regular files or folders"
    return problems
