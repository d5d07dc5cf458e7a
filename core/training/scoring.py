"""A trained model's scores as the results contract stores them, for one split or k folds.

:func:`score_fold` evaluates one trained model (validation at its best epoch, test); :func:`summary`
turns the folds of a trial (one without cross-validation) into the trial's user attrs:

- ``val_metrics``: the fold mean of each validation metric (the one fold's metrics without CV);
  with CV also ``fold_metrics`` (each fold's) and ``val_metrics_std`` (SD over folds, ddof=1);
- ``test_metrics``: the mean over the fold models' test metrics (``fold_test_metrics``: each);
- segmentation: ``val_image_counts`` / ``test_image_counts`` (single split): per-image counts for
  bootstrap CIs, and ``val_foreground_fraction``;
- classification: ``confusion_matrix``, the validation counts summed over the folds (each image is
  validated once: out of fold); :func:`validation_predictions` gives the per-image predictions;
- ``flags`` (:mod:`core.metrics.baselines`): the predicted class shares are pixels' or images'.

Costs (train time, epochs) are summed over folds; size and throughput are fold 0's model's.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from core.contract import STORED_FOLD, TrialAttr
from core.data.tensors import ImageSet
from core.metrics.baselines import trial_flags
from core.metrics.label_predictions import LabelPredictions
from core.modeling.build import count_parameters, weights_size_mb
from core.search.spec import StudySpec
from core.training.loop import (
    Evaluation,
    TrainConfig,
    TrainResult,
    evaluate_detailed,
    measure_throughput,
    training_loss,
)
from core.training.native import CaseRow, evaluate_native
from core.training.study_data import StudyData


@dataclass
class FoldScore:
    result: TrainResult
    val: Evaluation  # the best epoch's weights re-scored on validation
    test: Evaluation | None
    val_stems: tuple[str, ...] = ()  # the validation images, in ``val``'s order
    cases: dict[str, list[CaseRow]] = field(
        default_factory=dict
    )  # "val"/"test" -> per-image scores at the original size


def score_fold(
    model: torch.nn.Module, data: StudyData, result: TrainResult, config: TrainConfig, *, native: bool = False
) -> FoldScore:
    """Score the best-epoch model (already loaded into ``model``) on validation and test: with
    ``native``, masks at their original resolution where the dataset's originals are at hand
    (core.training.native); else at the training size."""
    loss_fn = training_loss(config, data.val, data.mode).to(data.val.images.device)
    cases: dict[str, list[CaseRow]] = {}

    def run(part: str, images: ImageSet) -> Evaluation:
        originals = data.original_masks(images) if native else None
        if originals is None:
            return evaluate_detailed(
                model,
                images,
                config.batch_size,
                loss_fn=loss_fn,
                mode=data.mode,
                num_classes=data.num_classes,
                patch_size=config.patch_size,
            )
        evaluation, cases[part] = evaluate_native(
            model,
            images,
            originals,
            config.batch_size,
            loss_fn=loss_fn,
            mode=data.mode,
            num_classes=data.num_classes,
            patch_size=config.patch_size,
        )
        return evaluation

    val = run("val", data.val)
    test = run("test", data.test) if data.test is not None else None
    return FoldScore(result, val, test, tuple(data.val.stems), cases)


def _case_attrs(folds: Sequence[FoldScore]) -> dict[str, Any]:
    """Per-image scores at the original size: validation over every fold (out of fold), test of the stored fold."""
    rows = {
        TrialAttr.VAL_CASES: [row for fold in folds for row in fold.cases.get("val", [])],
        TrialAttr.TEST_CASES: folds[STORED_FOLD].cases.get("test", []),
    }
    return {
        key: [{"name": r.stem, "height": r.height, "width": r.width, **r.scores} for r in found]
        for key, found in rows.items()
        if found
    }


def _mean(dicts: Sequence[Mapping[str, float]]) -> dict[str, float]:
    return {key: float(np.mean([d[key] for d in dicts])) for key in dicts[0]} if dicts else {}


def _std(dicts: Sequence[Mapping[str, float]]) -> dict[str, float]:
    return {key: float(np.std([d[key] for d in dicts], ddof=1)) for key in dicts[0]} if len(dicts) > 1 else {}


def _counts(evaluation: Evaluation | None) -> list[Any] | None:
    return None if evaluation is None or evaluation.image_counts is None else evaluation.image_counts.tolist()


def validation_predictions(folds: Sequence[FoldScore], classes: Sequence[str]) -> LabelPredictions:
    """A classification trial's validation images over all its folds (out of fold with CV), fold 0's first."""
    outputs = [fold.val.outputs for fold in folds]
    if any(output is None for output in outputs):
        raise ValueError("validation predictions exist for classification folds only")
    return LabelPredictions(
        stems=tuple(stem for fold in folds for stem in fold.val_stems),
        labels=np.concatenate([output.labels for output in outputs]),
        probabilities=np.concatenate([output.probabilities for output in outputs]),
        folds=np.concatenate([np.full(len(output.labels), index) for index, output in enumerate(outputs)]),
        classes=tuple(classes),
    )


def summary(
    spec: StudySpec,
    folds: Sequence[FoldScore],
    model: torch.nn.Module,
    data: StudyData,
    config: TrainConfig,
    baselines: Mapping[str, Any] | None,
) -> dict[str, Any]:
    """The trial's user attrs from its folds; ``model``/``data`` are the stored fold's (size, throughput)."""
    stored = folds[STORED_FOLD]
    val_folds = [fold.val.metrics for fold in folds]  # the best epoch re-scored (at the original size where known)
    test_folds = [fold.test.metrics for fold in folds if fold.test is not None]
    val_metrics = _mean(val_folds)
    predicted = np.mean([fold.val.predicted_fractions for fold in folds], axis=0)
    target = np.mean([fold.val.target_fractions for fold in folds], axis=0)
    objective = spec.objectives[0]
    attrs: dict[str, Any] = {
        TrialAttr.HISTORY: [record.to_dict() for record in stored.result.history],
        TrialAttr.BEST_EPOCH: stored.result.best_epoch,
        TrialAttr.EPOCHS_RUN: sum(len(fold.result.history) for fold in folds),
        TrialAttr.STOPPED_EARLY: any(fold.result.stopped_early for fold in folds),
        TrialAttr.TRAIN_TIME_S: sum(fold.result.train_time_s for fold in folds),
        TrialAttr.VAL_METRICS: val_metrics,
        TrialAttr.TEST_METRICS: _mean(test_folds),  # shown, never used to select
        TrialAttr.IMAGES_PER_S: measure_throughput(model, data.val, config.batch_size, patch_size=config.patch_size),
        TrialAttr.N_PARAMS: count_parameters(model),
        TrialAttr.WEIGHTS_MB: weights_size_mb(model),
        TrialAttr.FLAGS: trial_flags(
            predicted=predicted,
            target=target,
            val_metrics=val_metrics,
            baselines=baselines,
            objective=objective.metric,
            maximize=objective.direction == "maximize",
        ),
    }
    if spec.is_classification:
        attrs[TrialAttr.CONFUSION_MATRIX] = (
            validation_predictions(folds, data.manifest.classes).confusion_matrix().tolist()
        )
    else:
        attrs[TrialAttr.VAL_FOREGROUND_FRACTION] = float(1.0 - predicted[0])
        attrs.update(_case_attrs(folds))
    if spec.cv is None:
        if stored.val.image_counts is not None:  # segmentation's units for bootstrap intervals
            attrs[TrialAttr.VAL_IMAGE_COUNTS] = _counts(stored.val)
            attrs[TrialAttr.TEST_IMAGE_COUNTS] = _counts(stored.test)
    else:
        attrs[TrialAttr.FOLD_METRICS] = val_folds
        attrs[TrialAttr.VAL_METRICS_STD] = _std(val_folds)
        attrs[TrialAttr.FOLD_TEST_METRICS] = test_folds
        attrs[TrialAttr.FOLD_HISTORIES] = [[record.to_dict() for record in fold.result.history] for fold in folds]
    return attrs
