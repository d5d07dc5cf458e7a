"""Compare masks: the chosen trials' predictions side by side on the validation preview images."""

from __future__ import annotations

import streamlit as st

from app import study_cache
from app.nav import page_path
from app.widgets.errors import user_errors
from app.widgets.mask_grid import VIEWS, error_legend, mask_row
from app.widgets.reliability import row_flags
from app.widgets.trial_table import trial_picker
from core.contract import Task
from core.data.volumes import slice_caption, volumes_of
from core.results.previews import ORDERINGS, PreviewSet

MAX_TRIALS = 4
IMAGE_KEY = "compare.image"


def _step(delta: int, count: int) -> None:
    st.session_state[IMAGE_KEY] = (st.session_state.get(IMAGE_KEY, 1) - 1 + delta) % count + 1


def chosen_previews(name: str) -> PreviewSet | None:
    """The picked complete trials' previews, or None after saying why there is nothing to show."""
    frame = study_cache.trials_frame(name)
    complete = frame[frame["state"] == "complete"]
    if complete.empty:
        st.info("No finished trials yet — predicted masks appear when a trial completes. Follow the study on **Jobs**.",
                icon=":material/hourglass_empty:")
        return None
    chosen = trial_picker(complete, key="compare.trials", limit=MAX_TRIALS, label="Trials to compare (up to 4)")
    if not chosen:
        st.info("Choose trials to compare above (or select rows on the **Leaderboard**).", icon=":material/touch_app:")
        return None
    flagged = [f"#{n}" for n in chosen if row_flags(complete[complete["number"] == n].iloc[0])]
    if flagged:
        st.warning(f"Flagged — constant prediction, or not better than a constant predictor: {', '.join(flagged)}. "
                   "Their masks show what they learned.", icon=":material/flag:")
    if complete["folds"].notna().any():
        st.caption("Cross-validated trials: the masks shown are fold 1's model's (its validation images).")
    previews = study_cache.previews(name, tuple(chosen))
    if previews.missing:
        st.warning(f"Trial(s) {', '.join(f'#{n}' for n in previews.missing)} stored no predicted masks.", icon=":material/warning:")
    return previews if previews.predictions else None


def view_controls(previews: PreviewSet) -> tuple[str, str, float, int]:
    """View, image order, opacity and pictures per row."""
    controls = st.columns([2, 3, 2, 2])
    view = controls[0].segmented_control("View", list(VIEWS), default="overlay", format_func=VIEWS.get, key="compare.view", required=True)
    orders = [key for key in ORDERINGS if key != "disagreement" or len(previews.predictions) > 1]
    order = controls[1].selectbox("Order images by", orders, format_func=ORDERINGS.get, key="compare.order")
    opacity = controls[2].slider("Opacity", 0.1, 1.0, 0.5, 0.05, key="compare.opacity")
    per_row = controls[3].slider("Zoom: pictures per row", 1, 6, min(6, 2 + len(previews.predictions)), key="compare.per_row",
                                 help="Fewer pictures per row shows each one larger")
    if view == "errors":
        error_legend()
    return view, order, opacity, per_row


def image_stepper(count: int) -> int:
    """Previous / slider / next over ``count`` images; returns the 1-based position."""
    if st.session_state.get(IMAGE_KEY, 1) > count:
        st.session_state[IMAGE_KEY] = 1
    stepper = st.columns([1, 6, 1], vertical_alignment="bottom")
    stepper[0].button("Previous", icon=":material/chevron_left:", on_click=_step, args=(-1, count), key="compare.prev", width="stretch")
    if count > 1:
        stepper[1].slider("Image", 1, count, key=IMAGE_KEY, format=f"%d of {count}")
    stepper[2].button("Next", icon=":material/chevron_right:", on_click=_step, args=(1, count), key="compare.next", width="stretch")
    return st.session_state.get(IMAGE_KEY, 1)


def dice_table(previews: PreviewSet, ordered: list[int]) -> None:
    with st.expander(f"Per-image Dice of all {len(ordered)} preview images"):
        table = previews.dice_table(ordered)
        numbers = {column: st.column_config.NumberColumn(format="%.3f") for column in table.columns if column != "image"}
        st.dataframe(table, hide_index=True, column_config=numbers)


def classification_study(name: str) -> None:
    st.info(f"**{name}** is a classification study: its predictions are class labels. Compare them on **Compare predictions**.",
            icon=":material/info:")
    st.page_link(page_path("predictions.py"), label="Compare predictions", icon=":material/fact_check:")


st.title("Compare masks")
st.caption("Validation images with the ground truth and each chosen trial's prediction, side by side. Step through the worst cases first.")
study = study_cache.require_study()
with user_errors("Comparing masks"):
    previews = None
    if study_cache.task(study) == Task.CLASSIFICATION:
        classification_study(study)
    else:
        previews = chosen_previews(study)
    if previews is not None:
        view, order, opacity, per_row = view_controls(previews)
        ordered = previews.order(order)
        volumes = volumes_of(previews.stems)
        if volumes and sum(map(len, volumes.values())) == len(previews.stems):  # a volume dataset: step through one volume's slices
            volume = st.selectbox("Volume", list(volumes), key="compare.volume", format_func=lambda v: f"{v} ({len(volumes[v])} preview slices)")
            members = set(volumes[volume])
            ordered = [index for index in ordered if index in members]
        position = image_stepper(len(ordered))
        st.caption(slice_caption(previews.stems[ordered[position - 1]]))
        mask_row(previews, ordered[position - 1], view=view, opacity=opacity, per_row=per_row)
        dice_table(previews, ordered)
        st.page_link(page_path("compress.py"), label="Compare a compressed variant's masks with its original on Compress & deploy", icon=":material/compress:")
