"""Hostile or careless dataset sources, through ``python -m core ingest`` and the dashboard's confined
folder path: special files (FIFOs), odd typed paths, and a disk that fills up mid-ingest.

Tests that could hang on a regression carry a timeout, so that CI fails fast instead.
"""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from core.cli import build_parser, main
from core.data.ingest import ingest_dataset
from core.data.manifest import DatasetError
from core.data.server_folders import resolve_import_source
from core.settings import Settings

build_parser()  # imports every command (torch among them) now, not inside a test's time cap


def save(path: Path, pixels: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)
    return path


def pairs(root: Path, count: int = 2) -> Path:
    for i in range(count):
        save(root / "images" / f"p{i}.png", np.full((16, 16), 40 * i, np.uint8))
        save(root / "masks" / f"p{i}.png", np.eye(16, dtype=np.uint8) * 255)
    return root


def classes(root: Path) -> Path:
    for i, label in enumerate(("cat", "dog", "cat", "dog")):
        save(root / label / f"i{i}.png", np.full((16, 16), 30 * i, np.uint8))
    return root


def leftovers(store: Path) -> list[str]:
    return sorted(p.name for p in store.iterdir()) if store.exists() else []


def cli_refusal(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    assert main(["ingest", *args]) == 2
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    return captured.err


# --- item 2: FIFOs and other special files -------------------------------------------------------


@pytest.mark.timeout(20)
@pytest.mark.parametrize("layout", ["pairs", "classes", "volumes"])
def test_a_fifo_in_the_source_is_refused_by_name_before_anything_opens_it(
    workspace: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str], layout: str
) -> None:
    if layout == "pairs":
        source, fifo = pairs(tmp_path / "src"), "images/p9.png"
        save(source / "masks" / "p9.png", np.eye(16, dtype=np.uint8))
    elif layout == "classes":
        source, fifo = classes(tmp_path / "src"), "cat/stuck.png"
    else:
        source, fifo = tmp_path / "src", "imagesTr/case_000.nii.gz"
        (source / "imagesTr").mkdir(parents=True)
        (source / "labelsTr").mkdir()
    os.mkfifo(source / fifo)  # opening it would block forever: no writer ever comes
    err = cli_refusal(capsys, str(source), "--name", "ds", *(["--volumes"] if layout == "volumes" else []))
    assert f"{fifo}: is a named pipe (FIFO), not a regular file" in err
    assert leftovers(workspace.datasets_dir) == []  # no .ingest-* folder either


@pytest.mark.timeout(20)
def test_a_fifo_given_as_the_source_itself_is_refused(
    workspace: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    os.mkfifo(tmp_path / "data.zip")
    err = cli_refusal(capsys, str(tmp_path / "data.zip"), "--name", "ds")
    assert "is a named pipe (FIFO)" in err
    assert leftovers(workspace.datasets_dir) == []


@pytest.mark.timeout(20)
def test_special_files_and_link_loops_on_the_dashboards_confined_path(tmp_path: Path) -> None:
    root = (tmp_path / "imports").resolve()
    source = pairs(root / "cells")
    os.mkfifo(source / "masks" / "p1_mask.png")
    os.symlink("loop_b", source / "images" / "loop_a.png")
    os.symlink("loop_a.png", source / "images" / "loop_b")
    os.symlink("gone.png", source / "images" / "broken.png")
    with pytest.raises(DatasetError) as info:
        ingest_dataset(Path("cells"), "ds", tmp_path / "store", confine_to=[root])
    problems = info.value.problems
    assert problems["masks/p1_mask.png"].startswith("is a named pipe (FIFO)")
    assert "loops back on itself" in problems["images/loop_a.png"]
    assert "does not exist" in problems["images/broken.png"]
    assert str(tmp_path) not in str(info.value)
    assert leftovers(tmp_path / "store") == []


# --- item 7: what a user may type as "Folder on the server" --------------------------------------


@pytest.mark.parametrize(
    ("typed", "expected"),
    [
        ("cells\x00/../../etc", "control character"),
        ("cells\nimages", "control character"),
        ("x" * 300, "too long"),
        ("/".join(["deep"] * 1200), "too long"),
        ("loop", "loops back on itself"),
        ("loop/images", "loops back on itself"),
    ],
)
def test_odd_typed_paths_get_a_clean_message_without_server_paths(tmp_path: Path, typed: str, expected: str) -> None:
    root = (tmp_path / "imports").resolve()
    root.mkdir()
    os.symlink("loop", root / "loop")
    with pytest.raises(DatasetError) as info:
        resolve_import_source(typed, [root])
    message = info.value.problems["source"]
    assert expected in message
    assert str(tmp_path) not in message and "Error" not in message


def test_a_link_loop_outside_the_roots_says_only_outside(tmp_path: Path) -> None:
    root = (tmp_path / "imports").resolve()
    root.mkdir()
    os.symlink("elsewhere", tmp_path / "elsewhere")
    with pytest.raises(DatasetError) as info:
        resolve_import_source(str(tmp_path / "elsewhere"), [root])
    assert "outside the folders the dashboard may read" in info.value.problems["source"]
    assert "loops back" not in info.value.problems["source"]


# --- disk full --------------------------------------------------------------------------------------


def test_a_full_disk_during_ingest_fails_clearly_and_leaves_nothing(
    workspace: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    source = pairs(tmp_path / "src")

    def full(*args: object, **kwargs: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(shutil, "copyfile", full)
    err = cli_refusal(capsys, str(source), "--name", "ds")
    assert "datasets is full" in err and "nothing was stored" in err
    assert leftovers(workspace.datasets_dir) == []


# --- item 10: odd class labels and spreadsheet formulas ---------------------------------------------


def test_control_characters_in_declared_classes_are_refused(
    workspace: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    err = cli_refusal(capsys, str(pairs(tmp_path / "src")), "--name", "ds", "--classes", "background,tu\x00mour")
    assert "class name 'tu\\x00mour' holds control character(s) U+0000" in err
    assert leftovers(workspace.datasets_dir) == []


def test_control_characters_in_labels_csv_and_class_folders_are_refused(
    workspace: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    listed = tmp_path / "listed"
    for i in range(4):
        save(listed / f"i{i}.png", np.full((16, 16), 30 * i, np.uint8))
    (listed / "labels.csv").write_text('name,label\ni0.png,cat\ni1.png,cat\ni2.png,do\x00g\ni3.png,=HYPERLINK("x")\n')
    err = cli_refusal(capsys, str(listed), "--name", "ds")
    assert "labels.csv: class name 'do\\x00g' holds control character(s) U+0000" in err
    assert "HYPERLINK" not in err  # a formula-looking label is allowed: it is escaped where CSVs are written
    folders = classes(tmp_path / "folders")
    os.rename(folders / "dog", folders / "do\x07g")
    err = cli_refusal(capsys, str(folders), "--name", "ds")
    assert "class name 'do\\x07g' holds control character(s) U+0007" in err
    assert leftovers(workspace.datasets_dir) == []


def test_control_characters_in_an_msd_dataset_json_are_refused(
    workspace: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from tests.helpers.volume_data import msd_folder

    source = msd_folder(tmp_path / "msd", 1)
    (source / "dataset.json").write_text('{"labels": {"0": "background", "1": "liv\\u0000er"}}')
    err = cli_refusal(capsys, str(source), "--name", "ds", "--volumes")
    assert "class name 'liv\\x00er' holds control character(s) U+0000" in err
    assert leftovers(workspace.datasets_dir) == []


@pytest.mark.parametrize(
    ("cell", "written"),
    [
        ('=HYPERLINK("http://x")', '\'=HYPERLINK("http://x")'),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("+1+1", "'+1+1"),
        ("-cmd", "'-cmd"),
        ("\tx", "'\tx"),
        ("\rx", "'\rx"),
        ("-0.5", "-0.5"),
        ("+3", "+3"),
        ("a=b", "a=b"),
        (0.25, 0.25),
        ("", ""),
    ],
)
def test_csv_cells_a_spreadsheet_would_run_get_an_apostrophe(cell: object, written: object) -> None:
    from core.data.csv_safe import safe_cell, safe_row

    assert safe_cell(cell) == written
    assert safe_row([cell, "ok"]) == [written, "ok"]


# --- item 11: an MSD folder without --volumes, a corrupt JPEG -----------------------------------------


def test_an_msd_folder_without_volumes_is_pointed_at_the_volume_ingest(
    workspace: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from tests.helpers.volume_data import msd_folder

    source = msd_folder(tmp_path / "Task09_Spleen", 2)
    (source / "dataset.json").write_text('{"labels": {"0": "background", "1": "spleen"}}')
    err = cli_refusal(capsys, str(source), "--name", "spleen")
    assert "medical volume dataset" in err and "--volumes" in err
    assert "unsupported file type" not in err and err.count("\n  - ") == 1  # one line, not one per file
    assert leftovers(workspace.datasets_dir) == []


def test_a_corrupt_jpeg_is_reported_as_corrupt_even_without_its_mask(
    workspace: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = pairs(tmp_path / "src")
    save(source / "images" / "scan.jpg", np.full((16, 16, 3), 90, np.uint8))
    whole = (source / "images" / "scan.jpg").read_bytes()
    (source / "images" / "scan.jpg").write_bytes(whole[: len(whole) // 2])  # cut short, as an interrupted upload
    (source / "images" / "junk.jpg").write_bytes(b"not a jpeg at all")
    save(source / "images" / "alone.png", np.zeros((16, 16), np.uint8))
    err = cli_refusal(capsys, str(source), "--name", "ds")
    assert "images/scan.jpg: unreadable or corrupt image" in err
    assert (
        "images/junk.jpg: unreadable or corrupt image: cannot identify image file 'images/junk.jpg'" in err
    )  # no server path
    assert "1 image(s) without a mask: images/alone.png" in err
    assert str(tmp_path) not in err


def test_a_dicom_series_folder_without_volumes_is_pointed_at_the_volume_ingest_but_2d_pngs_are_not(
    workspace: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from tests.helpers.volume_data import dicom_series, phantom

    dicom_series(tmp_path / "ct" / "imagesTr" / "case_000", phantom(0)[0])
    assert "medical volume dataset" in cli_refusal(capsys, str(tmp_path / "ct"), "--name", "ct")
    save(
        tmp_path / "nnunet2d" / "imagesTr" / "a_0000.png", np.zeros((16, 16), np.uint8)
    )  # nnU-Net's 2D layout: not volumes
    save(tmp_path / "nnunet2d" / "labelsTr" / "a.png", np.zeros((16, 16), np.uint8))
    assert "medical volume dataset" not in cli_refusal(capsys, str(tmp_path / "nnunet2d"), "--name", "flat")


def test_a_full_disk_while_unpacking_a_zip_is_not_called_a_corrupt_zip(
    workspace: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from core.data import archives

    archive = shutil.make_archive(str(tmp_path / "cells"), "zip", pairs(tmp_path / "src"))

    def full(*args: object, **kwargs: object) -> None:
        raise OSError(errno.EDQUOT, "Disk quota exceeded")

    monkeypatch.setattr(archives, "_copy_entry", full)
    err = cli_refusal(capsys, archive, "--name", "ds")
    assert "datasets is full" in err and "corrupt" not in err
    assert leftovers(workspace.datasets_dir) == []
