"""Ingest a folder or zip of image/mask pairs or of labelled images, validate it, and keep it with a manifest.

The layout tells the task (or the caller names it): ``images/`` + ``masks/`` or ``<stem>_mask``
files are segmentation pairs (this module); one sub-folder per class or a ``labels.csv`` are a
classification dataset (:mod:`core.data.label_ingest`). The stored layout is
:mod:`core.data.manifest`'s. Ingest validates everything first and reports every problem at once;
it builds in a hidden temporary folder inside ``datasets_dir`` and renames it into place only when
all is well, so a failed ingest leaves nothing behind.
"""

from __future__ import annotations

import json
import shutil
import zipfile
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from PIL import Image

from core.data.archives import IngestLimits, unpack
from core.data.file_kinds import entry_problem, special_file_problems
from core.data.images import MASK_MODES, mask_channel
from core.data.label_ingest import build_labelled, detect_task
from core.data.manifest import (
    BINARY_CLASSES,
    MANIFEST_FILE,
    DatasetError,
    DatasetManifest,
    PairInfo,
    Task,
    building_dataset,
    folder_checksum,
    new_name_problem,
)
from core.data.server_folders import link_problems, resolve_import_source
from core.data.source_files import (
    LABELS_FILE,
    IngestRequest,
    decode,
    escapes,
    find_root,
    index_images,
    inspect_image,
    keep_split_file,
    relative,
    shorten,
)
from core.data.volumes import looks_like_volumes
from core.errors import add_problem, unknown_option
from core.naming import class_name_problem

MASK_SUFFIXES = ("_mask", "_seg", "_label", "-mask")  # tried in this order when none is given


def ingest_dataset(
    source: Path,
    name: str,
    datasets_dir: Path,
    *,
    classes: Sequence[str] | None = None,
    mask_suffix: str | None = None,
    task: str | None = None,
    limits: IngestLimits = IngestLimits(),
    progress: Callable[[int, int], None] | None = None,
    confine_to: Sequence[Path] | None = None,
    source_name: str | None = None,
) -> DatasetManifest:
    """Validate ``source`` (folder or .zip) and store it as dataset ``name``; raises :class:`DatasetError`.

    ``task``: ``"segmentation"`` or ``"classification"`` (a :class:`Task`); None detects it from
    the layout. ``classes``: segmentation: names by mask value, background first (default
    background, foreground); classification: the label names in index order (default: the class
    folders' or labels.csv's labels, sorted).
    ``confine_to``: import roots (the dashboard's "Folder on the server"): ``source`` must resolve
    under one of them and no link inside it may lead out (:mod:`core.data.server_folders`).
    ``source_name``: what the manifest records as the source where ``source`` is a temporary copy
    (a browser upload: the uploaded file's own name); default: ``source``'s path.
    """
    confine = tuple(Path(root).resolve() for root in confine_to) if confine_to is not None else None
    source, datasets_dir = Path(source), Path(datasets_dir)
    if confine is not None:
        source = _confined_source(source, name, datasets_dir, classes, confine)
    problems = _request_problems(source, name, datasets_dir, classes)
    if task is not None and task not in set(Task):
        problems["task"] = unknown_option("task", task, list(Task))
    if "source" in problems or "task" in problems:
        raise DatasetError(problems)
    request = IngestRequest(
        source,
        name,
        tuple(classes or BINARY_CLASSES),
        classes is not None,
        mask_suffix,
        limits,
        confine,
        None if task is None else Task(task),
        source_name,
    )
    with building_dataset(datasets_dir, name) as work:
        return _build(request, work, problems, progress)


def _confined_source(
    source: Path, name: str, datasets_dir: Path, classes: Sequence[str] | None, roots: tuple[Path, ...]
) -> Path:
    """``source`` resolved under ``roots``, with no link inside leading out; else DatasetError (all problems)."""
    try:
        source = resolve_import_source(source, roots)
    except DatasetError as error:
        raise DatasetError({**error.problems, **_name_and_class_problems(name, datasets_dir, classes)}) from None
    if source.is_dir():
        links = link_problems(source, roots)
        if links:
            raise DatasetError({**links, **_request_problems(source, name, datasets_dir, classes)})
    return source


@dataclass(frozen=True)
class _SourcePair:
    stem: str
    image: Path
    mask: Path
    image_label: str  # path relative to the source root, for messages
    mask_label: str


@dataclass(frozen=True)
class _Checked:
    info: PairInfo
    channels: int
    bit_depth: int
    indices: np.ndarray  # normalised mask


def _request_problems(source: Path, name: str, datasets_dir: Path, classes: Sequence[str] | None) -> dict[str, str]:
    problems = _name_and_class_problems(name, datasets_dir, classes)
    if not source.exists():
        problems["source"] = f"not found: {source}"
    elif kind := entry_problem(source):  # before anything opens it: a FIFO would block forever
        problems["source"] = f"{source} {kind}"
    elif source.is_file() and not zipfile.is_zipfile(source):
        problems["source"] = f"{source} is neither a folder nor a .zip archive"
    return problems


def _name_and_class_problems(name: str, datasets_dir: Path, classes: Sequence[str] | None) -> dict[str, str]:
    problems: dict[str, str] = {}
    taken = new_name_problem(datasets_dir, name)
    if taken:
        problems["name"] = taken
    if classes is not None:
        problems.update(_class_problems(classes))
    return problems


def _class_problems(classes: Sequence[str]) -> dict[str, str]:
    if isinstance(classes, str) or not 2 <= len(classes) <= 256:
        return {"classes": f"must list 2 to 256 names (segmentation: background first), got {classes!r}"}
    if any(not isinstance(c, str) or not c.strip() for c in classes):
        return {"classes": f"every class name must be a non-empty string, got {list(classes)!r}"}
    unprintable = "; ".join(problem for c in classes if (problem := class_name_problem(c)))
    if unprintable:
        return {"classes": unprintable}
    duplicates = sorted(c for c, n in Counter(classes).items() if n > 1)
    return {"classes": f"duplicate class name(s) {duplicates}"} if duplicates else {}


def _build(
    request: IngestRequest, work: Path, problems: dict[str, str], progress: Callable[[int, int], None] | None
) -> DatasetManifest:
    unpacked = unpack(request.source, work / "_source", request.limits, problems)
    if unpacked is None:
        raise DatasetError(problems)
    special = special_file_problems(unpacked)  # refused before any file is opened
    if special:
        raise DatasetError({**problems, **special})
    root = find_root(unpacked)
    stepped = [
        root,
        *(folder for folder in root.parents if folder.is_relative_to(unpacked)),
    ]  # find_root may step into imagesTr/<case>/
    if any(looks_like_volumes(folder) for folder in stepped):
        raise DatasetError(
            {
                **problems,
                "layout": "this is a medical volume dataset (NIfTI files, or DICOM series folders in imagesTr/): "
                "ingest it as volumes: `python -m core ingest PATH --volumes`, or the dashboard's "
                "Medical volumes tab",
            }
        )
    task = request.task or detect_task(root)
    if task == Task.CLASSIFICATION:
        manifest = build_labelled(request, root, work, problems, progress)
    else:
        manifest = _build_pairs(request, root, work, problems, progress)
    shutil.rmtree(work / "_source", ignore_errors=True)
    return manifest


def _build_pairs(
    request: IngestRequest,
    root: Path,
    work: Path,
    problems: dict[str, str],
    progress: Callable[[int, int], None] | None,
) -> DatasetManifest:
    pairs = _match_pairs(root, request.mask_suffix, request.limits, problems)
    if not pairs and not problems:
        problems["source"] = f"empty dataset: no image/mask pairs found in {request.shown_source}"
    checked = []
    for done, pair in enumerate(pairs, start=1):
        result = _check_pair(pair, request, problems)
        if result and not problems:  # once anything is wrong, only validate: nothing will be kept
            _store_pair(pair, result, work)
            checked.append(result)
        if progress:
            progress(done, len(pairs))
    if not problems:
        keep_split_file(root, [c.info.stem for c in checked], work, problems)
    if problems:
        raise DatasetError(problems)
    return _write_manifest(request, work, checked)


def _write_manifest(request: IngestRequest, work: Path, checked: list[_Checked]) -> DatasetManifest:
    manifest = DatasetManifest(
        name=request.name,
        created=datetime.now(UTC).isoformat(timespec="seconds"),
        source=request.shown_source,
        channels=max(c.channels for c in checked),
        bit_depth=max(c.bit_depth for c in checked),
        classes=request.classes,
        pairs=tuple(c.info for c in checked),
        checksum=folder_checksum(work),
    )
    (work / MANIFEST_FILE).write_text(json.dumps(manifest.to_dict(), indent=1), encoding="utf-8")
    return manifest


# --- source layout --------------------------------------------------------------------------------


def _match_pairs(
    root: Path, mask_suffix: str | None, limits: IngestLimits, problems: dict[str, str]
) -> list[_SourcePair]:
    if (root / "images").is_dir() and (root / "masks").is_dir():
        images = index_images(root / "images", root, problems)
        masks = index_images(root / "masks", root, problems)
    else:
        files = index_images(root, root, problems)
        suffix = mask_suffix or _detect_suffix(files)
        if suffix is None:
            problems["layout"] = (
                f"found neither images/ + masks/ folders nor mask files named <stem><suffix> with a suffix "
                f"in {list(MASK_SUFFIXES)} in {root.name or root}; pass mask_suffix for another naming. "
                f"A classification dataset has one sub-folder of images per class, or images + {LABELS_FILE}"
            )
            return []
        masks = {stem[: -len(suffix)]: path for stem, path in files.items() if stem.endswith(suffix)}
        images = {stem: path for stem, path in files.items() if not stem.endswith(suffix)}
    _report_unmatched("image", "image(s) without a mask", images.keys() - masks.keys(), images, root, limits, problems)
    _report_unmatched("mask", "mask(s) without an image", masks.keys() - images.keys(), masks, root, limits, problems)
    return [
        _SourcePair(stem, images[stem], masks[stem], relative(images[stem], root), relative(masks[stem], root))
        for stem in sorted(images.keys() & masks.keys())
    ]


def _detect_suffix(files: dict[str, Path]) -> str | None:
    counts = {suffix: sum(stem.endswith(suffix) for stem in files) for suffix in MASK_SUFFIXES}
    best = max(counts, key=lambda s: counts[s])  # ties go to the earlier, more common suffix
    return best if counts[best] else None


def _report_unmatched(
    kind: str,
    what: str,
    stems: Iterable[str],
    paths: dict[str, Path],
    root: Path,
    limits: IngestLimits,
    problems: dict[str, str],
) -> None:
    """Files without a partner; one that does not decode is reported as corrupt instead (that is what to fix first)."""
    labels = []
    for stem in sorted(stems):
        label = relative(paths[stem], root)
        if decode(paths[stem], kind, label, limits, problems, lambda image: image.mode) is not None:
            labels.append(label)
    if labels:
        problems[f"{len(labels)} {what}"] = shorten(labels)


# --- one pair -------------------------------------------------------------------------------------


def _check_pair(pair: _SourcePair, request: IngestRequest, problems: dict[str, str]) -> _Checked | None:
    if escapes(pair.image, pair.image_label, request, problems) or escapes(
        pair.mask, pair.mask_label, request, problems
    ):
        return None
    image = inspect_image(pair.image, pair.image_label, request.limits, problems)
    mask = _load_mask(pair.mask, pair.mask_label, request.limits, problems)
    if image is None or mask is None:
        return None
    width, height, channels, depth = image.width, image.height, image.channels, image.bit_depth
    if mask.shape != (height, width):
        add_problem(
            problems,
            pair.mask_label,
            f"size mismatch: {pair.image_label} is {width}x{height} but the mask is {mask.shape[1]}x{mask.shape[0]}",
        )
        return None
    indices = _normalise_mask(mask, request, pair.mask_label, problems)
    if indices is None:
        return None
    foreground = tuple(float(np.count_nonzero(indices == k)) / indices.size for k in range(1, len(request.classes)))
    info = PairInfo(
        pair.stem, f"images/{pair.stem}{pair.image.suffix}", f"masks/{pair.stem}.png", height, width, foreground
    )
    return _Checked(info, channels, depth, indices)


def _store_pair(pair: _SourcePair, checked: _Checked, work: Path) -> None:
    (work / "images").mkdir(exist_ok=True)
    (work / "masks").mkdir(exist_ok=True)
    shutil.copyfile(pair.image, work / checked.info.image)
    Image.fromarray(checked.indices).save(work / checked.info.mask, optimize=False)


def _load_mask(path: Path, label: str, limits: IngestLimits, problems: dict[str, str]) -> np.ndarray | None:
    """The raw mask values as an int HxW array, else None with a problem recorded."""
    decoded = decode(path, "mask", label, limits, problems, lambda image: (image.mode, np.asarray(image)))
    if decoded is None:
        return None
    mode, values = decoded
    if mode not in MASK_MODES:
        add_problem(problems, label, f"unsupported mask mode {mode}; masks must be single-channel class indices")
        return None
    if values.ndim == 3:  # LA / RGB / RGBA
        values, problem = mask_channel(values, mode)
        if problem:
            add_problem(problems, label, problem)
            return None
    return values.astype(np.int64)


def _normalise_mask(
    values: np.ndarray, request: IngestRequest, label: str, problems: dict[str, str]
) -> np.ndarray | None:
    """Class indices as uint8; binary masks saved as 0/255 become 0/1."""
    present = np.unique(values)
    count = len(request.classes)
    if count == 2 and set(present.tolist()) <= {0, 255}:
        return (values == 255).astype(np.uint8)
    if present.min() >= 0 and present.max() < count:
        return values.astype(np.uint8)
    shown = shorten(present.tolist())
    if request.declared:
        add_problem(
            problems,
            label,
            f"unexpected mask values [{shown}]; expected 0..{count - 1} for classes {list(request.classes)}",
        )
    else:
        add_problem(
            problems,
            label,
            f"unexpected mask values [{shown}]; binary masks hold 0/1 or 0/255. For a "
            f"multi-class dataset declare the class names (classes=[...], index = mask value, first = background)",
        )
    return None
