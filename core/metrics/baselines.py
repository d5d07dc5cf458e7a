"""Reference baselines and degenerate-trial flags: is a trial better than predicting a constant?

A constant predictor paints every pixel with one class. On a dataset whose foreground covers most
of the image (the ISBI EM membranes: 77 %), "all foreground" already scores a Dice of about 0.87,
so a trial's Dice means little until it is set against these references. For every study the
constant predictors are scored on the same validation and test images with the same metrics
(:class:`~core.metrics.segmentation.SegmentationMetrics`):

- ``all_background``: class 0 everywhere;
- ``all_foreground`` (binary): class 1 everywhere;
- ``majority_class`` (multiclass): the foreground class with the most training pixels everywhere;
  for a classification study, the label of the most training images on every image
  (:class:`~core.metrics.classification.ClassificationMetrics` scores it: accuracy = that class's
  share, balanced accuracy = 1 / classes, ROC AUC = 0.5).

A finished trial is flagged (:class:`~core.contract.TrialFlag`):

- ``constant_prediction`` when, on validation, the classes other than the most predicted one
  cover less than :data:`CONSTANT_SHARE` of the pixels (0.1 %; of the images for a classifier)
  *and* less than a tenth of the share they truly cover (so a dataset whose truth is itself almost
  all background does not flag a good model);
- ``not_better_than_baseline`` when its first objective, if it is a validation metric the
  baselines have, does not beat the best baseline by at least :data:`BASELINE_MARGIN` (0.02, in
  the metric's own units) in the objective's direction.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from core.contract import Mode, Task, TrialFlag
from core.metrics.classification import ClassificationMetrics
from core.metrics.segmentation import SegmentationMetrics

CONSTANT_SHARE = 0.001  # at most this share of pixels outside the dominant predicted class = constant
BASELINE_MARGIN = 0.02  # a trial must beat the best constant predictor by this much on its first objective

BASELINE_LABELS = {
    "all_background": "Constant: all background",
    "all_foreground": "Constant: all foreground",
    "majority_class": "Constant: majority class",
}

FLAG_TEXT = {
    TrialFlag.CONSTANT_PREDICTION: "predicts (nearly) one class everywhere on validation",
    TrialFlag.NOT_BETTER_THAN_BASELINE: f"does not beat a constant predictor by {BASELINE_MARGIN} on the first "
    "objective",
}


def constant_classes(mode: Mode, num_classes: int, train_masks: torch.Tensor | None = None) -> dict[str, int]:
    """The constant predictors of a task: baseline name -> the class it paints everywhere."""
    if mode == Mode.BINARY:
        return {"all_background": 0, "all_foreground": 1}
    majority = 1
    if train_masks is not None and train_masks.numel():
        counts = torch.bincount(train_masks.reshape(-1).long().cpu(), minlength=num_classes)[1:]
        majority = int(counts.argmax()) + 1
    return {"all_background": 0, "majority_class": majority}


def constant_logits(class_index: int, mode: Mode, num_classes: int, shape: tuple[int, ...]) -> torch.Tensor:
    """Logits (N, C, H, W) that predict ``class_index`` on every pixel of masks shaped (N, H, W)."""
    n, h, w = shape
    if mode == Mode.BINARY:
        return torch.full((n, 1, h, w), 20.0 if class_index else -20.0)
    logits = torch.zeros((n, num_classes, h, w))
    logits[:, class_index] = 1.0
    return logits


def score_constant(
    masks: torch.Tensor, class_index: int, mode: Mode, num_classes: int, batch: int = 64
) -> dict[str, float]:
    """Every split metric of predicting ``class_index`` everywhere on ``masks`` (N, H, W)."""
    metrics = SegmentationMetrics(str(mode), num_classes)
    masks = masks.cpu().long()
    for start in range(0, len(masks), batch):
        part = masks[start : start + batch]
        metrics.update(constant_logits(class_index, mode, num_classes, tuple(part.shape)), part)
    return metrics.compute()


def majority_label(train_labels: torch.Tensor, num_classes: int) -> dict[str, int]:
    """A classification study's constant predictor: the most frequent training label (lowest index on ties)."""
    return {"majority_class": int(torch.bincount(train_labels.long().cpu(), minlength=num_classes).argmax())}


def score_constant_label(labels: torch.Tensor, class_index: int, num_classes: int) -> dict[str, float]:
    """Every classification split metric of predicting ``class_index`` for every image of ``labels`` (N,)."""
    metrics = ClassificationMetrics(num_classes)
    logits = torch.zeros((len(labels), num_classes))
    logits[:, class_index] = 1.0
    metrics.update(logits, labels.cpu().long())
    return metrics.compute()


def score_baselines(
    splits: Mapping[str, list[torch.Tensor]],
    classes: Mapping[str, int],
    mode: Mode,
    num_classes: int,
    task: Task = Task.SEGMENTATION,
) -> dict[str, Any]:
    """Baseline name -> {"label", "class", "<split>": metrics}; a split given as several target sets
    (masks, or a classification study's labels; the folds of cross-validation) gets the mean of
    their metrics, as trials do."""
    records: dict[str, Any] = {}
    for name, class_index in classes.items():
        record: dict[str, Any] = {"label": BASELINE_LABELS[name], "class": class_index}
        for split, parts in splits.items():
            scores = [
                score_constant_label(target, class_index, num_classes)
                if task == Task.CLASSIFICATION
                else score_constant(target, class_index, mode, num_classes)
                for target in parts
                if len(target)
            ]
            if scores:
                record[split] = {metric: float(np.mean([s[metric] for s in scores])) for metric in scores[0]}
        records[name] = record
    return records


def best_baseline(
    baselines: Mapping[str, Any], metric: str, maximize: bool, split: str = "val"
) -> tuple[str, float] | None:
    """The best baseline on ``split``'s ``metric`` (a name without prefix), or None when none has it."""
    scored = [
        (name, float(record[split][metric]))
        for name, record in baselines.items()
        if metric in (record.get(split) or {})
    ]
    if not scored:
        return None
    return max(scored, key=lambda item: item[1] if maximize else -item[1])


def is_constant(predicted: np.ndarray, target: np.ndarray) -> bool:
    """Whether predicted class shares (background first) are (nearly) one class; see the module docstring."""
    predicted, target = np.asarray(predicted, dtype=float), np.asarray(target, dtype=float)
    dominant = int(np.argmax(predicted))
    predicted_other, true_other = 1.0 - predicted[dominant], 1.0 - target[dominant]
    return bool(predicted_other < CONSTANT_SHARE and predicted_other < true_other / 10)


def trial_flags(
    *,
    predicted: np.ndarray,
    target: np.ndarray,
    val_metrics: Mapping[str, float],
    baselines: Mapping[str, Any] | None,
    objective: str,
    maximize: bool,
) -> list[str]:
    """The flags of a finished trial (an empty list when it can be trusted)."""
    flags: list[str] = []
    if is_constant(predicted, target):
        flags.append(TrialFlag.CONSTANT_PREDICTION)
    metric = objective.removeprefix("val_")
    if objective.startswith("val_") and baselines and metric in val_metrics:
        best = best_baseline(baselines, metric, maximize)
        if best is not None:
            value = float(val_metrics[metric])
            beats = value >= best[1] + BASELINE_MARGIN if maximize else value <= best[1] - BASELINE_MARGIN
            if not beats:
                flags.append(TrialFlag.NOT_BETTER_THAN_BASELINE)
    return flags


def flag_text(flags: list[str] | None) -> list[str]:
    """Readable reasons for stored flags (unknown values are shown as they are)."""
    return [
        FLAG_TEXT.get(TrialFlag(flag), flag) if flag in TrialFlag.__members__.values() else flag for flag in flags or []
    ]
