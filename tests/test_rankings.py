"""Results a reviewer would accept: per-image Dice, reference baselines, flags, bootstrap CIs, CV."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from core.contract import Mode, StudyAttr, TrialAttr, TrialFlag
from core.data.ingest import ingest_dataset
from core.metrics.baselines import (
    BASELINE_MARGIN,
    best_baseline,
    is_constant,
    trial_flags,
)
from core.metrics.segmentation import (
    SegmentationMetrics,
    image_dice_scores,
    mean_image_dice,
    pooled_dice,
)
from core.metrics.uncertainty import (
    as_units,
    bootstrap_ci,
    distinguishable,
    point_estimate,
)
from core.modeling.losses import build_loss
from core.results.curves import learning_curves
from core.runtime.tuning import prepare_study, run_study
from core.search.validation import SpecError, spec_from_dict
from core.training.loop import evaluate_detailed
from core.training.study_data import load_study_data
from tests.helpers.machine import shared_dataset
from tests.helpers.studies import copy_pairs, tiny_study


def _logits(pred: np.ndarray) -> torch.Tensor:
    return (torch.as_tensor(pred).float() * 40 - 20).unsqueeze(1)


# --- per-image Dice -----------------------------------------------------------------------------


def test_per_image_dice_leaves_out_images_empty_in_truth_and_prediction() -> None:
    target = np.zeros((3, 2, 2), dtype=np.int64)
    target[0, 0, 0] = 1  # image 0: one foreground pixel, found exactly -> 1.0
    pred = target.copy()
    pred[1, 1, 1] = 1  # image 1: empty truth, one false positive -> 0.0
    # image 2: empty truth, empty prediction -> left out of the mean (nnU-Net's NaN)
    metrics = SegmentationMetrics("binary", 2)
    metrics.update(_logits(pred), torch.as_tensor(target))
    result = metrics.compute()
    scores = image_dice_scores(metrics.image_counts())
    assert scores[0] == 1.0 and scores[1] == 0.0 and np.isnan(scores[2])
    assert result["dice_per_image"] == pytest.approx(0.5)
    assert result["dice"] == pytest.approx(2 / 3)  # pooled: 2*1 / (2*1 + 1)
    assert pooled_dice(metrics.image_counts()) == pytest.approx(result["dice"])


def test_per_image_dice_is_one_when_no_image_has_anything() -> None:
    assert mean_image_dice(np.zeros((4, 1, 3))) == 1.0


def test_per_image_dice_is_an_objective_and_a_leaderboard_column() -> None:
    from core.metrics.catalogue import epoch_objectives, split_metrics

    assert "val_dice_per_image" in epoch_objectives() and "dice_per_image" in split_metrics()
    spec = spec_from_dict({"name": "x", "dataset": "d", "objectives": ["val_dice_per_image"]})
    assert spec.objectives[0].metric == "val_dice_per_image"


# --- baselines and flags on the ISBI membranes ----------------------------------------------------


class AllForeground(torch.nn.Module):
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return torch.full((images.shape[0], 1, *images.shape[2:]), 20.0)


@pytest.fixture
def membranes(workspace, tmp_path: Path):
    ingest_dataset(shared_dataset("em_membrane_isbi2012"), "isbi", workspace.datasets_dir)
    return workspace


def _isbi_spec(name: str, **extra) -> dict:
    return {
        "name": name,
        "dataset": "isbi",
        "image_size": 64,
        "sampler": "random",
        "pruner": "none",
        "budget": {"n_trials": 1, "max_epochs": 1},
        "preview_count": 2,
        "search_space": {
            "architecture": "ClassicUNet",
            "unet_start_filters": 4,
            "unet_depth": 2,
            "batch_size": 8,
            "epochs": 1,
        },
        **extra,
    }


def test_all_foreground_model_on_isbi_is_flagged(membranes) -> None:
    settings = membranes
    spec = spec_from_dict(_isbi_spec("isbi-flags"))
    study = prepare_study(spec, settings)
    baselines = study.user_attrs[StudyAttr.BASELINES]
    assert set(baselines) == {"all_background", "all_foreground"}
    assert baselines["all_foreground"]["val"]["dice"] > 0.8  # the 77 % foreground trap
    assert baselines["all_background"]["val"]["dice"] == 0.0
    assert (
        baselines["all_foreground"]["val"]["recall"] == 1.0 and baselines["all_foreground"]["val"]["specificity"] == 0.0
    )
    assert "test" in baselines["all_foreground"]

    data = load_study_data(spec, settings, torch.device("cpu"))
    evaluation = evaluate_detailed(
        AllForeground(), data.val, 8, loss_fn=build_loss("dice_bce", Mode.BINARY), mode="binary", num_classes=2
    )
    assert evaluation.metrics["dice"] == pytest.approx(baselines["all_foreground"]["val"]["dice"])
    flags = trial_flags(
        predicted=evaluation.predicted_fractions,
        target=evaluation.target_fractions,
        val_metrics=evaluation.metrics,
        baselines=baselines,
        objective="val_dice",
        maximize=True,
    )
    assert flags == [TrialFlag.CONSTANT_PREDICTION, TrialFlag.NOT_BETTER_THAN_BASELINE]


def test_flags_rules() -> None:
    baselines = {"all_foreground": {"val": {"dice": 0.87, "loss": 1.0}}, "all_background": {"val": {"dice": 0.0}}}
    assert best_baseline(baselines, "dice", maximize=True) == ("all_foreground", 0.87)
    fair = dict(
        predicted=np.array([0.3, 0.7]),
        target=np.array([0.25, 0.75]),
        baselines=baselines,
        objective="val_dice",
        maximize=True,
    )
    assert trial_flags(val_metrics={"dice": 0.87 + BASELINE_MARGIN + 0.01}, **fair) == []
    assert trial_flags(val_metrics={"dice": 0.87 + BASELINE_MARGIN / 2}, **fair) == [TrialFlag.NOT_BETTER_THAN_BASELINE]
    assert trial_flags(val_metrics={"dice": 0.5}, **{**fair, "baselines": None}) == []  # old studies: no baselines
    # a tiny-foreground truth predicted sparsely is not "constant"; predicting nothing is
    assert not is_constant(np.array([0.9995, 0.0005]), np.array([0.9994, 0.0006]))
    assert is_constant(np.array([1.0, 0.0]), np.array([0.99, 0.01]))


def test_a_trained_trial_records_flags_counts_and_fraction(membranes) -> None:
    study = run_study(spec_from_dict(_isbi_spec("isbi-trial")), membranes, device="cpu")
    trial = study.trials[0]
    attrs = trial.user_attrs
    assert isinstance(attrs[TrialAttr.FLAGS], list)
    assert 0.0 <= attrs[TrialAttr.VAL_FOREGROUND_FRACTION] <= 1.0
    counts = as_units(attrs[TrialAttr.VAL_IMAGE_COUNTS], "counts")
    assert len(counts) == study.user_attrs[StudyAttr.SPLIT_SIZES]["val"]
    assert point_estimate(counts, "counts") == pytest.approx(attrs[TrialAttr.VAL_METRICS]["dice"], abs=1e-6)
    assert "dice_per_image" in attrs[TrialAttr.VAL_METRICS] and "dice_per_image" in attrs[TrialAttr.TEST_METRICS]


# --- bootstrap confidence intervals -------------------------------------------------------------


def test_bootstrap_ci_contains_point_estimate_and_pairs() -> None:
    rng = np.random.default_rng(1)
    tp = rng.integers(50, 100, size=40)
    counts = np.stack([tp, rng.integers(0, 30, size=40), rng.integers(0, 30, size=40)], axis=1)[:, None, :]
    estimate = point_estimate(counts.astype(float), "counts")
    low, high = bootstrap_ci(counts.astype(float), "counts")
    assert low < estimate < high and high - low < 0.2
    assert distinguishable(counts.astype(float), counts.astype(float), "counts") is False  # identical trials
    worse = counts.astype(float).copy()
    worse[:, 0, 0] //= 3  # a third of the true positives on every image
    worse[:, 0, 2] += counts[:, 0, 0] - worse[:, 0, 0]
    assert distinguishable(counts.astype(float), worse, "counts") is True
    folds = np.array([0.8, 0.82, 0.79])
    fold_low, fold_high = bootstrap_ci(folds, "values")
    assert fold_low <= folds.mean() <= fold_high
    assert bootstrap_ci(folds[:1], "values") is None


# --- cross-validation -----------------------------------------------------------------------------


def test_cv_spec_is_validated() -> None:
    base = {"name": "x", "dataset": "d"}
    assert spec_from_dict({**base, "cv": {"folds": 3}}).folds == 3
    assert spec_from_dict({**base, "cv": {"folds": 3}, "split": {"test": 0.3}}).split.test == 0.3  # only test matters
    assert "cv" not in spec_from_dict(base).to_dict()  # specs stored before CV existed compare equal
    for bad in ({"folds": 1}, {"folds": 11}, {"folds": "3"}, {"k": 3}, 5):
        with pytest.raises(SpecError) as caught:
            spec_from_dict({**base, "cv": bad})
        assert any(key.startswith("cv") for key in caught.value.problems), bad
    with pytest.raises(SpecError) as caught:
        spec_from_dict({**base, "cv": {"folds": 3}, "split": {"k_folds": 3}})
    assert "cv" in caught.value.problems


def test_three_fold_study_on_brain_mri(workspace, tmp_path: Path) -> None:
    ingest_dataset(shared_dataset("brain_mri_lgg_mini"), "lgg", workspace.datasets_dir)
    spec = spec_from_dict(
        {
            "name": "lgg-cv",
            "dataset": "lgg",
            "image_size": 64,
            "sampler": "random",
            "pruner": "median",
            "budget": {"n_trials": 1, "max_epochs": 2},
            "preview_count": 2,
            "cv": {"folds": 3},
            "split": {"group_pattern": r"^(TCGA_[A-Z0-9]+_[A-Z0-9]+)_"},
            "search_space": {
                "architecture": "ClassicUNet",
                "unet_start_filters": 4,
                "unet_depth": 2,
                "batch_size": 4,
                "epochs": 2,
            },
        }
    )
    study = run_study(spec, workspace, device="cpu")
    trial = study.trials[0]
    attrs = trial.user_attrs
    assert trial.state.name == "COMPLETE", attrs.get(TrialAttr.ERROR)
    folds = attrs[TrialAttr.FOLD_METRICS]
    assert (
        len(folds) == 3 and len(attrs[TrialAttr.FOLD_HISTORIES]) == 3 and len(attrs[TrialAttr.FOLD_TEST_METRICS]) == 3
    )
    assert trial.value == pytest.approx(np.mean([fold["dice"] for fold in folds]))
    assert attrs[TrialAttr.VAL_METRICS]["dice"] == pytest.approx(trial.value)
    assert attrs[TrialAttr.VAL_METRICS_STD]["dice"] == pytest.approx(np.std([fold["dice"] for fold in folds], ddof=1))
    assert attrs[TrialAttr.TEST_METRICS]["dice"] == pytest.approx(
        np.mean([fold["dice"] for fold in attrs[TrialAttr.FOLD_TEST_METRICS]])
    )
    assert attrs[TrialAttr.EPOCHS_RUN] == sum(len(h) for h in attrs[TrialAttr.FOLD_HISTORIES])
    assert max(trial.intermediate_values) > spec.budget.max_epochs  # later folds report at later steps
    # baselines: each fold's validation images, averaged
    assert "val" in study.user_attrs[StudyAttr.BASELINES]["all_foreground"]
    # curves: fold 0's (the stored history) by default, every fold's on request, counted from 0 like split.fold
    per_fold = learning_curves([trial], "loss", each_fold=True)
    assert set(per_fold["split"]) == {f"{split} · fold {fold}" for split in ("train", "val") for fold in (0, 1, 2)}
    assert set(learning_curves([trial], "loss")["split"]) == {"train", "val"}


# --- search hygiene -------------------------------------------------------------------------------


def test_a_finished_configuration_is_reused_not_trained_again(workspace) -> None:
    study = tiny_study(workspace, "repeat", trials=2)  # every hyperparameter fixed: one configuration
    first, second = study.trials
    assert second.user_attrs[TrialAttr.REUSED_FROM] == 0 and second.value == first.value
    assert second.user_attrs[TrialAttr.VAL_METRICS] == first.user_attrs[TrialAttr.VAL_METRICS]
    assert TrialAttr.REUSED_FROM not in first.user_attrs


def test_only_a_complete_trial_is_reused_not_a_pruned_one_with_a_value() -> None:
    """Optuna keeps a pruned trial's last reported value as its value: a configuration pruned
    before must be trained again, not given that partial value as a finished result."""
    import optuna
    from optuna.distributions import FloatDistribution
    from optuna.trial import TrialState

    from core.training.objective import _reuse_finished

    spec = spec_from_dict({"name": "again", "dataset": "demo-cells", "sampler": "random", "pruner": "median"})
    study = optuna.create_study(direction="maximize")
    space = {"lr": FloatDistribution(1e-4, 1e-1, log=True)}

    def same_configuration() -> optuna.Trial:
        study.enqueue_trial({"lr": 0.01})
        return study.ask(space)

    pruned = same_configuration()
    pruned.report(0.3, 1)
    study.tell(pruned, state=TrialState.PRUNED)
    assert study.trials[0].value == 0.3
    again = same_configuration()
    assert _reuse_finished(again, spec) is None and TrialAttr.REUSED_FROM not in study.trials[1].user_attrs
    finished = same_configuration()
    finished.set_user_attr(TrialAttr.VAL_METRICS, {"dice": 0.8})
    study.tell(finished, 0.8)
    assert _reuse_finished(again, spec) == 0.8
    assert study.trials[1].user_attrs[TrialAttr.REUSED_FROM] == 2 and study.trials[1].user_attrs[
        TrialAttr.VAL_METRICS
    ] == {"dice": 0.8}


def test_n_trials_beyond_a_finite_space_is_warned(capsys) -> None:
    from core.search.suggest import trials_beyond_space

    spec = spec_from_dict(
        {
            "name": "x",
            "dataset": "d",
            "sampler": "random",
            "budget": {"n_trials": 5},
            "search_space": {"optimizer": {"choices": ["adam", "sgd"]}},
        }
    )
    assert "only 2 distinct configuration(s)" in trials_beyond_space(spec)
    assert (
        trials_beyond_space(
            spec_from_dict(
                {
                    "name": "x",
                    "dataset": "d",
                    "budget": {"n_trials": 2},
                    "search_space": {"optimizer": {"choices": ["adam", "sgd"]}},
                }
            )
        )
        is None
    )
    assert (
        trials_beyond_space(
            spec_from_dict(
                {"name": "x", "dataset": "d", "search_space": {"lr": {"low": 1e-4, "high": 1e-2, "log": True}}}
            )
        )
        is None
    )


def test_the_form_puts_cross_validation_under_split() -> None:
    from app.widgets.spec_form import CV, PREFIX, form_to_dict, spec_to_form

    values = {
        **spec_to_form(spec_from_dict({"name": "cv", "dataset": "d"})),
        PREFIX + "split.mode": CV,
        PREFIX + "split.cv_folds": 4,
        PREFIX + "split.test": 20,
    }
    data = form_to_dict(values)
    spec = spec_from_dict(data)
    assert (
        spec.cv is not None
        and spec.cv.folds == 4
        and spec.split.test == pytest.approx(0.2)
        and spec.split.k_folds is None
    )
    shown = spec_to_form(spec)
    assert shown[PREFIX + "split.mode"] == CV and shown[PREFIX + "split.cv_folds"] == 4


# --- the user's own split.csv ----------------------------------------------------------------------


def _lungs_with_split_file(tmp_path: Path, count: int = 24) -> tuple[Path, dict[str, str]]:
    source = shared_dataset("chest_xray_lung_shenzhen")
    target = copy_pairs(source, tmp_path / "lungs-src", count, every=20)
    stems = {p.stem for p in (target / "images").iterdir()}
    parts = {}
    for line in (source / "split.csv").read_text().splitlines():
        part, name = line.split(",")[:2]
        if name in stems:
            parts[name] = part
    (target / "split.csv").write_text("".join(f"{part},{name}\n" for name, part in parts.items()))
    return target, {name: {"valid": "val"}.get(part, part) for name, part in parts.items()}


def test_split_csv_is_kept_at_ingest_and_honoured(workspace, tmp_path: Path) -> None:
    from core.data.manifest import dataset_path, load_manifest
    from core.data.splits import SplitError, frozen_split
    from core.search.study_source import study_source

    source, parts = _lungs_with_split_file(tmp_path)
    assert set(parts.values()) == {"train", "val", "test"}
    ingest_dataset(source, "lungs", workspace.datasets_dir)
    spec = spec_from_dict({"name": "own", "dataset": "lungs", "image_size": 64, "split": {"from_file": True}})
    split = study_source(spec, workspace).split
    for part in ("train", "val", "test"):
        assert set(getattr(split, part)) == {name for name, p in parts.items() if p == part}
    # cross-validation keeps the file's test images and cuts folds from its train + val
    cv = spec_from_dict({**spec.to_dict(), "name": "own-cv", "cv": {"folds": 2}})
    folds = [study_source(cv, workspace, fold).split for fold in (0, 1)]
    assert all(set(f.test) == set(split.test) for f in folds)
    assert set(folds[0].val) | set(folds[1].val) == set(split.train) | set(split.val)
    # a dataset without a kept file says what to do
    manifest = load_manifest(workspace.datasets_dir, "lungs")
    (dataset_path(workspace.datasets_dir, "lungs") / "split.csv").unlink()
    with pytest.raises(SplitError, match="no split.csv"):
        frozen_split(dataset_path(workspace.datasets_dir, "lungs"), manifest.stems, spec.split)


def test_a_bad_split_csv_lists_every_problem(workspace, tmp_path: Path) -> None:
    from core.data.manifest import DatasetError

    source, parts = _lungs_with_split_file(tmp_path, count=8)
    names = sorted(parts)
    rows = [
        f"train,{names[0]}",
        f"val,{names[1]}.png",
        "test,NO_SUCH_IMAGE",
        f"holdout,{names[2]}",
        f"train,{names[0]}",
    ]
    (source / "split.csv").write_text("split,name\n" + "\n".join(rows) + "\n")
    with pytest.raises(DatasetError) as caught:
        ingest_dataset(source, "bad-split", workspace.datasets_dir)
    message = caught.value.problems["split.csv"]
    assert "NO_SUCH_IMAGE" in message and "'holdout'" in message and "listed twice" in message
    assert "leaves out" in message and names[3] in message
    assert not (workspace.datasets_dir / "bad-split").exists()  # nothing kept
