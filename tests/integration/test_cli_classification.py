"""A classification study through the real CLI on real CT: ``tune`` (3-fold CV), ``export --format all``, ``predict`` to
a CSV.

The dataset is the liver / no-liver crop set from ``../shared/datasets/ct_liver_msd``
(tests/helpers/classification_sets.py), four volumes, at 64 px; MobileNetV2 with a small head, 2 epochs, one trial.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from core.settings import load_settings
from tests.helpers.classification_sets import LIVER, liver_crops
from tests.helpers.cli import cli

pytestmark = pytest.mark.slow


def test_tune_export_and_predict_a_classification_study(env: dict[str, str], tmp_path: Path) -> None:
    manifest = liver_crops(load_settings(env).datasets_dir, "liver-crops", volumes=4)
    spec = {
        "name": "cli-classify",
        "dataset": "liver-crops",
        "task": "classification",
        "image_size": 64,
        "sampler": "random",
        "pruner": "none",
        "budget": {"n_trials": 1, "max_epochs": 2},
        "cv": {"folds": 3},
        "split": {"test": 0.25},
        "search_space": {
            "architecture": "MobileNetV2",
            "head_kernel_size": {"choices": [1, 3]},
            "head_filters": 8,
            "head_dense_units": 8,
            "batch_size": 8,
            "epochs": 2,
            "lr": 3e-3,
        },
    }
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    tuned = cli(env, "tune", "--spec", str(tmp_path / "spec.json"), "--device", "cpu", timeout=900)
    assert tuned.returncode == 0, tuned.stderr
    assert "study cli-classify: 1 complete" in tuned.stdout and "val_balanced_accuracy" in tuned.stdout
    assert "Constant: majority class: Validation Balanced accuracy" in tuned.stdout

    exported = cli(env, "export", "--study", "cli-classify", "--format", "all", "--out", str(tmp_path / "export"))
    assert exported.returncode == 0, exported.stderr
    assert "onnx" in exported.stdout and "max abs diff vs PyTorch" in exported.stdout
    bundle = next((tmp_path / "export").iterdir())

    images = tmp_path / "images"
    images.mkdir()
    for pair in manifest.pairs[:5]:
        (images / Path(pair.image).name).write_bytes(
            (load_settings(env).datasets_dir / "liver-crops" / pair.image).read_bytes()
        )
    predicted = cli(
        env, "predict", "--model", str(bundle), "--images", str(images), "--out", str(tmp_path / "labels.csv")
    )
    assert predicted.returncode == 0, predicted.stderr
    rows = list(csv.DictReader((tmp_path / "labels.csv").open()))
    assert len(rows) == 5 and all(row["label"] in LIVER for row in rows)
    assert all(abs(float(row["p_no_liver"]) + float(row["p_liver"]) - 1) < 1e-4 for row in rows)

    refused = cli(env, "tune", "--spec", str(_segmentation_spec(tmp_path)), "--device", "cpu")
    assert refused.returncode != 0 and "Traceback" not in refused.stderr
    assert "is a classification dataset" in refused.stderr + refused.stdout


def _segmentation_spec(folder: Path) -> Path:
    path = folder / "segmentation.json"
    path.write_text(
        json.dumps({"name": "wrong-task", "dataset": "liver-crops", "image_size": 64, "budget": {"n_trials": 1}})
    )
    return path
