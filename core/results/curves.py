"""Learning curves: per-epoch values of each trial as a tidy table."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd
from optuna.trial import FrozenTrial

from core.contract import Task, TrialAttr, fold_name
from core.errors import unknown_option
from core.metrics.catalogue import curve_metrics
from core.results.trials import ResultsError


def learning_curves(trials: Sequence[FrozenTrial], metric: str, *, each_fold: bool = False) -> pd.DataFrame:
    """Tidy per-epoch values: columns trial, state, split (train/val/lr/objective), epoch, value.

    ``metric`` is one of :func:`~core.metrics.catalogue.curve_metrics` of either task. Trials without a stored history
    (still running, or written by another tool) fall back to their reported intermediate values. With ``each_fold``, a
    cross-validated trial gives one curve per fold, its split named e.g. ``"val · fold 1"``
    (:func:`~core.contract.fold_name`; otherwise its curves are fold 0's, the stored ``history``).
    """
    known = list(dict.fromkeys(name for task in Task for name in curve_metrics(task)))
    if metric not in known:
        raise ResultsError(unknown_option("curve metric", metric, known))
    rows: list[dict[str, Any]] = []
    for trial in trials:
        folds = trial.user_attrs.get(TrialAttr.FOLD_HISTORIES) if each_fold else None
        if folds:
            for index, history in enumerate(folds):
                rows.extend(_curve_rows(trial, metric, history, suffix=f" · {fold_name(index)}"))
        else:
            rows.extend(_curve_rows(trial, metric, trial.user_attrs.get(TrialAttr.HISTORY) or []))
    return pd.DataFrame(rows, columns=["trial", "state", "split", "epoch", "value"])


def _curve_rows(
    trial: FrozenTrial, metric: str, history: list[dict[str, Any]], suffix: str = ""
) -> list[dict[str, Any]]:
    base = {"trial": trial.number, "state": trial.state.name.lower()}
    if not history:
        return [
            {**base, "split": "objective", "epoch": int(step), "value": value}
            for step, value in sorted(trial.intermediate_values.items())
        ]
    # The learning rate is one schedule per trial, neither a training nor a validation value.
    keys = {"train": f"train_{metric}", "val": f"val_{metric}"} if metric != "lr" else {"lr": "lr"}
    return [
        {**base, "split": split + suffix, "epoch": int(epoch["epoch"]), "value": epoch[key]}
        for split, key in keys.items()
        for epoch in history
        if epoch.get(key) is not None
    ]
