"""Compare masks: the chosen trials' predictions side by side on the validation preview images,
and their compressed variants' next to them."""

from __future__ import annotations

import streamlit as st

from app import study_cache
from app.nav import page_path
from app.widgets.errors import user_errors
from app.widgets.mask_grid import image_stepper, mask_row, view_controls, zoom_button
from app.widgets.reliability import row_flags
from app.widgets.trial_table import trial_picker
from core.data.volumes import slice_caption, volumes_of
from core.results.previews import PreviewSet

MAX_TRIALS = 4
MAX_VARIANTS = 4
KEY = "compare"


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


def with_variants(name: str, previews: PreviewSet) -> PreviewSet:
    """Add the compressed variants the user picks, each right after its original trial."""
    options = {f"{number}:{index}": f"#{number} · variant {index} · {record['label']}"
               for number in previews.trial_numbers for index, record in enumerate(study_cache.variant_records(name, number), 1)}
    if not options:
        return previews
    picked = st.multiselect("Compressed variants, next to their trial", list(options), format_func=options.get, key=f"{KEY}.variants",
                            max_selections=MAX_VARIANTS, placeholder="Choose variants (derived on Compress & deploy)",
                            help="int8 or pruned versions of the chosen trials, run on the same preview images")
    for option in picked:
        number, index = (int(part) for part in option.split(":"))
        previews = previews.with_masks(option, options[option], study_cache.variant_masks(name, number, index), after=number)
    return previews


def dice_table(previews: PreviewSet, ordered: list[int]) -> None:
    with st.expander(f"Per-image Dice of all {len(ordered)} preview images"):
        table = previews.dice_table(ordered)
        numbers = {column: st.column_config.NumberColumn(format="%.3f") for column in table.columns if column != "image"}
        st.dataframe(table, hide_index=True, column_config=numbers)


st.title("Compare masks")
st.caption("Validation images with the ground truth and each chosen trial's prediction (and its compressed variants'), side by side. "
           "Step through the worst cases first.")
study = study_cache.require_study()
with user_errors("Comparing masks"):
    previews = chosen_previews(study)
    if previews is not None:
        previews = with_variants(study, previews)
        view, order, opacity, per_row = view_controls(previews, key=KEY)
        ordered = previews.order(order)
        volumes = volumes_of(previews.stems)
        if volumes and sum(map(len, volumes.values())) == len(previews.stems):  # a volume dataset: step through one volume's slices
            volume = st.selectbox("Volume", list(volumes), key="compare.volume", format_func=lambda v: f"{v} ({len(volumes[v])} preview slices)")
            members = set(volumes[volume])
            ordered = [index for index in ordered if index in members]
        position = image_stepper(len(ordered), key=KEY)
        st.caption(slice_caption(previews.stems[ordered[position - 1]]))
        mask_row(previews, ordered[position - 1], view=view, opacity=opacity, per_row=per_row)
        zoom_button(previews, ordered[position - 1], view=view, opacity=opacity, key=KEY)
        dice_table(previews, ordered)
        st.page_link(page_path("compress.py"), label="Derive compressed variants on Compress & deploy", icon=":material/compress:")
