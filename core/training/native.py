"""A trained segmentation model scored at the original resolution, as published numbers are.

Training and the per-epoch curves work at the study's ``image_size``; the scores a finished trial
stores do not. Each validation or test image is predicted at the training size and its mask is
brought to the size of the image's original mask, read from the dataset, by the one mask resize
(:func:`core.data.tensors.resize_mask`, nearest) that ``predict`` uses: what is scored is exactly
what ``predict`` and ``evaluate --model`` write for that image. It is scored there: every pixel
metric of the catalogue, the per-image counts behind the bootstrap intervals, and the per-case
boundary metrics (NSD, HD95; core.metrics.cases). The loss stays the training-size loss (it is
what training minimised).

A dataset whose images are already at ``image_size`` scores exactly as at training size.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from core.data.tensors import ImageSet, resize_mask
from core.metrics.cases import BOUNDARY_METRICS, NSD_TOLERANCE, case_mean, class_scores, mean_over_cases
from core.metrics.segmentation import SegmentationMetrics
from core.modeling.inference import class_indices, probabilities
from core.training.loop import Evaluation, eval_batches, model_logits

_PERFECT = {"nsd": 1.0, "hd95": 0.0}  # every case empty in truth and prediction: nothing missed


@dataclass(frozen=True)
class CaseRow:
    """One image's scores at its original size: the mean over its foreground classes."""

    stem: str
    height: int
    width: int
    scores: dict[str, float]  # dice, iou, nsd, hd95 (core.metrics.cases.CASE_METRICS)


class CaseScorer:
    """Decided masks scored against their truth one image at a time, each at the truth's own size."""

    def __init__(self, mode: str, num_classes: int, tolerance: float = NSD_TOLERANCE):
        self.pixels = SegmentationMetrics(mode, num_classes)
        self.num_classes, self.tolerance = num_classes, tolerance
        self.rows: list[CaseRow] = []

    def add(self, stem: str, mask: np.ndarray, truth: np.ndarray) -> None:
        """``mask``: class indices (S, S) at the model's size; ``truth``: the original mask (H, W)."""
        predicted = resize_mask(mask, *truth.shape)
        self.pixels.update_predictions(
            torch.from_numpy(np.array(predicted))[None], torch.from_numpy(np.array(truth))[None]
        )
        scores = case_mean(class_scores(predicted, truth, self.num_classes, tolerance=self.tolerance))
        self.rows.append(CaseRow(stem, *truth.shape, scores))

    def metrics(self) -> dict[str, float]:
        """Every pixel metric, then the boundary metrics' means over cases."""
        metrics = self.pixels.compute()
        means = mean_over_cases(row.scores for row in self.rows)
        # every case empty in truth and prediction: nothing to find, nothing predicted (as dice_per_image)
        metrics.update({name: _PERFECT[name] if math.isnan(means[name]) else means[name] for name in BOUNDARY_METRICS})
        return metrics


@torch.no_grad()
def evaluate_native(
    model: nn.Module,
    data: ImageSet,
    originals: Sequence[np.ndarray],
    batch_size: int,
    *,
    loss_fn: nn.Module,
    mode: str,
    num_classes: int,
    tolerance: float = NSD_TOLERANCE,
    patch_size: int | None = None,
) -> tuple[Evaluation, list[CaseRow]]:
    """Score ``model`` on ``data`` against ``originals`` (each image's mask at its own size, in
    ``data``'s order); a patch-trained model predicts by sliding window."""
    if len(originals) != len(data):
        raise ValueError(f"{len(originals)} original masks for {len(data)} images")
    model.eval()
    cases = CaseScorer(mode, num_classes, tolerance)
    total_loss, batches = torch.zeros((), device=data.device), 0
    for images, target in eval_batches(data, batch_size):
        logits = model_logits(model, images, patch_size, batch_size)
        total_loss += loss_fn(logits, target).detach()
        batches += 1
        for mask in class_indices(probabilities(logits)).to(torch.uint8).cpu().numpy():
            position = len(cases.rows)
            cases.add(data.stems[position], mask, originals[position])
    metrics = cases.metrics()
    metrics["loss"] = float(total_loss / max(batches, 1))
    scorer = cases.pixels
    return Evaluation(
        metrics, scorer.predicted_fractions(), scorer.target_fractions(), scorer.image_counts()
    ), cases.rows
