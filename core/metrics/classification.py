"""Classification metrics over one split: accuracy, balanced accuracy, macro precision / recall / F1, ROC AUC.

:class:`ClassificationMetrics` keeps each batch's softmax probabilities and labels on the model's
device (``update`` never synchronises with the host); ``compute`` reads them once. The numbers
follow scikit-learn's definitions, so they read as users know them:

- the predicted label is the class of highest probability (the argmax of the logits);
- ``accuracy``: correct images / images;
- per class: precision tp / (tp + fp), recall tp / (tp + fn), F1 2tp / (2tp + fp + fn); a ratio
  whose denominator is 0 is 0.0 (scikit-learn's ``zero_division=0``);
- ``precision_macro``, ``recall_macro``, ``f1_macro``: unweighted means over the classes that occur
  in the truth or the predictions (scikit-learn's default ``labels``);
- ``balanced_accuracy``: the mean recall over the classes present in the truth
  (``balanced_accuracy_score``); it equals ``recall_macro`` unless a class is predicted but never true;
- ``roc_auc``: with 2 classes the AUC of class 1's probability; with more, the mean one-vs-rest
  AUC (``multi_class="ovr", average="macro"``). Ties count half (the Mann-Whitney U statistic). A
  class whose images are all positive or all negative has no AUC and is left out of the mean
  (scikit-learn raises instead); with no class left the value is 0.5, the chance level.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy.stats import rankdata

from core.contract import Task
from core.errors import SegTuneError
from core.metrics.catalogue import Source, split_metrics
from core.metrics.label_predictions import confusion_matrix
from core.modeling.inference import probabilities

METRIC_NAMES = split_metrics(Source.CLASS_PREDICTIONS, task=Task.CLASSIFICATION)


@dataclass(frozen=True)
class LabelOutputs:
    """One split's per-image results, in the order the images were scored."""

    labels: np.ndarray  # (N,) int64 true class indices
    probabilities: np.ndarray  # (N, K) float32 softmax probabilities

    @property
    def predicted(self) -> np.ndarray:
        """(N,) int64 predicted class indices (highest probability)."""
        return self.probabilities.argmax(axis=1).astype(np.int64) if len(self.labels) else np.zeros(0, np.int64)

    @property
    def num_classes(self) -> int:
        return int(self.probabilities.shape[1])


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    return np.divide(num, den, out=np.zeros_like(num, dtype=float), where=den > 0)


def confusion_scores(matrix: np.ndarray) -> dict[str, float]:
    """Accuracy, balanced accuracy and the macro precision / recall / F1 of a confusion matrix."""
    matrix = np.asarray(matrix, dtype=float)
    tp = np.diag(matrix)
    true, predicted = matrix.sum(axis=1), matrix.sum(axis=0)
    fp, fn = predicted - tp, true - tp
    seen = (true + predicted) > 0  # classes in the truth or the predictions
    present = true > 0  # classes in the truth
    total = matrix.sum()
    recall = _ratio(tp, true)
    return {
        "accuracy": float(tp.sum() / total) if total else 0.0,
        "balanced_accuracy": float(recall[present].mean()) if present.any() else 0.0,
        "precision_macro": float(_ratio(tp, predicted)[seen].mean()) if seen.any() else 0.0,
        "recall_macro": float(recall[seen].mean()) if seen.any() else 0.0,
        "f1_macro": float(_ratio(2 * tp, 2 * tp + fp + fn)[seen].mean()) if seen.any() else 0.0,
    }


def binary_auc(positive: np.ndarray, scores: np.ndarray) -> float | None:
    """AUC of ``scores`` for the boolean ``positive`` (ties count half); None without both kinds."""
    positive = np.asarray(positive, dtype=bool)
    n_pos = int(positive.sum())
    n_neg = len(positive) - n_pos
    if n_pos == 0 or n_neg == 0:
        return None
    ranks = rankdata(scores)  # average ranks for ties
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def roc_auc(labels: np.ndarray, probabilities: np.ndarray) -> float:
    """Binary AUC of class 1, or the macro one-vs-rest AUC (module docstring)."""
    labels, probabilities = np.asarray(labels), np.asarray(probabilities, dtype=float)
    classes = [1] if probabilities.shape[1] == 2 else range(probabilities.shape[1])
    aucs = [auc for c in classes if (auc := binary_auc(labels == c, probabilities[:, c])) is not None]
    return float(np.mean(aucs)) if aucs else 0.5


def classification_scores(outputs: LabelOutputs) -> dict[str, float]:
    """Every classification split metric of ``outputs``, in catalogue order."""
    scores = confusion_scores(confusion_matrix(outputs.labels, outputs.predicted, outputs.num_classes))
    scores["roc_auc"] = roc_auc(outputs.labels, outputs.probabilities)
    return {name: scores[name] for name in METRIC_NAMES}


class ClassificationMetrics:
    """Accumulates one split's probabilities and labels; ``compute`` turns them into metrics."""

    def __init__(self, num_classes: int):
        if num_classes < 2:
            raise SegTuneError(f"classification needs at least 2 classes, got {num_classes}")
        self.num_classes = num_classes
        self.reset()

    def reset(self) -> None:
        self._probabilities: list[torch.Tensor] = []
        self._labels: list[torch.Tensor] = []

    @torch.no_grad()
    def update(self, logits: torch.Tensor, target: torch.Tensor) -> None:
        """Add one batch: logits (N, K), target (N,) class indices."""
        if logits.ndim != 2 or logits.shape[1] != self.num_classes:
            raise SegTuneError(f"classifier logits must be (N, {self.num_classes}), got {tuple(logits.shape)}")
        if target.shape != (logits.shape[0],):
            raise SegTuneError(f"labels must be (N,) = ({logits.shape[0]},), got {tuple(target.shape)}")
        self._probabilities.append(probabilities(logits))
        self._labels.append(target.long())

    def outputs(self) -> LabelOutputs:
        """Every image seen since the last reset: true labels and probabilities (one host read)."""
        if not self._labels:
            raise SegTuneError("no batches seen: call update() before outputs()")
        return LabelOutputs(torch.cat(self._labels).cpu().numpy(), torch.cat(self._probabilities).cpu().numpy())

    def compute(self) -> dict[str, float]:
        return classification_scores(self.outputs())

    def predicted_fractions(self) -> np.ndarray:
        """Share of images predicted as each class; sums to 1."""
        outputs = self.outputs()
        return np.bincount(outputs.predicted, minlength=self.num_classes) / max(len(outputs.labels), 1)

    def target_fractions(self) -> np.ndarray:
        """Share of images that truly are each class; sums to 1."""
        labels = self.outputs().labels
        return np.bincount(labels, minlength=self.num_classes) / max(len(labels), 1)
