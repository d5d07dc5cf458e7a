"""Insights: Optuna's own figures — what the search found and which parameters mattered."""

from __future__ import annotations

import streamlit as st

from app import study_cache
from app.widgets.errors import user_errors
from app.widgets.reliability import FLAG_MARK, flag_label, row_flags
from core.metrics.catalogue import label

st.title("Insights")
st.caption("How the search went and which hyperparameters mattered, from Optuna's visualizations.")

name = study_cache.require_study()
with user_errors("Drawing the insights"):
    objectives = study_cache.objective_names(name)
    objective = 0
    if len(objectives) > 1:
        objective = st.selectbox(
            "Objective",
            range(len(objectives)),
            format_func=lambda i: label(objectives[i]),
            key="insights.objective",
            help="History, importances, parallel coordinates, contour and slice show one objective at a time.",
        )
    flagged = [
        (int(row.number), row_flags(row)) for row in study_cache.trials_frame(name).itertuples() if row_flags(row)
    ]
    if flagged:
        listed = "; ".join(f"#{number} ({', '.join(flag_label(flag) for flag in flags)})" for number, flags in flagged)
        st.warning(
            f"{FLAG_MARK} Flagged trials are in these figures too: {listed}. Their scores are those of a "
            "constant prediction or no better than one — read importances with that in mind.",
            icon=":material/flag:",
        )
    figures, updating = study_cache.insights(name, objective)
    if updating:
        st.caption(
            ":material/autorenew: New trials finished: the figures are being redrawn in the background; reload to "
            "see them."
        )
    tabs = st.tabs([insight.title for insight in figures.values()])
    for tab, (key, insight) in zip(tabs, figures.items()):
        with tab:
            if insight.figure is None:
                st.info(insight.message, icon=":material/info:")
            else:
                st.plotly_chart(insight.figure, key=f"insights.{key}")
