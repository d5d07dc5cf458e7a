"""Segment medical volumes (NIfTI files, DICOM series) slice by slice and write NIfTI label volumes.

The bundle records how its training volumes were prepared (``BundleConfig.preprocessing``: slicing
axis, intensity window or percentile normalisation, sequences); each input gets exactly that:
reoriented to RAS+, scaled to 8 bits, cut along the axis, each slice fed like a 2D image. The
predicted slices are stacked, put back into the input's own voxel order and written as
``<out>/<case>.nii.gz`` (class indices, uint8) with the input's affine, so the label lies on the
scan in any viewer. A file that cannot be read is reported and skipped.

Inputs in ``--volumes DIR``: ``<case>.nii[.gz]``; several sequences ``<case>_0000.nii.gz``,
``<case>_0001.nii.gz`` ... (as at ingest: one model input channel per sequence, any number); or
sub-folders holding one DICOM series each. An unevenly spaced series is skipped with the reason, as
ingest refuses it, unless ``resample_uneven`` puts it on an even grid (as ingest's option): then the
label is predicted, and written, on that grid, with its affine.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from core.data.intensity import IntensityConfig
from core.data.manifest import VolumeSlicing
from core.data.volume_ingest import slice_pictures
from core.data.volumes import (
    Case,
    Volume,
    VolumeReadError,
    from_canonical,
    group_image_files,
    read_case_image,
    slice_unview,
    to_canonical,
)
from core.deploy.predict import PredictError, predict_image
from core.modeling.bundle import BundleConfig, load_model


@dataclass
class VolumeReport:
    written: list[Path] = field(default_factory=list)  # label volumes, one per readable case
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (file or case, why)
    resampled: list[tuple[str, str]] = field(default_factory=list)  # (case, its uneven series put on which grid)

    def summary(self) -> str:
        lines = [f"{len(self.written)} label volume(s) written, {len(self.skipped)} skipped"]
        lines += [f"  resampled {name}: {how} (its label is on that grid)" for name, how in self.resampled]
        lines += [f"  skipped {name}: {reason}" for name, reason in self.skipped]
        return "\n".join(lines)


def predict_volumes(
    model_folder: Path, volumes: Path, out: Path, *, progress: bool = True, resample_uneven: bool = False
) -> VolumeReport:
    """Write ``out/<case>.nii.gz`` for every readable volume in ``volumes``. ``resample_uneven``: an
    unevenly spaced DICOM series is segmented on an even grid (as ingest's option), not skipped."""
    model, config = load_model(Path(model_folder))
    slicing = config.volume_slicing
    if slicing is None:
        raise PredictError(f"{model_folder} was trained on 2D images, not volumes; use --images for image folders")
    folder = Path(volumes)
    if not folder.is_dir():
        raise PredictError(f"volume folder {folder} does not exist or is not a folder")
    report = VolumeReport()
    problems: dict[str, str] = {}
    cases = group_image_files(folder, problems)
    report.skipped += sorted(problems.items())
    if not cases and not problems:
        raise PredictError(f"volume folder {folder} holds no NIfTI files or DICOM series folders")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for case_id, files in tqdm(sorted(cases.items()), desc="predict volumes", unit="volume", disable=not progress):
        try:
            original = read_case_image(Case(case_id, tuple(files)), resample_uneven=resample_uneven)
            labels, affine = predict_case(model, config, slicing, original)
        except VolumeReadError as exc:
            report.skipped.append((case_id, str(exc)))
            continue
        report.written.append(write_label(out / f"{case_id}.nii.gz", labels, affine))
        if original.resampled:
            report.resampled.append((case_id, original.resampled.describe()))
    return report


@torch.no_grad()
def predict_case(
    model: torch.nn.Module, config: BundleConfig, slicing: VolumeSlicing, original: Volume
) -> tuple[np.ndarray, np.ndarray]:
    """(class-index label volume in the input's voxel order, the input's affine)."""
    if original.sequences != slicing.sequences:
        raise VolumeReadError(
            f"{original.sequences} sequence(s), but the model was trained on {slicing.sequences} per case"
        )
    canonical = to_canonical(original)
    pictures = slice_pictures(canonical, slicing.axis, IntensityConfig.from_dict(slicing.intensity))
    planes = [slice_unview(predict_image(model, config, _hwc(picture, config.channels))) for picture in pictures]
    labels = np.stack(planes, axis=slicing.axis).astype(np.uint8)
    return from_canonical(labels, original.affine), original.affine


def _hwc(picture: np.ndarray, channels: int) -> np.ndarray:
    picture = picture[..., None] if picture.ndim == 2 else picture
    if (
        picture.shape[-1] == 2 and channels == 3
    ):  # bundles from before multi-channel slices: 2 sequences + a black channel
        picture = np.concatenate([picture, np.zeros_like(picture[..., :1])], axis=-1)
    return picture


def write_label(path: Path, labels: np.ndarray, affine: np.ndarray) -> Path:
    import nibabel as nib

    image = nib.Nifti1Image(labels.astype(np.uint8), affine)
    image.set_qform(affine, code=1)
    image.set_sform(affine, code=1)
    nib.save(image, str(path))
    return path
