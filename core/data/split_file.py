"""The user's own split: a ``split.csv`` beside ``images/`` and ``masks/``.

Format: one row per pair, columns ``split,name[,group]`` (a header row with those names is
optional). ``split`` is ``train``, ``val`` or ``test`` (``valid`` and ``validation`` are read as
``val``); ``name`` is the pair's file stem (an extension is ignored); ``group`` (optional) keeps
the pairs of one patient together when cross-validation cuts folds from train + val.

The file is validated at ingest against the stored pairs — unknown names, pairs the file leaves
out, duplicate names, unknown split values — every problem at once, and kept in the dataset
folder in a normalised form. A spec with ``"split": {"from_file": true}`` then uses it.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from core.errors import add_problem

SPLIT_FILE = "split.csv"
PARTS = {"train": "train", "val": "val", "valid": "val", "validation": "val", "test": "test"}
_HEADER = ("split", "name", "group")


@dataclass(frozen=True)
class Assignment:
    part: str  # train, val or test
    group: str | None = None


def _shorten(items: list[str], limit: int = 10) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f" … ({len(items)} in all)" if len(items) > limit else "")


def parse_split_file(
    text: str, stems: Iterable[str], problems: dict[str, str], label: str = SPLIT_FILE
) -> dict[str, Assignment]:
    """Read ``text`` against the dataset's ``stems``; every problem goes to ``problems`` under ``label``."""
    known = set(stems)
    rows = [row for row in csv.reader(io.StringIO(text)) if any(cell.strip() for cell in row)]
    if rows and [cell.strip().lower() for cell in rows[0][:2]] == list(_HEADER[:2]):
        rows = rows[1:]
    assignments: dict[str, Assignment] = {}
    unknown, duplicates, bad_parts, short = [], [], [], []
    for number, row in enumerate(rows, start=1):
        if len(row) < 2:
            short.append(str(number))
            continue
        part = PARTS.get(row[0].strip().lower())
        name = PurePosixPath(row[1].strip()).stem if PurePosixPath(row[1].strip()).suffix else row[1].strip()
        if part is None:
            bad_parts.append(repr(row[0].strip()))
        elif name not in known:
            unknown.append(name)
        elif name in assignments:
            duplicates.append(name)
        else:
            group = row[2].strip() if len(row) > 2 and row[2].strip() else None
            assignments[name] = Assignment(part, group)
    missing = sorted(known - set(assignments))
    for message, items in (
        ("rows without 'split,name': {}", short),
        (f"unknown split value(s) {{}}; valid: {sorted(set(PARTS))}", bad_parts),
        ("name(s) with no image/mask pair: {}", unknown),
        ("name(s) listed twice: {}", duplicates),
        ("pair(s) the file leaves out: {}", missing),
    ):
        if items:
            add_problem(problems, label, message.format(_shorten(items)))
    if assignments and not any(a.part == "val" for a in assignments.values()):
        add_problem(problems, label, "no pair is in 'val': tuning needs a validation split")
    return assignments


def write_split_file(path: Path, assignments: dict[str, Assignment]) -> None:
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(_HEADER)
        for name in sorted(assignments):
            writer.writerow([assignments[name].part, name, assignments[name].group or ""])


def read_kept_split(dataset_dir: Path) -> dict[str, Assignment] | None:
    """The split.csv kept at ingest (already validated), or None when the dataset has none."""
    path = Path(dataset_dir) / SPLIT_FILE
    if not path.is_file():
        return None
    rows = list(csv.reader(path.read_text(encoding="utf-8").splitlines()))[1:]
    return {row[1]: Assignment(row[0], row[2] or None) for row in rows if len(row) >= 3}
