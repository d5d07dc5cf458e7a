"""Classification datasets: images in one sub-folder per class, or images with a ``labels.csv``.

Two layouts, found under the source root (after stepping into a lone top folder):

- **class folders**: ``normal/a.png``, ``tumour/b.png``, ...; each visible sub-folder is a class and
  its name is the class name.
- **labels file**: ``labels.csv`` beside the images (or beside an ``images/`` folder holding them),
  one row ``name,label[,group]`` per image; a header row ``name,label[,group]`` is optional, ``name``
  is the file name (its extension may be left out), ``group`` (optional) is the patient / volume
  the image comes from, kept together by every split.

Classes are the folder names or the labels, sorted (numerically when all are whole numbers), unless
the caller declares them: then their order is the class index order and anything else is unknown.
Every problem is listed at once: corrupt or unsupported files, unknown classes, empty classes,
fewer than two classes, duplicate names, the same picture stored twice (in two classes it contradicts
itself; in one it would leak between splits), names labels.csv lists without an image, and images
it leaves out. The images are stored as ``images/<stem><ext>`` with each class index in the
manifest (:mod:`core.data.manifest`, ``task: classification``).
"""

from __future__ import annotations

import csv
import io
import json
import shutil
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath

from core.data.images import IMAGE_EXTENSIONS
from core.data.manifest import MANIFEST_FILE, DatasetError, DatasetManifest, PairInfo, Task, folder_checksum
from core.data.source_files import (
    LABELS_FILE,
    SIDE_FILES,
    ImageFacts,
    IngestRequest,
    escapes,
    index_images,
    inspect_image,
    keep_split_file,
    relative,
    shorten,
    visible,
)
from core.errors import add_problem
from core.naming import class_name_problem

_HEADER = ("name", "label", "group")
_SEGMENTATION_FOLDERS = ("images", "masks")


@dataclass(frozen=True)
class _Item:
    stem: str
    path: Path
    label: str  # class name
    source: str  # the file as the user knows it, for messages
    group: str | None = None


@dataclass(frozen=True)
class _Found:
    """What the layout holds: the items and the class names it shows (folders may be empty)."""

    items: list[_Item]
    shown: dict[str, str]  # class name -> where it appears, for messages ("tumour/", "labels.csv")
    layout: str


def detect_task(root: Path) -> Task:
    """Classification when ``root`` holds a labels.csv, or sub-folders and no images of its own
    (and no images/ + masks/, the segmentation layout); segmentation otherwise."""
    if (root / "images").is_dir() and (root / "masks").is_dir():
        return Task.SEGMENTATION
    if (root / LABELS_FILE).is_file():
        return Task.CLASSIFICATION
    entries = visible(root)
    folders = [p for p in entries if p.is_dir()]
    loose = [p for p in entries if p.is_file() and p.suffix.lower() not in SIDE_FILES]
    if folders and not loose and not any(p.name in _SEGMENTATION_FOLDERS for p in folders):
        return Task.CLASSIFICATION
    return Task.SEGMENTATION


def build_labelled(
    request: IngestRequest,
    root: Path,
    work: Path,
    problems: dict[str, str],
    progress: Callable[[int, int], None] | None,
) -> DatasetManifest:
    """Validate the classification dataset under ``root`` and store it in ``work``; DatasetError lists every problem."""
    if not (root / LABELS_FILE).is_file() and all((root / name).is_dir() for name in _SEGMENTATION_FOLDERS):
        problems["layout"] = (
            f"images/ + masks/ is a segmentation dataset; a classification dataset has one sub-folder of images "
            f"per class, or images + {LABELS_FILE} (name,label[,group])"
        )
        raise DatasetError(problems)
    found = _from_labels_file(root, problems) if (root / LABELS_FILE).is_file() else _from_class_folders(root, problems)
    classes = _classes(found, request, problems)
    checked: list[tuple[_Item, ImageFacts]] = []
    for done, item in enumerate(found.items, start=1):
        facts = (
            None
            if escapes(item.path, item.source, request, problems)
            else inspect_image(item.path, item.source, request.limits, problems)
        )
        if facts is not None:
            checked.append((item, facts))
        if progress:
            progress(done, len(found.items))
    _report_copies(checked, problems)
    if not found.items and not problems:
        problems["source"] = f"empty dataset: no labelled images found in {request.shown_source}"
    if not problems:
        keep_split_file(root, [item.stem for item, _ in checked], work, problems)
    if problems:
        if request.task is None:  # say how the source was read: the user may have meant a segmentation dataset
            problems.setdefault(
                "task",
                f"detected a classification dataset ({found.layout}); a segmentation dataset has images/ + masks/",
            )
        raise DatasetError(problems)
    return _store(request, work, classes, checked)


# --- layouts --------------------------------------------------------------------------------------


def _from_class_folders(root: Path, problems: dict[str, str]) -> _Found:
    entries = visible(root)
    loose = [relative(p, root) for p in entries if p.is_file() and p.suffix.lower() not in SIDE_FILES]
    if loose and not any(p.is_dir() for p in entries):  # e.g. a zip of one class folder: ingest stepped into it
        problems["layout"] = (
            f"{root.name or root}/ holds images but no class sub-folders: put each class's images in a "
            f"sub-folder named after the class (at least 2 classes), or list them in {LABELS_FILE}"
        )
        return _Found([], {}, "one sub-folder per class")
    if loose:
        problems[f"{len(loose)} file(s) outside the class folders"] = shorten(loose)
    items: list[_Item] = []
    seen: dict[str, _Item] = {}
    shown: dict[str, str] = {}
    for folder in (p for p in entries if p.is_dir()):
        shown[folder.name] = f"{folder.name}/"
        nested = [relative(p, root) for p in visible(folder) if p.is_dir()]
        if nested:
            add_problem(
                problems,
                f"{folder.name}/",
                f"holds sub-folders ({shorten(nested)}); a class folder holds only its images",
            )
        for stem, path in sorted(index_images(folder, root, problems).items()):
            item = _Item(stem, path, folder.name, relative(path, root))
            if stem in seen:
                add_problem(
                    problems,
                    item.source,
                    f"duplicate name {stem!r}: {seen[stem].source} has it too; stored images need distinct names",
                )
            else:
                seen[stem] = item
                items.append(item)
    return _Found(sorted(items, key=lambda i: i.stem), shown, "one sub-folder per class")


def _from_labels_file(root: Path, problems: dict[str, str]) -> _Found:
    folder = root / "images" if (root / "images").is_dir() else root
    images = index_images(folder, root, problems)
    rows = _read_rows(root / LABELS_FILE, problems)
    items: dict[str, _Item] = {}
    duplicates, without_image, no_label = [], [], []
    for number, name, label, group in rows:
        stem = _stem(name)
        if not label:
            no_label.append(f"row {number} ({name})")
        elif stem in items:
            duplicates.append(name)
        elif stem not in images:
            without_image.append(name)
        else:
            items[stem] = _Item(stem, images[stem], label, relative(images[stem], root), group)
    for message, names in (
        ("row(s) without a label: {}", no_label),
        ("name(s) listed twice: {}", duplicates),
        (f"name(s) with no image in {relative(folder, root) if folder != root else 'the folder'}: {{}}", without_image),
    ):
        if names:
            add_problem(problems, LABELS_FILE, message.format(shorten(names)))
    mentioned = {_stem(name) for _, name, _, _ in rows}  # a row without a label is reported once, as such
    unlisted = [relative(images[stem], root) for stem in sorted(images.keys() - mentioned)]
    if unlisted:
        problems[f"{len(unlisted)} image(s) not in {LABELS_FILE}"] = shorten(unlisted)
    shown = {item.label: LABELS_FILE for item in items.values()}
    return _Found(sorted(items.values(), key=lambda i: i.stem), shown, f"images + {LABELS_FILE}")


def _read_rows(path: Path, problems: dict[str, str]) -> list[tuple[int, str, str, str | None]]:
    """(row number, name, label, group) of every non-blank row; a header row is skipped."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        add_problem(problems, LABELS_FILE, f"cannot be read as UTF-8 text: {exc}")
        return []
    rows = [
        (n, [cell.strip() for cell in row])
        for n, row in enumerate(csv.reader(io.StringIO(text)), start=1)
        if any(c.strip() for c in row)
    ]
    if rows and [cell.lower() for cell in rows[0][1][:2]] == list(_HEADER[:2]):
        rows = rows[1:]
    short = [str(n) for n, row in rows if len(row) < 2 or not row[0]]
    if short:
        add_problem(problems, LABELS_FILE, f"row(s) {shorten(short)} are not 'name,label'")
    return [
        (n, row[0], row[1], row[2] if len(row) > 2 and row[2] else None) for n, row in rows if len(row) >= 2 and row[0]
    ]


def _stem(name: str) -> str:
    """The stored stem a labels.csv name refers to: its file name, less an image extension."""
    path = PurePosixPath(name.replace("\\", "/"))
    return path.stem if path.suffix.lower() in IMAGE_EXTENSIONS else path.name


# --- classes and copies ---------------------------------------------------------------------------


def _classes(found: _Found, request: IngestRequest, problems: dict[str, str]) -> tuple[str, ...]:
    """Declared classes (checked against the source) or the source's own, sorted; empty ones are problems."""
    counts = Counter(item.label for item in found.items)
    if not request.declared:
        classes = tuple(sorted(found.shown, key=_class_key))
        if len(classes) == 1:
            problems["classes"] = (
                f"found {len(classes)} class ({', '.join(classes)}); a classification dataset needs at least 2"
            )
    else:
        classes = request.classes
        unknown = sorted(set(found.shown) - set(classes), key=_class_key)
        for name in unknown:
            add_problem(
                problems,
                found.shown[name],
                f"unknown class {name!r} ({counts[name]} image(s)); declared classes: {list(classes)}",
            )
    for name in found.shown:  # folder names and labels.csv labels (declared names were checked with the request)
        if problem := class_name_problem(name):
            add_problem(problems, found.shown[name], problem)
    empty = [name for name in classes if not counts[name]]
    if empty:
        problems[f"{len(empty)} empty class(es)"] = f"{shorten(empty)}: no images (every class needs at least one)"
    return classes


def _class_key(name: str) -> tuple[int, int, str]:
    return (0, int(name), "") if name.isdigit() else (1, 0, name)


def _report_copies(checked: Iterable[tuple[_Item, ImageFacts]], problems: dict[str, str]) -> None:
    """The same picture under two names: in two classes it contradicts itself, in one it leaks between splits."""
    copies: dict[str, list[_Item]] = {}
    for item, facts in checked:
        copies.setdefault(facts.pixels, []).append(item)
    for same in (sorted(items, key=lambda i: i.source) for items in copies.values() if len(items) > 1):
        labels = sorted({item.label for item in same})
        others = ", ".join(item.source for item in same[1:])
        if len(labels) > 1:
            add_problem(
                problems,
                same[0].source,
                f"the same image as {others}, labelled {' and '.join(labels)}: keep one, with its right class",
            )
        else:
            add_problem(
                problems, same[0].source, f"the same image as {others}: keep one (copies would leak between splits)"
            )


def _store(
    request: IngestRequest, work: Path, classes: tuple[str, ...], checked: list[tuple[_Item, ImageFacts]]
) -> DatasetManifest:
    (work / "images").mkdir(exist_ok=True)
    index = {name: i for i, name in enumerate(classes)}
    pairs = []
    for item, facts in checked:
        stored = f"images/{item.stem}{item.path.suffix}"
        shutil.copyfile(item.path, work / stored)
        pairs.append(
            PairInfo(item.stem, stored, "", facts.height, facts.width, (), volume=item.group, label=index[item.label])
        )
    manifest = DatasetManifest(
        name=request.name,
        created=datetime.now(UTC).isoformat(timespec="seconds"),
        source=request.shown_source,
        channels=max(facts.channels for _, facts in checked),
        bit_depth=max(facts.bit_depth for _, facts in checked),
        classes=classes,
        pairs=tuple(pairs),
        checksum=folder_checksum(work, {item.stem: item.label for item, _ in checked}),
        task=Task.CLASSIFICATION,
    )
    (work / MANIFEST_FILE).write_text(json.dumps(manifest.to_dict(), indent=1), encoding="utf-8")
    return manifest
