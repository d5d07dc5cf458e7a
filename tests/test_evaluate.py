"""``evaluate``: per-case scores of a folder of masks or of a model on images, bad files reported, a CSV."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from core.cli import main
from core.deploy.evaluate import CSV_COLUMNS, EvaluateError, evaluate_folders, evaluate_model
from core.deploy.predict import predict_folder
from core.modeling.bundle import BundleConfig


def square(side: int, top: int, left: int, size: int = 48) -> np.ndarray:
    mask = np.zeros((size, size), np.uint8)
    mask[top : top + side, left : left + side] = 1
    return mask


def write(folder: Path, name: str, mask: np.ndarray) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    Image.fromarray(mask).save(folder / f"{name}.png")


@pytest.fixture
def folders(tmp_path: Path) -> tuple[Path, Path]:
    truth, pred = tmp_path / "truth", tmp_path / "pred"
    write(truth, "exact", square(10, 5, 5))
    write(pred, "exact", square(10, 5, 5) * 255)  # as predict writes binary masks
    write(truth, "shifted", square(10, 5, 5))
    write(pred, "shifted", square(10, 5, 7) * 255)
    write(truth, "missed", square(10, 5, 5))
    write(pred, "missed", np.zeros((48, 48), np.uint8))
    write(truth, "no-prediction", square(4, 1, 1))
    write(pred, "no-truth", square(4, 1, 1))
    write(truth, "small", square(4, 1, 1))
    write(pred, "small", square(4, 1, 1, size=24))  # another size
    write(truth, "broken", square(4, 1, 1))
    (pred / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not a png")
    write(truth, "=HYPERLINK(1)", square(10, 5, 5))
    write(pred, "=HYPERLINK(1)", square(10, 5, 5))
    return pred, truth


def test_a_folder_of_masks_is_scored_per_case_and_bad_files_are_named(folders: tuple[Path, Path]) -> None:
    pred, truth = folders
    report = evaluate_folders(pred, truth)
    assert report.classes == ("background", "class 1")
    assert sorted(report.cases) == ["=HYPERLINK(1)", "exact", "missed", "shifted"]
    assert report.cases["exact"]["dice"] == 1.0 and report.cases["exact"]["hd95"] == 0.0
    assert report.cases["shifted"]["dice"] == pytest.approx(2 * 80 / 200) and report.cases["shifted"][
        "hd95"
    ] == pytest.approx(2)
    assert report.cases["missed"]["dice"] == 0.0 and report.cases["missed"]["hd95"] == pytest.approx(math.hypot(48, 48))
    skipped = dict(report.skipped)
    assert skipped["no-prediction"] == "ground truth without a prediction"
    assert skipped["no-truth"] == "no ground-truth mask of that name"
    assert skipped["small"] == "prediction is 24x24 px, ground truth 48x48 px"
    assert skipped["broken"].startswith("unreadable mask broken.png")
    text = report.summary()
    assert "4 case(s) scored, 4 file(s) skipped" in text and "dice  mean 0.7000" in text and "median" in text
    assert "worst by Dice: missed 0.000, shifted 0.800" in text


def test_the_csv_has_one_row_per_case_and_class_and_escapes_formulas(
    folders: tuple[Path, Path], tmp_path: Path
) -> None:
    pred, truth = folders
    path = evaluate_folders(pred, truth, ("background", "cell")).write_csv(tmp_path / "out" / "report.csv")
    with open(path, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert tuple(rows[0]) == CSV_COLUMNS
    assert {row["name"] for row in rows} == {"'=HYPERLINK(1)", "exact", "missed", "shifted"}  # a formula stays text
    shifted = next(row for row in rows if row["name"] == "shifted")
    assert shifted["class"] == "cell" and float(shifted["hd95"]) == pytest.approx(2) and shifted["height"] == "48"


def test_classes_outside_the_named_ones_and_missing_folders_are_reported(
    folders: tuple[Path, Path], tmp_path: Path
) -> None:
    pred, truth = folders
    write(truth, "three", square(4, 1, 1) * 3)
    write(pred, "three", square(4, 1, 1) * 3)
    report = evaluate_folders(pred, truth, ("background", "cell"))
    assert dict(report.skipped)["three"] == "ground truth holds class 3, but there are 2 classes (pass --classes)"
    with pytest.raises(EvaluateError, match="does not exist"):
        evaluate_folders(tmp_path / "nowhere", truth)
    with pytest.raises(EvaluateError, match="at least one class"):
        evaluate_folders(pred, truth, ("background",))


class Bright(torch.nn.Module):
    """Foreground where the pixel is bright."""

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return 20.0 * (images[:, :1] - 0.5)


def test_a_model_is_scored_on_512_px_images_at_their_own_size(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A model trained at 32 px scores 512-px images on 512-px masks, and predict writes 512-px masks."""
    images, truth = tmp_path / "images", tmp_path / "masks"
    for index in range(2):
        mask = square(200 + 40 * index, 100, 120, size=512)
        write(images, f"case{index}", mask * 255)
        write(truth, f"case{index}", mask)
    config = BundleConfig(
        model={"architecture": "ClassicUNet"}, image_size=32, channels=1, classes=("background", "cell")
    )
    monkeypatch.setattr("core.deploy.predict.load_models", lambda folder: ([Bright()], config))
    report = evaluate_model(tmp_path / "bundle", images, truth)
    assert all((row["height"], row["width"]) == (512, 512) for row in report.rows)
    assert 0.95 < report.cases["case0"]["dice"] < 1.0  # the 32-px decision, blown up, misses a few edge pixels
    with_tta = evaluate_model(tmp_path / "bundle", images, truth, tta=True)
    assert with_tta.cases["case1"]["dice"] == pytest.approx(report.cases["case1"]["dice"], abs=0.02)
    written = predict_folder(tmp_path / "bundle", images, tmp_path / "out", progress=False, save_probabilities=True)
    mask = np.asarray(Image.open(written.written[0]))
    assert mask.shape == (512, 512)
    # what predict writes is exactly what evaluate scored
    folder_report = evaluate_folders(tmp_path / "out", truth, ("background", "cell"))
    assert folder_report.cases["case0"] == pytest.approx(report.cases["case0"])
    probs = np.load(tmp_path / "out" / "case0.npz")["probabilities"]
    assert probs.shape == (2, 512, 512) and np.allclose(probs.sum(0), 1, atol=1e-2)


def test_the_command_prints_the_summary_and_writes_the_csv(
    folders: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    pred, truth = folders
    assert main(["evaluate", "--pred", str(pred), "--masks", str(truth), "--out", str(tmp_path / "r.csv")]) == 0
    out = capsys.readouterr().out
    assert "4 case(s) scored" in out and "per-case report" in out and (tmp_path / "r.csv").is_file()
    assert main(["evaluate", "--model", str(tmp_path), "--masks", str(truth)]) == 2
    assert "--model needs --images" in capsys.readouterr().err
