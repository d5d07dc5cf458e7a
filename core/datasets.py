"""Datasets: ingest a folder or zip of image/mask pairs, validate it, and keep it with a manifest.

A stored dataset is ``<datasets_dir>/<name>/`` holding ``dataset.json`` (the :class:`DatasetManifest`),
``images/<stem><ext>`` (the user's files, byte for byte) and ``masks/<stem>.png`` (class indices,
0 = background). Ingest validates everything first and reports every problem at once; it builds in
a hidden temporary folder inside ``datasets_dir`` and renames it into place only when all is well,
so a failed ingest leaves nothing behind.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
import uuid
import zipfile
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath
from typing import Any, TypeVar

import numpy as np
from PIL import Image

from core.errors import SegTuneError
from core.options import is_valid_name

T = TypeVar("T")

MANIFEST_FILE = "dataset.json"
MANIFEST_VERSION = 1
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")
MASK_SUFFIXES = ("_mask", "_seg", "_label", "-mask")  # tried in this order when none is given
BINARY_CLASSES = ("background", "foreground")

# Documentation and metadata that often travel with a dataset; skipped rather than reported.
_SIDE_FILES = (".txt", ".md", ".csv", ".json", ".yaml", ".yml", ".db")
_IGNORED_NAMES = ("__MACOSX",)  # resource forks added by macOS zip tools
_RATIO_MIN_BYTES = 1 << 20  # entries smaller than this cannot bomb; blank masks compress > 200x
_CHUNK = 1 << 20
_SHOWN = 10  # values / file names listed per problem before "... and N more"

# Pillow mode -> (channels, bit depth) as SegTune reads it (palette and alpha images become RGB / grey).
_MODES: dict[str, tuple[int, int]] = {
    "1": (1, 8), "L": (1, 8), "LA": (1, 8),
    "P": (3, 8), "PA": (3, 8), "RGB": (3, 8), "RGBA": (3, 8), "CMYK": (3, 8), "YCbCr": (3, 8),
    "I;16": (1, 16), "I;16B": (1, 16), "I;16L": (1, 16), "I;16N": (1, 16),
}
_MASK_MODES = ("1", "L", "LA", "P", "RGB", "RGBA", "I;16", "I;16B", "I;16L", "I;16N")


class DatasetError(SegTuneError):
    """A dataset (or a request to ingest one) is invalid; ``problems`` lists every reason."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        lines = "\n".join(f"  - {problem}" for problem in self.problems)
        super().__init__(f"Dataset rejected ({len(self.problems)} problem(s)):\n{lines}")


class DatasetNotFound(SegTuneError, KeyError):
    """No dataset of that name (a KeyError for lookups); the message lists the ones that exist."""

    def __init__(self, name: str, available: Sequence[str]) -> None:
        self.name = name
        self.available = list(available)
        shown = ", ".join(repr(n) for n in self.available) or "none yet"
        self.message = f"no dataset named {name!r}; available: {shown}"
        super().__init__(self.message)

    def __str__(self) -> str:  # KeyError would otherwise print the message quoted
        return self.message


@dataclass(frozen=True)
class IngestLimits:
    """Guards against zip bombs and absurd images."""

    max_total_bytes: int = 4 << 30  # uncompressed size of all zip entries together (4 GiB)
    max_files: int = 100_000  # zip entries
    max_ratio: float = 200.0  # uncompressed / compressed size of one zip entry (entries >= 1 MiB)
    max_image_pixels: int = 1 << 26  # width x height of one image (8192 x 8192)


@dataclass(frozen=True)
class PairInfo:
    """One stored image/mask pair."""

    stem: str
    image: str  # relative to the dataset folder, e.g. "images/a.jpg"
    mask: str  # e.g. "masks/a.png"
    height: int
    width: int
    foreground: tuple[float, ...]  # fraction of pixels of each non-background class

    def to_dict(self) -> dict[str, Any]:
        return {"stem": self.stem, "image": self.image, "mask": self.mask, "height": self.height,
                "width": self.width, "foreground": list(self.foreground)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PairInfo:
        return cls(stem=data["stem"], image=data["image"], mask=data["mask"], height=int(data["height"]),
                   width=int(data["width"]), foreground=tuple(float(f) for f in data["foreground"]))


@dataclass(frozen=True)
class DatasetManifest:
    """What ``dataset.json`` records about a stored dataset."""

    name: str
    created: str  # ISO 8601, UTC
    source: str  # the folder or zip it was ingested from
    channels: int  # 1 (grey) or 3 (RGB): the widest image in the set
    bit_depth: int  # 8 or 16: the deepest image in the set
    classes: tuple[str, ...]  # index = mask value; classes[0] is background
    pairs: tuple[PairInfo, ...]
    checksum: str  # sha256 over the stored image and mask files
    version: int = MANIFEST_VERSION

    @property
    def stems(self) -> tuple[str, ...]:
        return tuple(pair.stem for pair in self.pairs)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def is_binary(self) -> bool:
        return self.num_classes == 2

    @property
    def sizes(self) -> dict[str, int]:
        """Image sizes as ``"WxH"`` -> number of pairs, most common first."""
        counts = Counter(f"{pair.width}x{pair.height}" for pair in self.pairs)
        return dict(counts.most_common())

    def pair(self, stem: str) -> PairInfo:
        for pair in self.pairs:
            if pair.stem == stem:
                return pair
        raise KeyError(f"dataset {self.name!r} has no pair with stem {stem!r}")

    def to_dict(self) -> dict[str, Any]:
        return {"version": self.version, "name": self.name, "created": self.created, "source": self.source,
                "channels": self.channels, "bit_depth": self.bit_depth, "classes": list(self.classes),
                "checksum": self.checksum, "pairs": [pair.to_dict() for pair in self.pairs]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DatasetManifest:
        if data.get("version") != MANIFEST_VERSION:
            raise DatasetError([f"manifest version {data.get('version')!r} is not supported (expected {MANIFEST_VERSION})"])
        return cls(name=data["name"], created=data["created"], source=data["source"],
                   channels=int(data["channels"]), bit_depth=int(data["bit_depth"]),
                   classes=tuple(data["classes"]), pairs=tuple(PairInfo.from_dict(p) for p in data["pairs"]),
                   checksum=data["checksum"], version=data["version"])


@dataclass(frozen=True)
class DatasetStats:
    """Summary figures for the dashboard."""

    count: int
    sizes: dict[str, int]  # "WxH" -> pairs
    channels: int
    bit_depth: int
    foreground: dict[str, tuple[float, ...]]  # non-background class -> per-pair pixel fraction
    empty_masks: int  # masks with no foreground pixel at all


# --- public helpers -------------------------------------------------------------------------------


def dataset_path(datasets_dir: Path, name: str) -> Path:
    """Folder of dataset ``name``; the name is checked so it cannot point outside ``datasets_dir``."""
    if not is_valid_name(name):
        raise DatasetError([_name_problem(name)])
    return Path(datasets_dir) / name


def dataset_names(datasets_dir: Path) -> list[str]:
    """Names of the stored datasets, sorted (temporary ingest folders are hidden)."""
    folder = Path(datasets_dir)
    if not folder.is_dir():
        return []
    return sorted(p.name for p in folder.iterdir() if is_valid_name(p.name) and (p / MANIFEST_FILE).is_file())


def list_datasets(datasets_dir: Path) -> list[DatasetManifest]:
    """The manifests of every stored dataset, sorted by name."""
    return [load_manifest(datasets_dir, name) for name in dataset_names(datasets_dir)]


def load_manifest(datasets_dir: Path, name: str) -> DatasetManifest:
    path = Path(datasets_dir) / name / MANIFEST_FILE
    if not is_valid_name(name) or not path.is_file():
        raise DatasetNotFound(name, dataset_names(datasets_dir))
    try:
        return DatasetManifest.from_dict(json.loads(path.read_text(encoding="utf-8")))
    except DatasetError:
        raise
    except (ValueError, KeyError, TypeError) as exc:
        raise DatasetError([f"{path}: unreadable manifest ({exc})"]) from exc


def delete_dataset(datasets_dir: Path, name: str) -> None:
    """Remove a dataset; it disappears at once (renamed away) even if deleting the files takes a while."""
    load_manifest(datasets_dir, name)  # raises DatasetNotFound
    doomed = Path(datasets_dir) / f".delete-{uuid.uuid4().hex}"
    os.rename(Path(datasets_dir) / name, doomed)
    shutil.rmtree(doomed)


def read_image(path: Path) -> np.ndarray:
    """Decode an image to uint8 HxWxC (C = 1 grey or 3 RGB); 16-bit images are min-max scaled to 8 bits."""
    with Image.open(path) as image:
        channels, depth = _MODES.get(image.mode, (3, 8))
        if depth == 16:
            return _scale_to_8bit(np.asarray(image))[..., None]
        if channels == 1:
            return np.array(image.convert("L"))[..., None]
        return np.array(image.convert("RGB"))


def read_mask(path: Path) -> np.ndarray:
    """Decode a stored mask to uint8 HxW class indices."""
    with Image.open(path) as image:
        if image.mode not in ("L", "P", "1"):
            raise DatasetError([f"{path}: a stored mask must be a single-channel PNG, got mode {image.mode}"])
        return np.array(image, dtype=np.uint8)


def dataset_stats(manifest: DatasetManifest) -> DatasetStats:
    foreground = {cls: tuple(p.foreground[i] for p in manifest.pairs) for i, cls in enumerate(manifest.classes[1:])}
    empty = sum(1 for p in manifest.pairs if not any(p.foreground))
    return DatasetStats(count=len(manifest.pairs), sizes=manifest.sizes, channels=manifest.channels,
                        bit_depth=manifest.bit_depth, foreground=foreground, empty_masks=empty)


# --- ingest ---------------------------------------------------------------------------------------


def ingest_dataset(
    source: Path,
    name: str,
    datasets_dir: Path,
    *,
    classes: Sequence[str] | None = None,
    mask_suffix: str | None = None,
    limits: IngestLimits = IngestLimits(),
    progress: Callable[[int, int], None] | None = None,
) -> DatasetManifest:
    """Validate ``source`` (folder or .zip) and store it as dataset ``name``; raises :class:`DatasetError`."""
    source, datasets_dir = Path(source), Path(datasets_dir)
    problems = _request_problems(source, name, datasets_dir, classes)
    if not source.exists() or (source.is_file() and not zipfile.is_zipfile(source)):
        raise DatasetError(problems)
    datasets_dir.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".ingest-", dir=datasets_dir))
    try:
        request = _Request(source, name, tuple(classes or BINARY_CLASSES), classes is not None, mask_suffix, limits)
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


def _request_problems(source: Path, name: str, datasets_dir: Path, classes: Sequence[str] | None) -> list[str]:
    problems = []
    if not is_valid_name(name):
        problems.append(_name_problem(name))
    elif (datasets_dir / name).exists():
        problems.append(f"a dataset named {name!r} already exists; pick another name or delete it first")
    if not source.exists():
        problems.append(f"source not found: {source}")
    elif source.is_file() and not zipfile.is_zipfile(source):
        problems.append(f"source {source} is neither a folder nor a .zip archive")
    if classes is not None:
        problems.extend(_class_problems(classes))
    return problems


def _name_problem(name: str) -> str:
    return f"invalid dataset name {name!r}: use 1-64 letters, digits, '-', '_' or '.', starting with a letter or digit"


def _class_problems(classes: Sequence[str]) -> list[str]:
    if isinstance(classes, str) or not 2 <= len(classes) <= 256:
        return [f"classes must list 2 to 256 names (background first), got {classes!r}"]
    if any(not isinstance(c, str) or not c.strip() for c in classes):
        return [f"every class name must be a non-empty string, got {list(classes)!r}"]
    duplicates = sorted(c for c, n in Counter(classes).items() if n > 1)
    return [f"duplicate class name(s) {duplicates}"] if duplicates else []


def _build(request: _Request, work: Path, problems: list[str], progress: Callable[[int, int], None] | None) -> DatasetManifest:
    root = _unpack(request.source, work / "_source", request.limits, problems)
    pairs = _match_pairs(_find_root(root), request.mask_suffix, problems) if root else []
    if root and not pairs and not problems:
        problems.append(f"empty dataset: no image/mask pairs found in {request.source}")
    checked = []
    for done, pair in enumerate(pairs, start=1):
        result = _check_pair(pair, request, problems)
        if result and not problems:  # once anything is wrong, only validate: nothing will be kept
            _store_pair(pair, result, work)
            checked.append(result)
        if progress:
            progress(done, len(pairs))
    if problems:
        raise DatasetError(problems)
    shutil.rmtree(work / "_source", ignore_errors=True)
    return _write_manifest(request, work, checked)


def _publish(work: Path, final: Path, name: str) -> None:
    if final.exists():  # someone else took the name while we were ingesting
        raise DatasetError([f"a dataset named {name!r} already exists; pick another name or delete it first"])
    os.rename(work, final)


def _write_manifest(request: _Request, work: Path, checked: list[_Checked]) -> DatasetManifest:
    manifest = DatasetManifest(
        name=request.name,
        created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        source=str(request.source),
        channels=max(c.channels for c in checked),
        bit_depth=max(c.bit_depth for c in checked),
        classes=request.classes,
        pairs=tuple(c.info for c in checked),
        checksum=_checksum(work),
    )
    (work / MANIFEST_FILE).write_text(json.dumps(manifest.to_dict(), indent=1), encoding="utf-8")
    return manifest


def _checksum(folder: Path) -> str:
    digest = hashlib.sha256()
    files = sorted((p.relative_to(folder).as_posix(), p) for sub in ("images", "masks") for p in (folder / sub).iterdir())
    for relative, path in files:
        digest.update(relative.encode() + b"\0" + hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


# --- source layout --------------------------------------------------------------------------------


def _is_ignored(path: Path) -> bool:
    return path.name.startswith(".") or path.name in _IGNORED_NAMES


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


def _match_pairs(root: Path, mask_suffix: str | None, problems: list[str]) -> list[_SourcePair]:
    if (root / "images").is_dir() and (root / "masks").is_dir():
        images = _index(root / "images", root, problems)
        masks = _index(root / "masks", root, problems)
    else:
        files = _index(root, root, problems)
        suffix = mask_suffix or _detect_suffix(files)
        if suffix is None:
            problems.append(f"found neither images/ + masks/ folders nor mask files named <stem><suffix> with a suffix "
                            f"in {list(MASK_SUFFIXES)} in {root.name or root}; pass mask_suffix for another naming")
            return []
        masks = {stem[: -len(suffix)]: path for stem, path in files.items() if stem.endswith(suffix)}
        images = {stem: path for stem, path in files.items() if not stem.endswith(suffix)}
    _report_unmatched("image(s) without a mask", images.keys() - masks.keys(), images, root, problems)
    _report_unmatched("mask(s) without an image", masks.keys() - images.keys(), masks, root, problems)
    return [_SourcePair(stem, images[stem], masks[stem], _label(images[stem], root), _label(masks[stem], root))
            for stem in sorted(images.keys() & masks.keys())]


def _index(folder: Path, root: Path, problems: list[str]) -> dict[str, Path]:
    """Image files of one folder by stem; unsupported files and duplicate stems are problems."""
    by_stem: dict[str, Path] = {}
    for path in _visible(folder):
        suffix = path.suffix.lower()
        if path.is_dir() or suffix in _SIDE_FILES:
            continue
        if suffix not in IMAGE_EXTENSIONS:
            problems.append(f"unsupported file type: {_label(path, root)} (supported: {', '.join(IMAGE_EXTENSIONS)})")
        elif path.stem in by_stem:
            problems.append(f"duplicate stem {path.stem!r}: {_label(by_stem[path.stem], root)} and {_label(path, root)}")
        else:
            by_stem[path.stem] = path
    return by_stem


def _detect_suffix(files: dict[str, Path]) -> str | None:
    counts = {suffix: sum(stem.endswith(suffix) for stem in files) for suffix in MASK_SUFFIXES}
    best = max(counts, key=lambda s: counts[s])  # ties go to the earlier, more common suffix
    return best if counts[best] else None


def _report_unmatched(what: str, stems: Iterable[str], paths: dict[str, Path], root: Path, problems: list[str]) -> None:
    labels = [_label(paths[stem], root) for stem in sorted(stems)]
    if labels:
        problems.append(f"{len(labels)} {what}: {_shorten(labels)}")


def _label(path: Path, root: Path) -> str:
    return path.relative_to(root).as_posix()


def _shorten(items: Sequence[Any]) -> str:
    shown = ", ".join(str(item) for item in items[:_SHOWN])
    return shown + (f", ... and {len(items) - _SHOWN} more" if len(items) > _SHOWN else "")


# --- one pair -------------------------------------------------------------------------------------


def _check_pair(pair: _SourcePair, request: _Request, problems: list[str]) -> _Checked | None:
    image = _inspect_image(pair.image, pair.image_label, request.limits, problems)
    mask = _load_mask(pair.mask, pair.mask_label, request.limits, problems)
    if image is None or mask is None:
        return None
    width, height, channels, depth = image
    if mask.shape != (height, width):
        problems.append(f"size mismatch: {pair.image_label} is {width}x{height} but {pair.mask_label} is "
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


def _decode(path: Path, what: str, label: str, limits: IngestLimits, problems: list[str], read: Callable[[Image.Image], T]) -> T | None:
    """``read`` of the fully decoded file (size-limited first), else None with a problem recorded."""
    try:
        with Image.open(path) as image:
            if _too_large(image, label, limits, problems):
                return None
            image.load()
            return read(image)
    except Exception as exc:  # noqa: BLE001 - Pillow raises many types for broken files
        problems.append(f"unreadable or corrupt {what} {label}: {exc}")
        return None


def _inspect_image(path: Path, label: str, limits: IngestLimits, problems: list[str]) -> tuple[int, int, int, int] | None:
    """(width, height, channels, bit depth) of a fully decodable image, else None with a problem recorded."""
    decoded = _decode(path, "image", label, limits, problems, lambda image: (image.mode, image.size))
    if decoded is None:
        return None
    mode, (width, height) = decoded
    if mode not in _MODES:
        problems.append(f"unsupported image mode {mode} in {label} (supported: {', '.join(_MODES)})")
        return None
    return width, height, *_MODES[mode]


def _load_mask(path: Path, label: str, limits: IngestLimits, problems: list[str]) -> np.ndarray | None:
    """The raw mask values as an int HxW array, else None with a problem recorded."""
    decoded = _decode(path, "mask", label, limits, problems, lambda image: (image.mode, np.asarray(image)))
    if decoded is None:
        return None
    mode, values = decoded
    if mode not in _MASK_MODES:
        problems.append(f"unsupported mask mode {mode} in {label}; masks must be single-channel class indices")
        return None
    if values.ndim == 3:  # LA / RGB / RGBA: only acceptable when every colour channel is equal (grey)
        colour = values[..., :3] if mode != "LA" else values[..., :1]
        if not (colour == colour[..., :1]).all():
            problems.append(f"colour mask {label}: masks must hold class indices in one channel, not colours")
            return None
        values = colour[..., 0]
    return values.astype(np.int64)


def _too_large(image: Image.Image, label: str, limits: IngestLimits, problems: list[str]) -> bool:
    width, height = image.size
    if width * height <= limits.max_image_pixels:
        return False
    problems.append(f"{label} is {width}x{height} = {width * height} pixels, above the limit of {limits.max_image_pixels}")
    return True


def _normalise_mask(values: np.ndarray, request: _Request, label: str, problems: list[str]) -> np.ndarray | None:
    """Class indices as uint8; binary masks saved as 0/255 become 0/1."""
    present = np.unique(values)
    count = len(request.classes)
    if count == 2 and set(present.tolist()) <= {0, 255}:
        return (values == 255).astype(np.uint8)
    if present.min() >= 0 and present.max() < count:
        return values.astype(np.uint8)
    shown = _shorten(present.tolist())
    if request.declared:
        problems.append(f"unexpected mask values in {label}: [{shown}]; expected 0..{count - 1} for classes {list(request.classes)}")
    else:
        problems.append(f"unexpected mask values in {label}: [{shown}]; binary masks hold 0/1 or 0/255. For a "
                        f"multi-class dataset declare the class names (classes=[...], index = mask value, first = background)")
    return None


# --- zip archives ---------------------------------------------------------------------------------


def _unpack(source: Path, dest: Path, limits: IngestLimits, problems: list[str]) -> Path | None:
    """The folder holding the source files: ``source`` itself, or a zip safely extracted to ``dest``."""
    if source.is_dir():
        return source
    before = len(problems)
    try:
        with zipfile.ZipFile(source) as archive:
            problems.extend(_zip_problems(archive.infolist(), limits))
            if len(problems) == before:
                _extract(archive, dest, limits, problems)
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        problems.append(f"corrupt zip archive {source.name}: {exc}")
    except zipfile.LargeZipFile as exc:
        problems.append(f"zip archive {source.name} is too large: {exc}")
    return dest if len(problems) == before else None


def _zip_problems(entries: list[zipfile.ZipInfo], limits: IngestLimits) -> list[str]:
    problems = [problem for entry in entries if (problem := _entry_problem(entry, limits))]
    if len(entries) > limits.max_files:
        problems.append(f"zip has {len(entries)} entries, above the limit of {limits.max_files}")
    total = sum(entry.file_size for entry in entries)
    if total > limits.max_total_bytes:
        problems.append(f"zip would unpack to {total} bytes, above the limit of {limits.max_total_bytes} (zip bomb?)")
    return problems


def _entry_problem(entry: zipfile.ZipInfo, limits: IngestLimits) -> str | None:
    name = entry.filename
    parts = PurePosixPath(name.replace("\\", "/")).parts
    if (entry.external_attr >> 16) & 0o170000 == 0o120000:
        return f"zip entry {name!r} is a symbolic link; links are not allowed"
    if name.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", name):
        return f"zip entry {name!r} has an absolute path and would escape the target folder"
    if ".." in parts:
        return f"zip entry {name!r} contains '..' and would escape the target folder"
    if entry.file_size >= _RATIO_MIN_BYTES and entry.file_size > limits.max_ratio * max(entry.compress_size, 1):
        ratio = entry.file_size / max(entry.compress_size, 1)
        return f"zip entry {name!r} expands {ratio:.0f}x, above the limit of {limits.max_ratio:.0f}x (zip bomb?)"
    return None


def _extract(archive: zipfile.ZipFile, dest: Path, limits: IngestLimits, problems: list[str]) -> None:
    """Stream entries out, counting real bytes: declared sizes in a zip can lie."""
    budget = limits.max_total_bytes
    for entry in archive.infolist():
        parts = PurePosixPath(entry.filename.replace("\\", "/")).parts
        if entry.is_dir() or not parts or parts[0] in _IGNORED_NAMES:
            continue
        target = dest.joinpath(*parts)
        target.parent.mkdir(parents=True, exist_ok=True)
        written = _copy_entry(archive, entry, target, min(budget, entry.file_size))
        if written is None:
            problems.append(f"zip entry {entry.filename!r} inflates beyond its declared size or the size limit (zip bomb?)")
            return
        budget -= written


def _copy_entry(archive: zipfile.ZipFile, entry: zipfile.ZipInfo, target: Path, allowed: int) -> int | None:
    written = 0
    with archive.open(entry) as src, open(target, "wb") as dst:
        while chunk := src.read(_CHUNK):
            written += len(chunk)
            if written > allowed:
                return None
            dst.write(chunk)
    return written


def _scale_to_8bit(values: np.ndarray) -> np.ndarray:
    """Min-max per image: 16-bit scans rarely use the full range, so a fixed shift would leave them dark."""
    values = values.astype(np.float32)
    low, high = float(values.min()), float(values.max())
    if high <= low:
        return np.zeros(values.shape, dtype=np.uint8)
    return ((values - low) * (255.0 / (high - low)) + 0.5).astype(np.uint8)
