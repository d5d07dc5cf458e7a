"""Compare masks: the chosen trials' predictions side by side on the validation preview images (with
their compressed variants' next to them), on every validation and test image (2D datasets), or on
every slice of one validation or test volume (volume datasets); the last two predicted on demand."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import streamlit as st

from app import cache, study_cache, volume_cache
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
SPLIT_KEY = "compare.split"
VOLUME_SOURCES = {"previews": "Preview slices", "volume": "A whole volume"}
IMAGE_SOURCES = {"previews": "Preview images", "split": "Every validation and test image"}
PART_LABELS = {"val": "Validation", "test": "Test"}


def chosen_trials(name: str) -> list[int] | None:
    frame = study_cache.trials_frame(name)
    chosen = finished_trial_picker(
        frame, key="compare.trials", what="predicted masks", flag_note="Their masks show what they learned."
    )
    if chosen and frame["folds"].notna().any():
        stored = fold_name(STORED_FOLD)
        st.caption(f"Cross-validated trials: the masks shown are {stored}'s model's (its validation images).")
    return chosen


def chosen_previews(name: str, chosen: list[int]) -> PreviewSet | None:
    previews = study_cache.previews(name, tuple(chosen))
    if previews.missing:
        st.warning(
            f"Trial(s) {', '.join(f'#{n}' for n in previews.missing)} stored no predicted masks.",
            icon=":material/warning:",
        )
    return previews if previews.predictions else None


def with_variants(name: str, previews: PreviewSet) -> PreviewSet:
    """Add the compressed variants the user picks, each right after its original trial."""
    options = {
        f"{number}:{index}": f"#{number} · variant {index} · {record['label']}"
        for number in previews.trial_numbers
        for index, record in enumerate(study_cache.variant_records(name, number), 1)
    }
    if not options:
        return previews
    picked = st.multiselect(
        "Compressed variants, next to their trial",
        list(options),
        format_func=options.get,
        key=f"{KEY}.variants",
        max_selections=MAX_VARIANTS,
        placeholder="Choose variants (derived on Compress & deploy)",
        help="int8 or pruned versions of the chosen trials, run on the same preview images",
    )
    for option in picked:
        number, index = (int(part) for part in option.split(":"))
        previews = previews.with_masks(
            option, options[option], study_cache.variant_masks(name, number, index), after=number
        )
    return previews


def dice_table(previews: PreviewSet, ordered: list[int], what: str = "preview images") -> None:
    with st.expander(f"Per-image Dice of all {len(ordered)} {what}"):
        table = previews.dice_table(ordered)
        numbers = {
            column: st.column_config.NumberColumn(format="%.3f") for column in table.columns if column != "image"
        }
        st.dataframe(table, hide_index=True, column_config=numbers)


def preview_view(name: str, chosen: list[int]) -> None:
    previews = chosen_previews(name, chosen)
    if previews is None:
        return
    previews = with_variants(name, previews)
    view, order, opacity, per_row, colours = view_controls(previews, key=KEY)
    channel = channel_picker(int(previews.images.shape[1]), f"{KEY}.channel")
    ordered = previews.order(order)
    volumes = volumes_of(previews.stems)
    if volumes and sum(map(len, volumes.values())) == len(
        previews.stems
    ):  # a volume dataset: one volume's preview slices
        volume = st.selectbox(
            "Volume",
            list(volumes),
            key="compare.volume",
            format_func=lambda v: f"{v} ({len(volumes[v])} preview slices)",
        )
        members = set(volumes[volume])
        ordered = [index for index in ordered if index in members]
    position = image_stepper(len(ordered), key=KEY)
    index = ordered[position - 1]
    st.caption(slice_caption(previews.stems[index]))
    mask_row(previews, index, view=view, opacity=opacity, per_row=per_row, channel=channel, colours=colours)
    zoom_button(previews, index, view=view, opacity=opacity, key=KEY, channel=channel, colours=colours)
    dice_table(previews, ordered)


def predict_each(chosen: list[int], predict: Callable[[int], np.ndarray]) -> tuple[dict[int, np.ndarray], list[int]]:
    """Each chosen trial's masks from ``predict`` (its number -> masks), and the trials whose weights
    could not be read, said once on the page."""
    predictions, missing = {}, []
    for number in chosen:
        try:
            predictions[number] = predict(number)
        except SegTuneError:
            missing.append(number)
    if missing:
        st.warning(
            f"Trial(s) {', '.join(f'#{n}' for n in missing)} stored no readable weights.", icon=":material/warning:"
        )
    return predictions, missing


def split_view(name: str, chosen: list[int], parts: dict[str, list[str]]) -> None:
    """Every validation or test image, one at a time in name order; each chosen trial's masks are
    predicted a page of images at a time, when the user reaches it, and kept."""
    from core.results.split_masks import PAGE_SIZE, native_case, page_set  # torch: only this view needs it

    part = st.radio(
        "Split",
        list(parts),
        key="compare.split_part",
        horizontal=True,
        format_func=lambda p: f"{PART_LABELS[p]} ({len(parts[p])} images)",
    )
    stems = parts[part]
    position = image_stepper(len(stems), key=SPLIT_KEY)
    page, offset = divmod(position - 1, PAGE_SIZE)
    images = volume_cache.image_page(name, part, page)
    predictions, missing = predict_each(chosen, lambda number: volume_cache.page_predictions(name, number, part, page))
    if not predictions:
        return
    masks = page_set(images, predictions, tuple(missing))
    view, _, opacity, per_row, colours = view_controls(masks, key=SPLIT_KEY, ordered=False)
    channel = channel_picker(int(masks.images.shape[1]), f"{KEY}.channel")
    st.caption(
        f"{images.stems[offset]} · image {position} of {len(stems)} {PART_LABELS[part].lower()} images, in name order "
        f"(masks predicted from the trials' weights, {PAGE_SIZE} images at a time)"
    )
    if st.toggle(
        "Original resolution",
        key=f"{SPLIT_KEY}.native",
        help="The image and its mask as stored in the dataset, and each "
        "trial's mask resized to them exactly as the scores at the original resolution were computed",
    ):
        masks, offset = (
            native_case(
                study_cache.study(name),
                cache.settings(),
                images.stems[offset],
                {number: mask[offset] for number, mask in predictions.items()},
                tuple(missing),
            ),
            0,
        )
        height, width = masks.masks.shape[1:]
        st.caption(f"At the original {width} x {height} px; the zoom shows the real pixels.")
    mask_row(masks, offset, view=view, opacity=opacity, per_row=per_row, channel=channel, colours=colours)
    zoom_button(masks, offset, view=view, opacity=opacity, key=SPLIT_KEY, channel=channel, colours=colours)
    first = page * PAGE_SIZE + 1
    page_masks = page_set(images, predictions, tuple(missing))
    dice_table(
        page_masks,
        list(range(len(page_masks.stems))),
        f"{PART_LABELS[part].lower()} images {first}–{first + len(page_masks.stems) - 1}",
    )
    case_table(name, chosen, part)


def case_table(name: str, chosen: list[int], part: str) -> None:
    """Every image of the split part scored at its original size, as the trials stored it."""
    from core.results.split_masks import case_frame

    frame = case_frame(study_cache.trials(name, tuple(chosen)), part)
    if frame.empty:
        st.caption(
            "Per-case scores at the original resolution are stored by trials of studies made since SegTune scores "
            "that way."
        )
        return
    with st.expander(
        f"Per-case scores at the original resolution: all {len(frame)} {PART_LABELS[part].lower()} images",
        expanded=False,
    ):
        numbers = {
            column: st.column_config.NumberColumn(column, format="%.3f")
            for column in frame.columns
            if column not in ("image", "size")
        }
        st.dataframe(frame, hide_index=True, column_config=numbers, width="stretch")
        st.caption(
            "Dice and NSD (surface Dice at the study's tolerance): higher is better; HD95 in pixels: lower is better. "
            "Empty cells: nothing to find and nothing predicted in that image."
        )


def volume_view(name: str, chosen: list[int], parts: dict[str, list[str]]) -> None:
    """Every stored slice of one validation / test volume, each chosen trial's masks predicted on demand."""
    from core.results.volume_masks import volume_dice, volume_set  # torch: only this view needs it

    left, right = st.columns([1, 3], vertical_alignment="bottom")
    part = left.radio("Split", list(parts), format_func=PART_LABELS.get, key="compare.part", horizontal=True)
    volume = right.selectbox("Volume", parts[part], key=f"compare.whole.{part}")
    slices = volume_cache.volume_slices(name, part, volume)
    predictions, missing = predict_each(chosen, lambda number: volume_cache.predictions(name, number, part, volume))
    if not predictions:
        return
    masks = volume_set(slices, predictions, tuple(missing))
    scores = st.columns(len(predictions))
    for column, (number, prediction) in zip(scores, predictions.items()):
        column.metric(
            f"Trial #{number}: volume Dice",
            f"{volume_dice(slices, prediction):.3f}",
            help="The volume's stored slices stacked, as in Dice per volume",
        )
    view, order, opacity, per_row, colours = view_controls(masks, key=SLICE_KEY, slices=True)
    channel = channel_picker(int(masks.images.shape[1]), f"{KEY}.channel")
    ordered = masks.order(order)
    position = image_stepper(len(ordered), key=SLICE_KEY, label="Slice")
    index = ordered[position - 1]
    stored = len(slices.stems)
    left_out = (
        f"; {slices.total_slices - stored} empty slices were left out at ingest" if stored < slices.total_slices else ""
    )
    caption = f"{volume} · slice {slices.slice_index(index)}"
    st.caption(f"{caption} · {position} of {stored} stored slices (the volume has {slices.total_slices}{left_out})")
    mask_row(
        masks, index, view=view, opacity=opacity, per_row=per_row, channel=channel, caption=caption, colours=colours
    )
    zoom_button(masks, index, view=view, opacity=opacity, key=SLICE_KEY, channel=channel, colours=colours)
    dice_table(masks, ordered, f"slices of {volume}")


def classification_study(name: str) -> None:
    st.info(
        f"**{name}** is a classification study: its predictions are class labels. Compare them on **Compare "
        "predictions**.",
        icon=":material/info:",
    )
    st.page_link(page_path("predictions.py"), label="Compare predictions", icon=":material/fact_check:")


st.title("Compare masks")
st.caption(
    "Validation images with the ground truth and each chosen trial's prediction (and its compressed variants'), side "
    "by side. Step through the worst cases first."
)
study = study_cache.require_study()
with user_errors("Comparing masks"):
    if study_cache.task(study) == Task.CLASSIFICATION:
        classification_study(study)
    else:
        chosen = chosen_trials(study)
        if chosen:
            volumes = volume_cache.split_volumes(study)
            parts, sources = (volumes, VOLUME_SOURCES) if volumes else (volume_cache.split_images(study), IMAGE_SOURCES)
            source = "previews"
            if parts:
                source = st.segmented_control(
                    "Show",
                    list(sources),
                    default="previews",
                    format_func=sources.get,
                    key="compare.source",
                    required=True,
                    help="The stored preview images, or every image of the validation and test "
                    "splits (a volume's every stored slice), masks predicted from the trials' weights",
                )
            if source == "volume":
                volume_view(study, chosen, parts)
            elif source == "split":
                split_view(study, chosen, parts)
            else:
                preview_view(study, chosen)
            st.page_link(
                page_path("compress.py"),
                label="Derive compressed variants on Compress & deploy",
                icon=":material/compress:",
            )
