"""The trials of a study as the results pages read them: which is best, the leaderboard table.

Everything in ``core.results`` only reads a study (Optuna storage + artifact store) and returns
plain values — DataFrames, numpy arrays, Plotly figures — so the pages stay render-only and the
same functions serve the CLI and tests. Nothing is written back.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import optuna
import pandas as pd
from optuna.trial import FrozenTrial, TrialState

from core.contract import Task, TrialAttr, spec_attr
from core.errors import SegTuneError
from core.metrics.catalogue import label, stored_metrics
from core.results.reliability import baseline_frame, best_vs_runner_up, reliability_columns, study_task

CANCELLED_STATE = "cancelled"  # a trial a cancel stopped: Optuna says FAIL, the leaderboard says cancelled
RELIABILITY_COLUMNS: tuple[str, ...] = (
    "val_dice_ci_low",
    "val_dice_ci_high",
    "test_dice_ci_low",
    "test_dice_ci_high",
    "val_dice_std",
    "val_dice_per_image_std",
    "val_iou_std",
    "folds",
    "val_foreground_fraction",
    "flags",
    "reused_from",
    "ensemble_test_dice",
)

# Per-trial scalars copied from user attrs into the leaderboard, in display order.
TRIAL_ATTRS: tuple[str, ...] = (
    TrialAttr.EPOCHS_RUN,
    TrialAttr.BEST_EPOCH,
    TrialAttr.STOPPED_EARLY,
    TrialAttr.TRAIN_TIME_S,
    TrialAttr.IMAGES_PER_S,
    TrialAttr.N_PARAMS,
    TrialAttr.WEIGHTS_MB,
    TrialAttr.DEVICE,
)


class ResultsError(SegTuneError):
    """A requested result does not exist (no such trial, no stored previews or weights)."""


# --- study facts ----------------------------------------------------------------------------


def objective_names(study: optuna.Study) -> list[str]:
    """The objectives' metric names (from the stored spec), else Optuna's metric names."""
    names = [objective.get("metric", "") for objective in spec_attr(study).get("objectives", [])]
    if len(names) == len(study.directions) and all(names):
        return names
    if study.metric_names:
        return list(study.metric_names)
    if len(study.directions) == 1:
        return ["objective"]
    return [f"objective_{index + 1}" for index in range(len(study.directions))]


def finished(trials: Sequence[FrozenTrial]) -> list[FrozenTrial]:
    return [trial for trial in trials if trial.state.is_finished()]


def best_numbers(study: optuna.Study, trials: Sequence[FrozenTrial] | None = None) -> list[int]:
    """The best complete trial (one objective) or the Pareto front (several), by trial number."""
    return best_numbers_for(study.directions, study.get_trials(deepcopy=False) if trials is None else trials)


def best_numbers_for(directions: Sequence[optuna.study.StudyDirection], trials: Sequence[FrozenTrial]) -> list[int]:
    """:func:`best_numbers` given the study's directions and its trials."""
    complete = [t for t in trials if t.state == TrialState.COMPLETE and t.values]
    if not complete:
        return []
    # Flip maximised objectives so "smaller is better" everywhere.
    signs = np.array([-1.0 if d == optuna.study.StudyDirection.MAXIMIZE else 1.0 for d in directions])
    values = np.array([t.values for t in complete], dtype=float) * signs
    if values.shape[1] == 1:
        return [complete[int(np.argmin(values[:, 0]))].number]
    no_worse = (values[:, None, :] <= values[None, :, :]).all(axis=2)
    better = (values[:, None, :] < values[None, :, :]).any(axis=2)
    dominated = (no_worse & better).any(axis=0)  # dominated[j]: some i beats j
    return [trial.number for trial, lost in zip(complete, dominated) if not lost]


def get_trial(study: optuna.Study, number: int) -> FrozenTrial:
    trials = study.get_trials(deepcopy=False)
    for trial in trials:
        if trial.number == number:
            return trial
    raise ResultsError(
        f"study {study.study_name!r} has no trial #{number} (it has {len(trials)} trials, numbered "
        f"0..{len(trials) - 1})"
    )


def default_trial(study: optuna.Study) -> FrozenTrial:
    """The trial to export when the user picks none: the best (first of the Pareto front)."""
    best = best_numbers(study)
    if not best:
        raise ResultsError(f"study {study.study_name!r} has no completed trial yet: wait for one to finish")
    return get_trial(study, best[0])


# --- leaderboard ------------------------------------------------------------------------------


def trials_frame(study: optuna.Study) -> pd.DataFrame:
    """One row per trial: number, state, best flag, rank, objectives, params, val/test metrics, costs.

    Read afresh; long-lived readers (the dashboard) use :class:`core.results.trial_cache.FrameCache`,
    which returns the same frame and rebuilds only the rows of trials that changed.
    """
    trials = study.get_trials(deepcopy=False)
    best = set(best_numbers(study, trials))
    names, task = objective_names(study), study_task(study)
    rows = [trial_row(trial, names, trial.number in best, task) for trial in trials]
    frame = pd.DataFrame(rows, columns=frame_columns(trials, names, task))
    return finish_frame(frame, study.directions, names[0])


def finish_frame(
    frame: pd.DataFrame, directions: Sequence[optuna.study.StudyDirection], first_objective: str
) -> pd.DataFrame:
    """Column types settled (numbers with gaps as floats), ranks added, a fresh 0..n-1 index."""
    frame = frame.infer_objects()
    frame["rank"] = _ranks(directions, frame, first_objective)
    return frame.reset_index(drop=True)


def _ranks(directions: Sequence[optuna.study.StudyDirection], frame: pd.DataFrame, first_objective: str) -> pd.Series:
    """1 = best complete trial by the first objective; other states get no rank."""
    values = frame[f"objective_{first_objective}"].where(frame["state"] == "complete").astype(float)
    ascending = directions[0] == optuna.study.StudyDirection.MINIMIZE
    return values.rank(method="min", ascending=ascending).astype("Int64")


def pruned_ahead(frame: pd.DataFrame, objective: str, maximize: bool) -> list[int]:
    """Pruned trials whose last value of ``objective`` (a ``val_<metric>`` column, from their last
    epoch) beats at least one complete trial's. They are not ranked: the pruner stopped them early
    against other trials at the same epoch, so their value is that of an unfinished run; the
    leaderboard says so where the numbers would otherwise look like a ranking mistake."""
    if objective not in frame or f"objective_{objective}" not in frame:
        return []
    complete = frame.loc[frame["state"] == "complete", f"objective_{objective}"].dropna()
    if complete.empty:
        return []
    worst = complete.min() if maximize else complete.max()
    last = frame.loc[frame["state"] == "pruned", ["number", objective]].dropna()
    ahead = last[last[objective] > worst] if maximize else last[last[objective] < worst]
    return [int(number) for number in ahead["number"]]


def frame_columns(trials: Sequence[FrozenTrial], names: list[str], task: Task = Task.SEGMENTATION) -> list[str]:
    """The leaderboard's columns; the metric columns are those of the study's ``task``."""
    params = sorted({f"param_{name}" for trial in trials for name in trial.params})
    metrics = stored_metrics(task)
    return [
        "number",
        "state",
        "best",
        "rank",
        *[f"objective_{name}" for name in names],
        *params,
        *[f"val_{metric}" for metric in metrics],
        *[f"test_{metric}" for metric in metrics],
        *TRIAL_ATTRS,
        *RELIABILITY_COLUMNS,
        "duration_s",
        "error",
    ]


def trial_row(trial: FrozenTrial, names: list[str], is_best: bool, task: Task = Task.SEGMENTATION) -> dict[str, Any]:
    """One trial's leaderboard row (a finished trial's row never changes, but for ``best``)."""
    attrs = trial.user_attrs
    row: dict[str, Any] = {"number": trial.number, "state": trial_state(trial), "best": is_best}
    for name, value in zip(names, trial.values or [None] * len(names)):
        row[f"objective_{name}"] = value
    row.update({f"param_{name}": value for name, value in trial.params.items()})
    val_metrics = attrs.get(TrialAttr.VAL_METRICS) or _last_epoch_metrics(attrs.get(TrialAttr.HISTORY) or [])
    row.update({f"val_{m}": val_metrics.get(m) for m in stored_metrics(task)})
    row.update({f"test_{m}": (attrs.get(TrialAttr.TEST_METRICS) or {}).get(m) for m in stored_metrics(task)})
    row.update({attr: attrs.get(attr) for attr in TRIAL_ATTRS})
    if row["epochs_run"] is None:
        # A running (or hand-made) trial has no summary yet: its progress is the current epoch.
        row["epochs_run"] = (
            len(attrs[TrialAttr.HISTORY]) if attrs.get(TrialAttr.HISTORY) else attrs.get(TrialAttr.EPOCH)
        )
    row.update(reliability_columns(trial))
    row["duration_s"] = trial.duration.total_seconds() if trial.duration else None
    row["error"] = attrs.get(TrialAttr.ERROR)
    return row


def trial_state(trial: FrozenTrial) -> str:
    """Optuna's state in lower case, except that a trial stopped by a cancel is "cancelled", never "fail"."""
    if trial.state == TrialState.FAIL and trial.user_attrs.get(TrialAttr.CANCELLED):
        return CANCELLED_STATE
    return trial.state.name.lower()


def _last_epoch_metrics(history: list[dict[str, Any]]) -> dict[str, Any]:
    # Pruned trials stop before the summary is written; their last epoch is what they reached.
    if not history:
        return {}
    return {key.removeprefix("val_"): value for key, value in history[-1].items() if key.startswith("val_")}


# Per task: the metric the baselines are quoted in, and the metric columns of the CLI's leaderboard.
LEADERBOARD_METRICS: dict[Task, tuple[str, tuple[str, ...]]] = {
    Task.SEGMENTATION: ("dice", ("val_dice", "val_dice_ci_low", "val_dice_ci_high", "val_iou", "test_dice")),
    Task.CLASSIFICATION: (
        "balanced_accuracy",
        ("val_balanced_accuracy", "val_accuracy", "val_f1_macro", "val_roc_auc", "test_balanced_accuracy"),
    ),
}


def leaderboard_text(study: optuna.Study, top: int = 10) -> str:
    """The best ``top`` trials as a plain-text table (for the CLI), best first."""
    frame = trials_frame(study)
    if frame.empty:
        return f"study {study.study_name!r} has no trials yet"
    headline, shown = LEADERBOARD_METRICS[study_task(study)]
    params = [column for column in frame.columns if column.startswith("param_")]
    objectives = [c for c in frame.columns if c.startswith("objective_") and c.removeprefix("objective_") not in shown]
    columns = ["rank", "number", "state", *objectives, *shown, *params, "epochs_run", "images_per_s", "flags"]
    table = frame.sort_values(["rank", "number"], na_position="last").head(top)[columns]
    table = table.rename(
        columns=lambda column: (
            column.removeprefix("param_")
            .removeprefix("objective_")
            .replace("_ci_low", " CI low")
            .replace("_ci_high", " CI high")
        )
    )
    counts = frame["state"].value_counts().to_dict()
    header = f"study {study.study_name}: " + ", ".join(f"{count} {state}" for state, count in sorted(counts.items()))
    lines = [header, table.to_string(index=False, float_format=lambda value: f"{value:.4g}", na_rep="-")]
    references = baseline_frame(study)
    if not references.empty:
        column = f"val_{headline}"
        lines.append(
            "reference (constant predictors): "
            + "; ".join(
                f"{reference['label']}: {label(column)} {reference[column]:.3f}"
                for reference in references.to_dict("records")
                if reference.get(column) is not None
            )
        )
    comparison = best_vs_runner_up(study, frame)
    if comparison is not None:
        lines.append(comparison.sentence())
    return "\n".join(lines)
