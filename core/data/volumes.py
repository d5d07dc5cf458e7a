"""Medical volumes: read NIfTI files and DICOM series, find cases, and check image/label geometry.

Reading goes through the field's readers (nibabel for NIfTI, pydicom for DICOM); SegTune only puts
DICOM slices in order and builds their affine (the standard DICOM -> NIfTI mapping: LPS patient
coordinates turned into NIfTI's RAS); a series whose slices are unevenly spaced is refused, or, when
the user opts in, resampled along the slice normal onto an even grid (:class:`SliceResampling`).
Every volume comes out as a :class:`Volume`: a 3D float32 array (several sequences stacked on a 4th
axis, last) with its 4x4 voxel -> world (RAS, mm) affine.

Slicing works on the *closest canonical* orientation (RAS+), so axis 0/1/2 means sagittal/coronal/
axial whatever order the file stored its voxels in; :func:`to_canonical` / :func:`from_canonical`
convert, and predictions are written back in the input's own voxel order and affine.

Layouts (:func:`find_cases`): the MSD / nnU-Net one, ``imagesTr/`` (or ``images/``) + ``labelsTr/``
(or ``labels/``); an image is ``<case>.nii[.gz]``, several sequences ``<case>_0000.nii.gz``,
``<case>_0001.nii.gz`` ..., or a folder ``<case>/`` of DICOM files (one series); its label is
``<case>.nii[.gz]`` in the labels folder, or ``<case>.dcm``: a DICOM-SEG of a DICOM series image
(read by :mod:`core.data.dicom_seg`).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from core.errors import add_problem

NIFTI_SUFFIXES = (".nii.gz", ".nii")
IMAGE_DIRS = ("imagesTr", "images")
LABEL_DIRS = ("labelsTr", "labels")
DICOM_SEG_SUFFIX = ".dcm"  # a label file with this suffix is a DICOM-SEG
MAX_VOLUME_BYTES = (
    2 << 30
)  # one volume in memory (float32, all sequences): IngestLimits / SEGTUNE_MAX_VOLUME_MB override it
AFFINE_ATOL_MM = 1e-3  # image and label affines may differ by float noise, not by geometry
SLICE_ATOL_MM = 1e-3  # DICOM slice positions closer than this are one position
SPACING_RTOL = 0.01  # slice steps may differ by 1 % (decimal-string rounding, scanner jitter), not by a missing slice
_SEQUENCE = re.compile(r"^(?P<case>.+)_(?P<channel>\d{4})$")
_SLICE_STEM = re.compile(r"^(?P<volume>.+)_s(?P<index>\d+)$")


@dataclass
class Volume:
    """A 3D scan: ``data`` (X, Y, Z) or (X, Y, Z, sequences) float32, ``affine`` voxel -> RAS mm."""

    data: np.ndarray
    affine: np.ndarray
    resampled: SliceResampling | None = None  # a DICOM series put on an even grid: where its slices were

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(int(n) for n in self.data.shape[:3])  # type: ignore[return-value]

    @property
    def sequences(self) -> int:
        """Image channels: files stacked as sequences, or the 4th axis of a 4D file (e.g. MSD BraTS)."""
        return int(self.data.shape[3]) if self.data.ndim == 4 else 1

    @property
    def spacing(self) -> tuple[float, float, float]:
        return tuple(float(s) for s in np.linalg.norm(self.affine[:3, :3], axis=0))  # type: ignore[return-value]

    @property
    def orientation(self) -> str:
        import nibabel as nib

        return "".join(nib.aff2axcodes(self.affine))


@dataclass(frozen=True)
class Case:
    """One patient / volume of a source: its image file(s) (one per sequence) and label file."""

    case_id: str
    images: tuple[Path, ...]  # NIfTI files in sequence order, or one DICOM series folder
    label: Path | None = None


class VolumeReadError(Exception):
    """A file that is not a readable volume (caught by callers and turned into a problem)."""


# --- reading ---------------------------------------------------------------------------------------


def is_nifti(path: Path) -> bool:
    return path.is_file() and path.name.lower().endswith(NIFTI_SUFFIXES)


def is_dicom_seg_file(path: Path) -> bool:
    """A label file named ``<case>.dcm``: a DICOM-SEG (checked when read)."""
    return path.is_file() and path.suffix.lower() == DICOM_SEG_SUFFIX


def nifti_stem(path: Path) -> str:
    name = path.name
    for suffix in NIFTI_SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return path.stem


def volume_size_problem(shape: Sequence[int], itemsize: int, max_bytes: int) -> str:
    """Why a volume of ``shape`` (voxels x channels) is too large to read, or ''. Reading makes a
    float32 copy, so a voxel costs at least 4 bytes whatever the file stores."""
    voxels = math.prod(int(n) for n in shape)
    needed = voxels * max(int(itemsize), 4)
    if needed <= max_bytes:
        return ""
    dims = "x".join(str(int(n)) for n in shape)
    return (
        f"declares {dims} = {voxels} voxels, about {needed >> 20} MiB in memory, above the limit of "
        f"{max_bytes >> 20} MiB; crop or downsample it, or raise the ingest limit (ingest --max-volume-mb, "
        "SEGTUNE_MAX_VOLUME_MB)"
    )


def nifti_header(path: Path) -> Any:
    """The NIfTI image at ``path`` with only its header read (nibabel reads data lazily)."""
    import nibabel as nib

    try:
        return nib.load(str(path))
    except Exception as exc:
        raise VolumeReadError(f"unreadable or corrupt NIfTI file: {type(exc).__name__}: {exc}") from exc


def read_nifti(path: Path, max_bytes: int = MAX_VOLUME_BYTES) -> Volume:
    """A NIfTI file as a float32 volume (its scaling applied); a 4D file keeps its 4th axis. The
    header's voxel count is checked against ``max_bytes`` before any voxel is decompressed."""
    image = nifti_header(path)
    problem = volume_size_problem(image.header.get_data_shape(), image.header.get_data_dtype().itemsize, max_bytes)
    if problem:
        raise VolumeReadError(problem)
    try:
        data = np.asarray(image.dataobj, dtype=np.float32)
    except Exception as exc:
        raise VolumeReadError(f"unreadable or corrupt NIfTI file: {type(exc).__name__}: {exc}") from exc
    if data.ndim not in (3, 4):
        raise VolumeReadError(f"expected a 3D volume, got {data.ndim} dimension(s) of shape {data.shape}")
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    return Volume(data, np.asarray(image.affine, dtype=np.float64))


def read_dicom_series(folder: Path, max_bytes: int = MAX_VOLUME_BYTES, *, resample_uneven: bool = False) -> Volume:
    """The DICOM files of ``folder`` (one series) as a volume in Hounsfield units / stored values;
    rows x columns x frames of every file are checked against ``max_bytes`` before any pixel is decoded.
    ``resample_uneven``: an unevenly spaced series is put on an even grid (:class:`SliceResampling`,
    linear interpolation) instead of refused."""
    slices = read_dicom_slices(folder)
    check_dicom_size(slices, max_bytes)
    affine, resampling = dicom_grid(slices, resample_uneven=resample_uneven, max_bytes=max_bytes)
    try:
        planes = [
            ds.pixel_array.astype(np.float32) * float(getattr(ds, "RescaleSlope", 1) or 1)
            + float(getattr(ds, "RescaleIntercept", 0) or 0)
            for ds in slices
        ]
        shapes = {plane.shape for plane in planes}
        if len(shapes) > 1:
            raise ValueError(f"slices of different sizes {sorted(shapes)}")
    except (AttributeError, KeyError, ValueError, TypeError) as exc:
        raise VolumeReadError(f"DICOM series cannot be assembled: {exc}") from exc
    data = np.stack([plane.T for plane in planes], axis=-1)  # (columns, rows, slices)
    if resampling is None:
        return Volume(data, affine)
    return Volume(resampling.linear(data), affine, resampling)


def read_dicom_slices(folder: Path, *, pixels: bool = True) -> list:
    """The datasets of one DICOM series folder in slice order (along the slice normal); headers only
    when ``pixels`` is False. Raises :class:`VolumeReadError` for unreadable files or mixed series."""
    import pydicom

    slices = []
    for path in sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")):
        try:
            slices.append(pydicom.dcmread(path, stop_before_pixels=not pixels))
        except Exception as exc:
            raise VolumeReadError(f"{path.name}: unreadable DICOM file ({type(exc).__name__}: {exc})") from exc
    if not slices:
        raise VolumeReadError("no DICOM files in the series folder")
    series = {str(getattr(ds, "SeriesInstanceUID", "")) for ds in slices}
    if len(series) > 1:
        raise VolumeReadError(
            f"DICOM series cannot be assembled: the folder mixes {len(series)} series; put one series per case folder"
        )
    try:
        normal = slice_normal(slices[0])
        return sorted(slices, key=lambda ds: float(np.dot(normal, [float(v) for v in ds.ImagePositionPatient])))
    except (AttributeError, KeyError, ValueError, TypeError) as exc:
        raise VolumeReadError(f"DICOM series cannot be assembled: {exc}") from exc


def check_dicom_size(slices: Sequence[Any], max_bytes: int) -> None:
    """VolumeReadError when the series' headers (rows x columns x frames x samples, summed over its
    files) declare more than ``max_bytes`` of float32 voxels."""
    try:
        voxels = sum(
            int(ds.Rows)
            * int(ds.Columns)
            * int(getattr(ds, "NumberOfFrames", 1) or 1)
            * int(getattr(ds, "SamplesPerPixel", 1) or 1)
            for ds in slices
        )
    except (AttributeError, KeyError, ValueError, TypeError) as exc:
        raise VolumeReadError(f"DICOM series cannot be assembled: {exc}") from exc
    problem = volume_size_problem((voxels,), 4, max_bytes)
    if problem:
        raise VolumeReadError(f"the series of {len(slices)} file(s) {problem.removeprefix('declares ')}")


def slice_normal(ds: object) -> np.ndarray:
    orientation = np.array([float(v) for v in ds.ImageOrientationPatient])  # type: ignore[attr-defined]
    return np.cross(orientation[:3], orientation[3:])


def dicom_grid(
    slices: list, *, resample_uneven: bool = False, max_bytes: int = MAX_VOLUME_BYTES
) -> tuple[np.ndarray, SliceResampling | None]:
    """The RAS voxel -> world affine of sorted DICOM slices (voxel axes: column, row, slice), and the
    even grid they must be resampled onto when they are unevenly spaced and ``resample_uneven`` is set
    (the affine is then that grid's; else such a series is refused, see :func:`spacing_problem`).
    The resampled volume's float32 voxels are checked against ``max_bytes``: a far-off slice would
    otherwise make a grid of thousands of slices out of a few files."""
    resampling = None
    try:
        orientation = np.array([float(v) for v in slices[0].ImageOrientationPatient])
        row, column = orientation[:3], orientation[3:]
        positions = np.array([[float(v) for v in ds.ImagePositionPatient] for ds in slices])
        row_spacing, column_spacing = (float(v) for v in slices[0].PixelSpacing)
        if len(slices) > 1:
            along = positions @ np.cross(row, column)
            uneven = spacing_problem(slices, along, resample_uneven=resample_uneven)
            if uneven:
                raise VolumeReadError(uneven)
            step = (positions[-1] - positions[0]) / (len(slices) - 1)  # even: the average step is every step
            if not evenly_spaced(along):  # spacing_problem let it through: the user opted in to resampling
                resampling = SliceResampling.even(along)
                # the files' own direction from first to last (the normal, or a tilted gantry's), one even step long
                step = (positions[-1] - positions[0]) / (along[-1] - along[0]) * resampling.spacing
                problem = volume_size_problem(
                    (int(slices[0].Columns), int(slices[0].Rows), resampling.slices), 4, max_bytes
                )
                if problem:
                    raise VolumeReadError(
                        f"resampled onto an even grid, the series {problem.removeprefix('declares ')}"
                    )
        else:
            step = np.cross(row, column) * float(getattr(slices[0], "SliceThickness", 1.0) or 1.0)
    except (AttributeError, KeyError, ValueError, TypeError) as exc:
        raise VolumeReadError(f"DICOM series cannot be assembled: {exc}") from exc
    lps = np.eye(4)
    lps[:3, 0] = row * column_spacing  # voxel axis 0 runs along a row (column index)
    lps[:3, 1] = column * row_spacing  # voxel axis 1 runs down a column (row index)
    lps[:3, 2] = step
    lps[:3, 3] = positions[0]
    return np.diag([-1.0, -1.0, 1.0, 1.0]) @ lps, resampling  # DICOM LPS -> NIfTI RAS


def evenly_spaced(along: np.ndarray) -> bool:
    """Whether every step between sorted positions ``along`` the normal equals their median (within tolerance)."""
    gaps = np.diff(along)
    step = float(np.median(gaps))
    return bool(np.all(np.abs(gaps - step) <= max(SLICE_ATOL_MM, SPACING_RTOL * abs(step))))


def spacing_problem(slices: Sequence[Any], along: np.ndarray, *, resample_uneven: bool = False) -> str:
    """Why sorted slices at positions ``along`` the slice normal (mm) are not one evenly spaced stack, or ''.

    The affine takes one step between slices: two files at one position, or a gap (a missing slice,
    or spacings mixed in one series), would put every later slice in the wrong place. Such a series
    is refused with its positions, unless the user opted in to resampling (``resample_uneven``), which
    mends gaps only: two files at one position contradict each other, and no grid chooses between them.
    """
    gaps = np.diff(along)
    names = [Path(str(getattr(ds, "filename", "") or "?")).name for ds in slices]
    same = [
        f"{names[i]} and {names[i + 1]} at {along[i]:.6g} mm" for i in np.flatnonzero(np.abs(gaps) <= SLICE_ATOL_MM)
    ]
    if same:
        return (
            f"DICOM series has {len(same)} duplicated slice position(s): {', '.join(same[:5])}"
            f"{' ...' if len(same) > 5 else ''}; keep one file per position (two slices at one position are "
            "contradictory data, so resampling does not apply to them either)"
        )
    if resample_uneven or evenly_spaced(along):
        return ""
    shown = ", ".join(f"{v:.6g}" for v in along[:12]) + (f", ... ({len(along)} in all)" if len(along) > 12 else "")
    steps = ", ".join(sorted({f"{g:.4g}" for g in gaps}, key=float))
    return (
        f"DICOM series slices are not evenly spaced: positions along the slice normal {shown} mm, steps of {steps} mm "
        "(a missing slice, or mixed spacings); supply the missing slices, resample the series onto an even grid "
        "first (e.g. 3D Slicer or SimpleITK, saved as NIfTI), or opt in to SegTune resampling it along the slice "
        "normal at the median step (--resample-uneven; in the dashboard 'Resample unevenly spaced DICOM series')"
    )


@dataclass(frozen=True)
class SliceResampling:
    """An unevenly spaced DICOM series put on an even grid (the user's opt-in): where its slices were.

    The grid runs from the first position at the median step, up to the last position (or the last
    whole step before it: no slice is extrapolated). Intensities are interpolated linearly between
    the two neighbouring slices, labels take the nearest slice's class.
    """

    positions: tuple[float, ...]  # the files' positions along the slice normal, mm, in slice order
    spacing: float  # the even grid's step, mm: the median of the files' steps
    slices: int  # slices on the even grid

    @classmethod
    def even(cls, along: np.ndarray) -> SliceResampling:
        step = float(np.median(np.diff(along)))
        count = int(np.floor((along[-1] - along[0]) / step + SPACING_RTOL)) + 1
        return cls(tuple(float(v) for v in along), step, count)

    def _neighbours(self) -> tuple[np.ndarray, np.ndarray]:
        """For each grid slice: the file slice below it and the weight of the one above (0..1)."""
        along = np.asarray(self.positions)
        grid = along[0] + self.spacing * np.arange(self.slices)
        lower = np.clip(np.searchsorted(along, grid, side="right") - 1, 0, len(along) - 2)
        weight = np.clip((grid - along[lower]) / (along[lower + 1] - along[lower]), 0.0, 1.0)
        return lower, weight

    def linear(self, data: np.ndarray) -> np.ndarray:
        """``data`` (X, Y, file slices[, sequences]) on the even grid, linearly interpolated (float32)."""
        out = np.empty((*data.shape[:2], self.slices, *data.shape[3:]), dtype=np.float32)
        for index, (lower, weight) in enumerate(zip(*self._neighbours())):  # one slice at a time: no full copies
            out[:, :, index] = (1.0 - weight) * data[:, :, lower] + weight * data[:, :, lower + 1]
        return out

    def nearest(self, data: np.ndarray) -> np.ndarray:
        """``data`` (X, Y, file slices) on the even grid, each grid slice a copy of the nearest file slice
        (ties: the lower one), so class indices stay class indices."""
        lower, weight = self._neighbours()
        return np.ascontiguousarray(data[:, :, np.where(weight > 0.5, lower + 1, lower)])

    def to_dict(self) -> dict[str, Any]:
        steps = sorted({round(float(g), 4) for g in np.diff(self.positions)})
        return {"positions": list(self.positions), "steps": steps, "spacing": self.spacing, "slices": self.slices}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SliceResampling:
        return cls(tuple(float(v) for v in data["positions"]), float(data["spacing"]), int(data["slices"]))

    def describe(self) -> str:
        """``5 slices at steps of 1, 3 mm resampled to 7 slices 1 mm apart``."""
        steps = ", ".join(f"{v:g}" for v in self.to_dict()["steps"])
        return (
            f"{len(self.positions)} slices at steps of {steps} mm resampled to {self.slices} slices "
            f"{self.spacing:g} mm apart"
        )


def read_case_image(case: Case, max_bytes: int = MAX_VOLUME_BYTES, *, resample_uneven: bool = False) -> Volume:
    """The case's image: a DICOM series (resampled when unevenly spaced and ``resample_uneven``), one
    NIfTI file, or several sequences stacked as the 4th axis; at most ``max_bytes`` in all (every header
    is checked before any voxel is read)."""
    if len(case.images) == 1 and case.images[0].is_dir():
        return read_dicom_series(case.images[0], max_bytes, resample_uneven=resample_uneven)
    headers = [nifti_header(path).header for path in case.images]
    total = sum(math.prod(header.get_data_shape()) * max(header.get_data_dtype().itemsize, 4) for header in headers)
    if len(headers) > 1 and total > max_bytes:  # each sequence may fit while the stack does not
        raise VolumeReadError(
            f"its {len(headers)} sequences need about {total >> 20} MiB in memory together, above the limit of "
            f"{max_bytes >> 20} MiB; raise the ingest limit (ingest --max-volume-mb, SEGTUNE_MAX_VOLUME_MB)"
        )
    volumes = [read_nifti(path, max_bytes) for path in case.images]
    if len(volumes) == 1:
        return volumes[0]
    first = volumes[0]
    for path, other in zip(case.images[1:], volumes[1:]):
        problem = geometry_problem(first, other, what=f"sequence {path.name}")
        if problem or other.data.ndim != 3:
            raise VolumeReadError(problem or f"sequence {path.name} is not a 3D volume")
    return Volume(np.stack([v.data for v in volumes], axis=-1), first.affine)


def read_label(path: Path, max_bytes: int = MAX_VOLUME_BYTES) -> Volume:
    return read_nifti(path, max_bytes)


# --- geometry --------------------------------------------------------------------------------------


def geometry_problem(image: Volume, label: Volume, *, what: str = "label") -> str:
    """Why ``label`` does not lie on ``image``'s voxel grid (shape, spacing, orientation), or ''."""
    if label.data.ndim != 3:
        return f"{what} must be a 3D volume, got shape {label.data.shape}"
    if image.shape != label.shape:
        return f"{what} shape {label.shape} differs from the image's {image.shape}"
    if not np.allclose(image.spacing, label.spacing, atol=AFFINE_ATOL_MM):
        return f"{what} spacing {_mm(label.spacing)} differs from the image's {_mm(image.spacing)}"
    if image.orientation != label.orientation:
        return f"{what} orientation {label.orientation} differs from the image's {image.orientation}"
    if not np.allclose(image.affine, label.affine, atol=AFFINE_ATOL_MM):
        return (
            f"{what} origin/direction (affine) differs from the image's by up to "
            f"{np.abs(image.affine - label.affine).max():.4g} mm"
        )
    return ""


def _mm(values: tuple[float, ...]) -> str:
    return "x".join(f"{v:.3g}" for v in values) + " mm"


def to_canonical(volume: Volume) -> Volume:
    """The same volume with its voxel axes reordered/flipped to the closest RAS+ orientation."""
    from nibabel.orientations import apply_orientation, inv_ornt_aff, io_orientation

    ornt = io_orientation(volume.affine)
    data = apply_orientation(volume.data, ornt)
    affine = volume.affine @ inv_ornt_aff(ornt, volume.shape)
    return Volume(np.ascontiguousarray(data), affine)


def from_canonical(data: np.ndarray, original_affine: np.ndarray) -> np.ndarray:
    """Inverse of :func:`to_canonical` for an array on the canonical grid (e.g. a predicted label)."""
    from nibabel.orientations import apply_orientation, axcodes2ornt, io_orientation, ornt_transform

    back = ornt_transform(axcodes2ornt(("R", "A", "S")), io_orientation(original_affine))
    return np.ascontiguousarray(apply_orientation(data, back))


def slice_view(plane: np.ndarray) -> np.ndarray:
    """A canonical 2D slice as stored and shown (rotated a quarter turn, so anterior / superior is up)."""
    return np.ascontiguousarray(np.rot90(plane))


def slice_unview(picture: np.ndarray) -> np.ndarray:
    """Inverse of :func:`slice_view`: a stored / predicted picture back on the volume's slice plane."""
    return np.ascontiguousarray(np.rot90(picture, -1))


def slice_stem(volume_id: str, index: int) -> str:
    return f"{volume_id}_s{index:04d}"


def parse_slice_stem(stem: str) -> tuple[str, int] | None:
    """``(volume id, slice index)`` of a stem made by :func:`slice_stem`, else None."""
    match = _SLICE_STEM.match(stem)
    return (match["volume"], int(match["index"])) if match else None


def slice_caption(stem: str) -> str:
    """``case_007 · slice 12`` for a volume slice, else the stem itself."""
    parsed = parse_slice_stem(stem)
    return f"{parsed[0]} · slice {parsed[1]}" if parsed else stem


def volumes_of(stems: Sequence[str]) -> dict[str, list[int]]:
    """volume id -> positions in ``stems`` of its slices, in slice order ({} when no stem is a volume slice)."""
    found: dict[str, list[tuple[int, int]]] = {}
    for position, stem in enumerate(stems):
        parsed = parse_slice_stem(stem)
        if parsed:
            found.setdefault(parsed[0], []).append((parsed[1], position))
    return {volume: [position for _, position in sorted(items)] for volume, items in sorted(found.items())}


# --- layouts ---------------------------------------------------------------------------------------


def find_volume_root(root: Path) -> Path | None:
    """The folder holding ``imagesTr``/``images`` with volumes, stepping into lone sub-folders."""
    for _ in range(4):
        if _image_dir(root) is not None:
            return root
        entries = [p for p in root.iterdir() if not p.name.startswith(".") and p.name != "__MACOSX"]
        if len(entries) != 1 or not entries[0].is_dir():
            return None
        root = entries[0]
    return None


def _image_dir(root: Path) -> Path | None:
    for name in IMAGE_DIRS:
        folder = root / name
        if folder.is_dir() and any(is_nifti(p) or p.is_dir() for p in folder.iterdir() if not p.name.startswith(".")):
            return folder
    return None


def find_cases(root: Path, problems: dict[str, str], *, labels_required: bool = True) -> list[Case]:
    """Cases of a volume layout (see the module docstring); unmatched files become problems."""
    images_dir = _image_dir(root)
    if images_dir is None:
        problems["source"] = (
            f"no {' or '.join(IMAGE_DIRS)}/ folder with NIfTI files or DICOM series folders in {root.name}"
        )
        return []
    labels_dir = next((root / name for name in LABEL_DIRS if (root / name).is_dir()), None)
    groups = group_image_files(images_dir, problems)
    labels = (
        {nifti_stem(p): p for p in labels_dir.iterdir() if is_nifti(p) or is_dicom_seg_file(p)} if labels_dir else {}
    )
    cases = []
    for case_id, files in sorted(groups.items()):
        label = labels.pop(case_id, None)
        if label is None and labels_required:
            add_problem(
                problems,
                f"{images_dir.name}/{files[0].name}",
                f"no label volume {case_id}.nii.gz (or DICOM-SEG {case_id}.dcm) in {'/'.join(LABEL_DIRS)}",
            )
            continue
        cases.append(Case(case_id, tuple(files), label))
    for stem, path in sorted(labels.items()):
        add_problem(problems, f"{path.parent.name}/{path.name}", f"label without an image (case {stem!r})")
    if labels_required and labels_dir is None and groups:
        problems["source"] = f"no {' or '.join(LABEL_DIRS)}/ folder beside {images_dir.name}/"
    return cases


def group_image_files(folder: Path, problems: dict[str, str]) -> dict[str, list[Path]]:
    """case id -> its image files (sequences ``_0000``, ``_0001`` ... in order) or its DICOM folder."""
    groups: dict[str, list[tuple[int, Path]]] = {}
    for path in sorted(p for p in folder.iterdir() if not p.name.startswith(".") and p.name != "__MACOSX"):
        if path.is_dir():
            groups.setdefault(path.name, []).append((0, path))
            continue
        if not is_nifti(path):
            if path.suffix.lower() not in (".json", ".txt", ".md", ".csv"):
                add_problem(
                    problems, f"{folder.name}/{path.name}", "not a NIfTI file (.nii / .nii.gz) or DICOM series folder"
                )
            continue
        stem = nifti_stem(path)
        match = _SEQUENCE.match(stem)
        case_id, channel = (match["case"], int(match["channel"])) if match else (stem, 0)
        groups.setdefault(case_id, []).append((channel, path))
    result: dict[str, list[Path]] = {}
    for case_id, members in groups.items():
        channels = sorted(members, key=lambda item: item[0])
        numbers = [number for number, _ in channels]
        if numbers != list(range(len(numbers))):
            add_problem(
                problems,
                f"{folder.name}/{case_id}",
                f"sequences {numbers} are not numbered 0000, 0001, ... without gaps",
            )
            continue
        result[case_id] = [path for _, path in channels]
    return result  # equal sequence counts are checked on the read volumes (a 4D file holds several)


def label_problem(values: np.ndarray, num_classes: int) -> str:
    """Why a label volume's values are not class indices 0..num_classes-1, or ''."""
    present = np.unique(values)
    if not np.all(np.equal(np.mod(present, 1), 0)):
        return "label values are not whole numbers; a label volume holds class indices"
    if present.min() < 0 or present.max() >= num_classes:
        shown = ", ".join(str(int(v)) for v in present[:10])
        return (
            f"unexpected label values [{shown}]; expected 0..{num_classes - 1} (declare the classes, background first)"
        )
    return ""


def msd_classes(root: Path) -> tuple[str, ...] | None:
    """Class names from an MSD/nnU-Net ``dataset.json`` (``labels``), when one is there."""
    import json

    path = root / "dataset.json"
    if not path.is_file():
        return None
    try:
        labels: Mapping = json.loads(path.read_text(encoding="utf-8")).get("labels") or {}
    except (ValueError, AttributeError):
        return None
    if not isinstance(labels, Mapping) or not labels:
        return None
    pairs: dict[int, str] = {}
    for key, value in labels.items():  # MSD: {"0": "background"}; nnU-Net v2: {"background": 0}
        if str(key).isdigit():
            pairs[int(key)] = str(value)
        elif isinstance(value, int):
            pairs[value] = str(key)
    if sorted(pairs) != list(range(len(pairs))) or len(pairs) < 2:
        return None
    return tuple(pairs[i] for i in range(len(pairs)))


def looks_like_volumes(root: Path) -> bool:
    """Whether ``root`` holds a volume layout: NIfTI files in an image or label folder, or DICOM series
    folders in ``imagesTr/`` (for a 2D ingest to point the user at the volume ingest instead of listing
    every file). nnU-Net's 2D layout, PNGs in ``imagesTr/``, is not one."""
    folders = [root / name for name in (*IMAGE_DIRS, *LABEL_DIRS) if (root / name).is_dir()]
    if any(is_nifti(path) for folder in folders for path in folder.iterdir()):
        return True
    series = root / IMAGE_DIRS[0]
    return series.is_dir() and any(path.is_dir() for path in series.iterdir() if not path.name.startswith("."))
