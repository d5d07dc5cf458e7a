"""Stored datasets: the ``dataset.json`` manifest, lookups, statistics and deletion.

A stored dataset is ``<datasets_dir>/<name>/`` holding ``dataset.json`` (the :class:`DatasetManifest`),
``images/<stem><ext>`` (the user's files, byte for byte; volume slices: PNG, or ``.npy`` for a channel
count other than 1 or 3) and, for segmentation, ``masks/<stem>.png``
(class indices, 0 = background). A classification dataset has no masks: each item's class index is
in the manifest (``label``), and ``classes`` names the labels in index order (no background).
:mod:`core.data.ingest`, :mod:`core.data.volume_ingest` and :mod:`core.data.mask_presence` write them.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from core.contract import Task  # the one task enum: studies and datasets must agree on it
from core.data.archives import DISK_FULL
from core.data.volumes import SliceResampling
from core.errors import ProblemsError, SegTuneError, unknown_option
from core.naming import is_valid_name

MANIFEST_FILE = "dataset.json"
MANIFEST_VERSION = 1
BINARY_CLASSES = ("background", "foreground")
INGEST_PREFIX = ".ingest-"  # an ingest under way (renamed to the dataset's name when all is well)
DELETE_PREFIX = ".delete-"  # a dataset being deleted
STALE_WORK_S = 60 * 60  # an .ingest-* folder untouched this long belongs to a killed ingest


class DatasetError(ProblemsError):
    """A dataset (or a request to ingest one) is invalid; ``problems`` maps each file or field to its problem."""

    title = "Dataset rejected"


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
class PairInfo:
    """One stored item: an image with its mask (segmentation) or with its class index (classification)."""

    stem: str
    image: str  # relative to the dataset folder, e.g. "images/a.jpg"
    mask: str  # e.g. "masks/a.png"; "" for classification items
    height: int
    width: int
    foreground: tuple[float, ...]  # fraction of pixels of each non-background class; () for classification items
    volume: str | None = None  # the case (patient / volume) this item comes from = its split group
    slice_index: int | None = None  # volume slices: index along the slicing axis
    label: int | None = None  # classification items: index into the manifest's classes

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "stem": self.stem,
            "image": self.image,
            "mask": self.mask,
            "height": self.height,
            "width": self.width,
            "foreground": list(self.foreground),
        }
        if self.volume is not None:  # written only when set, so 2D manifests stay as they were
            data.update(volume=self.volume, slice_index=self.slice_index)
        if self.label is not None:
            data["label"] = self.label
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PairInfo:
        index, label = data.get("slice_index"), data.get("label")
        return cls(
            stem=data["stem"],
            image=data["image"],
            mask=data["mask"],
            height=int(data["height"]),
            width=int(data["width"]),
            foreground=tuple(float(f) for f in data["foreground"]),
            volume=data.get("volume"),
            slice_index=None if index is None else int(index),
            label=None if label is None else int(label),
        )


@dataclass(frozen=True)
class VolumeInfo:
    """One source volume (case) of a volume dataset: where it came from and its geometry."""

    volume: str  # case id, also the split group of its slices
    images: tuple[str, ...]  # source files (one per sequence) or the DICOM series folder, relative to the source
    label: str  # source label file
    shape: tuple[int, ...]  # voxels, as stored in the file
    spacing: tuple[float, ...]  # mm per voxel along each stored axis
    affine: tuple[tuple[float, ...], ...]  # 4x4 voxel -> world (RAS, mm)
    orientation: str  # axis codes, e.g. "RAS"
    slices: int  # slices stored (after dropping empty ones)
    total_slices: int  # slices along the axis in the volume
    resampled_from: SliceResampling | None = None  # an uneven DICOM series put on an even grid: its own slices

    def to_dict(self) -> dict[str, Any]:
        return {
            "volume": self.volume,
            "images": list(self.images),
            "label": self.label,
            "shape": list(self.shape),
            "spacing": list(self.spacing),
            "affine": [list(row) for row in self.affine],
            "orientation": self.orientation,
            "slices": self.slices,
            "total_slices": self.total_slices,
        } | ({"resampled_from": self.resampled_from.to_dict()} if self.resampled_from else {})

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> VolumeInfo:
        return cls(
            volume=data["volume"],
            images=tuple(data["images"]),
            label=data["label"],
            shape=tuple(int(n) for n in data["shape"]),
            spacing=tuple(float(v) for v in data["spacing"]),
            affine=tuple(tuple(float(v) for v in row) for row in data["affine"]),
            orientation=data["orientation"],
            slices=int(data["slices"]),
            total_slices=int(data["total_slices"]),
            resampled_from=SliceResampling.from_dict(data["resampled_from"]) if data.get("resampled_from") else None,
        )


@dataclass(frozen=True)
class VolumeSlicing:
    """How a volume dataset was cut into 2D slices; ``predict --volumes`` repeats it (via the bundle)."""

    axis: int  # slicing axis of the canonical (RAS+) volume: 0 sagittal, 1 coronal, 2 axial
    intensity: dict[str, Any]  # core.data.intensity.IntensityConfig.to_dict()
    sequences: int = 1  # image volumes per case (MRI sequences), stored as channels
    empty_fraction: float = 1.0  # share of slices without foreground that were kept
    canonical: bool = True  # volumes are reoriented to RAS+ before slicing

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> VolumeSlicing:
        return cls(
            axis=int(data["axis"]),
            intensity=dict(data["intensity"]),
            sequences=int(data.get("sequences", 1)),
            empty_fraction=float(data.get("empty_fraction", 1.0)),
            canonical=bool(data.get("canonical", True)),
        )


@dataclass(frozen=True)
class DatasetManifest:
    """What ``dataset.json`` records about a stored dataset."""

    name: str
    created: str  # ISO 8601, UTC
    source: str  # the folder or zip it was ingested from
    # 1 (grey) or 3 (RGB): the widest image in the set; volumes: one per sequence (then .npy images unless 1 or 3)
    channels: int
    bit_depth: int  # 8 or 16: the deepest image in the set
    classes: tuple[str, ...]  # segmentation: index = mask value, classes[0] is background; classification: label names
    pairs: tuple[PairInfo, ...]
    checksum: str  # sha256 over the stored image and mask files (and the labels of a classification dataset)
    version: int = MANIFEST_VERSION
    volumes: tuple[VolumeInfo, ...] = ()  # volume datasets only: the source volumes
    slicing: VolumeSlicing | None = None  # volume datasets only: axis, intensity, sequences
    task: str = Task.SEGMENTATION  # a Task value

    @property
    def is_volume(self) -> bool:
        return self.slicing is not None

    @property
    def is_classification(self) -> bool:
        return self.task == Task.CLASSIFICATION

    @property
    def labels(self) -> dict[str, int]:
        """stem -> class index of a classification dataset (empty for segmentation)."""
        return {pair.stem: pair.label for pair in self.pairs if pair.label is not None}

    @property
    def class_counts(self) -> dict[str, int]:
        """Class name -> items of a classification dataset, in class order, empty classes included."""
        counts = Counter(self.labels.values())
        return {name: counts[index] for index, name in enumerate(self.classes)} if self.is_classification else {}

    @property
    def groups(self) -> dict[str, str]:
        """stem -> split group (its volume) for the pairs that have one; splits keep each group together."""
        return {pair.stem: pair.volume for pair in self.pairs if pair.volume is not None}

    def volume_slices(self) -> dict[str, list[PairInfo]]:
        """volume id -> its stored slices in slice order (empty for 2D datasets)."""
        slices: dict[str, list[PairInfo]] = {}
        for pair in self.pairs:
            if pair.volume is not None:
                slices.setdefault(pair.volume, []).append(pair)
        return {volume: sorted(pairs, key=lambda p: p.slice_index or 0) for volume, pairs in slices.items()}

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
        data = {
            "version": self.version,
            "name": self.name,
            "created": self.created,
            "source": self.source,
            "channels": self.channels,
            "bit_depth": self.bit_depth,
            "classes": list(self.classes),
            "checksum": self.checksum,
            "pairs": [pair.to_dict() for pair in self.pairs],
        }
        if self.slicing is not None:  # optional keys: manifests of 2D datasets are unchanged
            data["slicing"] = self.slicing.to_dict()
            data["volumes"] = [volume.to_dict() for volume in self.volumes]
        if self.is_classification:  # likewise: segmentation manifests stay byte for byte as they were
            data["task"] = str(self.task)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DatasetManifest:
        if data.get("version") != MANIFEST_VERSION:
            raise DatasetError(
                {"version": f"manifest version {data.get('version')!r} is not supported (expected {MANIFEST_VERSION})"}
            )
        task = data.get("task", Task.SEGMENTATION)
        if task not in set(Task):
            raise DatasetError({"task": unknown_option("dataset task", task, list(Task))})
        return cls(
            name=data["name"],
            created=data["created"],
            source=data["source"],
            channels=int(data["channels"]),
            bit_depth=int(data["bit_depth"]),
            classes=tuple(data["classes"]),
            pairs=tuple(PairInfo.from_dict(p) for p in data["pairs"]),
            checksum=data["checksum"],
            version=data["version"],
            volumes=tuple(VolumeInfo.from_dict(v) for v in data.get("volumes") or ()),
            slicing=VolumeSlicing.from_dict(data["slicing"]) if data.get("slicing") else None,
            task=Task(task),
        )


@dataclass(frozen=True)
class DatasetStats:
    """Summary figures for the dashboard."""

    count: int
    sizes: dict[str, int]  # "WxH" -> pairs
    channels: int
    bit_depth: int
    foreground: dict[str, tuple[float, ...]]  # non-background class -> per-pair pixel fraction
    empty_masks: int  # masks with no foreground pixel at all
    volumes: int = 0  # volume datasets: source volumes
    slices_per_volume: dict[str, int] = field(default_factory=dict)  # volume id -> stored slices
    spacing: dict[str, tuple[float, ...]] = field(default_factory=dict)  # volume id -> mm per voxel
    class_counts: dict[str, int] = field(default_factory=dict)  # classification: class name -> images


# --- public helpers -------------------------------------------------------------------------------


def dataset_path(datasets_dir: Path, name: str) -> Path:
    """Folder of dataset ``name``; the name is checked so it cannot point outside ``datasets_dir``."""
    if not is_valid_name(name):
        raise DatasetError({"name": name_problem(name)})
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
        raise DatasetError({str(path): f"unreadable manifest ({exc})"}) from exc


def new_name_problem(datasets_dir: Path, name: str) -> str | None:
    """Why ``name`` cannot be a new dataset's name (invalid, or taken), or None."""
    if not is_valid_name(name):
        return name_problem(name)
    if (Path(datasets_dir) / name).exists():
        return f"a dataset named {name!r} already exists; pick another name or delete it first"
    return None


@contextmanager
def building_dataset(datasets_dir: Path, name: str) -> Iterator[Path]:
    """A hidden work folder inside ``datasets_dir`` to build dataset ``name`` in: renamed into place
    when the block ends well, removed when it raises, so a failed build leaves nothing behind."""
    datasets_dir = Path(datasets_dir)
    datasets_dir.mkdir(parents=True, exist_ok=True)
    remove_stale_work(datasets_dir)  # what a killed ingest or delete left behind
    work = Path(tempfile.mkdtemp(prefix=INGEST_PREFIX, dir=datasets_dir))
    try:
        yield work
        taken = new_name_problem(datasets_dir, name)  # someone else may have taken the name meanwhile
        if taken:
            raise DatasetError({"name": taken})
        os.rename(work, datasets_dir / name)
    except BaseException as exc:
        shutil.rmtree(work, ignore_errors=True)
        if isinstance(exc, OSError) and exc.errno in DISK_FULL:
            raise DatasetError(
                {
                    "disk": "the disk that holds SegTune's datasets is full (no space left, or the quota is used up); "
                    "nothing was stored: free some space and add the dataset again"
                }
            ) from exc
        raise


def hide_dataset(datasets_dir: Path, name: str) -> Path:
    """Rename dataset ``name`` away (one atomic step: no reader finds it from here on); returns where it went,
    for :func:`shutil.rmtree` or for renaming it back."""
    load_manifest(datasets_dir, name)  # raises DatasetNotFound
    doomed = Path(datasets_dir) / f"{DELETE_PREFIX}{uuid.uuid4().hex}"
    os.rename(Path(datasets_dir) / name, doomed)
    return doomed


def delete_dataset(datasets_dir: Path, name: str) -> None:
    """Remove a dataset; it disappears at once (renamed away) even if deleting the files takes a while.

    This is the data layer's delete and knows nothing of jobs: pages and the CLI call
    ``core.runtime.dataset_guard.delete_dataset_safely``, which refuses while a job uses the dataset.
    """
    doomed = hide_dataset(datasets_dir, name)
    shutil.rmtree(doomed, ignore_errors=True)  # a killed delete leaves it to remove_stale_work


def remove_stale_work(datasets_dir: Path, older_than_s: float = STALE_WORK_S) -> list[str]:
    """Remove what killed ingests and deletes left behind (``.ingest-*`` untouched for ``older_than_s``,
    any ``.delete-*``: already out of sight); returns the folder names removed."""
    folder = Path(datasets_dir)
    if not folder.is_dir():
        return []
    removed = []
    for path in folder.iterdir():
        stale = path.name.startswith(DELETE_PREFIX) or (
            path.name.startswith(INGEST_PREFIX) and _idle_s(path) > older_than_s
        )
        if stale and path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path.name)
    return removed


def _idle_s(folder: Path) -> float:
    """Seconds since anything was added inside ``folder`` (folder mtimes change as entries are created)."""
    newest = folder.stat().st_mtime
    for root, _dirs, _files in os.walk(folder):
        newest = max(newest, os.stat(root).st_mtime)
    return time.time() - newest


def dataset_stats(manifest: DatasetManifest) -> DatasetStats:
    segmentation = not manifest.is_classification  # classification items have no mask: no foreground figures
    foreground = (
        {cls: tuple(p.foreground[i] for p in manifest.pairs) for i, cls in enumerate(manifest.classes[1:])}
        if segmentation
        else {}
    )
    empty = sum(1 for p in manifest.pairs if not any(p.foreground)) if segmentation else 0
    return DatasetStats(
        count=len(manifest.pairs),
        sizes=manifest.sizes,
        channels=manifest.channels,
        bit_depth=manifest.bit_depth,
        foreground=foreground,
        empty_masks=empty,
        volumes=len(manifest.volumes),
        slices_per_volume={v.volume: v.slices for v in manifest.volumes},
        spacing={v.volume: v.spacing for v in manifest.volumes},
        class_counts=manifest.class_counts,
    )


def volume_rows(manifest: DatasetManifest) -> list[dict[str, Any]]:
    """One display row per source volume: slices stored / in the volume, voxels, spacing, orientation, and
    how an uneven DICOM series was resampled when any was (so a reviewer sees which grids were made up)."""
    resampled = any(v.resampled_from for v in manifest.volumes)
    return [
        {
            "volume": v.volume,
            "slices": v.slices,
            "of": v.total_slices,
            "voxels": "x".join(str(n) for n in v.shape),
            "spacing (mm)": " x ".join(f"{s:.3g}" for s in v.spacing),
            "orientation": v.orientation,
        }
        | ({"resampled": v.resampled_from.describe() if v.resampled_from else ""} if resampled else {})
        for v in manifest.volumes
    ]


def spacing_summary(spacing: dict[str, tuple[float, ...]]) -> str:
    """Voxel spacing over volumes: ``0.8 x 0.8 x 2.5 mm`` when they share it, else each axis' range."""
    if not spacing:
        return ""
    axes = list(zip(*spacing.values()))
    parts = [f"{min(a):.3g}" if f"{min(a):.3g}" == f"{max(a):.3g}" else f"{min(a):.3g}–{max(a):.3g}" for a in axes]
    return " x ".join(parts) + " mm"


def name_problem(name: str) -> str:
    return f"invalid dataset name {name!r}: use 1-64 letters, digits, '-', '_' or '.', starting with a letter or digit"


def folder_checksum(folder: Path, labels: Mapping[str, str] | None = None) -> str:
    """The manifest's ``checksum``: sha256 over the stored image and mask files, names included.

    ``labels`` (classification: stem -> class name) are hashed in too, so relabelled images make
    another dataset content (the decoded-tensor cache is keyed by this checksum).
    """
    digest, labels = hashlib.sha256(), labels or {}
    files = sorted(
        (p.relative_to(folder).as_posix(), p)
        for sub in ("images", "masks")
        if (folder / sub).is_dir()
        for p in (folder / sub).iterdir()
    )
    for relative, path in files:
        digest.update(relative.encode() + b"\0" + hashlib.sha256(path.read_bytes()).digest())
    for stem in sorted(labels):
        digest.update(f"label\0{stem}\0{labels[stem]}\0".encode())
    return digest.hexdigest()
