"""Synthetic medical volumes with known geometry, written as NIfTI (nibabel) and DICOM series (pydicom)."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

SHAPE = (40, 36, 10)  # x, y, z voxels
SPACING = (0.8, 0.8, 2.5)  # mm


def lps_affine(shape: tuple[int, int, int] = SHAPE, spacing: tuple[float, float, float] = SPACING) -> np.ndarray:
    """A non-canonical (LPS-stored) affine: x and y run the other way, so reorientation is exercised."""
    affine = np.diag([-spacing[0], -spacing[1], spacing[2], 1.0])
    affine[:3, 3] = (12.0, -30.0, 45.0)
    return affine


def phantom(seed: int, shape: tuple[int, int, int] = SHAPE) -> tuple[np.ndarray, np.ndarray]:
    """(image in HU, binary label): a bright ellipsoid 'organ' in soft tissue, at a case-dependent place."""
    rng = np.random.default_rng(seed)
    x, y, z = np.meshgrid(*(np.arange(n) for n in shape), indexing="ij")
    cx, cy = shape[0] / 2 + rng.integers(-5, 6), shape[1] / 2 + rng.integers(-5, 6)
    rx, ry, rz = 9 + rng.integers(0, 4), 7 + rng.integers(0, 4), shape[2] * 0.3
    label = (((x - cx) / rx) ** 2 + ((y - cy) / ry) ** 2 + ((z - shape[2] / 2) / rz) ** 2) <= 1.0
    image = np.where(label, 120.0, -60.0) + rng.normal(0, 10, shape)
    return image.astype(np.float32), label.astype(np.uint8)


def write_nifti(path: Path, data: np.ndarray, affine: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(data, affine), str(path))
    return path


def msd_folder(root: Path, cases: int, *, sequences: int = 1, affine: np.ndarray | None = None) -> Path:
    """An MSD / nnU-Net layout: imagesTr/case_XXX[_000k].nii.gz + labelsTr/case_XXX.nii.gz."""
    affine = lps_affine() if affine is None else affine
    for number in range(cases):
        image, label = phantom(number)
        case = f"case_{number:03d}"
        if sequences == 1:
            write_nifti(root / "imagesTr" / f"{case}.nii.gz", image, affine)
        for channel in range(sequences if sequences > 1 else 0):
            write_nifti(root / "imagesTr" / f"{case}_{channel:04d}.nii.gz", image * (channel + 1), affine)
        write_nifti(root / "labelsTr" / f"{case}.nii.gz", label, affine)
    return root


def dicom_series(
    folder: Path,
    image: np.ndarray,
    *,
    spacing: tuple[float, float, float] = SPACING,
    origin: tuple[float, float, float] = (-20.0, -15.0, 100.0),
) -> None:
    """Axial CT slices (rows = y, columns = x) in LPS with identity orientation; written shuffled."""
    folder.mkdir(parents=True, exist_ok=True)
    series, study, frame_of_reference = generate_uid(), generate_uid(), generate_uid()
    order = np.random.default_rng(0).permutation(image.shape[2])  # file order must not matter
    for k in order:
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = CTImageStorage
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = FileDataset(str(folder / f"slice{k:03d}.dcm"), {}, file_meta=meta, preamble=b"\0" * 128)
        ds.SOPClassUID, ds.SOPInstanceUID, ds.SeriesInstanceUID = (
            CTImageStorage,
            meta.MediaStorageSOPInstanceUID,
            series,
        )
        ds.Modality = "CT"
        ds.StudyInstanceUID, ds.FrameOfReferenceUID = study, frame_of_reference
        ds.PatientName, ds.PatientID, ds.PatientBirthDate, ds.PatientSex = "Phantom^Test", folder.name, "", "O"
        ds.StudyDate, ds.StudyTime, ds.StudyID, ds.AccessionNumber, ds.ReferringPhysicianName = (
            "20240101",
            "120000",
            "1",
            "",
            "",
        )
        ds.SeriesNumber, ds.InstanceNumber = 1, int(k) + 1
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.ImagePositionPatient = [origin[0], origin[1], origin[2] + k * spacing[2]]
        ds.PixelSpacing = [spacing[1], spacing[0]]  # row spacing (y), column spacing (x)
        ds.SliceThickness = spacing[2]
        ds.Rows, ds.Columns = image.shape[1], image.shape[0]
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
        ds.RescaleIntercept, ds.RescaleSlope = -1024, 1
        stored = np.round(image[:, :, k].T + 1024).astype(np.uint16)  # (rows, columns)
        ds.PixelData = stored.tobytes()
        ds.save_as(folder / f"slice{k:03d}.dcm", enforce_file_format=True)


def dicom_affine(
    spacing: tuple[float, float, float] = SPACING, origin: tuple[float, float, float] = (-20.0, -15.0, 100.0)
) -> np.ndarray:
    """The RAS affine of :func:`dicom_series`'s volume, worked out by hand (LPS x, y flipped)."""
    affine = np.diag([-spacing[0], -spacing[1], spacing[2], 1.0])
    affine[:3, 3] = (-origin[0], -origin[1], origin[2])
    return affine


def dice(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a > 0, b > 0
    total = a.sum() + b.sum()
    return 1.0 if total == 0 else float(2 * (a & b).sum() / total)


def dicom_seg(path: Path, series: Path, label: np.ndarray, names: tuple[str, ...] = ("organ",)) -> Path:
    """A DICOM-SEG (highdicom) of ``label`` (X, Y, Z class indices on :func:`dicom_series`'s grid) for the series in
    ``series``."""
    import highdicom as hd
    import pydicom
    from pydicom.sr.codedict import codes

    sources = sorted((pydicom.dcmread(p) for p in series.iterdir()), key=lambda ds: float(ds.ImagePositionPatient[2]))
    planes = np.stack([label[:, :, k].T for k in range(label.shape[2])]).astype(np.uint8)  # (slices, rows, columns)
    segments = [
        hd.seg.SegmentDescription(
            segment_number=number,
            segment_label=name,
            segmented_property_category=codes.SCT.Organ,
            segmented_property_type=codes.SCT.Organ,
            algorithm_type=hd.seg.SegmentAlgorithmTypeValues.MANUAL,
        )
        for number, name in enumerate(names, start=1)
    ]
    seg = hd.seg.Segmentation(
        source_images=sources,
        pixel_array=planes,
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=segments,
        series_instance_uid=generate_uid(),
        series_number=2,
        sop_instance_uid=generate_uid(),
        instance_number=1,
        manufacturer="SegTune tests",
        manufacturer_model_name="phantom",
        software_versions="1",
        device_serial_number="1",
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    seg.save_as(path)
    return path
