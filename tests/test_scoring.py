"""core.training.scoring.summary: a trial's stored attributes from hand-made fold scores."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from core.contract import TrialAttr
from core.data.tensors import ImageSet
from core.metrics.baselines import TrialFlag
from core.search.validation import spec_from_dict
from core.training.loop import EpochRecord, Evaluation, TrainConfig, TrainResult
from core.training.scoring import FoldScore, score_fold, summary, validation_predictions

# Constant predictors' val Dice: a trial must beat the best (0.75) by the margin (0.02).
BASELINES = {"all_background": {"val": {"dice": 0.0}}, "all_foreground": {"val": {"dice": 0.75}}}


def _fold(
    dice: float, test_dice: float, predicted_background: float, *, epochs: int, best: int, stopped: bool, seconds: float
) -> FoldScore:
    history = [
        EpochRecord(epoch, 1.0 / epoch, {"dice": dice * epoch / epochs, "loss": 1.0 / epoch}, 1e-3, 1.0)
        for epoch in range(1, epochs + 1)
    ]
    result = TrainResult(history, best, {}, stopped, seconds, {"dice": dice, "loss": 1.0 - dice})
    counts = np.array([[[3, 1, 2]], [[5, 0, 1]]])  # two images, one foreground class: tp, fp, fn
    val = Evaluation(
        {"dice": dice, "loss": 1.0 - dice},
        np.array([predicted_background, 1 - predicted_background]),
        np.array([0.7, 0.3]),
        counts,
    )
    test = Evaluation(
        {"dice": test_dice, "loss": 1.0 - test_dice}, np.array([0.5, 0.5]), np.array([0.5, 0.5]), counts + 1
    )
    return FoldScore(result, val, test)


def _inputs() -> tuple[torch.nn.Module, SimpleNamespace, TrainConfig]:
    model = torch.nn.Conv2d(1, 1, 1)  # binary: one logit per pixel
    val = ImageSet(torch.zeros(2, 1, 8, 8, dtype=torch.uint8), torch.zeros(2, 8, 8, dtype=torch.uint8), ("a", "b"))
    return (
        model,
        SimpleNamespace(val=val, manifest=SimpleNamespace(classes=("background", "foreground"))),
        TrainConfig(batch_size=2),
    )


def test_cross_validation_means_spreads_and_keeps_each_fold() -> None:
    spec = spec_from_dict({"name": "s", "dataset": "d", "cv": {"folds": 2}})
    folds = [
        _fold(0.8, 0.7, 0.6, epochs=3, best=2, stopped=True, seconds=5.0),
        _fold(0.76, 0.5, 0.8, epochs=2, best=1, stopped=False, seconds=7.0),
    ]
    attrs = summary(spec, folds, *_inputs(), BASELINES)

    assert attrs[TrialAttr.VAL_METRICS] == pytest.approx({"dice": 0.78, "loss": 0.22})
    assert attrs[TrialAttr.VAL_METRICS_STD] == pytest.approx(
        {"dice": 0.04 / 2**0.5, "loss": 0.04 / 2**0.5}
    )  # sample SD (ddof=1)
    assert attrs[TrialAttr.TEST_METRICS] == pytest.approx({"dice": 0.6, "loss": 0.4})
    assert attrs[TrialAttr.FOLD_METRICS] == [folds[0].result.val_metrics, folds[1].result.val_metrics]
    assert attrs[TrialAttr.FOLD_TEST_METRICS] == [folds[0].test.metrics, folds[1].test.metrics]
    assert [len(history) for history in attrs[TrialAttr.FOLD_HISTORIES]] == [3, 2]
    assert (
        attrs[TrialAttr.HISTORY] == attrs[TrialAttr.FOLD_HISTORIES][0] and attrs[TrialAttr.BEST_EPOCH] == 2
    )  # fold 0's
    assert (attrs[TrialAttr.EPOCHS_RUN], attrs[TrialAttr.STOPPED_EARLY], attrs[TrialAttr.TRAIN_TIME_S]) == (
        5,
        True,
        12.0,
    )
    # predicted shares averaged over the folds (background 0.6 and 0.8): foreground 0.3
    assert attrs[TrialAttr.VAL_FOREGROUND_FRACTION] == pytest.approx(0.3)
    # 0.78 beats the best constant (0.75) by the margin: no flag; per-image counts belong to single splits
    assert attrs[TrialAttr.FLAGS] == []
    assert TrialAttr.VAL_IMAGE_COUNTS not in attrs and TrialAttr.TEST_IMAGE_COUNTS not in attrs
    assert attrs[TrialAttr.N_PARAMS] == 2 and attrs[TrialAttr.IMAGES_PER_S] > 0


def test_a_single_split_keeps_per_image_counts_and_flags_a_trial_no_better_than_a_constant() -> None:
    spec = spec_from_dict({"name": "s", "dataset": "d"})
    fold = _fold(0.76, 0.7, 0.6, epochs=2, best=2, stopped=False, seconds=3.0)
    attrs = summary(spec, [fold], *_inputs(), BASELINES)

    assert (
        attrs[TrialAttr.VAL_METRICS] == fold.result.val_metrics and attrs[TrialAttr.TEST_METRICS] == fold.test.metrics
    )
    assert attrs[TrialAttr.VAL_IMAGE_COUNTS] == [[[3, 1, 2]], [[5, 0, 1]]]
    assert attrs[TrialAttr.TEST_IMAGE_COUNTS] == [[[4, 2, 3]], [[6, 1, 2]]]
    assert TrialAttr.FOLD_METRICS not in attrs and TrialAttr.VAL_METRICS_STD not in attrs
    assert attrs[TrialAttr.FLAGS] == [TrialFlag.NOT_BETTER_THAN_BASELINE]  # 0.76 < 0.75 + 0.02
    assert summary(spec, [fold], *_inputs(), None)[TrialAttr.FLAGS] == []  # no baselines measured: nothing to compare
    no_test = summary(
        spec, [FoldScore(fold.result, fold.val, None)], *_inputs(), BASELINES
    )  # a split without a test share
    assert no_test[TrialAttr.TEST_IMAGE_COUNTS] is None and no_test[TrialAttr.TEST_METRICS] == {}


def test_a_fold_without_a_test_split_is_scored_on_validation_only() -> None:
    model, data, config = _inputs()
    data.mode, data.num_classes, data.test = "binary", 2, None
    result = TrainResult([], 1, {}, False, 0.0, {"dice": 0.5})
    score = score_fold(model, data, result, config)
    assert score.test is None and score.val_stems == ("a", "b") and set(score.val.metrics) >= {"dice", "loss"}


def test_segmentation_folds_have_no_label_predictions() -> None:
    with pytest.raises(ValueError, match="^validation predictions exist for classification folds only$"):
        validation_predictions(
            [_fold(0.5, 0.5, 0.5, epochs=1, best=1, stopped=False, seconds=1.0)], ("background", "foreground")
        )
