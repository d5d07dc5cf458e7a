"""Ingest a folder or zip of image/mask pairs, validate it, and keep it with a manifest.

The stored layout is :mod:`core.data.manifest`'s. Ingest validates everything first and reports every problem at once; it builds in
a hidden temporary folder inside ``datasets_dir`` and renames it into place only when all is well,
so a failed ingest leaves nothing behind.
"""


from __future__ import annotations

import json
import os
import shutil
import tempfile
import zipfile
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
from PIL import Image

from core.data.archives import IGNORED_NAMES, IngestLimits, unpack
from core.data.images import IMAGE_EXTENSIONS, IMAGE_MODES, MASK_MODES, mask_channel
from core.data.manifest import (
    BINARY_CLASSES,
    INGEST_PREFIX,
    MANIFEST_FILE,
    DatasetError,
    DatasetManifest,
    PairInfo,
    folder_checksum,
    name_problem,
    remove_stale_work,
)
from core.data.server_folders import link_problems, resolve_import_source, within
from core.data.split_file import SPLIT_FILE, parse_split_file, write_split_file
from core.errors import add_problem
from core.naming import is_valid_name

T = TypeVar("T")

MASK_SUFFIXES = ("_mask", "_seg", "_label", "-mask")  # tried in this order when none is given

# Documentation and metadata that often travel with a dataset; skipped rather than reported.
_SIDE_FILES = (".txt", ".md", ".csv", ".json", ".yaml", ".yml", ".db")
_SHOWN = 10  # values / file names listed per problem before "... and N more"


def ingest_dataset(
    source: Path,
    name: str,
    datasets_dir: Path,
    *,
    classes: Sequence[str] | None = None,
    mask_suffix: str | None = None,
    limits: IngestLimits = IngestLimits(),
    progress: Callable[[int, int], None] | None = None,
    confine_to: Sequence[Path] | None = None,
) -> DatasetManifest:
    """Validate ``source`` (folder or .zip) and store it as dataset ``name``; raises :class:`DatasetError`.

    ``confine_to``: import roots (the dashboard's "Folder on the server"): ``source`` must resolve
    under one of them and no link inside it may lead out (:mod:`core.data.server_folders`).
    """
    confine = tuple(Path(root).resolve() for root in confine_to) if confine_to is not None else None
    source, datasets_dir = Path(source), Path(datasets_dir)
    if confine is not None:
        source = _confined_source(source, name, datasets_dir, classes, confine)
    problems = _request_problems(source, name, datasets_dir, classes)
    if not source.exists() or (source.is_file() and not zipfile.is_zipfile(source)):
        raise DatasetError(problems)
    datasets_dir.mkdir(parents=True, exist_ok=True)
    remove_stale_work(datasets_dir)  # what a killed ingest or delete left behind
    work = Path(tempfile.mkdtemp(prefix=INGEST_PREFIX, dir=datasets_dir))
    try:
        request = _Request(source, name, tuple(classes or BINARY_CLASSES), classes is not None, mask_suffix, limits, confine)
        manifest = _build(request, work, problems, progress)
        _publish(work, datasets_dir / name, name)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return manifest


@dataclass(frozen=True)
class _Request:
    source: Path
    name: str
    classes: tuple[str, ...]
    declared: bool  # classes given by the user (else binary by default)
    mask_suffix: str | None
    limits: IngestLimits
    confine: tuple[Path, ...] | None = None  # import roots every file read must resolve under


def _confined_source(source: Path, name: str, datasets_dir: Path, classes: Sequence[str] | None, roots: tuple[Path, ...]) -> Path:
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
    elif source.is_file() and not zipfile.is_zipfile(source):
        problems["source"] = f"{source} is neither a folder nor a .zip archive"
    return problems


def _name_and_class_problems(name: str, datasets_dir: Path, classes: Sequence[str] | None) -> dict[str, str]:
    problems: dict[str, str] = {}
    if not is_valid_name(name):
        problems["name"] = name_problem(name)
    elif (datasets_dir / name).exists():
        problems["name"] = f"a dataset named {name!r} already exists; pick another name or delete it first"
    if classes is not None:
        problems.update(_class_problems(classes))
    return problems


def _class_problems(classes: Sequence[str]) -> dict[str, str]:
    if isinstance(classes, str) or not 2 <= len(classes) <= 256:
        return {"classes": f"must list 2 to 256 names (background first), got {classes!r}"}
    if any(not isinstance(c, str) or not c.strip() for c in classes):
        return {"classes": f"every class name must be a non-empty string, got {list(classes)!r}"}
    duplicates = sorted(c for c, n in Counter(classes).items() if n > 1)
    return {"classes": f"duplicate class name(s) {duplicates}"} if duplicates else {}


def _build(request: _Request, work: Path, problems: dict[str, str], progress: Callable[[int, int], None] | None) -> DatasetManifest:
    root = unpack(request.source, work / "_source", request.limits, problems)
    pairs = _match_pairs(_find_root(root), request.mask_suffix, problems) if root else []
    if root and not pairs and not problems:
        problems["source"] = f"empty dataset: no image/mask pairs found in {request.source}"
    checked = []
    for done, pair in enumerate(pairs, start=1):
        result = _check_pair(pair, request, problems)
        if result and not problems:  # once anything is wrong, only validate: nothing will be kept
            _store_pair(pair, result, work)
            checked.append(result)
        if progress:
            progress(done, len(pairs))
    if root and not problems:
        _keep_split_file(_find_root(root), [c.info.stem for c in checked], work, problems)
    if problems:
        raise DatasetError(problems)
    shutil.rmtree(work / "_source", ignore_errors=True)
    return _write_manifest(request, work, checked)


def _keep_split_file(root: Path, stems: list[str], work: Path, problems: dict[str, str]) -> None:
    """Validate the source's split.csv (core/data/split_file.py) against the pairs and keep it."""
    path = root / SPLIT_FILE
    if not path.is_file():
        return
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        add_problem(problems, SPLIT_FILE, f"cannot be read as UTF-8 text: {exc}")
        return
    assignments = parse_split_file(text, stems, problems)
    if SPLIT_FILE not in problems:
        write_split_file(work / SPLIT_FILE, assignments)


def _publish(work: Path, final: Path, name: str) -> None:
    if final.exists():  # someone else took the name while we were ingesting
        raise DatasetError({"name": f"a dataset named {name!r} already exists; pick another name or delete it first"})
    os.rename(work, final)


def _write_manifest(request: _Request, work: Path, checked: list[_Checked]) -> DatasetManifest:
    manifest = DatasetManifest(
        name=request.name,
        created=datetime.now(UTC).isoformat(timespec="seconds"),
        source=str(request.source),
        channels=max(c.channels for c in checked),
        bit_depth=max(c.bit_depth for c in checked),
        classes=request.classes,
        pairs=tuple(c.info for c in checked),
        checksum=folder_checksum(work),
    )
    (work / MANIFEST_FILE).write_text(json.dumps(manifest.to_dict(), indent=1), encoding="utf-8")
    return manifest


# --- source layout --------------------------------------------------------------------------------


def _is_ignored(path: Path) -> bool:
    return path.name.startswith(".") or path.name in IGNORED_NAMES


def _visible(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if not _is_ignored(p))


def _find_root(root: Path) -> Path:
    """Step into a lone top-level folder (how most zips are made) until the pairs are in sight."""
    while not (root / "images").is_dir():
        entries = _visible(root)
        if len(entries) != 1 or not entries[0].is_dir():
            break
        root = entries[0]
    return root


def _match_pairs(root: Path, mask_suffix: str | None, problems: dict[str, str]) -> list[_SourcePair]:
    if (root / "images").is_dir() and (root / "masks").is_dir():
        images = _index(root / "images", root, problems)
        masks = _index(root / "masks", root, problems)
    else:
        files = _index(root, root, problems)
        suffix = mask_suffix or _detect_suffix(files)
        if suffix is None:
            problems["layout"] = (f"found neither images/ + masks/ folders nor mask files named <stem><suffix> with a suffix "
                            f"in {list(MASK_SUFFIXES)} in {root.name or root}; pass mask_suffix for another naming")
            return []
        masks = {stem[: -len(suffix)]: path for stem, path in files.items() if stem.endswith(suffix)}
        images = {stem: path for stem, path in files.items() if not stem.endswith(suffix)}
    _report_unmatched("image(s) without a mask", images.keys() - masks.keys(), images, root, problems)
    _report_unmatched("mask(s) without an image", masks.keys() - images.keys(), masks, root, problems)
    return [_SourcePair(stem, images[stem], masks[stem], _label(images[stem], root), _label(masks[stem], root))
            for stem in sorted(images.keys() & masks.keys())]


def _index(folder: Path, root: Path, problems: dict[str, str]) -> dict[str, Path]:
    """Image files of one folder by stem; unsupported files and duplicate stems are problems."""
    by_stem: dict[str, Path] = {}
    for path in _visible(folder):
        suffix = path.suffix.lower()
        if path.is_dir() or suffix in _SIDE_FILES:
            continue
        if suffix not in IMAGE_EXTENSIONS:
            add_problem(problems, _label(path, root), f"unsupported file type (supported: {', '.join(IMAGE_EXTENSIONS)})")
        elif path.stem in by_stem:
            add_problem(problems, _label(path, root), f"duplicate stem {path.stem!r}: {_label(by_stem[path.stem], root)} has it too")
        else:
            by_stem[path.stem] = path
    return by_stem


def _detect_suffix(files: dict[str, Path]) -> str | None:
    counts = {suffix: sum(stem.endswith(suffix) for stem in files) for suffix in MASK_SUFFIXES}
    best = max(counts, key=lambda s: counts[s])  # ties go to the earlier, more common suffix
    return best if counts[best] else None


def _report_unmatched(what: str, stems: Iterable[str], paths: dict[str, Path], root: Path, problems: dict[str, str]) -> None:
    labels = [_label(paths[stem], root) for stem in sorted(stems)]
    if labels:
        problems[f"{len(labels)} {what}"] = _shorten(labels)


def _label(path: Path, root: Path) -> str:
    return path.relative_to(root).as_posix()


def _shorten(items: Sequence[Any]) -> str:
    shown = ", ".join(str(item) for item in items[:_SHOWN])
    return shown + (f", ... and {len(items) - _SHOWN} more" if len(items) > _SHOWN else "")


# --- one pair -------------------------------------------------------------------------------------


def _check_pair(pair: _SourcePair, request: _Request, problems: dict[str, str]) -> _Checked | None:
    if request.confine is not None:  # again at read time: a link may have been swapped since the scan
        for path, label in ((pair.image, pair.image_label), (pair.mask, pair.mask_label)):
            if not within(path.resolve(), request.confine):
                add_problem(problems, label, "is a link to a place outside the import folders; links may not leave them")
                return None
    image = _inspect_image(pair.image, pair.image_label, request.limits, problems)
    mask = _load_mask(pair.mask, pair.mask_label, request.limits, problems)
    if image is None or mask is None:
        return None
    width, height, channels, depth = image
    if mask.shape != (height, width):
        add_problem(problems, pair.mask_label, f"size mismatch: {pair.image_label} is {width}x{height} but the mask is "
                                                f"{mask.shape[1]}x{mask.shape[0]}")
        return None
    indices = _normalise_mask(mask, request, pair.mask_label, problems)
    if indices is None:
        return None
    foreground = tuple(float(np.count_nonzero(indices == k)) / indices.size for k in range(1, len(request.classes)))
    info = PairInfo(pair.stem, f"images/{pair.stem}{pair.image.suffix}", f"masks/{pair.stem}.png", height, width, foreground)
    return _Checked(info, channels, depth, indices)


def _store_pair(pair: _SourcePair, checked: _Checked, work: Path) -> None:
    (work / "images").mkdir(exist_ok=True)
    (work / "masks").mkdir(exist_ok=True)
    shutil.copyfile(pair.image, work / checked.info.image)
    Image.fromarray(checked.indices).save(work / checked.info.mask, optimize=False)


def _decode(path: Path, what: str, label: str, limits: IngestLimits, problems: dict[str, str], read: Callable[[Image.Image], T]) -> T | None:
    """``read`` of the fully decoded file (size-limited first), else None with a problem recorded."""
    try:
        with Image.open(path) as image:
            if _too_large(image, label, limits, problems):
                return None
            frames = getattr(image, "n_frames", 1)
            if frames > 1:
                add_problem(problems, label, f"holds {frames} frames (a stack or animation); SegTune reads 2D images: "
                                             "save each slice as its own file")
                return None
            image.load()
            return read(image)
    except Exception as exc:
        add_problem(problems, label, f"unreadable or corrupt {what}: {exc}")
        return None


def _inspect_image(path: Path, label: str, limits: IngestLimits, problems: dict[str, str]) -> tuple[int, int, int, int] | None:
    """(width, height, channels, bit depth) of a fully decodable image, else None with a problem recorded."""
    decoded = _decode(path, "image", label, limits, problems, lambda image: (image.mode, image.size))
    if decoded is None:
        return None
    mode, (width, height) = decoded
    if mode not in IMAGE_MODES:
        add_problem(problems, label, f"unsupported image mode {mode} (supported: {', '.join(IMAGE_MODES)})")
        return None
    return width, height, *IMAGE_MODES[mode]


def _load_mask(path: Path, label: str, limits: IngestLimits, problems: dict[str, str]) -> np.ndarray | None:
    """The raw mask values as an int HxW array, else None with a problem recorded."""
    decoded = _decode(path, "mask", label, limits, problems, lambda image: (image.mode, np.asarray(image)))
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


def _too_large(image: Image.Image, label: str, limits: IngestLimits, problems: dict[str, str]) -> bool:
    width, height = image.size
    if width * height <= limits.max_image_pixels:
        return False
    add_problem(problems, label, f"{width}x{height} = {width * height} pixels, above the limit of {limits.max_image_pixels}")
    return True


def _normalise_mask(values: np.ndarray, request: _Request, label: str, problems: dict[str, str]) -> np.ndarray | None:
    """Class indices as uint8; binary masks saved as 0/255 become 0/1."""
    present = np.unique(values)
    count = len(request.classes)
    if count == 2 and set(present.tolist()) <= {0, 255}:
        return (values == 255).astype(np.uint8)
    if present.min() >= 0 and present.max() < count:
        return values.astype(np.uint8)
    shown = _shorten(present.tolist())
    if request.declared:
        add_problem(problems, label, f"unexpected mask values [{shown}]; expected 0..{count - 1} for classes {list(request.classes)}")
    else:
        add_problem(problems, label, f"unexpected mask values [{shown}]; binary masks hold 0/1 or 0/255. For a "
                                            f"multi-class dataset declare the class names (classes=[...], index = mask value, first = background)")
    return None


