"""Leaderboard: every trial of the study, sortable and filterable; pick trials to compare."""

from __future__ import annotations

import streamlit as st

from app import state, study_cache
from app.nav import page_path
from app.widgets.errors import user_errors
from app.widgets.trial_table import GROUPS, STATE_ICONS, shown_value, trial_table, visible_columns

st.title("Leaderboard")
st.caption("Every trial of the study, ranked on the validation split. Select rows to compare them.")

name = study_cache.require_study()
with user_errors("Reading the trials"):
    frame = study_cache.trials_frame(name)
    if frame.empty:
        st.info("No trials yet — start this study's job on **Jobs**, or a new study on **New study**.", icon=":material/hourglass_empty:")
        st.stop()

    best = frame[frame["best"]].sort_values("rank")
    counts = frame["state"].value_counts()
    cards = st.columns(5)
    cards[0].metric("Trials", len(frame), help="All trials: complete, pruned, failed, running")
    cards[1].metric("Complete", int(counts.get("complete", 0)))
    cards[2].metric("Pruned", int(counts.get("pruned", 0)))
    cards[3].metric("Failed", int(counts.get("fail", 0)))
    cards[4].metric("Running", int(counts.get("running", 0) + counts.get("waiting", 0)))
    if best.empty:
        st.info("No finished trials yet — the best trial appears here when the first one completes.", icon=":material/hourglass_top:")
    else:
        top = best.iloc[0]
        st.subheader(f":material/emoji_events: Best trial #{top['number']}" + (f" (and {len(best) - 1} more on the Pareto front)" if len(best) > 1 else ""))
        metrics = st.columns(5)
        metrics[0].metric("Val Dice", shown_value(top["val_dice"]), border=True)
        metrics[1].metric("Val IoU", shown_value(top["val_iou"]), border=True)
        metrics[2].metric("Test Dice", shown_value(top["test_dice"]), border=True,
                          help="Shown for information: never used to choose the best trial")
        metrics[3].metric("Parameters", shown_value(top["n_params"], ",.0f"), border=True)
        metrics[4].metric("Images/s", shown_value(top["images_per_s"], ".0f"), border=True)

    filters = st.columns([3, 3])
    present = [s for s in STATE_ICONS if s in set(frame["state"])]
    states = filters[0].pills("States", present, selection_mode="multi", default=present, format_func=STATE_ICONS.get, key="leaderboard.states")
    groups = filters[1].pills("Columns", list(GROUPS), selection_mode="multi", default=["params", "val", "cost"],
                              format_func=GROUPS.get, key="leaderboard.groups")
    shown = frame[frame["state"].isin(states)].sort_values(["rank", "number"], na_position="last").reset_index(drop=True)
    if shown.empty:
        st.info("No trial has the chosen states — pick more states above.", icon=":material/filter_alt_off:")
    else:
        trial_table(shown, visible_columns(shown, groups), key="leaderboard.table")

    actions = st.columns([2, 2, 2, 4])
    selected = state.SELECTED_TRIALS.get()
    actions[0].download_button("Download CSV", frame.to_csv(index=False), file_name=f"{name}-trials.csv", mime="text/csv",
                               icon=":material/download:", width="stretch")
    if actions[1].button("Compare masks", icon=":material/compare:", disabled=len(selected) < 1, width="stretch",
                         help="Select 1–4 rows in the table first"):
        st.switch_page(page_path("compare.py"))
    if actions[2].button("Learning curves", icon=":material/show_chart:", disabled=len(selected) < 1, width="stretch"):
        st.switch_page(page_path("curves.py"))
    actions[3].caption(f"Selected: {', '.join(f'#{n}' for n in selected)}" if selected else "Select rows to compare trials.")
