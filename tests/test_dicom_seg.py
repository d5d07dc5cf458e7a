"""DICOM-SEG label volumes: read onto their DICOM series (synthetic series + SEGs made with highdicom),
validated against the series' geometry, ingested like NIfTI labels."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest

from core.data.dicom_seg import read_dicom_seg
from core.data.images import read_mask
from core.data.intensity import IntensityConfig
from core.data.manifest import DatasetError
from core.data.volume_ingest import VolumeIngestOptions, ingest_volumes
from core.data.volumes import read_dicom_series
from tests.helpers.volume_data import SPACING, dicom_affine, dicom_seg, dicom_series, lps_affine, phantom, write_nifti

OPTIONS = VolumeIngestOptions(intensity=IntensityConfig.window("abdomen"))


def _case(root: Path, name: str, seed: int, *, seg: bool = True) -> tuple[np.ndarray, np.ndarray]:
    image, label = phantom(seed)
    dicom_series(root / "imagesTr" / name, image)
    if seg:
        dicom_seg(root / "labelsTr" / f"{name}.dcm", root / "imagesTr" / name, label)
    else:
        write_nifti(root / "labelsTr" / f"{name}.nii.gz", label, dicom_affine())
    return image, label


def test_a_seg_lands_on_its_series_grid_with_every_segment(tmp_path: Path) -> None:
    image, label = phantom(0)
    classes = label.copy()
    classes[:, :, 5:] *= 2  # two segments: the organ's upper half is class 2
    dicom_series(tmp_path / "series", image)
    seg = dicom_seg(tmp_path / "seg.dcm", tmp_path / "series", classes, names=("lower", "upper"))
    volume = read_dicom_seg(seg, tmp_path / "series")
    assert np.array_equal(volume.data, classes)  # the SEG omits empty frames: those slices come back as background
    assert np.allclose(volume.affine, read_dicom_series(tmp_path / "series").affine)
    assert np.allclose(volume.affine, dicom_affine()) and np.allclose(volume.spacing, SPACING)


def test_seg_labels_ingest_like_nifti_labels_with_their_segment_names(tmp_path: Path) -> None:
    for number in range(2):
        _case(tmp_path / "seg", f"patient{number}", number)
        _case(tmp_path / "nifti", f"patient{number}", number, seg=False)
    from_seg = ingest_volumes(tmp_path / "seg", "seg", tmp_path / "ds", options=OPTIONS)
    from_nifti = ingest_volumes(tmp_path / "nifti", "nifti", tmp_path / "ds", options=OPTIONS)
    assert from_seg.classes == ("background", "organ")  # from the SEG's segment labels
    assert [v.volume for v in from_seg.volumes] == ["patient0", "patient1"] and from_seg.volumes[
        0
    ].label == "labelsTr/patient0.dcm"
    assert [p.stem for p in from_seg.pairs] == [p.stem for p in from_nifti.pairs]
    for seg_pair, nifti_pair in zip(from_seg.pairs, from_nifti.pairs):
        assert np.array_equal(
            read_mask(tmp_path / "ds" / "seg" / seg_pair.mask), read_mask(tmp_path / "ds" / "nifti" / nifti_pair.mask)
        )
    assert sum(sum(p.foreground) > 0 for p in from_seg.pairs) > 0


def test_segs_off_the_series_geometry_are_refused_with_the_reason(tmp_path: Path) -> None:
    root = tmp_path / "src"
    _case(root, "good", 0)
    image, label = _case(root, "other_series", 1, seg=False)  # its SEG is made for a copy of the series
    (root / "labelsTr" / "other_series.nii.gz").unlink()
    dicom_series(tmp_path / "copy", image)
    dicom_seg(root / "labelsTr" / "other_series.dcm", tmp_path / "copy", label)
    _case(root, "shifted", 2)
    seg = pydicom.dcmread(root / "labelsTr" / "shifted.dcm")
    seg.PerFrameFunctionalGroupsSequence[0].PlanePositionSequence[0].ImagePositionPatient[2] += 2.5  # one slice off
    seg.save_as(root / "labelsTr" / "shifted.dcm")
    _case(root, "resampled", 3)
    seg = pydicom.dcmread(root / "labelsTr" / "resampled.dcm")
    seg.SharedFunctionalGroupsSequence[0].PixelMeasuresSequence[0].PixelSpacing = [1.6, 1.6]
    seg.save_as(root / "labelsTr" / "resampled.dcm")
    _case(root, "corrupt", 4)
    (root / "labelsTr" / "corrupt.dcm").write_bytes(b"DICM but not really")
    image, label = phantom(5)
    write_nifti(root / "imagesTr" / "nifti_image.nii.gz", image, lps_affine())
    (root / "labelsTr" / "nifti_image.dcm").write_bytes((root / "labelsTr" / "good.dcm").read_bytes())
    with pytest.raises(DatasetError) as refused:
        ingest_volumes(root, "bad", tmp_path / "ds", options=OPTIONS)
    problems = refused.value.problems
    assert "labelsTr/good.dcm" not in problems
    assert "frame of reference differs" in problems["labelsTr/other_series.dcm"]
    assert (
        "frame 1: lies at" in problems["labelsTr/shifted.dcm"]
        and "slice it references" in problems["labelsTr/shifted.dcm"]
    )
    assert "pixel spacing (1.6, 1.6) mm differs" in problems["labelsTr/resampled.dcm"]
    assert "unreadable DICOM-SEG" in problems["labelsTr/corrupt.dcm"]
    assert "needs its DICOM series" in problems["labelsTr/nifti_image.dcm"]
    assert not (tmp_path / "ds" / "bad").exists()
