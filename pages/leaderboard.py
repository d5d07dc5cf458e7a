"""Leaderboard: every trial of the study, sortable and filterable; pick trials to compare.

The metrics shown are the study task's (core.metrics.catalogue): Dice, IoU, ... for segmentation,
balanced accuracy, accuracy, ... for classification.
"""

from __future__ import annotations

import optuna
import pandas as pd
import streamlit as st

from app import state, study_cache
from app.nav import page_path
from app.widgets.errors import user_errors
from app.widgets.reliability import COMPARE_PAGES, flag_badges, flag_warning, interval, mean_sd, references_table
from app.widgets.trial_table import (
    GROUPS,
    STATE_ICONS,
    failure_reasons,
    headline_metrics,
    shown_count,
    shown_value,
    trial_table,
    visible_columns,
)
from core.contract import Task
from core.metrics.catalogue import label
from core.results.reliability import evaluation_note
from core.results.trials import pruned_ahead

COMPARE_FILES = {Task.SEGMENTATION: "compare.py", Task.CLASSIFICATION: "predictions.py"}


def count_cards(name: str) -> None:
    """Trials as the jobs count them against the budget (``core.runtime.budget.trial_counts``)."""
    counts = study_cache.trial_counts(name)
    cards = st.columns(5)
    cards[0].metric("Trials", counts.done, help="Trials that used budget: complete, pruned and failed")
    cards[1].metric("Complete", counts.complete)
    cards[2].metric("Pruned", counts.pruned)
    cards[3].metric("Failed", counts.failed, help="Cancelled trials and failures replaced by a retry are not counted")
    cards[4].metric("Running", counts.running + counts.waiting, help="Running now, or queued (retries, grid points)")
    if counts.cancelled:
        st.caption(
            f'{counts.cancelled} cancelled trial(s) are listed below as "cancelled" but not counted: a resumed job '
            "runs replacements."
        )


def best_trial(name: str, frame: pd.DataFrame, task: Task) -> None:
    best = frame[frame["best"]].sort_values("rank")
    if best.empty:
        st.info(
            "No finished trials yet — the best trial appears here when the first one completes.",
            icon=":material/hourglass_top:",
        )
        return
    top = best.iloc[0]
    more = f" (and {len(best) - 1} more on the Pareto front)" if len(best) > 1 else ""
    st.subheader(f":material/emoji_events: Best trial #{top['number']}{more}")
    flag_badges(top)
    flag_warning(top, "trusted, exported or compressed", task)
    first, second = headline_metrics(task)
    metrics = st.columns(5)
    val_ci, test_ci = interval(top, "val"), interval(top, "test")
    metrics[0].metric(
        label(f"val_{first}").replace("Validation", "Val"),
        mean_sd(top, first) or shown_value(top[f"val_{first}"]),
        border=True,
        help=f"95 % CI {val_ci} (bootstrap)" if val_ci else None,
    )
    metrics[1].metric(
        label(f"val_{second}").replace("Validation", "Val"), shown_value(top[f"val_{second}"]), border=True
    )
    metrics[2].metric(
        label(f"test_{first}"),
        shown_value(top[f"test_{first}"]),
        border=True,
        help="Shown for information: never used to choose the best trial" + (f". 95 % CI {test_ci}" if test_ci else ""),
    )
    metrics[3].metric("Parameters", shown_count(top["n_params"]), border=True)
    metrics[4].metric("Images/s", shown_value(top["images_per_s"], ".0f"), border=True)
    if val_ci:
        st.caption(f"Val Dice 95 % confidence interval: {val_ci}" + (f" · test: {test_ci}" if test_ci else ""))
    if pd.notna(top.get("ensemble_test_dice")):
        st.caption(
            f"Fold ensemble ({top['folds']} fold models, probabilities averaged) on test: Dice "
            f"**{top['ensemble_test_dice']:.4f}**, against {top['test_dice']:.4f} for the mean of the fold models. "
            "Export it with `python -m core export --ensemble`."
        )
    note = evaluation_note(study_cache.study(name).user_attrs, task)
    if note:
        st.caption(note)
    comparison = study_cache.runner_up(name)
    if comparison is not None:
        if comparison.distinguishable:
            st.caption(comparison.sentence())
        else:
            st.info(comparison.sentence(), icon=":material/balance:")


def filtered_table(name: str, frame: pd.DataFrame, task: Task) -> None:
    filters = st.columns([3, 3])
    present = [s for s in STATE_ICONS if s in set(frame["state"])]
    states = filters[0].pills(
        "States",
        present,
        selection_mode="multi",
        default=present,
        format_func=STATE_ICONS.get,
        key="leaderboard.states",
    )
    # Scores only by default: they fit a 1280 px window; parameters, test and cost are a click away.
    groups = filters[1].pills(
        "Columns",
        list(GROUPS),
        selection_mode="multi",
        default=["val"],
        format_func=GROUPS.get,
        key="leaderboard.groups",
    )
    shown = (
        frame[frame["state"].isin(states)].sort_values(["rank", "number"], na_position="last").reset_index(drop=True)
    )
    if shown.empty:
        st.info("No trial has the chosen states — pick more states above.", icon=":material/filter_alt_off:")
    else:
        trial_table(shown, visible_columns(shown, groups, task), key="leaderboard.table")
        unranked_note(name, shown)


def unranked_note(name: str, frame: pd.DataFrame) -> None:
    """Why a pruned trial whose last value beats a complete trial's has no rank."""
    objective = study_cache.objective_names(name)[0]
    maximize = study_cache.study(name).directions[0] == optuna.study.StudyDirection.MAXIMIZE
    ahead = pruned_ahead(frame, objective, maximize)
    if ahead:
        trials = ", ".join(f"#{number}" for number in ahead)
        st.caption(
            f"Pruned trials are not ranked: {trials} ended with a last {label(objective)} above a complete trial's, "
            "but the pruner stopped them early against other trials at the same epoch, so that value is of an "
            "unfinished run. Only complete trials get a rank."
        )


def failures(frame: pd.DataFrame) -> None:
    """The full error of every failed trial: table cells cut long messages short."""
    reasons = failure_reasons(frame)
    if not reasons:
        return
    with st.expander(f"Why {len(reasons)} trial(s) failed", icon=":material/error:"):
        for number, reason in reasons.items():
            st.markdown(f"**#{number}**")
            st.code(reason, language=None, wrap_lines=True)


def actions(name: str, frame: pd.DataFrame, task: Task) -> None:
    buttons = st.columns([2, 2, 2, 4])
    selected = state.SELECTED_TRIALS.get()
    buttons[0].download_button(
        "Download CSV",
        frame.to_csv(index=False),
        file_name=f"{name}-trials.csv",
        mime="text/csv",
        icon=":material/download:",
        width="stretch",
    )
    if buttons[1].button(
        COMPARE_PAGES[task][0],
        icon=":material/compare:",
        disabled=not selected,
        width="stretch",
        help="Select 1–4 rows in the table first",
        key="leaderboard.compare",
    ):
        st.switch_page(page_path(COMPARE_FILES[task]))
    if buttons[2].button("Learning curves", icon=":material/show_chart:", disabled=not selected, width="stretch"):
        st.switch_page(page_path("curves.py"))
    buttons[3].caption(
        f"Selected: {', '.join(f'#{n}' for n in selected)}" if selected else "Select rows to compare trials."
    )


def board(name: str, drawn_live: bool) -> None:
    # Errors are caught inside: a fragment's own reruns do not pass through the page's code.
    with user_errors("Reading the trials"):
        study_cache.rearm_if_changed(name, drawn_live)
        frame = study_cache.trials_frame(name)
        if frame.empty:
            st.info(
                "No trials yet — start this study's job on **Jobs**, or a new study on **New study**.",
                icon=":material/hourglass_empty:",
            )
            return
        task = study_cache.task(name)
        count_cards(name)
        best_trial(name, frame, task)
        filtered_table(name, frame, task)
        references_table(study_cache.baselines(name), task)
        failures(frame)
        actions(name, frame, task)


st.title("Leaderboard")
st.caption("Every trial of the study, ranked on the validation split. Select rows to compare them.")
study = study_cache.require_study()
with user_errors("Reading the trials"):
    study_cache.show_live(board, study, "this view refreshes")
