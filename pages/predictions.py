"""Compare predictions (classification studies): each chosen trial's confusion matrix, and the
validation images they got wrong side by side — true class, each trial's prediction and confidence —
ordered by confidence or by disagreement between the trials."""

from __future__ import annotations

import streamlit as st

from app import study_cache
from app.nav import page_path
from app.widgets.errors import user_errors
from app.widgets.predictions import SHOWN, accuracy_text, confusion_figure, image_cards, shown_images
from app.widgets.trial_table import finished_trial_picker
from core.contract import Task
from core.results.predictions import ORDERINGS, PredictionComparison

PAGE_SIZE = 12  # image cards per page
PAGE_KEY = "predictions.page"


def chosen_predictions(name: str) -> PredictionComparison | None:
    """The picked complete trials' validation predictions, or None after saying why there is nothing to show."""
    frame = study_cache.trials_frame(name)
    chosen = finished_trial_picker(
        frame,
        key="predictions.trials",
        what="predictions",
        flag_note="Their confusion matrices show what they learned.",
    )
    if not chosen:
        return None
    comparison = study_cache.prediction_comparison(name, tuple(chosen))
    if comparison.missing:
        st.warning(
            f"Trial(s) {', '.join(f'#{n}' for n in comparison.missing)} stored no predictions.",
            icon=":material/warning:",
        )
    if frame["folds"].notna().any():
        st.caption(
            "Cross-validated trials: every image is predicted by the fold model that did not train on it (out of fold)."
        )
    return comparison if comparison.trials else None


def confusion_section(name: str, comparison: PredictionComparison) -> None:
    st.subheader("Confusion matrices")
    for column, number in zip(st.columns(len(comparison.trials)), comparison.trials):
        matrix = study_cache.confusion_matrix(name, number)
        with column:
            st.plotly_chart(
                confusion_figure(matrix, comparison.classes, f"Trial #{number}"), key=f"predictions.confusion.{number}"
            )
            st.caption(f"#{number}: {accuracy_text(matrix)} · rows: true class, columns: predicted")


def image_controls(comparison: PredictionComparison) -> tuple[str, str]:
    """Which images (misclassified, disagreeing, all) and in which order."""
    several = len(comparison.trials) > 1
    left, right = st.columns([3, 2])
    options = [key for key in SHOWN if key != "disagree" or several]
    shown = left.segmented_control(
        "Show", options, default="wrong", format_func=SHOWN.get, key="predictions.shown", required=True
    )
    orders = [key for key in ORDERINGS if key != "disagreement" or several]
    order = right.selectbox("Order images by", orders, format_func=ORDERINGS.get, key="predictions.order")
    return shown, order


def nothing_to_show(shown: str) -> None:
    if shown == "wrong":
        st.success("The chosen trials classify every validation image correctly.", icon=":material/check_circle:")
    else:
        st.success(
            "The chosen trials predict the same class for every validation image.", icon=":material/check_circle:"
        )


def page_of(indices: list[int]) -> list[int]:
    """The current page of ``indices`` (a page picker when there are more than :data:`PAGE_SIZE`)."""
    pages = -(-len(indices) // PAGE_SIZE)
    if pages <= 1:
        return indices
    if st.session_state.get(PAGE_KEY, 1) > pages:
        st.session_state[PAGE_KEY] = 1
    page = int(st.number_input(f"Page (of {pages})", min_value=1, max_value=pages, step=1, key=PAGE_KEY))
    return indices[(page - 1) * PAGE_SIZE : page * PAGE_SIZE]


def images_section(name: str, comparison: PredictionComparison) -> None:
    st.subheader("Images")
    shown, order = image_controls(comparison)
    indices = shown_images(comparison, order, shown)
    if not indices:
        nothing_to_show(shown)
        return
    st.caption(
        f"{len(indices)} of {len(comparison.stems)} validation images · green: right, red: wrong; "
        "the number is the trial's confidence (its probability for the class it predicted)."
    )
    page = page_of(indices)
    images = study_cache.prediction_images(name, tuple(comparison.stems[i] for i in page))
    image_cards(comparison, page, images, per_row=4)
    table(comparison, order, indices)


def table(comparison: PredictionComparison, order: str, indices: list[int]) -> None:
    """Every listed image with each trial's prediction, confidence and correctness (sortable)."""
    listed = {comparison.stems[i] for i in indices}
    rows = comparison.table(order)
    rows = rows[rows["image"].isin(listed)].reset_index(drop=True)
    config = {
        column: st.column_config.ProgressColumn(column, min_value=0.0, max_value=1.0, format="%.2f")
        for column in rows.columns
        if column.endswith("confidence") or column == "disagreement"
    }
    with st.expander(f"Table of the {len(rows)} listed images"):
        st.dataframe(rows, hide_index=True, column_config=config, key="predictions.table")


def segmentation_study(name: str) -> None:
    st.info(
        f"**{name}** is a segmentation study: its predictions are masks. Compare them on **Compare masks**.",
        icon=":material/info:",
    )
    st.page_link(page_path("compare.py"), label="Compare masks", icon=":material/compare:")


st.title("Compare predictions")
st.caption(
    "Classification studies: each chosen trial's confusion matrix on the validation images, and the images "
    "they got wrong side by side with the true class and each trial's prediction and confidence."
)
study = study_cache.require_study()
with user_errors("Comparing predictions"):
    if study_cache.task(study) != Task.CLASSIFICATION:
        segmentation_study(study)
    else:
        chosen = chosen_predictions(study)
        if chosen is not None:
            confusion_section(study, chosen)
            images_section(study, chosen)
