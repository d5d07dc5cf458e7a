"""Safe unpacking of dataset zips: no path escapes, no links, no zip bombs.

Every entry is checked before anything is written; extraction then streams entries out while
counting real bytes, because the sizes a zip declares can lie.
"""

from __future__ import annotations

import errno
import re
import shutil
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from core.data.volumes import MAX_VOLUME_BYTES
from core.errors import add_problem

IGNORED_NAMES = ("__MACOSX",)  # resource forks added by macOS zip tools
_RATIO_MIN_BYTES = 1 << 20  # entries smaller than this cannot bomb; blank masks compress > 200x
_TOTAL_RATIO_MIN_BYTES = 64 << 20  # the whole archive's ratio is checked from this declared size on
_CHUNK = 1 << 20
DISK_FULL = (errno.ENOSPC, errno.EDQUOT)  # a full disk or used-up quota: the user's to fix, not a bug


@dataclass(frozen=True)
class IngestLimits:
    """Guards against zip bombs, absurd images and volumes whose headers declare more than memory holds."""

    max_total_bytes: int = 4 << 30  # uncompressed size of all zip entries together (4 GiB)
    max_files: int = 100_000  # zip entries
    max_ratio: float = 200.0  # uncompressed / compressed size of one zip entry (entries >= 1 MiB)
    max_image_pixels: int = 1 << 26  # width x height of one image (8192 x 8192)
    max_volume_bytes: int = (
        MAX_VOLUME_BYTES  # one medical volume in memory (float32 voxels x sequences), checked on its header
    )


def volume_limits(max_volume_mb: int | None) -> IngestLimits:
    """The default limits with one volume's memory set to ``max_volume_mb`` MiB (None: the default)."""
    return IngestLimits() if max_volume_mb is None else IngestLimits(max_volume_bytes=max_volume_mb << 20)


def unpack(source: Path, dest: Path, limits: IngestLimits, problems: dict[str, str]) -> Path | None:
    """The folder holding the source files: ``source`` itself, or a zip safely extracted to ``dest``.

    Every check on the declared sizes (per entry, their sum, the whole archive's ratio, free disk
    space) runs before the first byte is written; extraction then counts the real bytes.
    """
    if source.is_dir():
        return source
    before = len(problems)
    try:
        with zipfile.ZipFile(source) as archive:
            entries = archive.infolist()
            problems.update(_zip_problems(entries, limits))
            if len(problems) == before and not _files(entries):
                problems[source.name] = (
                    "the zip holds no files"
                    + (" (only folders)" if entries else "")
                    + "; zip the images/ and masks/ folders with their files"
                )
            if len(problems) == before:
                _check_free_space(entries, dest, source.name, problems)
            if len(problems) == before:
                dest.mkdir(parents=True, exist_ok=True)
                _extract(archive, dest, limits, problems)
    except (zipfile.BadZipFile, OSError, EOFError) as exc:  # (zipfile raises LargeZipFile only when writing)
        if isinstance(exc, OSError) and exc.errno in DISK_FULL:
            raise  # not the zip's fault: core.data.manifest.building_dataset says the disk is full
        problems[source.name] = f"corrupt zip archive: {exc}"
    return dest if len(problems) == before else None


def _zip_problems(entries: list[zipfile.ZipInfo], limits: IngestLimits) -> dict[str, str]:
    problems = {entry.filename: problem for entry in entries if (problem := _entry_problem(entry, limits))}
    if len(entries) > limits.max_files:
        problems["zip"] = f"{len(entries)} entries, above the limit of {limits.max_files}"
    total = sum(entry.file_size for entry in entries)
    packed = sum(entry.compress_size for entry in entries)
    if total > limits.max_total_bytes:
        add_problem(
            problems, "zip", f"would unpack to {total} bytes, above the limit of {limits.max_total_bytes} (zip bomb?)"
        )
    elif total >= _TOTAL_RATIO_MIN_BYTES and total > limits.max_ratio * max(packed, 1):
        # Many small entries, each under the per-entry threshold, can still add up to a bomb.
        add_problem(
            problems,
            "zip",
            f"its {len(entries)} entries expand {total / max(packed, 1):.0f}x in all "
            f"({packed} -> {total} bytes), above the limit of {limits.max_ratio:.0f}x (zip bomb?)",
        )
    return problems


def _parts(entry: zipfile.ZipInfo) -> tuple[str, ...]:
    return PurePosixPath(entry.filename.replace("\\", "/")).parts


def _files(entries: list[zipfile.ZipInfo]) -> list[zipfile.ZipInfo]:
    """The entries extraction would write (no folders, no macOS resource forks)."""
    return [e for e in entries if not e.is_dir() and _parts(e) and _parts(e)[0] not in IGNORED_NAMES]


def _check_free_space(entries: list[zipfile.ZipInfo], dest: Path, label: str, problems: dict[str, str]) -> None:
    """Refuse before writing when the declared sizes would not fit on the disk (the stored copy needs as much again)."""
    folder = next((p for p in (dest, *dest.parents) if p.exists()), None)
    if folder is None:
        return
    needed = 2 * sum(entry.file_size for entry in entries)
    free = shutil.disk_usage(folder).free
    if needed > free:
        problems[label] = f"needs about {needed >> 20} MiB to unpack and store, but only {free >> 20} MiB are free"


def _entry_problem(entry: zipfile.ZipInfo, limits: IngestLimits) -> str | None:
    name = entry.filename
    parts = _parts(entry)
    if (entry.external_attr >> 16) & 0o170000 == 0o120000:
        return "is a symbolic link; links are not allowed"
    if name.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", name):
        return "has an absolute path and would escape the target folder"
    if ".." in parts:
        return "contains '..' and would escape the target folder"
    if entry.file_size >= _RATIO_MIN_BYTES and entry.file_size > limits.max_ratio * max(entry.compress_size, 1):
        ratio = entry.file_size / max(entry.compress_size, 1)
        return f"expands {ratio:.0f}x, above the limit of {limits.max_ratio:.0f}x (zip bomb?)"
    return None


def _extract(archive: zipfile.ZipFile, dest: Path, limits: IngestLimits, problems: dict[str, str]) -> None:
    """Stream entries out, counting real bytes: declared sizes in a zip can lie."""
    budget = limits.max_total_bytes
    for entry in _files(archive.infolist()):
        target = dest.joinpath(*_parts(entry))
        target.parent.mkdir(parents=True, exist_ok=True)
        written = _copy_entry(archive, entry, target, min(budget, entry.file_size))
        if written is None:
            problems[entry.filename] = "inflates beyond its declared size or the size limit (zip bomb?)"
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
