"""How far a trial's score can be trusted: reference baselines, flags, bootstrap intervals.

Read-only views over what the objective and ``prepare_study`` stored (core/metrics/baselines.py,
core/metrics/uncertainty.py). Studies made before these attrs existed simply have none: every
function here returns empty values for them, never an error.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import optuna
import pandas as pd
from optuna.trial import FrozenTrial

from core.contract import StudyAttr, Task, TrialAttr, spec_attr
from core.metrics.catalogue import split_metrics
from core.metrics.uncertainty import Kind, as_units, bootstrap_ci, paired_difference_ci

REFERENCE_STATE = "reference"  # the state column of a baseline row on the leaderboard


def study_task(study: optuna.Study) -> Task:
    """The study's task from its stored spec (segmentation for specs written before tasks existed)."""
    return Task(spec_attr(study).get("task", Task.SEGMENTATION))


def dice_units(trial: FrozenTrial, split: str) -> tuple[np.ndarray, Kind] | None:
    """What the bootstrap resamples for ``split`` ("val"/"test"): folds with CV, else images
    (None for trials without Dice: classification)."""
    attrs = trial.user_attrs
    folds = attrs.get(TrialAttr.FOLD_METRICS if split == "val" else TrialAttr.FOLD_TEST_METRICS)
    if folds and all("dice" in fold for fold in folds):
        return as_units([fold["dice"] for fold in folds], "values"), "values"
    counts = attrs.get(TrialAttr.VAL_IMAGE_COUNTS if split == "val" else TrialAttr.TEST_IMAGE_COUNTS)
    if counts:
        return as_units(counts, "counts"), "counts"
    return None


def dice_interval(trial: FrozenTrial, split: str) -> tuple[float, float] | None:
    """The 95 % bootstrap interval of the trial's ``split`` Dice, or None when it has no units."""
    units = dice_units(trial, split)
    return None if units is None else bootstrap_ci(*units)


def reliability_columns(trial: FrozenTrial) -> dict[str, Any]:
    """The leaderboard's extra columns for one trial (all None/empty for old studies)."""
    attrs = trial.user_attrs
    row: dict[str, Any] = {}
    for split in ("val", "test"):
        interval = dice_interval(trial, split) if trial.state.is_finished() else None
        row[f"{split}_dice_ci_low"], row[f"{split}_dice_ci_high"] = interval or (None, None)
    std = attrs.get(TrialAttr.VAL_METRICS_STD) or {}
    row.update({f"val_{metric}_std": std.get(metric) for metric in ("dice", "dice_per_image", "iou")})
    row["folds"] = len(attrs[TrialAttr.FOLD_METRICS]) if attrs.get(TrialAttr.FOLD_METRICS) else None
    row["val_foreground_fraction"] = attrs.get(TrialAttr.VAL_FOREGROUND_FRACTION)
    row["flags"] = ", ".join(attrs.get(TrialAttr.FLAGS) or [])
    row["reused_from"] = attrs.get(TrialAttr.REUSED_FROM)
    row["ensemble_test_dice"] = (attrs.get(TrialAttr.ENSEMBLE_TEST_METRICS) or {}).get("dice")
    return row


def evaluation_note(study_attrs: dict[str, Any], task: Task) -> str | None:
    """How a segmentation study's finished trials were scored, in one sentence for the results
    pages (None for classification: a label has no resolution)."""
    if task != Task.SEGMENTATION:
        return None
    evaluation = study_attrs.get(StudyAttr.EVALUATION) or {}
    if evaluation.get("resolution") == "native":
        return (
            f"Scores are at each image's original resolution (NSD tolerance {evaluation.get('nsd_tolerance', 2):g} "
            "px); the learning curves are at the training size."
        )
    return (
        "Scores are at the study's training size (this study was made before SegTune scored at the original "
        "resolution)."
    )


def baselines(study: optuna.Study) -> dict[str, Any]:
    return study.user_attrs.get(StudyAttr.BASELINES) or {}


def baseline_frame(study: optuna.Study) -> pd.DataFrame:
    """One reference row per constant predictor: label, and its val/test split metrics (the study task's)."""
    rows = []
    metrics = split_metrics(task=study_task(study))
    for name, record in baselines(study).items():
        row: dict[str, Any] = {"baseline": name, "label": record.get("label", name), "state": REFERENCE_STATE}
        for split in ("val", "test"):
            row.update({f"{split}_{metric}": (record.get(split) or {}).get(metric) for metric in metrics})
        rows.append(row)
    return pd.DataFrame(rows)


@dataclass(frozen=True)
class RunnerUp:
    """The best trial against the runner-up on the same validation units (paired bootstrap)."""

    best: int
    runner_up: int
    difference: tuple[float, float]  # 95 % interval of Dice(best) - Dice(runner-up)
    units: str  # "images" or "folds"

    @property
    def distinguishable(self) -> bool:
        return self.difference[0] > 0 or self.difference[1] < 0

    def sentence(self) -> str:
        low, high = self.difference
        interval = f"95 % interval of the validation Dice difference over {self.units}: {low:+.3f} to {high:+.3f}"
        if self.distinguishable:
            return f"Trial #{self.best} is better than the runner-up #{self.runner_up} ({interval})."
        return (
            f"Trial #{self.best} is not distinguishable from the runner-up #{self.runner_up} ({interval}): the "
            "ranking between them is noise."
        )


def best_vs_runner_up(study: optuna.Study, frame: pd.DataFrame) -> RunnerUp | None:
    """Compare ranks 1 and 2 (single objective); None when there are not two comparable trials."""
    if len(study.directions) != 1 or frame.empty:
        return None
    ranked = frame[frame["rank"].notna()].sort_values(["rank", "number"])
    if len(ranked) < 2:
        return None
    trials = {trial.number: trial for trial in study.get_trials(deepcopy=False)}
    first, second = (trials[int(n)] for n in ranked["number"].head(2))
    units_a, units_b = dice_units(first, "val"), dice_units(second, "val")
    if units_a is None or units_b is None or units_a[1] != units_b[1]:
        return None
    interval = paired_difference_ci(units_a[0], units_b[0], units_a[1])
    if interval is None:
        return None
    return RunnerUp(first.number, second.number, interval, "folds" if units_a[1] == "values" else "images")
