"""Fold ensembles: the trial stores every fold model and the ensemble's test score; export --ensemble
writes the k models, and SegTune's predict and the standalone predict.py average them alike."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from core.contract import ArtifactKind, TrialAttr
from core.data.tensors import ImageSet
from core.deploy import standalone_predict
from core.deploy.export import export_ensemble
from core.deploy.predict import predict_folder
from core.modeling.bundle import BundleError, ensemble_members, load_models
from core.runtime.storage import open_artifact_store
from core.settings import Settings
from core.training.ensemble import FoldEnsemble


class Constant(torch.nn.Module):
    def __init__(self, logit: float):
        super().__init__()
        self.logit = logit

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return torch.full((len(images), 1, *images.shape[-2:]), self.logit)


def test_the_ensemble_decides_on_the_averaged_probabilities() -> None:
    test = ImageSet(torch.zeros(2, 1, 8, 8, dtype=torch.uint8), torch.ones(2, 8, 8, dtype=torch.uint8), ("a", "b"))
    ensemble = FoldEnsemble(test, batch_size=1)
    ensemble.add(Constant(3.0))  # sure of foreground
    assert ensemble.metrics("binary", 2, None) is None  # one member is no ensemble
    ensemble.add(Constant(-1.0))  # leaning to background: the average still says foreground
    assert ensemble.metrics("binary", 2, None)["dice"] == 1.0
    ensemble.add(Constant(-8.0))  # now the average is below 0.5
    assert ensemble.metrics("binary", 2, None)["dice"] == 0.0
    assert FoldEnsemble(None, 1).metrics("binary", 2, None) is None


@pytest.fixture(scope="module")
def cv_study(tmp_path_factory: pytest.TempPathFactory):
    from core.data.demo import create_demo_dataset
    from core.runtime.tuning import run_study
    from core.search.validation import spec_from_dict
    from tests.helpers.studies import module_workspace

    with module_workspace(tmp_path_factory.mktemp("ensemble")) as settings:
        create_demo_dataset(settings.datasets_dir, count=16, size=64)
        spec = spec_from_dict(
            {
                "name": "folds",
                "dataset": "demo-cells",
                "image_size": 32,
                "sampler": "random",
                "pruner": "none",
                "budget": {"n_trials": 1, "max_epochs": 2},
                "preview_count": 2,
                "cv": {"folds": 2},
                "search_space": {
                    "architecture": "ClassicUNet",
                    "unet_start_filters": 4,
                    "unet_depth": 2,
                    "batch_size": 4,
                    "epochs": 2,
                    "lr": 3e-3,
                },
            }
        )
        yield run_study(spec, settings, device="cpu"), settings


def test_a_cross_validated_trial_stores_every_fold_model_and_the_ensemble_score(cv_study) -> None:
    study, _ = cv_study
    attrs = study.trials[0].user_attrs
    fold_weights = attrs[TrialAttr.ARTIFACTS][ArtifactKind.FOLD_WEIGHTS]
    assert len(fold_weights) == 2 and fold_weights[0] == attrs[TrialAttr.ARTIFACTS][ArtifactKind.WEIGHTS]
    ensemble = attrs[TrialAttr.ENSEMBLE_TEST_METRICS]
    assert 0.0 <= ensemble["dice"] <= 1.0 and "nsd" in ensemble and "hd95" in ensemble
    assert len(attrs[TrialAttr.FOLD_TEST_METRICS]) == 2


def test_export_ensemble_writes_k_models_and_both_predicts_agree(cv_study, tmp_path: Path) -> None:
    study, settings = cv_study
    report = export_ensemble(study, None, open_artifact_store(settings), tmp_path)
    folder = report.folder
    members = ensemble_members(folder)
    assert [m.name for m in members] == ["fold0", "fold1"]
    assert all((m / "model.onnx").is_file() for m in members) and (folder / "predict.py").is_file()
    assert all(f.max_abs_diff is not None and f.max_abs_diff < 1e-3 for f in report.files if f.format == "onnx")
    models, config = load_models(folder)
    assert len(models) == 2 and config.image_size == 32

    images = tmp_path / "images"
    images.mkdir()
    rng = np.random.default_rng(0)
    for index in range(3):
        Image.fromarray((rng.random((48, 40)) * 255).astype(np.uint8)).save(images / f"img{index}.png")
    ours = predict_folder(folder, images, tmp_path / "ours", progress=False)
    written, skipped = standalone_predict.predict_folder(images, tmp_path / "theirs", folder)
    assert written == 3 and not skipped and len(ours.written) == 3
    for path in ours.written:
        mine, standalone = np.asarray(Image.open(path)), np.asarray(Image.open(tmp_path / "theirs" / path.name))
        assert mine.shape == (48, 40) and (mine == standalone).mean() > 0.999


def test_a_trial_without_fold_models_and_hostile_member_names_are_refused(workspace: Settings, tmp_path: Path) -> None:
    from tests.helpers.studies import tiny_study

    study = tiny_study(workspace, "single")
    with pytest.raises(BundleError, match="stored no fold models"):
        export_ensemble(study, None, open_artifact_store(workspace), tmp_path)
    (tmp_path / "ensemble.json").write_text('{"format": "segtune-ensemble", "members": ["../../etc"]}')
    with pytest.raises(BundleError, match="fold0, fold1"):
        ensemble_members(tmp_path)
