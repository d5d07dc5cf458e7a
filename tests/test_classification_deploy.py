"""A classification trial exports (bundle, ONNX, TorchScript, model card), predicts a CSV, and compresses."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from core.cli import build_parser
from core.commands import predict as predict_command
from core.contract import StudyAttr, Task
from core.data.images import read_image
from core.deploy.classify import classify_folder, classify_image, csv_header
from core.deploy.compression.config import CompressionConfig
from core.deploy.compression.measure import trade_off_table
from core.deploy.compression.run import compress_trial, study_compression_data
from core.deploy.export import export_trial
from core.deploy.model_card import classifier_snippet, model_card, segtune_command
from core.deploy.predict import PredictError, predict_folder
from core.modeling.bundle import load_bundle, load_torchscript
from core.runtime.storage import open_artifact_store
from core.search.validation import spec_from_dict
from tests.helpers.classification_sets import BARS, bar_image, tiny_classification_study
from tests.helpers.studies import module_workspace


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory):
    with module_workspace(tmp_path_factory.mktemp("classification-deploy")) as settings:
        study = tiny_classification_study(settings, "deploy")
        yield settings, study


@pytest.fixture(scope="module")
def exported(trained, tmp_path_factory: pytest.TempPathFactory) -> Path:
    settings, study = trained
    return export_trial(study, 0, open_artifact_store(settings), tmp_path_factory.mktemp("export"), ["all"]).folder


def test_export_writes_a_bundle_and_parity_checked_onnx_and_torchscript(exported: Path, trained) -> None:
    settings, study = trained
    assert {p.name for p in exported.iterdir()} >= {
        "model.safetensors",
        "segtune.json",
        "model.onnx",
        "model.torchscript.pt",
        "MODEL_CARD.md",
    }
    model, config = load_bundle(exported)
    assert (
        config.task == Task.CLASSIFICATION and config.classes == BARS and config.model["architecture"] == "MobileNetV2"
    )
    import onnxruntime as ort

    images = torch.rand(3, 1, 64, 64)
    session = ort.InferenceSession(str(exported / "model.onnx"), providers=["CPUExecutionProvider"])
    with torch.no_grad():
        reference = model(images).numpy()
        scripted = load_torchscript(exported / "model.torchscript.pt")(images).numpy()
    assert reference.shape == (3, 2)
    assert np.allclose(session.run(None, {"image": images.numpy()})[0], reference, atol=1e-3)
    assert np.allclose(scripted, reference, atol=1e-4)
    card = (exported / "MODEL_CARD.md").read_text()
    assert (
        "Classification model trained by SegTune" in card and "| Balanced accuracy |" in card and "| Dice |" not in card
    )
    assert f"`{segtune_command(Task.CLASSIFICATION)}` writes one row per image" in card and "classify_folder(" in card
    assert card == model_card(study, study.trials[0])


def _images(folder: Path, count: int = 4) -> Path:
    folder.mkdir(parents=True)
    rng = np.random.default_rng(3)
    for index in range(count):
        Image.fromarray(bar_image(index % 2, rng, 80)).save(folder / f"scan{index}.png")
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not a png")
    (folder / "notes.txt").write_text("not an image")
    return folder


def test_predict_writes_a_csv_of_labels_and_probabilities(exported: Path, tmp_path: Path) -> None:
    images = _images(tmp_path / "images")
    out = tmp_path / "out" / "predictions.csv"
    args = build_parser().parse_args(["predict", "--model", str(exported), "--images", str(images), "--out", str(out)])
    assert predict_command.run(args) == 0
    rows = list(csv.DictReader(out.open()))
    assert list(rows[0]) == csv_header(BARS) == ["file", "label", "confidence", "p_horizontal", "p_vertical"]
    assert [row["file"] for row in rows] == [f"scan{i}.png" for i in range(4)]
    model, config = load_bundle(exported)
    for row in rows:
        probabilities = classify_image(model, config, read_image(images / row["file"]))
        assert [float(row["p_horizontal"]), float(row["p_vertical"])] == pytest.approx(probabilities.tolist(), abs=1e-5)
        assert row["label"] == BARS[int(probabilities.argmax())] and float(row["confidence"]) == pytest.approx(
            probabilities.max(), abs=1e-5
        )
    (images / "scan0.png").rename(images / "=HYPERLINK(x).png")  # a file name a spreadsheet would run
    report = classify_folder(exported, images, tmp_path / "again.csv", progress=False)
    assert "'=HYPERLINK(x).png" in [row["file"] for row in csv.DictReader((tmp_path / "again.csv").open())]
    assert report.rows == 4 and {p.name for p, _ in report.skipped} == {"broken.png", "notes.txt"}
    with pytest.raises(PredictError, match="classification model: it writes labels"):
        predict_folder(exported, images, tmp_path / "masks", progress=False)
    with pytest.raises(PredictError, match="is a folder; a classifier writes one CSV file"):
        classify_folder(exported, images, tmp_path, progress=False)


def test_the_usage_snippet_classifies_with_the_cli_preprocessing(
    exported: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    work = tmp_path / "work"
    shutil.copytree(exported, work)  # the snippet runs from inside the unzipped bundle
    _images(work / "images")
    Image.fromarray(bar_image(1, np.random.default_rng(0), 64)).save(work / "image.png")
    monkeypatch.chdir(work)
    exec(compile(classifier_snippet(), "snippet", "exec"), {})
    assert len(list(csv.DictReader((work / "predictions.csv").open()))) == 4
    assert segtune_command(Task.CLASSIFICATION).endswith("--out predictions.csv")


@pytest.mark.parametrize("method", ["ptq", "prune"])
def test_a_classifier_compresses_and_is_measured_on_classification_metrics(trained, method: str) -> None:
    settings, study = trained
    spec = spec_from_dict(study.user_attrs[StudyAttr.SPEC])
    data = study_compression_data(spec, settings)
    config = CompressionConfig(
        method, finetune_steps=4, calibration_batches=2
    )  # the form's default loss: a segmentation one
    reports, record = compress_trial(study, 0, config, data, open_artifact_store(settings))
    original, variant = reports
    assert set(original.val) == {"accuracy", "balanced_accuracy", "f1_macro"} and set(variant.test) == set(
        original.test
    )
    if method == "ptq":
        assert variant.size_mb < 0.4 * original.size_mb
        assert abs(variant.val["accuracy"] - original.val["accuracy"]) <= 0.25  # a handful of validation images
    else:
        assert variant.nonzero_params < 0.5 * original.nonzero_params
        assert record["params"]["loss"] == "cross_entropy"  # the fine-tune took a classification loss
    assert "val accuracy" in trade_off_table(reports)
