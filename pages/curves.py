"""Learning curves: per-epoch loss and metrics of the chosen trials, overlaid."""

from __future__ import annotations

import streamlit as st

from app import study_cache
from app.widgets.curves import curves_figure
from app.widgets.errors import user_errors
from app.widgets.trial_table import trial_picker
from core.metrics.catalogue import curve_metrics, label

MAX_TRIALS = 10  # beyond this the lines are unreadable


def curves_view(name: str, drawn_live: bool) -> None:
    # Errors are caught inside: a fragment's own reruns do not pass through the page's code.
    with user_errors("Drawing the learning curves"):
        study_cache.rearm_if_changed(name, drawn_live)
        frame = study_cache.trials_frame(name)
        started = frame[frame["state"] != "waiting"]
        if started.empty:
            st.info("No trial has started yet — curves appear after a trial's first epoch. Start or resume the study on **Jobs**.",
                    icon=":material/hourglass_empty:")
            return
        chosen = trial_picker(started, key="curves.trials", limit=MAX_TRIALS)
        metric = st.segmented_control("Metric", curve_metrics(), default="loss", format_func=label,
                                      key="curves.metric", required=True)
        if not chosen:
            st.info("Choose one or more trials above (or select rows on the **Leaderboard**).", icon=":material/touch_app:")
            return
        draw(name, tuple(chosen), metric)


def draw(name: str, chosen: tuple[int, ...], metric: str) -> None:
    curves = study_cache.learning_curves(name, chosen, metric)
    if curves.empty:
        st.info(f"The chosen trials have no {label(metric)} values yet.", icon=":material/hourglass_top:")
        return
    st.plotly_chart(curves_figure(curves, metric), key="curves.figure")
    if metric == "lr":
        st.caption("The learning rate each trial's schedule set, per epoch.")
    else:
        st.caption("Solid: validation · dashed: training · dotted: the objective Optuna received (trials without a stored history).")


st.title("Learning curves")
st.caption("Per-epoch training and validation curves of the chosen trials. An × marks where the pruner stopped a trial.")
study = study_cache.require_study()
with user_errors("Drawing the learning curves"):
    study_cache.show_live(curves_view, study, "the curves refresh")
