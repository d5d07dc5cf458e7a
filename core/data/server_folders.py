"""Server folders the dashboard may read datasets from: only under the configured import roots.

"Folder on the server" takes a path typed in a browser, so it is confined: the path is resolved
(symlinks followed, ``..`` removed) and must lie under one of ``Settings.server_import_roots``;
links inside the folder that lead out of the roots are refused before anything is listed or
copied. Messages name only the typed path and places inside the roots — never whether something
outside exists, nor what it holds. The CLI (``python -m core ingest``) is the local user's own
and is not confined.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Sequence
from pathlib import Path

from core.data.manifest import DatasetError

_SHOWN = 10
_MAX_PATH_BYTES = 4096  # Linux PATH_MAX
_MAX_NAME_BYTES = 255  # Linux NAME_MAX


def within(path: Path, roots: Sequence[Path]) -> bool:
    """Whether ``path`` (resolved) is one of ``roots`` or lies below one."""
    return any(path == root or path.is_relative_to(root) for root in roots)


def resolve_import_source(typed: str | Path, roots: Sequence[Path]) -> Path:
    """The real path of a folder or zip typed by a dashboard user, or DatasetError({"source": ...}).

    A relative path is taken under each root in turn (the first where it exists).
    """
    roots = [Path(root).resolve() for root in roots]
    shown = ", ".join(str(root) for root in roots)
    text = str(typed).strip()
    if not text:
        raise DatasetError({"source": f"type a folder or .zip under the import folders ({shown})"})
    typing_problem = _typing_problem(text)
    if typing_problem:
        raise DatasetError({"source": typing_problem})
    candidates = [Path(text).expanduser()] if Path(text).expanduser().is_absolute() else [root / text for root in roots]
    inside = False
    for candidate in candidates:
        real = _resolved(candidate, roots)
        if real is None or not within(real, roots):
            continue  # no word on whether it exists: it is not ours to tell
        inside = True
        if os.path.lexists(
            real
        ):  # never raises (a folder it may not enter counts as absent); a special file is named later
            return real
    if inside:
        raise DatasetError({"source": f"not found under the import folders: {text}"})
    raise DatasetError(
        {
            "source": f"{text} is outside the folders the dashboard may read ({shown}); copy the dataset "
            "into one of them, or ask the administrator to add its folder to SEGTUNE_IMPORT_ROOTS"
        }
    )


def _typing_problem(text: str) -> str:
    """Why a typed path cannot name a file at all (control characters, over the system's length limits), or ''."""
    if any(ord(char) < 32 or ord(char) == 127 for char in text):
        return (
            "the path holds a control character (such as a NUL byte or a line break); type the folder's path as "
            "plain text"
        )
    if len(text.encode()) > _MAX_PATH_BYTES or any(len(part.encode()) > _MAX_NAME_BYTES for part in Path(text).parts):
        return (
            f"the path is too long ({len(text)} characters); a path may have at most {_MAX_PATH_BYTES} bytes and "
            f"each folder or file name at most {_MAX_NAME_BYTES}"
        )
    return ""


def _resolved(candidate: Path, roots: Sequence[Path]) -> Path | None:
    """``candidate`` with every link followed, or None where that fails outside the roots; a link loop
    inside the roots is a problem of its own (named by the typed path only)."""
    try:
        return candidate.resolve()  # follows every symlink, removes '..'
    except (RuntimeError, OSError):  # RuntimeError: a symlink loop (Python < 3.13), OSError: ELOOP and the like
        if within(Path(os.path.normpath(candidate)), roots):
            raise DatasetError(
                {"source": "a link in this path loops back on itself (or cannot be followed); fix or remove the link"}
            ) from None
        return None


def escaping_links(folder: Path, roots: Sequence[Path]) -> list[str]:
    """Links below ``folder`` whose target leaves ``roots`` (paths relative to ``folder``), without following them.

    Links that stay inside the roots are followed (once each: link loops end) and their contents checked too.
    """
    roots = [Path(root).resolve() for root in roots]
    escaping: list[str] = []
    seen: set[Path] = set()
    pending = deque([Path(folder)])  # breadth first: a folder is named by its shortest path
    while pending:
        current = pending.popleft()
        real = current.resolve()
        if real in seen:
            continue
        seen.add(real)
        for entry in sorted(os.scandir(current), key=lambda e: e.name):
            path = Path(entry.path)
            if entry.is_symlink() and not _stays_inside(path, roots):
                escaping.append(path.relative_to(folder).as_posix())
            elif os.path.isdir(path):  # follows a link only when it stays inside the roots; False for a loop
                pending.append(path)
    return sorted(escaping)


def _stays_inside(link: Path, roots: Sequence[Path]) -> bool:
    """Whether ``link`` leads to a place inside ``roots``; a loop leads nowhere and is left to the
    file checks (core.data.file_kinds), which name it as a loop."""
    try:
        return within(link.resolve(), roots)
    except (RuntimeError, OSError):
        return True


def link_problems(folder: Path, roots: Sequence[Path]) -> dict[str, str]:
    """One problem per link that leaves the import folders (at most a few named, then a count)."""
    links = escaping_links(folder, roots)
    problems = {
        label: "is a link to a place outside the import folders; links may not leave them" for label in links[:_SHOWN]
    }
    if len(links) > _SHOWN:
        problems["links"] = f"... and {len(links) - _SHOWN} more links that leave the import folders"
    return problems


def confined_source(typed: str | Path, roots: Sequence[Path]) -> Path:
    """``typed`` resolved under ``roots`` with no link inside leading out, else DatasetError (every link named)."""
    source = resolve_import_source(typed, roots)
    if source.is_dir():
        links = link_problems(source, [Path(root).resolve() for root in roots])
        if links:
            raise DatasetError(links)
    return source
