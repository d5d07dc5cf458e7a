"""Compare masks: the chosen trials' predictions side by side on the validation preview images (with
their compressed variants' next to them), or (volume datasets) on every slice of one validation or
test volume, predicted on demand."""

from __future__ import annotations

import streamlit as st

from app import study_cache, volume_cache
from app.nav import page_path
from app.widgets.errors import user_errors
from app.widgets.mask_grid import channel_picker, image_stepper, mask_row, view_controls, zoom_button
from app.widgets.trial_table import finished_trial_picker
from core.contract import STORED_FOLD, Task, fold_name
from core.data.volumes import slice_caption, volumes_of
from core.errors import SegTuneError
from core.results.previews import PreviewSet

MAX_VARIANTS = 4
KEY = "compare"
SLICE_KEY = "compare.slice"
SOURCES = {"previews": "Preview slices", "volume": "A whole volume"}
PART_LABELS = {"val": "Validation", "test": "Test"}


def chosen_trials(name: str) -> list[int] | None:
    frame = study_cache.trials_frame(name)
    chosen = finished_trial_picker(frame, key="compare.trials", what="predicted masks", flag_note="Their masks show what they learned.")
    if chosen and frame["folds"].notna().any():
        stored = fold_name(STORED_FOLD)
        st.caption(f"Cross-validated trials: the masks shown are {stored}'s model's (its validation images).")
    return chosen


def chosen_previews(name: str, chosen: list[int]) -> PreviewSet | None:
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


def dice_table(previews: PreviewSet, ordered: list[int], what: str = "preview images") -> None:
    with st.expander(f"Per-image Dice of all {len(ordered)} {what}"):
        table = previews.dice_table(ordered)
        numbers = {column: st.column_config.NumberColumn(format="%.3f") for column in table.columns if column != "image"}
        st.dataframe(table, hide_index=True, column_config=numbers)


def preview_view(name: str, chosen: list[int]) -> None:
    previews = chosen_previews(name, chosen)
    if previews is None:
        return
    previews = with_variants(name, previews)
    view, order, opacity, per_row = view_controls(previews, key=KEY)
    channel = channel_picker(int(previews.images.shape[1]), f"{KEY}.channel")
    ordered = previews.order(order)
    volumes = volumes_of(previews.stems)
    if volumes and sum(map(len, volumes.values())) == len(previews.stems):  # a volume dataset: one volume's preview slices
        volume = st.selectbox("Volume", list(volumes), key="compare.volume", format_func=lambda v: f"{v} ({len(volumes[v])} preview slices)")
        members = set(volumes[volume])
        ordered = [index for index in ordered if index in members]
    position = image_stepper(len(ordered), key=KEY)
    index = ordered[position - 1]
    st.caption(slice_caption(previews.stems[index]))
    mask_row(previews, index, view=view, opacity=opacity, per_row=per_row, channel=channel)
    zoom_button(previews, index, view=view, opacity=opacity, key=KEY, channel=channel)
    dice_table(previews, ordered)


def volume_view(name: str, chosen: list[int], parts: dict[str, list[str]]) -> None:
    """Every stored slice of one validation / test volume, each chosen trial's masks predicted on demand."""
    from core.deploy.volume_masks import volume_dice, volume_set  # torch: only this view needs it

    left, right = st.columns([1, 3], vertical_alignment="bottom")
    part = left.radio("Split", list(parts), format_func=PART_LABELS.get, key="compare.part", horizontal=True)
    volume = right.selectbox("Volume", parts[part], key=f"compare.whole.{part}")
    slices = volume_cache.volume_slices(name, part, volume)
    predictions, missing = {}, []
    for number in chosen:
        try:
            predictions[number] = volume_cache.predictions(name, number, part, volume)
        except SegTuneError:
            missing.append(number)
    if missing:
        st.warning(f"Trial(s) {', '.join(f'#{n}' for n in missing)} stored no readable weights.", icon=":material/warning:")
    if not predictions:
        return
    masks = volume_set(slices, predictions, tuple(missing))
    scores = st.columns(len(predictions))
    for column, (number, prediction) in zip(scores, predictions.items()):
        column.metric(f"Trial #{number}: volume Dice", f"{volume_dice(slices, prediction):.3f}",
                      help="The volume's stored slices stacked, as in Dice per volume")
    view, order, opacity, per_row = view_controls(masks, key=SLICE_KEY, slices=True)
    channel = channel_picker(int(masks.images.shape[1]), f"{KEY}.channel")
    ordered = masks.order(order)
    position = image_stepper(len(ordered), key=SLICE_KEY, label="Slice")
    index = ordered[position - 1]
    stored = len(slices.stems)
    left_out = f"; {slices.total_slices - stored} empty slices were left out at ingest" if stored < slices.total_slices else ""
    caption = f"{volume} · slice {slices.slice_index(index)}"
    st.caption(f"{caption} · {position} of {stored} stored slices (the volume has {slices.total_slices}{left_out})")
    mask_row(masks, index, view=view, opacity=opacity, per_row=per_row, channel=channel, caption=caption)
    zoom_button(masks, index, view=view, opacity=opacity, key=SLICE_KEY, channel=channel)
    dice_table(masks, ordered, f"slices of {volume}")


def classification_study(name: str) -> None:
    st.info(f"**{name}** is a classification study: its predictions are class labels. Compare them on **Compare predictions**.",
            icon=":material/info:")
    st.page_link(page_path("predictions.py"), label="Compare predictions", icon=":material/fact_check:")


st.title("Compare masks")
st.caption("Validation images with the ground truth and each chosen trial's prediction (and its compressed variants'), side by side. "
           "Step through the worst cases first.")
study = study_cache.require_study()
with user_errors("Comparing masks"):
    if study_cache.task(study) == Task.CLASSIFICATION:
        classification_study(study)
    else:
        chosen = chosen_trials(study)
        if chosen:
            parts = volume_cache.split_volumes(study)
            source = "previews"
            if parts:
                source = st.segmented_control("Show", list(SOURCES), default="previews", format_func=SOURCES.get, key="compare.source",
                                              required=True, help="A whole volume: every stored slice, masks predicted from the trials' weights")
            if source == "volume":
                volume_view(study, chosen, parts)
            else:
                preview_view(study, chosen)
            st.page_link(page_path("compress.py"), label="Derive compressed variants on Compress & deploy", icon=":material/compress:")
