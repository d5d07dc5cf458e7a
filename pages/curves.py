"""Learning curves: per-epoch loss and metrics of the chosen trials, overlaid (the study task's curve metrics)."""

from __future__ import annotations

import streamlit as st

from app import study_cache
from app.widgets.curves import curves_figure
from app.widgets.errors import user_errors
from app.widgets.reliability import FLAG_MARK, row_flags
from app.widgets.trial_table import trial_picker
from core.contract import STORED_FOLD, Task, TrialAttr, fold_name
from core.metrics.catalogue import METRICS, curve_metrics, label

MAX_TRIALS = 10  # beyond this the lines are unreadable
METRIC_KEYS = {Task.SEGMENTATION: "curves.metric", Task.CLASSIFICATION: "curves.metric.classification"}
STORED = fold_name(STORED_FOLD)  # the fold whose curves show unless every fold is asked for


def curves_view(name: str, drawn_live: bool) -> None:
    # Errors are caught inside: a fragment's own reruns do not pass through the page's code.
    with user_errors("Drawing the learning curves"):
        study_cache.rearm_if_changed(name, drawn_live)
        frame = study_cache.trials_frame(name)
        started = frame[frame["state"] != "waiting"]
        if started.empty:
            st.info(
                "No trial has started yet — curves appear after a trial's first epoch. Start or resume the study on "
                "**Jobs**.",
                icon=":material/hourglass_empty:",
            )
            return
        chosen = trial_picker(started, key="curves.trials", limit=MAX_TRIALS)
        task = study_cache.task(name)
        # one key per task: a metric left selected in a study of the other task is no option here
        metric = st.segmented_control(
            "Metric", curve_metrics(task), default="loss", format_func=label, key=METRIC_KEYS[task], required=True
        )
        if not chosen:
            st.info(
                "Choose one or more trials above (or select rows on the **Leaderboard**).", icon=":material/touch_app:"
            )
            return
        draw(name, tuple(chosen), metric)


def draw(name: str, chosen: tuple[int, ...], metric: str) -> None:
    cross_validated = any(trial.user_attrs.get(TrialAttr.FOLD_HISTORIES) for trial in study_cache.trials(name, chosen))
    each_fold = cross_validated and st.toggle(
        "Each fold", key="curves.each_fold", help=f"Cross-validated trials: one curve per fold instead of {STORED}'s."
    )
    curves = study_cache.learning_curves(name, chosen, metric, each_fold)
    if curves.empty:
        st.info(f"The chosen trials have no {label(metric)} values yet.", icon=":material/hourglass_top:")
        return
    reference = best_reference(name, metric)
    st.plotly_chart(curves_figure(curves, metric, reference), key="curves.figure")
    if metric == "lr":
        st.caption("The learning rate each trial's schedule set, per epoch.")
    else:
        grey = (
            f" · grey dashed line: {reference[0].lower()}, the best constant predictor on validation"
            if reference
            else ""
        )
        st.caption(
            "Solid: validation · dashed: training · dotted: the objective Optuna received (trials without a stored "
            "history)" + grey + "."
        )
    flagged = [
        f"#{row.number}"
        for row in study_cache.trials_frame(name).itertuples()
        if row.number in chosen and row_flags(row)
    ]
    if flagged:
        st.caption(
            f"{FLAG_MARK} Flagged (constant prediction, or not better than a constant predictor): {', '.join(flagged)}."
        )
    if cross_validated and not each_fold:
        st.caption(f"Cross-validated trials: the curves are {STORED}'s; switch on **Each fold** to see every fold.")


def best_reference(name: str, metric: str) -> tuple[str, float] | None:
    """The best constant predictor's validation ``metric`` (higher is better unless the metric is minimised)."""
    references = study_cache.baselines(name)
    column = f"val_{metric}"
    if references.empty or column not in references or metric not in METRICS or references[column].isna().all():
        return None
    maximize = METRICS.get(metric).direction == "maximize"
    row = references.loc[references[column].idxmax() if maximize else references[column].idxmin()]
    return str(row["label"]), float(row[column])


st.title("Learning curves")
st.caption(
    "Per-epoch training and validation curves of the chosen trials. An × marks where the pruner stopped a trial."
)
study = study_cache.require_study()
with user_errors("Drawing the learning curves"):
    study_cache.show_live(curves_view, study, "the curves refresh")
