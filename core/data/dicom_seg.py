"""DICOM-SEG label volumes: a Segmentation object read onto its DICOM image series' voxel grid.

highdicom decodes the SEG (binary or fractional frames, any transfer syntax) and places its frames
on the series' slices through each frame's ReferencedSOPInstanceUID; slices the SEG leaves out
(writers omit empty frames) are background. Before that SegTune checks that the SEG lies on the
series' geometry — frame of reference, rows x columns, pixel spacing, orientation, and every frame
at the position of the slice it references — so a SEG made for another series, or on a resampled
grid, is refused with the reason instead of being misplaced. On an unevenly spaced series that the
user asked to resample, the label follows the image onto its even grid (nearest slice). Segment
numbers are class indices (segment 1 = class 1, ...); overlapping segments cannot be one class map
and are refused.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from core.data.volumes import (
    MAX_VOLUME_BYTES,
    Volume,
    VolumeReadError,
    check_dicom_size,
    dicom_grid,
    is_dicom_seg_file,
    read_dicom_slices,
)

POSITION_ATOL_MM = 1e-2  # DICOM writes positions as decimal strings: allow their rounding, not a slice shift


def read_dicom_seg(
    path: Path, series_folder: Path, max_bytes: int = MAX_VOLUME_BYTES, *, resample_uneven: bool = False
) -> Volume:
    """The SEG at ``path`` as a class-index volume on the grid of the DICOM series in ``series_folder``
    (its size, the series' voxels, checked against ``max_bytes`` before any frame is decoded). An
    unevenly spaced series with ``resample_uneven``: the frames, placed on the series' slices, are put
    on the same even grid as the image, each grid slice taking the nearest slice's classes."""
    import highdicom as hd

    slices = read_dicom_slices(series_folder, pixels=False)
    check_dicom_size(slices, max_bytes)
    affine, resampling = dicom_grid(slices, resample_uneven=resample_uneven, max_bytes=max_bytes)
    try:
        seg = hd.seg.segread(path)
    except Exception as exc:  # pydicom / highdicom raise many types for a file that is no SEG
        raise VolumeReadError(f"unreadable DICOM-SEG: {type(exc).__name__}: {exc}") from exc
    problem = geometry_problem(seg, slices)
    if problem:
        raise VolumeReadError(problem)
    try:
        planes = seg.get_pixels_by_source_instance(
            [str(ds.SOPInstanceUID) for ds in slices],
            combine_segments=True,
            assert_missing_frames_are_empty=True,
            dtype=np.uint8,
        )
    except (ValueError, RuntimeError, KeyError, AttributeError) as exc:
        raise VolumeReadError(f"DICOM-SEG frames cannot be placed on the series: {exc}") from exc
    data = np.transpose(planes, (2, 1, 0)).astype(np.float32)  # (slices, rows, columns) -> (columns, rows, slices)
    if resampling is None:
        return Volume(data, affine)
    return Volume(resampling.nearest(data), affine, resampling)


def geometry_problem(seg: Any, slices: list) -> str:
    """Why the SEG does not lie on the series (sorted slices, headers), or ''."""
    first = slices[0]
    if str(getattr(seg, "FrameOfReferenceUID", "")) != str(getattr(first, "FrameOfReferenceUID", "")):
        return "the DICOM-SEG's frame of reference differs from the image series' (made for another scan?)"
    if (int(seg.Rows), int(seg.Columns)) != (int(first.Rows), int(first.Columns)):
        return (
            f"DICOM-SEG frames are {seg.Rows}x{seg.Columns} pixels but the series' slices are "
            f"{first.Rows}x{first.Columns}"
        )
    by_uid = {str(ds.SOPInstanceUID): ds for ds in slices}
    for number, frame in enumerate(seg.PerFrameFunctionalGroupsSequence, start=1):
        problem = _frame_problem(seg, frame, by_uid)
        if problem:
            return f"DICOM-SEG frame {number}: {problem}"
    return ""


def _frame_problem(seg: Any, frame: Any, by_uid: dict[str, Any]) -> str:
    references = [
        str(source.ReferencedSOPInstanceUID)
        for derivation in getattr(frame, "DerivationImageSequence", [])
        for source in getattr(derivation, "SourceImageSequence", [])
    ]
    if not references:
        return "references no source image, so it cannot be placed on the series"
    missing = [uid for uid in references if uid not in by_uid]
    if missing:
        return f"references image {missing[0]}, which is not in this series (a SEG of another series?)"
    source = by_uid[references[0]]
    position = _group(seg, frame, "PlanePositionSequence").ImagePositionPatient
    if not np.allclose(
        [float(v) for v in position], [float(v) for v in source.ImagePositionPatient], atol=POSITION_ATOL_MM
    ):
        return f"lies at {_mm(position)}, but the slice it references lies at {_mm(source.ImagePositionPatient)}"
    orientation = _group(seg, frame, "PlaneOrientationSequence").ImageOrientationPatient
    if not np.allclose([float(v) for v in orientation], [float(v) for v in source.ImageOrientationPatient], atol=1e-4):
        return "its orientation differs from the series' slices"
    spacing = _group(seg, frame, "PixelMeasuresSequence").PixelSpacing
    if not np.allclose([float(v) for v in spacing], [float(v) for v in source.PixelSpacing], atol=1e-4):
        return f"pixel spacing {_mm(spacing)} differs from the series' {_mm(source.PixelSpacing)}"
    return ""


def _group(seg: Any, frame: Any, name: str) -> Any:
    """A functional group's item for one frame: the frame's own, else the shared one."""
    for groups in (frame, seg.SharedFunctionalGroupsSequence[0]):
        if name in groups:
            return getattr(groups, name)[0]
    raise VolumeReadError(f"the DICOM-SEG has no {name} for its frames")


def _mm(values: Any) -> str:
    return "(" + ", ".join(f"{float(v):.4g}" for v in values) + ") mm"


def seg_classes(path: Path) -> tuple[str, ...] | None:
    """Class names from a SEG's segment labels (background first) when its segments are numbered 1..K."""
    import pydicom

    if not is_dicom_seg_file(path):
        return None
    try:
        segments = pydicom.dcmread(path, stop_before_pixels=True).SegmentSequence
        labels = {int(item.SegmentNumber): str(item.SegmentLabel) for item in segments}
    except (AttributeError, KeyError, ValueError, TypeError, OSError, pydicom.errors.InvalidDicomError):
        return None
    if sorted(labels) != list(range(1, len(labels) + 1)):
        return None
    return ("background", *(labels[number] for number in sorted(labels)))
