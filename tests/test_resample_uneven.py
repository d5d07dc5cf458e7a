"""The opt-in resampling of unevenly spaced DICOM series (``--resample-uneven``, the dashboard's checkbox):
refused by default naming the positions; with it, put on an even grid at the median step (intensities
linear, a DICOM-SEG label nearest), recorded in the manifest, and predicted on that grid. Duplicated
positions and NIfTI labels stay refused."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
import torch

from core.cli import main
from core.data.dicom_seg import read_dicom_seg
from core.data.manifest import MANIFEST_FILE, load_manifest
from core.data.volumes import VolumeReadError, read_dicom_series
from core.modeling.architectures import config_from_params
from core.modeling.build import build_model
from core.modeling.bundle import BundleConfig, save_bundle, volume_preprocessing
from core.settings import Settings
from tests.helpers.volume_data import dicom_affine, dicom_seg, dicom_series, write_nifti

EVEN = (1.0, 1.0, 1.0)  # mm: pixel spacing, and the step the series would have without its gap
ORIGIN = (0.0, 0.0, 0.0)
VALUES = (0.0, 10.0, 20.0, 900.0, 900.0, 50.0, 60.0)  # per slice; 3 and 4 are deleted, so 900 must never show
KEPT = (0, 1, 2, 5, 6)  # the files' positions along the normal (mm)


def uneven_case(root: Path, *, label: str = "seg") -> Path:
    """Case ``case_000``: an 8x8 series at positions 0, 1, 2, 5, 6 mm (intensity VALUES[z] + x), labelled by a
    DICOM-SEG whose file slice j has its foreground in column x = j (or by a NIfTI label on the 5 slices)."""
    series = root / "imagesTr" / "case_000"
    x = np.arange(8, dtype=np.float32)[:, None, None]
    dicom_series(series, np.broadcast_to(x + np.array(VALUES), (8, 8, 7)).copy(), spacing=EVEN, origin=ORIGIN)
    for missing in (3, 4):
        (series / f"slice{missing:03d}.dcm").unlink()
    planes = np.zeros((8, 8, len(KEPT)), np.uint8)
    for j in range(len(KEPT)):
        planes[j, :, j] = 1
    if label == "seg":
        dicom_seg(root / "labelsTr" / "case_000.dcm", series, planes)
    else:
        write_nifti(root / "labelsTr" / "case_000.nii.gz", planes, np.eye(4))
    return series


def ingest(capsys: pytest.CaptureFixture[str], source: Path, name: str, *options: str) -> tuple[int, str]:
    code = main(["ingest", str(source), "--name", name, "--volumes", "--window", "abdomen", *options])
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    return code, captured.out + captured.err


def test_an_uneven_series_is_refused_by_default_naming_its_positions_and_the_option(
    workspace: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    uneven_case(tmp_path / "src")
    code, output = ingest(capsys, tmp_path / "src", "gappy")
    assert code == 2
    assert (
        "imagesTr/case_000: DICOM series slices are not evenly spaced: positions along the slice normal "
        "0, 1, 2, 5, 6 mm, steps of 1, 3 mm"
    ) in output
    assert "--resample-uneven" in output
    assert not (workspace.datasets_dir / "gappy").exists()


def test_resampling_interpolates_intensities_linearly_and_takes_the_nearest_label_slice(tmp_path: Path) -> None:
    series = uneven_case(tmp_path / "src")
    with pytest.raises(VolumeReadError, match="not evenly spaced"):
        read_dicom_series(series)
    image = read_dicom_series(series, resample_uneven=True)
    assert image.shape == (8, 8, 7) and np.allclose(image.spacing, EVEN)
    assert np.allclose(image.affine, dicom_affine(EVEN, ORIGIN))  # the even grid's, from the first position
    assert np.allclose(image.data[0, 0], [0, 10, 20, 30, 40, 50, 60])  # 3, 4 mm: 20 + (50 - 20) * 1/3, * 2/3
    assert np.allclose(image.data[5, 2], np.array([0, 10, 20, 30, 40, 50, 60]) + 5)
    assert image.resampled is not None and image.resampled.positions == KEPT

    label = read_dicom_seg(tmp_path / "src" / "labelsTr" / "case_000.dcm", series, resample_uneven=True)
    assert np.allclose(label.affine, image.affine)
    # grid 3 mm is nearest to the file at 2 mm (j = 2), 4 mm to the one at 5 mm (j = 3): classes copied, not blended
    columns = [np.flatnonzero(label.data[:, 0, k]).tolist() for k in range(7)]
    assert columns == [[0], [1], [2], [2], [3], [3], [4]]
    assert set(np.unique(label.data)) == {0.0, 1.0}


def test_ingest_resample_uneven_stores_the_even_grid_and_records_it(
    workspace: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    uneven_case(tmp_path / "src")
    code, output = ingest(capsys, tmp_path / "src", "mended", "--resample-uneven")
    assert code == 0, output
    assert "resampled case_000: 5 slices at steps of 1, 3 mm resampled to 7 slices 1 mm apart" in output
    manifest = load_manifest(workspace.datasets_dir, "mended")
    (volume,) = manifest.volumes
    assert volume.shape == (8, 8, 7) and np.allclose(volume.spacing, EVEN) and volume.total_slices == 7
    assert volume.resampled_from is not None and volume.resampled_from.positions == KEPT
    stored = json.loads((workspace.datasets_dir / "mended" / MANIFEST_FILE).read_text(encoding="utf-8"))
    assert stored["volumes"][0]["resampled_from"] == {
        "positions": [0.0, 1.0, 2.0, 5.0, 6.0],
        "steps": [1.0, 3.0],
        "spacing": 1.0,
        "slices": 7,
    }
    assert [pair.foreground for pair in manifest.pairs] == [(0.125,)] * 7  # one label column per slice, none lost


def test_resampling_refuses_duplicates_and_a_nifti_label(
    workspace: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    series = uneven_case(tmp_path / "twice")
    copy = pydicom.dcmread(series / "slice002.dcm")
    copy.SOPInstanceUID = pydicom.uid.generate_uid()
    copy.save_as(series / "slice002-copy.dcm")
    code, output = ingest(capsys, tmp_path / "twice", "twice", "--resample-uneven")
    assert code == 2
    assert "imagesTr/case_000: DICOM series has 1 duplicated slice position(s): slice002" in output
    assert "contradictory data" in output

    uneven_case(tmp_path / "nifti", label="nifti")
    code, output = ingest(capsys, tmp_path / "nifti", "nifti", "--resample-uneven")
    assert code == 2
    assert "labelsTr/case_000.nii.gz: its image is an unevenly spaced DICOM series, resampled" in output
    assert "give the label as a DICOM-SEG" in output and "resample both image and label" in output
    assert not (workspace.datasets_dir / "twice").exists() and not (workspace.datasets_dir / "nifti").exists()


def test_a_resampled_grid_too_large_for_memory_is_refused_before_interpolating(tmp_path: Path) -> None:
    series = uneven_case(tmp_path / "src")
    far = pydicom.dcmread(series / "slice006.dcm")
    far.ImagePositionPatient = [0.0, 0.0, 5000.0]  # steps 1, 1, 3, 4995 mm: median 2 mm, a grid of 2501 slices
    far.save_as(series / "slice006.dcm")
    with pytest.raises(VolumeReadError, match="resampled onto an even grid, the series 8x8x2501 = 160064 voxels"):
        read_dicom_series(series, 1 << 19, resample_uneven=True)  # 640 KiB as float32; the 5 files take 1.3 KiB


def test_predict_refuses_an_uneven_series_unless_asked_to_resample_it(
    workspace: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    uneven_case(tmp_path / "src")
    assert ingest(capsys, tmp_path / "src", "mended", "--resample-uneven")[0] == 0
    manifest = load_manifest(workspace.datasets_dir, "mended")
    model_config = config_from_params({"architecture": "ClassicUNet", "unet_start_filters": 4, "unet_depth": 2}, 1, 2)
    torch.manual_seed(0)
    config = BundleConfig(
        model=model_config.to_dict(),
        image_size=32,
        channels=1,
        classes=manifest.classes,
        preprocessing=volume_preprocessing(manifest),
    )
    bundle = save_bundle(build_model(model_config).eval(), config, tmp_path / "bundle")
    scans = str(tmp_path / "src" / "imagesTr")

    assert main(["predict", "--model", str(bundle), "--volumes", scans, "--out", str(tmp_path / "refused")]) == 0
    output = capsys.readouterr().err
    assert "0 label volume(s) written, 1 skipped" in output
    assert "skipped case_000: DICOM series slices are not evenly spaced" in output and "--resample-uneven" in output

    out = tmp_path / "labels"
    assert main(["predict", "--model", str(bundle), "--volumes", scans, "--out", str(out), "--resample-uneven"]) == 0
    output = capsys.readouterr().out
    assert "1 label volume(s) written, 0 skipped" in output
    assert "resampled case_000: 5 slices at steps of 1, 3 mm resampled to 7 slices 1 mm apart" in output
    written = nib.load(str(out / "case_000.nii.gz"))
    assert written.shape == (8, 8, 7) and np.allclose(written.affine, dicom_affine(EVEN, ORIGIN))


def test_the_dashboards_checkbox_reaches_the_option(workspace: Settings) -> None:
    from streamlit.testing.v1 import AppTest

    uneven_case(workspace.server_import_roots[0] / "uneven")
    at = AppTest.from_file(str(Path(__file__).resolve().parents[1] / "app" / "main.py"), default_timeout=60).run()
    assert at.checkbox(key="ds.vol_resample").value is False  # off by default
    at.text_input(key="ds.vol_path").input("uneven").run()
    at.text_input(key="ds.vol_name").input("uneven").run()
    at.checkbox(key="ds.vol_resample").check().run()
    at.button(key="ds.vol_go").click().run()
    assert not at.exception and not any("evenly spaced" in e.value for e in at.error)
    (volume,) = load_manifest(workspace.datasets_dir, "uneven").volumes
    assert volume.shape == (8, 8, 7) and volume.resampled_from is not None
    rows = [frame.value for frame in at.dataframe if "resampled" in frame.value.columns]  # the statistics' table
    assert rows and rows[0]["resampled"].tolist() == ["5 slices at steps of 1, 3 mm resampled to 7 slices 1 mm apart"]
