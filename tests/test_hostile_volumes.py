"""Hostile medical volumes through ``python -m core ingest --volumes`` and the dashboard's path: headers
that declare more voxels than memory holds, and DICOM series with missing, duplicated or unevenly
spaced slices. Memory and time caps are in the tests, so that a regression fails fast."""

from __future__ import annotations

import gzip
import tracemalloc
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest

from core.cli import build_parser, main
from core.errors import SegTuneError
from core.settings import Settings, load_settings
from tests.helpers.volume_data import dicom_series, msd_folder, phantom, write_nifti

build_parser()  # imports every command (torch among them) now, not inside a test's time cap

HUGE = (1536, 1024, 1024)  # 1.5 G voxels: 6 GiB as float32


def lying_nifti(path: Path, shape: tuple[int, ...] = HUGE) -> Path:
    """A .nii.gz of a few hundred bytes whose header declares ``shape`` (uint8 voxels)."""
    header = nib.Nifti1Header()
    header.set_data_shape(shape)
    header.set_data_dtype(np.uint8)
    header.set_sform(np.eye(4), code=1)
    header["vox_offset"] = 352
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(header.binaryblock + b"\0" * 4 + b"\0" * 4096))
    return path


def ingest(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    code = main(["ingest", *args, "--volumes", "--window", "abdomen"])
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    return code, captured.out + captured.err


def leftovers(store: Path) -> list[str]:
    return sorted(p.name for p in store.iterdir()) if store.exists() else []


# --- item 4: headers that declare huge volumes ------------------------------------------------------


@pytest.mark.timeout(30)
def test_a_nifti_header_declaring_a_huge_volume_is_refused_before_reading(
    workspace: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = tmp_path / "src"
    lying_nifti(source / "imagesTr" / "case_000.nii.gz")
    lying_nifti(source / "labelsTr" / "case_000.nii.gz")
    assert (source / "imagesTr" / "case_000.nii.gz").stat().st_size < 2000
    tracemalloc.start()
    try:
        code, output = ingest(capsys, str(source), "--name", "bomb")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert code == 2
    assert (
        "imagesTr/case_000.nii.gz: declares 1536x1024x1024 = 1610612736 voxels, about 6144 MiB in memory, above the "
        "limit of 2048 MiB" in output
    )
    assert "labelsTr/case_000.nii.gz: declares 1536x1024x1024" in output
    assert peak < 64 << 20, f"{peak >> 20} MiB allocated for a refused volume"
    assert leftovers(workspace.datasets_dir) == []


def test_the_volume_limit_comes_from_the_cli_or_the_environment(
    workspace: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    source = msd_folder(tmp_path / "src", 1)  # 40x36x10 float32 voxels: 56 KiB
    source_big = tmp_path / "big"
    image, label = phantom(0, (256, 256, 24))  # 6 MiB as float32
    write_nifti(source_big / "imagesTr" / "case_000.nii.gz", image, np.eye(4))
    write_nifti(source_big / "labelsTr" / "case_000.nii.gz", label, np.eye(4))
    code, output = ingest(capsys, str(source_big), "--name", "big", "--max-volume-mb", "4")
    assert (
        code == 2 and "declares 256x256x24 = 1572864 voxels, about 6 MiB in memory, above the limit of 4 MiB" in output
    )
    monkeypatch.setenv("SEGTUNE_MAX_VOLUME_MB", "5")
    code, output = ingest(capsys, str(source_big), "--name", "big")
    assert code == 2 and "above the limit of 5 MiB" in output
    code, output = ingest(capsys, str(source_big), "--name", "big", "--max-volume-mb", "7")  # the option wins
    assert code == 0, output
    assert ingest(capsys, str(source), "--name", "small")[0] == 0
    with pytest.raises(SystemExit):
        main(["ingest", str(source), "--name", "x", "--volumes", "--max-volume-mb", "0"])
    with pytest.raises(SegTuneError, match="SEGTUNE_MAX_VOLUME_MB must be a whole number above 0, got 'lots'"):
        load_settings({"SEGTUNE_HOME": str(tmp_path / "home"), "SEGTUNE_MAX_VOLUME_MB": "lots"})


def test_a_dicom_series_declaring_huge_slices_is_refused_before_decoding(
    workspace: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    image, label = phantom(0)
    dicom_series(tmp_path / "src" / "imagesTr" / "case_000", image)
    write_nifti(tmp_path / "src" / "labelsTr" / "case_000.nii.gz", label, np.eye(4))
    first = sorted((tmp_path / "src" / "imagesTr" / "case_000").iterdir())[0]
    ds = pydicom.dcmread(first)
    ds.Rows, ds.Columns, ds.NumberOfFrames = 30000, 30000, 2  # the pixel data stays small: the header lies
    ds.save_as(first)
    tracemalloc.start()
    try:
        code, output = ingest(capsys, str(tmp_path / "src"), "--name", "bomb")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert (
        code == 2
        and "imagesTr/case_000: the series of 10 file(s) " in output
        and "above the limit of 2048 MiB" in output
    )
    assert peak < 64 << 20
    assert leftovers(workspace.datasets_dir) == []


# --- item 3: DICOM series with missing, duplicated or unevenly spaced slices ---------------------------


def dicom_case(root: Path) -> Path:
    """An MSD-style case whose image is a 10-slice DICOM series (2.5 mm apart) with its NIfTI label."""
    image, label = phantom(0)
    dicom_series(root / "imagesTr" / "case_000", image)
    write_nifti(root / "labelsTr" / "case_000.nii.gz", label, np.eye(4))
    return root / "imagesTr" / "case_000"


def test_a_series_with_a_missing_slice_is_refused_with_its_positions(
    workspace: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    series = dicom_case(tmp_path / "src")
    (series / "slice003.dcm").unlink()
    (series / "slice004.dcm").unlink()  # positions 100, 102.5, 105, 112.5 ...: once stored as an even 3.2 mm
    code, output = ingest(capsys, str(tmp_path / "src"), "--name", "gappy")
    assert code == 2
    assert (
        "imagesTr/case_000: DICOM series slices are not evenly spaced: positions along the slice normal "
        "100, 102.5, 105, 112.5, 115, 117.5, 120, 122.5 mm, steps of 2.5, 7.5 mm"
    ) in output
    assert "--resample-uneven" in output
    assert leftovers(workspace.datasets_dir) == []


def test_a_series_with_a_duplicated_slice_is_refused_naming_the_files(
    workspace: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    series = dicom_case(tmp_path / "src")
    ds = pydicom.dcmread(series / "slice005.dcm")
    ds.SOPInstanceUID = pydicom.uid.generate_uid()
    ds.save_as(series / "slice005-copy.dcm")
    code, output = ingest(capsys, str(tmp_path / "src"), "--name", "twice")
    assert code == 2
    assert (
        "imagesTr/case_000: DICOM series has 1 duplicated slice position(s): slice005" in output
        and "at 112.5 mm" in output
    )
    assert leftovers(workspace.datasets_dir) == []


def test_small_jitter_in_slice_positions_is_accepted(
    workspace: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    series = dicom_case(tmp_path / "src")
    ds = pydicom.dcmread(series / "slice004.dcm")
    ds.ImagePositionPatient = [
        ds.ImagePositionPatient[0],
        ds.ImagePositionPatient[1],
        float(ds.ImagePositionPatient[2]) + 0.01,
    ]
    ds.save_as(series / "slice004.dcm")  # 0.4 % of the 2.5 mm step: decimal rounding, not a missing slice
    from core.data.volumes import read_dicom_series

    assert read_dicom_series(series).spacing[2] == pytest.approx(2.5)


def test_the_dashboards_volume_path_refuses_an_uneven_series(workspace: Settings) -> None:
    from streamlit.testing.v1 import AppTest

    series = dicom_case(workspace.server_import_roots[0] / "uneven")
    (series / "slice006.dcm").unlink()
    at = AppTest.from_file(str(Path(__file__).resolve().parents[1] / "app" / "main.py"), default_timeout=60).run()
    at.text_input(key="ds.vol_path").input("uneven").run()
    at.text_input(key="ds.vol_name").input("uneven").run()
    at.button(key="ds.vol_go").click().run()
    assert not at.exception
    report = " ".join(e.value for e in at.error)
    assert "imagesTr/case_000" in report and "not evenly spaced" in report and "steps of 2.5, 5 mm" in report
    assert leftovers(workspace.datasets_dir) == []


def test_the_dashboards_volume_path_refuses_a_lying_header_at_the_configured_limit(
    workspace: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("SEGTUNE_MAX_VOLUME_MB", "1")
    source = workspace.server_import_roots[0] / "bomb"
    lying_nifti(source / "imagesTr" / "case_000.nii.gz", (128, 128, 32))  # 2 MiB as float32: above 1 MiB
    lying_nifti(source / "labelsTr" / "case_000.nii.gz", (128, 128, 32))
    at = AppTest.from_file(str(Path(__file__).resolve().parents[1] / "app" / "main.py"), default_timeout=60).run()
    at.text_input(key="ds.vol_path").input("bomb").run()
    at.text_input(key="ds.vol_name").input("bomb").run()
    at.button(key="ds.vol_go").click().run()
    assert not at.exception
    report = " ".join(e.value for e in at.error)
    assert "imagesTr/case_000.nii.gz" in report and "above the limit of 1 MiB" in report
    assert leftovers(workspace.datasets_dir) == []
