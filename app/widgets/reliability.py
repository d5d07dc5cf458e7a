"""How far a trial can be trusted, as the result pages show it: flag badges and warnings,
confidence intervals, and the reference rows of the constant predictors."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from core.contract import Task, TrialFlag
from core.metrics.baselines import BASELINE_MARGIN, FLAG_TEXT
from core.metrics.catalogue import default_objective, label, report_metrics

FLAG_LABELS = {
    TrialFlag.CONSTANT_PREDICTION: "constant prediction",
    TrialFlag.NOT_BETTER_THAN_BASELINE: "not better than a constant",
}
FLAG_MARK = "⚑"
# Where a flagged trial's outputs can be looked at, per task (page title, what it shows).
COMPARE_PAGES: dict[Task, tuple[str, str]] = {
    Task.SEGMENTATION: ("Compare masks", "masks"),
    Task.CLASSIFICATION: ("Compare predictions", "predictions"),
}


def row_flags(row: pd.Series | tuple) -> list[str]:
    """The flags of a trials-frame row (stored comma-separated); empty for old studies."""
    value = row.get("flags") if isinstance(row, pd.Series) else getattr(row, "flags", None)
    return [flag.strip() for flag in str(value).split(",") if flag.strip()] if isinstance(value, str) else []


def trial_choices(complete: pd.DataFrame) -> dict[int, str]:
    """Trial number -> its label in a trial picker: rank, best mark and flag mark."""
    return {
        int(row.number): f"#{row.number} · rank {row.rank}{' · ★ best' if row.best else ''}"
        f"{' · ⚑ flagged' if row_flags(row) else ''}"
        for row in complete.itertuples()
    }


def flag_label(flag: str) -> str:
    return FLAG_LABELS.get(flag, flag)  # type: ignore[call-overload]


def flag_badges(row: pd.Series) -> None:
    """One orange badge per flag, nothing for a trusted trial."""
    for flag in row_flags(row):
        st.badge(flag_label(flag), icon=":material/flag:", color="orange", help=FLAG_TEXT.get(flag))  # type: ignore[call-overload]


def flag_warning(row: pd.Series, action: str, task: Task = Task.SEGMENTATION) -> bool:
    """Warn before a flagged trial is used ("exported", "compressed"); True when it is flagged."""
    flags = row_flags(row)
    if not flags:
        return False
    reasons = "; ".join(FLAG_TEXT.get(flag, flag) for flag in flags)  # type: ignore[call-overload]
    page, outputs = COMPARE_PAGES[task]
    st.warning(
        f"Trial #{int(row['number'])} is flagged: it {reasons}. Check its {outputs} on **{page}** before it is "
        f"{action}.",
        icon=":material/flag:",
    )
    return True


def interval(row: pd.Series, split: str) -> str | None:
    """ "0.812 – 0.861" for the 95 % bootstrap interval of ``split`` Dice, or None."""
    low, high = row.get(f"{split}_dice_ci_low"), row.get(f"{split}_dice_ci_high")
    if low is None or high is None or pd.isna(low) or pd.isna(high):
        return None
    return f"{low:.3f} – {high:.3f}"


def mean_sd(row: pd.Series, metric: str = "dice") -> str | None:
    """ "0.84 ± 0.03" for a cross-validated trial (mean ± SD over folds), else None."""
    sd = row.get(f"val_{metric}_std")
    mean = row.get(f"val_{metric}")
    if sd is None or mean is None or pd.isna(sd) or pd.isna(mean):
        return None
    return f"{mean:.3f} ± {sd:.3f}"


REFERENCE_COLUMNS: dict[Task, tuple[str, ...]] = {
    Task.SEGMENTATION: ("val_dice", "val_dice_per_image", "val_iou", "val_recall", "val_specificity", "test_dice"),
    # the classification report metrics (accuracy, balanced accuracy, macro F1), then the test headline
    Task.CLASSIFICATION: (
        *(f"val_{m}" for m in report_metrics(Task.CLASSIFICATION)),
        default_objective(Task.CLASSIFICATION).replace("val_", "test_", 1),
    ),
}
CONSTANT_UNITS = {Task.SEGMENTATION: "every pixel", Task.CLASSIFICATION: "every image"}


def references_table(references: pd.DataFrame, task: Task = Task.SEGMENTATION) -> None:
    """The constant predictors, scored on the same validation and test images as the trials."""
    if references.empty:
        return
    columns = ["label", *(c for c in REFERENCE_COLUMNS[task] if c in references)]
    config = {"label": st.column_config.TextColumn("Reference (constant prediction)", width="medium")}
    config.update({c: st.column_config.NumberColumn(label(c), format="%.3f") for c in columns if c != "label"})
    st.dataframe(references[columns], hide_index=True, column_config=config, key="leaderboard.references")
    st.caption(
        f"Reference rows: {CONSTANT_UNITS[task]} predicted as one class, scored like a trial. A trial is flagged "
        f"when it does not beat the best of them by {BASELINE_MARGIN} on its first objective, or when it predicts "
        "(nearly) one class everywhere."
    )
