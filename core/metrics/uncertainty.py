"""Bootstrap confidence intervals for a trial's Dice, and whether two trials can be told apart.

The unit that is resampled is what varies between repetitions of the experiment:

- single split: the **images** of the split. Each image's foreground counts (tp, fp, fn per
  class, stored as ``val_image_counts`` / ``test_image_counts``) are resampled with replacement
  and the pixel-pooled Dice recomputed, so the interval is that of the Dice the leaderboard shows.
- cross-validation: the **folds**: the fold Dice values are resampled and averaged.

Intervals are percentile intervals over :data:`RESAMPLES` resamples with a fixed seed (the same
numbers on every rerun). Two trials scored on the same units are compared with a **paired**
bootstrap: the same resampled indices for both; they are "not distinguishable" when the 95 %
interval of the difference contains 0.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

RESAMPLES = 1000
LEVEL = 0.95
Kind = Literal["counts", "values"]  # per-image counts (pooled Dice) or per-fold values (mean)


def _statistic(samples: np.ndarray, kind: Kind) -> np.ndarray:
    """The statistic of each resample: rows of ``samples`` are resamples."""
    if kind == "values":
        return samples.mean(axis=1)
    totals = samples.sum(axis=1)  # (B, classes, 3)
    tp, fp, fn = totals[..., 0], totals[..., 1], totals[..., 2]
    denominator = 2 * tp + fp + fn
    present = denominator > 0
    dice = np.where(present, 2 * tp / np.where(present, denominator, 1), 0.0)
    count = present.sum(axis=1)
    return np.where(count > 0, dice.sum(axis=1) / np.maximum(count, 1), 1.0)


def as_units(data: object, kind: Kind) -> np.ndarray:
    """Stored counts (images x classes x 3) or fold values as a float array."""
    array = np.asarray(data, dtype=float)
    return array.reshape(len(array), -1, 3) if kind == "counts" else array.reshape(-1)


def _indices(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, n, size=(RESAMPLES, n))


def point_estimate(units: np.ndarray, kind: Kind) -> float:
    return float(_statistic(units[None], kind)[0])


def bootstrap_ci(units: np.ndarray, kind: Kind, *, seed: int = 0) -> tuple[float, float] | None:
    """The 95 % percentile interval of the statistic, or None with fewer than 2 units."""
    if len(units) < 2:
        return None
    stats = _statistic(units[_indices(len(units), seed)], kind)
    tail = (1 - LEVEL) / 2 * 100
    return float(np.percentile(stats, tail)), float(np.percentile(stats, 100 - tail))


def paired_difference_ci(
    units_a: np.ndarray, units_b: np.ndarray, kind: Kind, *, seed: int = 0
) -> tuple[float, float] | None:
    """95 % interval of statistic(a) - statistic(b) over the same resampled units (None if unpaired)."""
    if len(units_a) != len(units_b) or len(units_a) < 2:
        return None
    index = _indices(len(units_a), seed)
    difference = _statistic(units_a[index], kind) - _statistic(units_b[index], kind)
    tail = (1 - LEVEL) / 2 * 100
    return float(np.percentile(difference, tail)), float(np.percentile(difference, 100 - tail))


def distinguishable(units_a: np.ndarray, units_b: np.ndarray, kind: Kind, *, seed: int = 0) -> bool | None:
    """True when the paired interval of the difference excludes 0; None when it cannot be computed."""
    interval = paired_difference_ci(units_a, units_b, kind, seed=seed)
    if interval is None:
        return None
    return interval[0] > 0 or interval[1] < 0
