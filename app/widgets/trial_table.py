"""The trials table and the trial picker: how a user sees trials and chooses which to compare.

Selections are stored as trial numbers in ``app.state.SELECTED_TRIALS`` so every result page
starts from the same choice. The metric columns are those the metric catalogue defines for the
study's task (Dice, IoU, ... for segmentation; accuracy, balanced accuracy, ... for classification).
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd
import streamlit as st

from app import state
from app.widgets.reliability import FLAG_MARK, flag_label, interval, mean_sd, row_flags
from core.contract import Task
from core.metrics.catalogue import METRICS, Scope, Source, default_objective, report_metrics, task_metrics

MAX_COMPARED = 4  # trials side by side on Compare masks and Compare predictions

# Column groups the user can show or hide; the identity columns are always shown.
GROUPS: dict[str, str] = {
    "params": "Parameters",
    "val": "Validation",
    "test": "Test",
    "cost": "Cost",
}
COST_COLUMNS = ("epochs_run", "train_time_s", "images_per_s", "n_params", "weights_mb")
STATE_ICONS = {
    "complete": "complete",
    "pruned": "pruned",
    "fail": "failed",
    "cancelled": "cancelled",
    "running": "running",
    "waiting": "waiting",
}
# Text columns made from several frame columns when the table is drawn (display_frame).
DERIVED = ("flags_shown", "val_dice_ci", "val_dice_mean_sd", "test_dice_ci")
BEST_MARK = "★"


def shown_metrics(task: Task = Task.SEGMENTATION) -> tuple[str, ...]:
    """The task's split metrics a trial can be chosen on, then its per-case ones (NSD, HD95), in
    catalogue order (the loss is left to the curves)."""
    return tuple(
        m.name
        for m in task_metrics(task)
        if m.scope in (Scope.SPLIT, Scope.CASE) and m.objective and m.source != Source.LOSS
    )


def headline_metrics(task: Task = Task.SEGMENTATION) -> tuple[str, str]:
    """The two metrics a trial is summed up by: the task's default objective (Dice, balanced
    accuracy) and the first other report metric (IoU, accuracy)."""
    first = default_objective(task).removeprefix("val_")
    return first, next(m for m in report_metrics(task) if m != first)


def shown_value(value: object, spec: str = ".3f") -> str:
    """A number for a metric card, or an em dash where the trial has none."""
    return "—" if value is None or pd.isna(value) else format(value, spec)


def shown_count(value: object) -> str:
    """A count for a metric card, compact so a narrow card never cuts it: 13.0 M, 850 k, 512."""
    if value is None or pd.isna(value):
        return "—"
    number = float(value)  # type: ignore[arg-type]
    for size, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(number) >= size:
            return f"{number / size:.1f} {suffix}"
    return f"{number:.0f}"


def visible_columns(frame: pd.DataFrame, groups: Sequence[str], task: Task = Task.SEGMENTATION) -> list[str]:
    """The frame's columns to show for the chosen groups, in reading order (the metrics of ``task``):
    the scores first, so the columns a reader ranks by are never the ones scrolled out of sight."""
    columns = ["best", "number", "state", "rank", *[c for c in frame.columns if c.startswith("objective_")]]
    for split in ("val", "test"):
        if split in groups:
            # per-case metrics only where trials have them (studies scored at training size do not)
            columns += [
                f"{split}_{m}"
                for m in shown_metrics(task)
                if f"{split}_{m}" in frame and frame[f"{split}_{m}"].notna().any()
            ]
            if f"{split}_dice_ci_low" in frame and frame[f"{split}_dice_ci_low"].notna().any():
                columns.insert(columns.index(f"{split}_dice") + 1, f"{split}_dice_ci")
            if split == "val" and "val_dice_std" in frame and frame["val_dice_std"].notna().any():
                columns.insert(columns.index("val_dice") + 1, "val_dice_mean_sd")
    if "flags" in frame and frame["flags"].fillna("").astype(bool).any():
        columns.append("flags_shown")  # shown whenever a listed trial is flagged
    if "params" in groups:
        columns += [c for c in frame.columns if c.startswith("param_")]
    if "cost" in groups:
        columns += list(COST_COLUMNS)
    if failure_reasons(frame):
        columns.append("error")  # why a trial failed: shown whenever the rows include a failure
    return columns


def failure_reasons(frame: pd.DataFrame) -> dict[int, str]:
    """Trial number -> stored error message, for the failed trials among ``frame``'s rows."""
    failed = frame[(frame["state"] == "fail") & frame["error"].notna()]
    return {int(number): str(error) for number, error in zip(failed["number"], failed["error"])}


def column_config(frame: pd.DataFrame) -> dict[str, st.column_config.Column]:
    """Labels and number formats: 3 decimals for metrics, compact counts, scientific learning rates."""
    config: dict[str, st.column_config.Column] = {
        "best": st.column_config.TextColumn(
            "", width="small", help="★ best trial (Pareto front when several objectives)"
        ),
        "number": st.column_config.NumberColumn(
            "Trial", format="#%d", width="small", pinned=True
        ),  # kept in sight when scrolled
        "state": st.column_config.TextColumn("State"),
        "rank": st.column_config.NumberColumn(
            "Rank",
            format="%d",
            width="small",
            help="By the first objective; complete trials only: pruned, failed and running trials are not ranked",
        ),
        "epochs_run": st.column_config.NumberColumn("Epochs", format="%d"),
        "train_time_s": st.column_config.NumberColumn("Train time (s)", format="%.1f"),
        "images_per_s": st.column_config.NumberColumn("Images/s", format="%.0f"),
        "n_params": st.column_config.NumberColumn("Params", format="compact"),
        "weights_mb": st.column_config.NumberColumn("Size (MB)", format="%.2f"),
        "error": st.column_config.TextColumn("Why it failed", width="large"),
        "flags_shown": st.column_config.TextColumn(
            "Flags", help="⚑ constant prediction, or not better than a constant predictor (see the reference rows)"
        ),
        "val_dice_ci": st.column_config.TextColumn(
            "Val Dice 95 % CI", help="Bootstrap over validation images (over folds with cross-validation)"
        ),
        "test_dice_ci": st.column_config.TextColumn(
            "Test Dice 95 % CI", help="Bootstrap over test images (over fold models with cross-validation)"
        ),
        "val_dice_mean_sd": st.column_config.TextColumn("Val Dice mean ± SD", help="Over the cross-validation folds"),
    }
    for column in frame.columns:
        if column.startswith("objective_"):
            config[column] = st.column_config.NumberColumn(
                f"Objective: {column.removeprefix('objective_')}", format="%.4f"
            )
        elif column.startswith("param_"):
            name = column.removeprefix("param_")
            numeric = pd.api.types.is_float_dtype(frame[column])
            config[column] = (
                st.column_config.NumberColumn(name, format="%.2e")
                if numeric and name in ("lr", "weight_decay")
                else st.column_config.Column(name)
            )
    headlines = {headline_metrics(task)[0] for task in Task}  # drawn as bars
    for split, title in (("val", "Val"), ("test", "Test")):
        for metric in (m.name for m in METRICS if m.scope in (Scope.SPLIT, Scope.VOLUME, Scope.CASE)):
            label = f"{title} {METRICS.get(metric).label}"
            if metric in headlines:
                config[f"{split}_{metric}"] = st.column_config.ProgressColumn(
                    label, min_value=0.0, max_value=1.0, format="%.3f"
                )
            else:
                config[f"{split}_{metric}"] = st.column_config.NumberColumn(label, format="%.3f")
    return config


def display_frame(frame: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """The rows as shown: a star for the best, readable states; the original positions are kept."""
    shown = frame[[c for c in columns if c not in DERIVED]].copy()
    rows = [row for _, row in frame.iterrows()]
    derived = {
        "flags_shown": lambda row: " ".join(f"{FLAG_MARK} {flag_label(flag)}" for flag in row_flags(row)),
        "val_dice_ci": lambda row: interval(row, "val"),
        "test_dice_ci": lambda row: interval(row, "test"),
        "val_dice_mean_sd": lambda row: mean_sd(row),
    }
    for column in columns:
        if column in derived:
            shown[column] = [derived[column](row) for row in rows]
    shown = shown[columns]
    shown["best"] = frame["best"].map({True: BEST_MARK, False: ""})
    shown["state"] = frame["state"].map(lambda s: STATE_ICONS.get(s, s))
    return shown


def trial_table(frame: pd.DataFrame, columns: list[str], *, key: str) -> None:
    """The sortable table; selecting rows stores those trial numbers as the comparison choice."""

    def remember_selection() -> None:
        rows = st.session_state[key].selection.rows
        state.SELECTED_TRIALS.set(tuple(int(frame["number"].iloc[row]) for row in rows))

    # The shared choice (made here or on a compare page) is shown ticked, so the boxes and the
    # "Selected" line below the table never disagree.
    chosen = set(state.SELECTED_TRIALS.get())
    ticked = [row for row, number in enumerate(frame["number"]) if int(number) in chosen]
    st.dataframe(
        display_frame(frame, columns),
        column_config=column_config(frame),
        column_order=columns,
        hide_index=True,
        on_select=remember_selection,
        selection_mode="multi-row",
        selection_default={"selection": {"rows": ticked}},
        placeholder="–",  # no rank or objective (pruned, failed, running trials): a dash, not "None"
        key=key,
        height=min(35 * (len(frame) + 1) + 3, 560),
    )


def default_selection(frame: pd.DataFrame, limit: int, initial: int) -> list[int]:
    """The stored choice (up to ``limit``) if it still exists, else the ``initial`` top-ranked complete trials."""
    numbers = set(frame["number"])
    chosen = [n for n in state.SELECTED_TRIALS.get() if n in numbers][:limit]
    if chosen:
        return chosen
    ranked = frame[frame["rank"].notna()].sort_values(["rank", "number"])
    return [int(n) for n in ranked["number"].head(min(limit, initial))]


def trial_picker(frame: pd.DataFrame, *, key: str, limit: int, label: str = "Trials", initial: int = 4) -> list[int]:
    """A multiselect of trials (default: the shared choice, else the top ``initial``) that writes back the shared
    choice."""
    labels = {int(row.number): _label(row) for row in frame.itertuples()}
    if key not in st.session_state:
        st.session_state[key] = default_selection(frame, limit, initial)
    chosen = st.multiselect(
        label,
        list(labels),
        key=key,
        format_func=labels.__getitem__,
        max_selections=limit,
        placeholder="Choose trials (or select rows on the Leaderboard)",
    )
    state.SELECTED_TRIALS.set(tuple(chosen))
    return chosen


def _label(row: tuple) -> str:
    value = next((getattr(row, c) for c in row._fields if c.startswith("objective_")), None)
    score = f" · {value:.4f}" if isinstance(value, float) and value == value else ""
    flagged = f" {FLAG_MARK} flagged" if row_flags(row) else ""
    return f"#{row.number} {row.state}{score}{f' {BEST_MARK} best' if row.best else ''}{flagged}"


def finished_trial_picker(frame: pd.DataFrame, *, key: str, what: str, flag_note: str) -> list[int] | None:
    """Pick up to four complete trials of ``frame`` (a study's trials frame); None after saying why
    there is nothing to show. ``what`` the page shows per trial; ``flag_note`` what a flagged trial's shows."""
    complete = frame[frame["state"] == "complete"]
    if complete.empty:
        st.info(
            f"No finished trials yet — {what} appear when a trial completes. Follow the study on **Jobs**.",
            icon=":material/hourglass_empty:",
        )
        return None
    chosen = trial_picker(complete, key=key, limit=MAX_COMPARED, label=f"Trials to compare (up to {MAX_COMPARED})")
    if not chosen:
        st.info("Choose trials to compare above (or select rows on the **Leaderboard**).", icon=":material/touch_app:")
        return None
    flagged = [f"#{n}" for n in chosen if row_flags(complete[complete["number"] == n].iloc[0])]
    if flagged:
        st.warning(
            f"Flagged — constant prediction, or not better than a constant predictor: {', '.join(flagged)}. "
            f"{flag_note}",
            icon=":material/flag:",
        )
    return list(chosen)
