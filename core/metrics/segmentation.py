"""Segmentation metrics accumulated over an epoch (Dice, IoU, mIoU, PA, precision, recall, F1, specificity).

Counts (tp, fp, fn, tn per class) come from ``smp.metrics.get_stats`` and are summed over every
pixel of the epoch ("micro" over images) in tensors on the model's device, so ``update`` never
synchronises with the host; ``compute`` reads them once.

What the numbers mean:
- binary (2 classes): dice, iou, precision, recall, f1, specificity are those of the foreground;
  dice == f1; miou is the mean IoU of background and foreground.
- multiclass: dice, iou, precision, recall, f1, specificity are macro means over the
  non-background classes; miou is the mean IoU over all classes, background included.
- pixel_accuracy is correct pixels / all pixels in both modes.

Zero divisions (a class absent from the target and the prediction, or never predicted): a ratio
whose denominator is 0 is 1.0 when the class has no false positives and no false negatives
(an empty mask predicted empty is perfect) and 0.0 otherwise. Classes that appear in neither the
target nor the prediction are left out of the macro means and of mIoU (they would score a free
1.0); if no class is left, the mean is 1.0. :func:`per_image_dice` follows the same rules.

Per-image Dice (``dice_per_image``, nnU-Net's per-case convention): Dice is computed on every image
on its own (binary: the foreground; multiclass: the mean over the foreground classes present in
that image's target or prediction), then averaged over images. An image whose target *and*
prediction are both empty (for every foreground class) has no defined Dice: like nnU-Net's NaN it
is left out of the mean, so a model is neither rewarded nor punished for such images (an image
with an empty target and a non-empty prediction scores 0). When every image is left out, the
value is 1.0 (nothing to find, nothing predicted).

Besides the metrics, the object keeps each image's foreground counts (:meth:`image_counts`,
used for bootstrap confidence intervals) and the predicted share of each class
(:meth:`predicted_fractions`, used to flag constant predictions).
"""

from __future__ import annotations

import numpy as np
import segmentation_models_pytorch as smp
import torch

from core.contract import Mode
from core.errors import SegTuneError, unknown_option
from core.metrics.catalogue import Source, split_metrics
from core.modeling.inference import class_indices, probabilities

# What compute() returns, in catalogue order: pixel-pooled metrics, then per-image ones.
PIXEL_METRIC_NAMES = split_metrics(Source.PIXEL_COUNTS)
PER_IMAGE_METRIC_NAMES = split_metrics(Source.PER_IMAGE)
METRIC_NAMES = PIXEL_METRIC_NAMES + PER_IMAGE_METRIC_NAMES


def _ratio(num: torch.Tensor, den: torch.Tensor, perfect: torch.Tensor) -> torch.Tensor:
    """num / den per class; 0/0 is 1.0 for a class without errors, else 0.0."""
    fallback = perfect.to(num.dtype)
    return torch.where(den > 0, num / den.clamp(min=1), fallback)


def _mean(values: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
    """Mean over the classes present in target or prediction; 1.0 when none is."""
    if not bool(present.any()):
        return torch.ones((), dtype=values.dtype, device=values.device)
    return values[present].mean()


class SegmentationMetrics:
    """Accumulates per-class pixel counts over batches; ``compute`` turns them into metrics."""

    def __init__(self, mode: str, num_classes: int, threshold: float = 0.5):
        if mode not in list(Mode):
            raise SegTuneError(unknown_option("mode", mode, list(Mode)))
        expected = Mode.BINARY if num_classes == 2 else Mode.MULTICLASS
        if num_classes < 2 or mode != expected:
            raise SegTuneError(f"{num_classes} classes (background included) means mode {expected!r}, got {mode!r}")
        self.mode = mode
        self.num_classes = num_classes
        self.threshold = threshold
        self.reset()

    def reset(self) -> None:
        self._counts: torch.Tensor | None = None  # (4, num_classes) long: tp, fp, fn, tn
        self._images: list[torch.Tensor] = []  # per batch (N, num_classes - 1, 3) long: tp, fp, fn per foreground class

    @torch.no_grad()
    def update(self, logits: torch.Tensor, target: torch.Tensor) -> None:
        """Add one batch: logits (N, C, H, W), target (N, H, W) class indices."""
        channels = 1 if self.mode == Mode.BINARY else self.num_classes
        if logits.ndim != 4 or logits.shape[1] != channels:
            raise SegTuneError(f"{self.mode} logits must be (N, {channels}, H, W), got {tuple(logits.shape)}")
        if target.shape != (logits.shape[0], *logits.shape[2:]):
            raise SegTuneError(
                f"target must be (N, H, W) = {(logits.shape[0], *logits.shape[2:])}, got {tuple(target.shape)}"
            )
        self.update_predictions(class_indices(probabilities(logits), self.threshold), target)

    @torch.no_grad()
    def update_predictions(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        """Add one batch of decided masks: predicted and target class indices, both (N, H, W)."""
        if pred.shape != target.shape:
            raise SegTuneError(f"predicted masks {tuple(pred.shape)} and targets {tuple(target.shape)} differ in shape")
        pred, target = pred.long(), target.long()
        # one-hot + smp's "multilabel" counting stays vectorised on the device (its "multiclass"
        # path loops over images into CPU tensors)
        tp, fp, fn, tn = smp.metrics.get_stats(self._one_hot(pred), self._one_hot(target), mode="multilabel")
        batch = torch.stack([tp.sum(0), fp.sum(0), fn.sum(0), tn.sum(0)])
        self._counts = batch if self._counts is None else self._counts + batch
        self._images.append(torch.stack([tp[:, 1:], fp[:, 1:], fn[:, 1:]], dim=-1))

    def _one_hot(self, labels: torch.Tensor) -> torch.Tensor:
        # a comparison, not F.one_hot, which checks the label range on the host (a device sync)
        classes = torch.arange(self.num_classes, device=labels.device).view(1, -1, 1, 1)
        return (labels.unsqueeze(1) == classes).long()

    def compute(self) -> dict[str, float]:
        """Metrics over everything seen since the last reset (see the module docstring)."""
        if self._counts is None:
            raise SegTuneError("no batches seen: call update() before compute()")
        tp, fp, fn, tn = self._counts.double()
        perfect = (fp + fn) == 0
        present = (tp + fp + fn) > 0
        per_class = {
            "dice": _ratio(2 * tp, 2 * tp + fp + fn, perfect),
            "iou": _ratio(tp, tp + fp + fn, perfect),
            "precision": _ratio(tp, tp + fp, perfect),
            "recall": _ratio(tp, tp + fn, perfect),
            "specificity": _ratio(tn, tn + fp, perfect),
        }
        per_class["f1"] = per_class["dice"]  # F1 on pixels is Dice
        if self.mode == Mode.BINARY:
            results = {name: values[1] for name, values in per_class.items()}
        else:
            results = {name: _mean(values[1:], present[1:]) for name, values in per_class.items()}
        results["miou"] = _mean(per_class["iou"], present)
        results["pixel_accuracy"] = tp.sum() / (tp[0] + fp[0] + fn[0] + tn[0])
        computed = {name: float(results[name]) for name in PIXEL_METRIC_NAMES}
        computed["dice_per_image"] = mean_image_dice(self.image_counts())
        return computed

    def image_counts(self) -> np.ndarray:
        """(images, foreground classes, 3) int64: each image's tp, fp, fn per foreground class."""
        if not self._images:
            raise SegTuneError("no batches seen: call update() before image_counts()")
        return torch.cat(self._images).cpu().numpy().astype(np.int64)

    def predicted_fractions(self) -> np.ndarray:
        """Share of all pixels predicted as each class (background first); sums to 1."""
        if self._counts is None:
            raise SegTuneError("no batches seen: call update() before predicted_fractions()")
        tp, fp, fn, tn = self._counts.double()
        predicted = tp + fp
        return (predicted / (tp[0] + fp[0] + fn[0] + tn[0])).cpu().numpy()

    def target_fractions(self) -> np.ndarray:
        """Share of all pixels that truly are each class (background first); sums to 1."""
        if self._counts is None:
            raise SegTuneError("no batches seen: call update() before target_fractions()")
        tp, fp, fn, tn = self._counts.double()
        return ((tp + fn) / (tp[0] + fp[0] + fn[0] + tn[0])).cpu().numpy()


def per_image_dice(pred: np.ndarray, target: np.ndarray, num_classes: int) -> float:
    """Dice of one predicted label map against its target (foreground, or macro over classes 1..K-1)."""
    if pred.shape != target.shape:
        raise SegTuneError(f"prediction shape {pred.shape} differs from target shape {target.shape}")
    scores = []
    for cls in range(1, num_classes):
        p, t = pred == cls, target == cls
        size = int(p.sum()) + int(t.sum())
        if size:  # a class in neither map is left out (module docstring)
            scores.append(2.0 * int(np.logical_and(p, t).sum()) / size)
    return float(np.mean(scores)) if scores else 1.0


def image_dice_scores(counts: np.ndarray) -> np.ndarray:
    """Per-image Dice from (images, foreground classes, 3) counts; NaN where target and prediction are empty."""
    counts = np.asarray(counts, dtype=float).reshape(len(counts), -1, 3)
    tp, fp, fn = counts[..., 0], counts[..., 1], counts[..., 2]
    denominator = 2 * tp + fp + fn
    with np.errstate(invalid="ignore", divide="ignore"):
        per_class = np.where(denominator > 0, 2 * tp / np.where(denominator > 0, denominator, 1), np.nan)
    defined = ~np.isnan(per_class)
    sums = np.where(defined, per_class, 0.0).sum(axis=1)
    present = defined.sum(axis=1)
    return np.where(present > 0, sums / np.maximum(present, 1), np.nan)


def mean_image_dice(counts: np.ndarray) -> float:
    """``dice_per_image``: the mean of the defined per-image Dice values, 1.0 when none is defined."""
    scores = image_dice_scores(counts)
    defined = scores[~np.isnan(scores)]
    return float(defined.mean()) if defined.size else 1.0


def pooled_dice(counts: np.ndarray) -> float:
    """Pixel-pooled ``dice`` from per-image counts (binary: foreground; multiclass: macro over
    the classes present), the same number :meth:`SegmentationMetrics.compute` gives."""
    totals = np.asarray(counts, dtype=float).reshape(len(counts), -1, 3).sum(axis=0)
    tp, fp, fn = totals[:, 0], totals[:, 1], totals[:, 2]
    denominator = 2 * tp + fp + fn
    present = denominator > 0
    if not present.any():
        return 1.0
    return float((2 * tp[present] / denominator[present]).mean())
