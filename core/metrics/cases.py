"""Per-case scores of one predicted mask against its truth: Dice, IoU, NSD and HD95 per foreground class.

What a reviewer reads in nnU-Net's ``summary.json`` and the Metrics Reloaded recommendations: an
overlap metric and a boundary metric, per case and per class, at the resolution the truth was drawn
at. The surface distances come from MONAI (``compute_surface_dice``, ``compute_hausdorff_distance``,
pinned in requirements.txt); Dice and IoU are counted here.

- ``nsd``: normalised surface distance (surface Dice) at a tolerance: the share of both boundaries
  that lies within ``tolerance`` of the other boundary (1 is perfect).
- ``hd95``: the 95th percentile of the symmetric boundary distances (0 is perfect).
- Distances are in pixels, or in millimetres when a ``spacing`` (row, column) is given; the
  tolerance is in the same unit (default :data:`NSD_TOLERANCE` pixels).

Empty cases follow nnU-Net / Metrics Reloaded:
- truth and prediction both empty for a class: every score of that class is NaN (nothing to find,
  nothing predicted), left out of means; a case whose classes are all NaN is left out of the mean;
- exactly one of them empty: Dice, IoU and NSD are 0 and HD95 is the worst distance the image
  allows, its diagonal (a finite number, so means stay defined).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass

import numpy as np

CASE_METRICS: tuple[str, ...] = ("dice", "iou", "nsd", "hd95")
BOUNDARY_METRICS: tuple[str, ...] = ("nsd", "hd95")
NSD_TOLERANCE = 2.0  # pixels: nnU-Net-style default; record it with the scores
LOWER_IS_BETTER = frozenset({"hd95"})


@dataclass(frozen=True)
class ClassScore:
    """One foreground class of one case."""

    cls: int
    dice: float
    iou: float
    nsd: float
    hd95: float

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def class_scores(
    prediction: np.ndarray,
    truth: np.ndarray,
    num_classes: int,
    *,
    tolerance: float = NSD_TOLERANCE,
    spacing: Sequence[float] | None = None,
) -> list[ClassScore]:
    """Scores of every foreground class (1 .. num_classes - 1) of one case: masks (H, W) of class indices."""
    if prediction.shape != truth.shape or prediction.ndim != 2:
        raise ValueError(f"prediction {prediction.shape} and truth {truth.shape} must be one (H, W) shape")
    if tolerance < 0:
        raise ValueError(f"the NSD tolerance must be >= 0, got {tolerance}")
    step = (1.0, 1.0) if spacing is None else tuple(float(s) for s in spacing)
    return [_one_class(prediction == cls, truth == cls, cls, tolerance, step) for cls in range(1, num_classes)]


def case_mean(scores: Iterable[ClassScore]) -> dict[str, float]:
    """The case's mean over its foreground classes (NaN classes left out; NaN when all are)."""
    rows = [score.as_dict() for score in scores]
    return {name: _nanmean([row[name] for row in rows]) for name in CASE_METRICS}


def summarise(values: Sequence[float]) -> dict[str, float]:
    """Mean, SD (ddof=1), median, min and max of per-case values, NaN cases left out; n counts the rest."""
    finite = np.array([v for v in values if not math.isnan(v)], dtype=float)
    if not len(finite):
        return {"n": 0, "mean": math.nan, "sd": math.nan, "median": math.nan, "min": math.nan, "max": math.nan}
    return {
        "n": len(finite),
        "mean": float(finite.mean()),
        "sd": float(finite.std(ddof=1)) if len(finite) > 1 else 0.0,
        "median": float(np.median(finite)),
        "min": float(finite.min()),
        "max": float(finite.max()),
    }


def mean_over_cases(cases: Iterable[Mapping[str, float]]) -> dict[str, float]:
    """Each metric's mean over cases (per-case means from :func:`case_mean`), NaN cases left out."""
    rows = list(cases)
    return {name: _nanmean([row[name] for row in rows]) for name in CASE_METRICS}


def _one_class(
    pred: np.ndarray, truth: np.ndarray, cls: int, tolerance: float, spacing: tuple[float, ...]
) -> ClassScore:
    in_pred, in_truth = bool(pred.any()), bool(truth.any())
    if not in_pred and not in_truth:
        return ClassScore(cls, math.nan, math.nan, math.nan, math.nan)
    tp = float(np.logical_and(pred, truth).sum())
    fp, fn = float(pred.sum()) - tp, float(truth.sum()) - tp
    dice, iou = 2 * tp / (2 * tp + fp + fn), tp / (tp + fp + fn)
    if not (in_pred and in_truth):
        diagonal = math.hypot(pred.shape[0] * spacing[0], pred.shape[1] * spacing[1])
        return ClassScore(cls, dice, iou, 0.0, diagonal)
    nsd, hd95 = _surface_scores(pred, truth, tolerance, spacing)
    return ClassScore(cls, dice, iou, nsd, hd95)


def _surface_scores(
    pred: np.ndarray, truth: np.ndarray, tolerance: float, spacing: tuple[float, ...]
) -> tuple[float, float]:
    """MONAI's surface Dice and 95th-percentile Hausdorff distance of two non-empty binary masks."""
    import torch
    from monai.metrics import compute_hausdorff_distance, compute_surface_dice

    def one_hot(mask: np.ndarray) -> torch.Tensor:
        foreground = torch.from_numpy(mask.astype(np.float32))
        return torch.stack([1 - foreground, foreground])[None]  # (1, 2, H, W): background, class

    y_pred, y = one_hot(pred), one_hot(truth)
    with warnings.catch_warnings():  # MONAI warns about its own deprecated arguments on every call
        warnings.simplefilter("ignore")
        nsd = compute_surface_dice(y_pred, y, [tolerance], include_background=False, spacing=list(spacing))
        hd95 = compute_hausdorff_distance(y_pred, y, include_background=False, percentile=95, spacing=list(spacing))
    return float(nsd.flatten()[0]), float(hd95.flatten()[0])


def _nanmean(values: Sequence[float]) -> float:
    finite = [v for v in values if not math.isnan(v)]
    return float(np.mean(finite)) if finite else math.nan
