"""Dice per volume: slices stacked back into their volumes, one Dice per volume, then the mean.

This is the number nnU-Net and the medical papers report: a large organ's score is not diluted by
the many slices where it is small, and a volume counts once whatever its slice count. Per
foreground class, a volume where neither the truth nor the prediction has that class is left out
of that class's mean (nnU-Net's convention); a volume with no foreground at all in truth and
prediction scores 1. Computed on the slices stored for the dataset (all of them, or the foreground
slices plus the kept share of empty ones), at their own resolution in studies scored at the
original resolution, else at the resolution the model sees. Numpy only.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np


def volume_dice_scores(
    predictions: Sequence[np.ndarray],
    truths: Sequence[np.ndarray],
    stems: Sequence[str],
    groups: Mapping[str, str],
    num_classes: int,
) -> dict[str, float]:
    """volume id -> its Dice (mean over foreground classes present), from class-index masks: an
    (N, H, W) array, or one (H, W) mask per slice (sizes may differ between volumes)."""
    members: dict[str, list[int]] = {}
    for index, stem in enumerate(stems):
        members.setdefault(groups.get(stem, stem), []).append(index)
    return {
        volume: _dice(np.stack([predictions[i] for i in rows]), np.stack([truths[i] for i in rows]), num_classes)
        for volume, rows in sorted(members.items())
    }


def dice_per_volume(
    predictions: Sequence[np.ndarray],
    truths: Sequence[np.ndarray],
    stems: Sequence[str],
    groups: Mapping[str, str],
    num_classes: int,
) -> float:
    """Mean over volumes of :func:`volume_dice_scores` (nan when there is no slice)."""
    scores = volume_dice_scores(predictions, truths, stems, groups, num_classes)
    return float(np.mean(list(scores.values()))) if scores else float("nan")


def _dice(predicted: np.ndarray, truth: np.ndarray, num_classes: int) -> float:
    values = []
    for cls in range(1, num_classes):
        p, t = predicted == cls, truth == cls
        total = int(p.sum()) + int(t.sum())
        if total:
            values.append(2.0 * int((p & t).sum()) / total)
    return float(np.mean(values)) if values else 1.0
