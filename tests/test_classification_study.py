"""Classification studies end to end: the loop learns labels, trials store what Compare predictions reads, CV is out of
fold."""

from __future__ import annotations

import numpy as np
import optuna
import pytest
import torch
from torch import nn

from core.contract import ArtifactKind, StudyAttr, TrialAttr
from core.data.manifest import load_manifest
from core.data.tensors import ImageSet, clear_tensor_cache
from core.results import predictions as results
from core.results.curves import learning_curves
from core.results.trials import ResultsError, leaderboard_text, trials_frame
from core.runtime.storage import open_artifact_store
from core.search.study_source import study_source
from core.search.validation import spec_from_dict
from core.settings import Settings
from core.training.loop import TrainConfig, evaluate_detailed, predict, train_model
from tests.helpers.classification_sets import tiny_classification_study, write_bars
from tests.helpers.studies import module_workspace


def tiny_cnn(classes: int = 2) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 8, 5, padding=2),
        nn.ReLU(),
        nn.MaxPool2d(4),
        nn.Conv2d(8, 8, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveMaxPool2d(1),
        nn.Flatten(),
        nn.Linear(8, classes),
    )


def bars(workspace: Settings, count: int, seed: int) -> ImageSet:
    from core.data.tensors import load_tensor_set

    manifest = write_bars(workspace.datasets_dir, f"bars{seed}", count, seed=seed, size=32)
    clear_tensor_cache()
    return load_tensor_set(
        workspace.datasets_dir / manifest.name,
        load_manifest(workspace.datasets_dir, manifest.name),
        manifest.stems,
        32,
        1,
    )


def test_the_training_loop_learns_labels_and_keeps_the_best_epoch(workspace: Settings) -> None:
    train, val = bars(workspace, 64, 1), bars(workspace, 24, 2)
    config = TrainConfig(
        epochs=10,
        batch_size=16,
        loss="cross_entropy",
        label_smoothing=0.1,
        patience=10,
        select_metric="balanced_accuracy",
        select_maximize=True,
    )
    seen = []
    model = tiny_cnn()
    result = train_model(model, train, val, config, mode="multiclass", num_classes=2, on_epoch=seen.append)
    assert len(seen) == 10 and {
        "val_accuracy",
        "val_balanced_accuracy",
        "val_roc_auc",
        "val_loss",
        "train_loss",
    } <= set(seen[0].to_dict())
    history = [record.val["balanced_accuracy"] for record in result.history]
    assert result.best_epoch == int(np.argmax(history)) + 1 and result.val_metrics["balanced_accuracy"] == max(history)
    assert max(history) >= 0.9 and result.history[-1].train_loss < result.history[0].train_loss
    model.load_state_dict(result.best_state)
    evaluation = evaluate_detailed(model, val, 8, loss_fn=nn.CrossEntropyLoss(), mode="multiclass", num_classes=2)
    assert evaluation.metrics["balanced_accuracy"] == pytest.approx(max(history))
    assert evaluation.image_counts is None and evaluation.outputs.labels.tolist() == val.targets.tolist()
    assert predict(model, val, 8).tolist() == evaluation.outputs.predicted.tolist()


@pytest.fixture(scope="module")
def two_trials(tmp_path_factory: pytest.TempPathFactory):
    with module_workspace(tmp_path_factory.mktemp("classification")) as settings:
        study = tiny_classification_study(
            settings,
            "cls",
            trials=2,
            extra={
                "search_space": {
                    "architecture": "MobileNetV2",
                    "head_filters": 8,
                    "head_dense_units": 8,
                    "batch_size": 8,
                    "epochs": 2,
                    "lr": {"choices": [3e-3, 1e-2]},
                }
            },
        )
        yield settings, study


def test_a_trial_stores_labels_predictions_probabilities_and_confusion(two_trials) -> None:
    settings, study = two_trials
    store = open_artifact_store(settings)
    trial = study.trials[0]
    attrs = trial.user_attrs
    assert trial.state == optuna.trial.TrialState.COMPLETE
    assert set(attrs[TrialAttr.VAL_METRICS]) == {
        "accuracy",
        "balanced_accuracy",
        "precision_macro",
        "recall_macro",
        "f1_macro",
        "roc_auc",
        "loss",
    }
    assert trial.value == attrs[TrialAttr.VAL_METRICS]["balanced_accuracy"]
    assert "val_balanced_accuracy" in attrs[TrialAttr.HISTORY][0] and TrialAttr.VAL_FOREGROUND_FRACTION not in attrs
    assert set(attrs[TrialAttr.ARTIFACTS]) == {ArtifactKind.WEIGHTS, ArtifactKind.CONFIG, ArtifactKind.PREDICTIONS}
    predictions = results.load_predictions(study, trial.number, store)
    val = study_source(spec_from_dict(study.user_attrs[StudyAttr.SPEC]), settings).split.val
    assert sorted(predictions.stems) == sorted(val) and set(predictions.folds.tolist()) == {0}
    manifest = load_manifest(settings.datasets_dir, "bars")
    assert predictions.labels.tolist() == [manifest.labels[stem] for stem in predictions.stems]
    assert np.allclose(predictions.probabilities.sum(axis=1), 1.0, atol=1e-5) and predictions.classes == (
        "horizontal",
        "vertical",
    )
    # the stored numbers agree with each other: confusion, accuracy, the predictions they come from
    matrix = results.confusion_matrix(study, trial.number)
    assert matrix.tolist() == predictions.confusion_matrix().tolist() and matrix.sum() == len(val)
    assert attrs[TrialAttr.VAL_METRICS]["accuracy"] == pytest.approx(predictions.correct.mean())
    frame = results.confusion_frame(study, trial.number)
    assert list(frame.index) == ["true: horizontal", "true: vertical"] and list(frame.columns) == [
        "predicted: horizontal",
        "predicted: vertical",
    ]
    baseline = study.user_attrs[StudyAttr.BASELINES]["majority_class"]
    assert baseline["val"]["balanced_accuracy"] == pytest.approx(0.5) and baseline["val"]["roc_auc"] == 0.5


def test_compare_predictions_aligns_trials_and_sorts_confident_mistakes_first(two_trials) -> None:
    settings, study = two_trials
    comparison = results.compare_predictions(study, [0, 1], open_artifact_store(settings))
    assert comparison.trial_numbers == [0, 1] and not comparison.missing and len(comparison.stems) > 0
    first = comparison.trials[0]
    assert comparison.misclassified(0) == [
        comparison.stems[i]
        for i in np.flatnonzero(~first.correct)[np.argsort(-first.confidence[~first.correct], kind="stable")]
    ]
    expected = (comparison.trials[0].predicted != comparison.trials[1].predicted).astype(float)
    assert comparison.disagreement().tolist() == expected.tolist()
    table = comparison.table("confidence")
    assert list(table.columns[:2]) == ["image", "true"] and {
        "#0 predicted",
        "#0 confidence",
        "#1 correct",
        "disagreement",
    } <= set(table.columns)
    wrong = 1 - (table["#0 correct"].astype(float) + table["#1 correct"].astype(float)) / 2
    assert wrong.is_monotonic_decreasing  # mistakes first
    assert sorted(table["image"]) == sorted(comparison.stems)
    with pytest.raises(ResultsError, match="unknown image order 'worst'"):
        comparison.order("worst")
    images = results.prediction_images(settings, study, comparison.stems[:3])
    assert images.shape == (3, 1, 64, 64) and images.dtype == np.uint8


def test_results_pages_see_classification_columns_and_refuse_segmentation_studies(two_trials) -> None:
    settings, study = two_trials
    frame = trials_frame(study)
    assert {"val_balanced_accuracy", "val_roc_auc", "test_f1_macro"} <= set(
        frame.columns
    ) and "val_dice" not in frame.columns
    curves = learning_curves(study.trials, "balanced_accuracy")
    assert set(curves["split"]) == {"val"} and len(curves) == sum(
        len(t.user_attrs[TrialAttr.HISTORY]) for t in study.trials
    )
    text = leaderboard_text(study)
    assert "val_balanced_accuracy" in text and "Constant: majority class: Validation Balanced accuracy 0.500" in text
    segmentation = optuna.create_study()
    segmentation.set_user_attr(StudyAttr.SPEC, {"name": "s", "dataset": "d"})
    with pytest.raises(ResultsError, match="segmentation study: its predictions are masks"):
        results.load_predictions(segmentation, 0, open_artifact_store(settings))


def test_cross_validation_predicts_every_pool_image_once_out_of_fold_and_prunes_on_the_objective(
    workspace: Settings,
) -> None:
    study = tiny_classification_study(workspace, "cv", cv=2, extra={"pruner": "median"})
    trial = study.trials[0]
    attrs = trial.user_attrs
    spec = spec_from_dict(study.user_attrs[StudyAttr.SPEC])
    predictions = results.load_predictions(study, 0, open_artifact_store(workspace))
    for fold in (0, 1):
        fold_val = study_source(spec, workspace, fold).split.val
        assert sorted(s for s, f in zip(predictions.stems, predictions.folds) if f == fold) == sorted(fold_val)
    split = study_source(spec, workspace, 0).split
    assert sorted(predictions.stems) == sorted((*split.train, *split.val)) and not set(predictions.stems) & set(
        split.test
    )
    assert np.asarray(attrs[TrialAttr.CONFUSION_MATRIX]).sum() == len(predictions)
    assert len(attrs[TrialAttr.FOLD_METRICS]) == 2 and "balanced_accuracy" in attrs[TrialAttr.VAL_METRICS_STD]
    assert attrs[TrialAttr.VAL_METRICS]["balanced_accuracy"] == pytest.approx(
        np.mean([f["balanced_accuracy"] for f in attrs[TrialAttr.FOLD_METRICS]])
    )
    # pruning sees the running fold mean of the objective after every epoch (steps: fold * max_epochs + epoch)
    first_fold = [row["val_balanced_accuracy"] for row in attrs[TrialAttr.FOLD_HISTORIES][0]]
    assert trial.intermediate_values[1] == pytest.approx(first_fold[0]) and sorted(trial.intermediate_values) == [
        1,
        2,
        3,
        4,
    ]
