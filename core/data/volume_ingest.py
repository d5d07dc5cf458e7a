"""Ingest medical volumes (NIfTI, DICOM series) as a 2D slice dataset with patient-grouped splits.

Each case (see :mod:`core.data.volumes` for the layouts) is validated — readable files, label on
the image's voxel grid (a DICOM-SEG label on its series' geometry, :mod:`core.data.dicom_seg`),
label values; an unevenly spaced DICOM series is refused unless ``resample_uneven`` puts it, and
its DICOM-SEG label, on an even grid (recorded as the volume's ``resampled_from``) — then
reoriented to RAS+, scaled to 8 bits (:mod:`core.data.intensity`) and cut along ``axis`` into the
usual ``images/<stem>.png`` + ``masks/<stem>.png`` pairs, stems ``<case>_s<index>``. Every pair
records its case as ``volume``: the split group, so one patient's slices never land in two splits.
Several sequences per case (``case_0000``, ``case_0001`` ...) become channels, one per sequence, so
a model takes ``in_channels = sequences``: three are stored as an RGB PNG, any other number as a lossless
``images/<stem>.npy`` array (:func:`core.data.images.save_image`).

Like the 2D ingest, everything is validated and every problem reported at once; the dataset is
built in a hidden temporary folder and renamed into place only when all is well.
"""

from __future__ import annotations

import json
import random
import shutil
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from PIL import Image

from core.data.archives import IngestLimits, unpack
from core.data.dicom_seg import read_dicom_seg, seg_classes
from core.data.file_kinds import entry_problem, special_file_problems
from core.data.images import MAX_CHANNELS, save_image
from core.data.intensity import IntensityConfig, to_uint8
from core.data.manifest import (
    BINARY_CLASSES,
    MANIFEST_FILE,
    DatasetError,
    DatasetManifest,
    PairInfo,
    VolumeInfo,
    VolumeSlicing,
    building_dataset,
    folder_checksum,
    name_problem,
)
from core.data.server_folders import confined_source
from core.data.volumes import (
    Case,
    Volume,
    VolumeReadError,
    find_cases,
    find_volume_root,
    geometry_problem,
    is_dicom_seg_file,
    label_problem,
    msd_classes,
    read_case_image,
    read_label,
    slice_stem,
    slice_view,
    to_canonical,
)
from core.errors import add_problem
from core.naming import class_name_problem, is_valid_name

NIFTI_LABEL_OF_RESAMPLED = (
    "its image is an unevenly spaced DICOM series, resampled onto an even grid, and a NIfTI label made on the "
    "series' own slices cannot match that grid's geometry; give the label as a DICOM-SEG (labelsTr/<case>.dcm, "
    "resampled with the image), or resample both image and label onto one even grid first (e.g. 3D Slicer, saved "
    "as NIfTI)"
)


@dataclass(frozen=True)
class VolumeIngestOptions:
    """How volumes become slices."""

    axis: int = 2  # axis of the RAS+ volume: 0 sagittal, 1 coronal, 2 axial
    intensity: IntensityConfig = field(default_factory=IntensityConfig)
    empty_fraction: float = 1.0  # share of slices without foreground to keep (1 = all, 0 = foreground only)
    seed: int = 0  # which empty slices are kept
    # an unevenly spaced DICOM series (a missing slice, mixed spacings) is resampled onto an even grid
    # instead of refused; its label must then be a DICOM-SEG, which follows the image onto that grid
    resample_uneven: bool = False

    def problems(self) -> dict[str, str]:
        problems: dict[str, str] = {}
        if self.axis not in (0, 1, 2):
            problems["axis"] = f"axis must be 0 (sagittal), 1 (coronal) or 2 (axial), got {self.axis}"
        if not 0.0 <= self.empty_fraction <= 1.0:
            problems["empty_fraction"] = (
                f"the share of empty slices to keep must be between 0 and 1, got {self.empty_fraction}"
            )
        return problems


def ingest_volumes(
    source: Path,
    name: str,
    datasets_dir: Path,
    *,
    classes: Sequence[str] | None = None,
    options: VolumeIngestOptions = VolumeIngestOptions(),
    limits: IngestLimits = IngestLimits(),
    progress: Callable[[int, int], None] | None = None,
    confine_to: Sequence[Path] | None = None,
) -> DatasetManifest:
    """Validate the volumes in ``source`` (folder or .zip) and store them as dataset ``name``; raises
    :class:`DatasetError`.

    ``confine_to``: import roots (the dashboard's server paths): ``source`` must resolve under one of
    them and no link inside it may lead out (:mod:`core.data.server_folders`).
    """
    source, datasets_dir = Path(source), Path(datasets_dir)
    if confine_to is not None:
        source = confined_source(source, confine_to)
    problems = _request_problems(source, name, datasets_dir, classes) | options.problems()
    if "source" in problems or "axis" in problems or "empty_fraction" in problems:
        raise DatasetError(problems)
    with building_dataset(datasets_dir, name) as work:
        return _build(source, name, work, classes, options, limits, problems, progress)


def _request_problems(source: Path, name: str, datasets_dir: Path, classes: Sequence[str] | None) -> dict[str, str]:
    problems: dict[str, str] = {}
    if not is_valid_name(name):
        problems["name"] = name_problem(name)
    elif (datasets_dir / name).exists():
        problems["name"] = f"a dataset named {name!r} already exists; pick another name or delete it first"
    if not source.exists():
        problems["source"] = f"not found: {source}"
    elif kind := entry_problem(source):  # before anything opens it: a FIFO would block forever
        problems["source"] = f"{source} {kind}"
    elif source.is_file() and not zipfile.is_zipfile(source):
        problems["source"] = f"{source} is neither a folder nor a .zip archive"
    if classes is not None and (
        isinstance(classes, str) or len(classes) < 2 or len(set(classes)) != len(classes) or not all(classes)
    ):
        problems["classes"] = f"must list 2 or more distinct non-empty names (background first), got {classes!r}"
    return problems


@dataclass
class _Stored:
    pairs: list[PairInfo] = field(default_factory=list)
    volumes: list[VolumeInfo] = field(default_factory=list)
    sequences: int | None = None  # channels per case, set by the first readable case


def _build(
    source: Path,
    name: str,
    work: Path,
    classes: Sequence[str] | None,
    options: VolumeIngestOptions,
    limits: IngestLimits,
    problems: dict[str, str],
    progress: Callable[[int, int], None] | None,
) -> DatasetManifest:
    unpacked = unpack(source, work / "_source", limits, problems)
    special = special_file_problems(unpacked) if unpacked else {}  # refused before any file is opened
    if special:
        raise DatasetError({**problems, **special})
    root = find_volume_root(unpacked) if unpacked else None
    if unpacked and root is None:
        problems["source"] = (
            "no volumes found: expected imagesTr/ (or images/) with NIfTI files or DICOM series folders, and "
            "labelsTr/ (or labels/)"
        )
    cases = find_cases(root, problems) if root else []
    if root and not cases and not problems:
        problems["source"] = f"empty dataset: no image/label volumes found in {source}"
    names = (
        tuple(classes) if classes else (msd_classes(root) if root else None) or _seg_classes(cases) or BINARY_CLASSES
    )
    for problem in filter(
        None, map(class_name_problem, names)
    ):  # declared, from dataset.json or from DICOM-SEG segments
        add_problem(problems, "classes", problem)
    stored = _Stored()
    for done, case in enumerate(cases, start=1):
        _ingest_case(case, root, work, len(names), options, limits.max_volume_bytes, problems, stored)  # type: ignore[arg-type]
        if progress:
            progress(done, len(cases))
    if problems:
        raise DatasetError(problems)
    shutil.rmtree(work / "_source", ignore_errors=True)
    if not stored.pairs:
        raise DatasetError(
            {
                "empty_fraction": (
                    "no slice was kept: no label volume has foreground; keep empty slices (a larger empty fraction)"
                )
            }
        )
    sequences = stored.sequences or 1
    slicing = VolumeSlicing(
        axis=options.axis,
        intensity=options.intensity.to_dict(),
        sequences=sequences,
        empty_fraction=options.empty_fraction,
    )
    manifest = DatasetManifest(
        name=name,
        created=datetime.now(UTC).isoformat(timespec="seconds"),
        source=str(source),
        channels=sequences,
        bit_depth=8,
        classes=names,
        pairs=tuple(stored.pairs),
        checksum=folder_checksum(work),
        volumes=tuple(stored.volumes),
        slicing=slicing,
    )
    (work / MANIFEST_FILE).write_text(json.dumps(manifest.to_dict(), indent=1), encoding="utf-8")
    return manifest


def _ingest_case(
    case: Case,
    root: Path,
    work: Path,
    num_classes: int,
    options: VolumeIngestOptions,
    max_bytes: int,
    problems: dict[str, str],
    stored: _Stored,
) -> None:
    image_label = "/".join(case.images[0].relative_to(root).parts)
    label_label = "/".join(case.label.relative_to(root).parts) if case.label else case.case_id
    resample = options.resample_uneven
    image = _read(lambda: read_case_image(case, max_bytes, resample_uneven=resample), image_label, problems)
    if image is not None and image.resampled is not None and case.label and not is_dicom_seg_file(case.label):
        add_problem(problems, label_label, NIFTI_LABEL_OF_RESAMPLED)
        return
    label = (
        _read(lambda: read_case_label(case, max_bytes, resample_uneven=resample), label_label, problems)
        if case.label
        else None
    )
    if image is None or label is None:
        return
    sequence_problem = _sequence_problem(image.sequences, stored)
    if sequence_problem:
        add_problem(problems, image_label, sequence_problem)
        return
    problem = geometry_problem(image, label) or label_problem(label.data, num_classes)
    if problem:
        add_problem(problems, label_label, problem)
        return
    if problems:  # something is already wrong: validate the rest, store nothing
        return
    canonical_label = to_canonical(label)
    kept = _store_slices(case.case_id, to_canonical(image), canonical_label, work, num_classes, options, stored)
    stored.volumes.append(
        VolumeInfo(
            volume=case.case_id,
            images=tuple("/".join(p.relative_to(root).parts) for p in case.images),
            label=label_label,
            shape=image.shape,
            spacing=image.spacing,
            affine=tuple(tuple(float(v) for v in row) for row in image.affine),
            orientation=image.orientation,
            slices=kept,
            total_slices=canonical_label.shape[options.axis],
            resampled_from=image.resampled,
        )
    )


def _sequence_problem(sequences: int, stored: _Stored) -> str:
    """Every case needs the first case's number of sequences (the model's input channels)."""
    if sequences > MAX_CHANNELS:
        return f"{sequences} sequences; at most {MAX_CHANNELS} become channels"
    if stored.sequences is None:
        stored.sequences = sequences
    elif sequences != stored.sequences:
        return f"{sequences} sequence(s), but the first case has {stored.sequences}; every case needs the same"
    return ""


def read_case_label(case: Case, max_bytes: int, *, resample_uneven: bool = False) -> Volume:
    """The case's label: a NIfTI file, or a DICOM-SEG placed on the case's DICOM series (and onto its
    even grid when the series is unevenly spaced and ``resample_uneven``)."""
    if case.label is None or not is_dicom_seg_file(case.label):
        return read_label(case.label, max_bytes)  # type: ignore[arg-type]
    if not case.images[0].is_dir():
        raise VolumeReadError(
            "a DICOM-SEG label needs its DICOM series as the image (a folder imagesTr/<case>/), not NIfTI"
        )
    return read_dicom_seg(case.label, case.images[0], max_bytes, resample_uneven=resample_uneven)


def _seg_classes(cases: Sequence[Case]) -> tuple[str, ...] | None:
    """The first DICOM-SEG label's segment names, when the labels are DICOM-SEGs and no names were given."""
    first = next((case.label for case in cases if case.label and is_dicom_seg_file(case.label)), None)
    return seg_classes(first) if first else None


def _read(read: Callable[[], Volume], label: str, problems: dict[str, str]) -> Volume | None:
    try:
        return read()
    except VolumeReadError as exc:
        add_problem(problems, label, str(exc))
    except MemoryError:
        add_problem(problems, label, "too large to read into memory")
    return None


def _store_slices(
    case_id: str,
    image: Volume,
    label: Volume,
    work: Path,
    num_classes: int,
    options: VolumeIngestOptions,
    stored: _Stored,
) -> int:
    (work / "images").mkdir(exist_ok=True)
    (work / "masks").mkdir(exist_ok=True)
    pictures = slice_pictures(image, options.axis, options.intensity)
    labels = label.data.astype(np.uint8)
    keep = _kept_slices(case_id, labels, options)
    for index in keep:
        mask = slice_view(np.take(labels, index, axis=options.axis))
        stem = slice_stem(case_id, index)
        image_name = save_image(work / "images", stem, pictures[index])
        Image.fromarray(mask).save(work / "masks" / f"{stem}.png")
        fractions = tuple(float((mask == c).mean()) for c in range(1, num_classes))
        stored.pairs.append(
            PairInfo(
                stem=stem,
                image=f"images/{image_name}",
                mask=f"masks/{stem}.png",
                height=mask.shape[0],
                width=mask.shape[1],
                foreground=fractions,
                volume=case_id,
                slice_index=index,
            )
        )
    return len(keep)


def slice_pictures(canonical: Volume, axis: int, intensity: IntensityConfig) -> list[np.ndarray]:
    """Every slice of a canonical image volume as the uint8 picture ingest stores (and predict feeds):
    HxW for one sequence, HxWxC (one channel per sequence) for several."""
    pixels = to_uint8(canonical.data, intensity)
    return [slice_view(np.take(pixels, index, axis=axis)) for index in range(pixels.shape[axis])]


def _kept_slices(case_id: str, labels: np.ndarray, options: VolumeIngestOptions) -> list[int]:
    """Every slice with foreground, plus ``empty_fraction`` of the empty ones (seeded per case)."""
    other = tuple(a for a in range(3) if a != options.axis)
    has_foreground = labels.any(axis=other)
    full = [int(i) for i in np.flatnonzero(has_foreground)]
    empty = [int(i) for i in np.flatnonzero(~has_foreground)]
    chosen = random.Random(f"{options.seed}:{case_id}").sample(empty, round(len(empty) * options.empty_fraction))
    return sorted(full + chosen)
