"""The user's source folder as every 2D ingest reads it: the request, where the files are, the checks
each image file gets, and the ``split.csv`` kept beside them.

Segmentation pairs (:mod:`core.data.ingest`) and classification items (:mod:`core.data.label_ingest`)
are found differently but read and checked the same way; each problem goes into one ``problems``
dict (file or field -> what is wrong) so that the user sees them all at once.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

from PIL import Image

from core.data.archives import IGNORED_NAMES, IngestLimits
from core.data.images import IMAGE_EXTENSIONS, IMAGE_MODES
from core.data.server_folders import within
from core.data.split_file import SPLIT_FILE, parse_split_file, write_split_file
from core.errors import add_problem

T = TypeVar("T")

LABELS_FILE = "labels.csv"  # classification: name,label[,group] per image
# Documentation and metadata that often travel with a dataset; skipped rather than reported.
SIDE_FILES = (".txt", ".md", ".csv", ".json", ".yaml", ".yml", ".db")
_SHOWN = 10  # values / file names listed per problem before "... and N more"


@dataclass(frozen=True)
class IngestRequest:
    """What the user asked for: the source, the dataset name, and how to read the source."""

    source: Path
    name: str
    classes: tuple[str, ...]
    declared: bool  # classes given by the user (else: segmentation binary by default, classification from the source)
    mask_suffix: str | None
    limits: IngestLimits
    confine: tuple[Path, ...] | None = None  # import roots every file read must resolve under
    task: str | None = None  # a manifest Task; None: detected from the layout
    source_name: str | None = None  # what the manifest and messages call the source (an upload's own file name)

    @property
    def shown_source(self) -> str:
        """The source as recorded and reported: an uploaded file's own name, not the temporary copy's path."""
        return self.source_name or str(self.source)


# --- where the files are --------------------------------------------------------------------------


def is_ignored(path: Path) -> bool:
    return path.name.startswith(".") or path.name in IGNORED_NAMES


def visible(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if not is_ignored(p))


def find_root(root: Path) -> Path:
    """Step into a lone top-level folder (how most zips are made) until the data is in sight."""
    while not (root / "images").is_dir() and not (root / LABELS_FILE).is_file():
        entries = visible(root)
        if len(entries) != 1 or not entries[0].is_dir():
            break
        root = entries[0]
    return root


def index_images(folder: Path, root: Path, problems: dict[str, str]) -> dict[str, Path]:
    """Image files of one folder by stem; unsupported files and duplicate stems are problems."""
    by_stem: dict[str, Path] = {}
    for path in visible(folder):
        suffix = path.suffix.lower()
        if path.is_dir() or suffix in SIDE_FILES:
            continue
        if suffix not in IMAGE_EXTENSIONS:
            add_problem(
                problems, relative(path, root), f"unsupported file type (supported: {', '.join(IMAGE_EXTENSIONS)})"
            )
        elif path.stem in by_stem:
            add_problem(
                problems,
                relative(path, root),
                f"duplicate stem {path.stem!r}: {relative(by_stem[path.stem], root)} has it too",
            )
        else:
            by_stem[path.stem] = path
    return by_stem


def relative(path: Path, root: Path) -> str:
    """``path`` as the user knows it (relative to the source root), for messages."""
    return path.relative_to(root).as_posix()


def shorten(items: Sequence[Any]) -> str:
    shown = ", ".join(str(item) for item in items[:_SHOWN])
    return shown + (f", ... and {len(items) - _SHOWN} more" if len(items) > _SHOWN else "")


def escapes(path: Path, label: str, request: IngestRequest, problems: dict[str, str]) -> bool:
    """True (with a problem) when a confined ingest's file resolves outside the import roots: checked
    again at read time, since a link may have been swapped since the scan."""
    if request.confine is None or within(path.resolve(), request.confine):
        return False
    add_problem(problems, label, "is a link to a place outside the import folders; links may not leave them")
    return True


# --- one image file -------------------------------------------------------------------------------


def decode(
    path: Path, what: str, label: str, limits: IngestLimits, problems: dict[str, str], read: Callable[[Image.Image], T]
) -> T | None:
    """``read`` of the fully decoded file (size-limited first), else None with a problem recorded."""
    try:
        with Image.open(path) as image:
            if _too_large(image, label, limits, problems):
                return None
            frames = getattr(image, "n_frames", 1)
            if frames > 1:
                add_problem(
                    problems,
                    label,
                    f"holds {frames} frames (a stack or animation); SegTune reads 2D images: "
                    "save each slice as its own file",
                )
                return None
            image.load()
            return read(image)
    except Exception as exc:  # the message names the file as the user knows it, not where the server keeps it
        add_problem(problems, label, f"unreadable or corrupt {what}: {str(exc).replace(str(path), label)}")
        return None


class ImageFacts(NamedTuple):
    """What ingest learns from decoding an image file."""

    width: int
    height: int
    channels: int  # as SegTune reads it (core.data.images.IMAGE_MODES)
    bit_depth: int
    pixels: str  # sha256 of mode, size and decoded pixels: equal for the same picture saved twice losslessly


def inspect_image(path: Path, label: str, limits: IngestLimits, problems: dict[str, str]) -> ImageFacts | None:
    """The facts of a fully decodable image, else None with a problem recorded."""
    decoded = decode(path, "image", label, limits, problems, _facts)
    if decoded is None:
        return None
    mode, (width, height), digest = decoded
    if mode not in IMAGE_MODES:
        add_problem(problems, label, f"unsupported image mode {mode} (supported: {', '.join(IMAGE_MODES)})")
        return None
    return ImageFacts(width, height, *IMAGE_MODES[mode], digest)


def _facts(image: Image.Image) -> tuple[str, tuple[int, int], str]:
    digest = hashlib.sha256(f"{image.mode} {image.size}".encode() + image.tobytes()).hexdigest()
    return image.mode, image.size, digest


def _too_large(image: Image.Image, label: str, limits: IngestLimits, problems: dict[str, str]) -> bool:
    width, height = image.size
    if width * height <= limits.max_image_pixels:
        return False
    add_problem(
        problems, label, f"{width}x{height} = {width * height} pixels, above the limit of {limits.max_image_pixels}"
    )
    return True


# --- the user's split -----------------------------------------------------------------------------


def keep_split_file(root: Path, stems: list[str], work: Path, problems: dict[str, str]) -> None:
    """Validate the source's split.csv (core/data/split_file.py) against the stored stems and keep it."""
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
