"""One preview image side by side: image | ground truth | each model's prediction, with Dice.

Masks are drawn by ``core.data.visual`` (overlay or true/false positive/negative error map) and
scaled up with nearest-neighbour so small training images stay crisp when zoomed. Compare masks and
Compress & deploy share the controls (view, order, opacity, pictures per row), the image stepper
and the zoom dialog, each under its own key prefix.
"""

from __future__ import annotations

import numpy as np
import streamlit as st

from core.data.images import PICTURE_CHANNELS
from core.data.visual import (
    AUTO_COLOURS,
    COLOUR_SCHEMES,
    class_colors,
    colour_scheme,
    contrast_scheme,
    error_map,
    overlay_mask,
    resize_nearest,
    to_rgb,
)
from core.results.previews import ORDERINGS, PreviewSet

VIEWS: dict[str, str] = {"overlay": "Mask overlay", "errors": "Error map"}
DISPLAY_PX = 512  # pictures are upscaled (nearest) to this before the browser fits them to a column
ZOOM_PX = 1024  # the zoom dialog's picture fills a large dialog


COLOUR_CHOICES: dict[str, str] = {
    AUTO_COLOURS: "Auto (by contrast with the image)",
    **{name: scheme.label for name, scheme in COLOUR_SCHEMES.items()},
}


def error_legend(scheme: str) -> None:
    """The three error colours of ``scheme``, so the map reads at a glance."""
    chips = " ".join(
        f'<span style="display:inline-flex;align-items:center;margin-right:1.2rem">'
        f'<span style="width:0.9rem;height:0.9rem;border-radius:3px;margin-right:0.4rem;'
        f'background:rgb{color}"></span>{name}</span>'
        for name, color in colour_scheme(scheme).errors.items()
    )
    st.markdown(chips, unsafe_allow_html=True)


def resolved_colours(previews: PreviewSet, index: int, colours: str, channel: int | None = None) -> str:
    """The colour scheme drawn for image ``index``: the chosen one, or (auto) the one by contrast with it."""
    return contrast_scheme(to_rgb(previews.images[index], channel)) if colours == AUTO_COLOURS else colours


def channel_picker(channels: int, key: str) -> int | None:
    """Which channel of a multi-sequence image to show (None: the first three as RGB); grey/RGB need no choice."""
    if channels in PICTURE_CHANNELS:
        return None
    return st.selectbox(
        "Channel shown",
        [None, *range(channels)],
        key=key,
        format_func=lambda c: "first 3 as RGB" if c is None else f"sequence {c:04d}",
        help=f"The images have {channels} channels, one per MRI sequence; a screen shows three at most.",
    )


def _pictures(
    previews: PreviewSet,
    index: int,
    view: str,
    opacity: float,
    channel: int | None = None,
    caption: str | None = None,
    scheme: str = "standard",
) -> list[tuple[np.ndarray, str, float | None]]:
    """(picture, caption, Dice) for the image, its ground truth and every prediction column.

    ``channel``: the channel shown of a multi-sequence image (:func:`channel_picker`); ``caption``:
    the image's (default: its stem); ``scheme``: a name of ``COLOUR_SCHEMES``.
    """
    image = to_rgb(previews.images[index], channel)
    truth = previews.masks[index]
    palette = colour_scheme(scheme)
    colors = class_colors(previews.num_classes, palette.classes)
    cells: list[tuple[np.ndarray, str, float | None]] = [
        (image, caption or previews.stems[index], None),
        (overlay_mask(image, truth, colors, opacity), "Ground truth", None),
    ]
    for number in previews.trial_numbers:
        prediction = previews.predictions[number][index]
        picture = (
            error_map(prediction, truth, image, alpha=opacity, colours=palette.errors)
            if view == "errors"
            else overlay_mask(image, prediction, colors, opacity)
        )
        cells.append((picture, previews.label(number), float(previews.dice[number][index])))
    return cells


def mask_row(
    previews: PreviewSet,
    index: int,
    *,
    view: str,
    opacity: float,
    per_row: int,
    channel: int | None = None,
    caption: str | None = None,
    colours: str = AUTO_COLOURS,
) -> None:
    """Image, ground truth, then every prediction column for preview ``index``, ``per_row`` a row.

    Fewer pictures per row is the zoom: each fills its column, scaled up pixel-exact.
    """
    scheme = resolved_colours(previews, index, colours, channel)
    if view == "errors":
        error_legend(scheme)
    cells = _pictures(previews, index, view, opacity, channel, caption, scheme)
    for start in range(0, len(cells), per_row):
        for column, (picture, caption, dice) in zip(st.columns(per_row), cells[start : start + per_row]):
            with column:
                st.image(resize_nearest(picture, DISPLAY_PX), caption=caption, width="stretch", output_format="PNG")
                if dice is not None:
                    st.metric("Dice", f"{dice:.3f}")


@st.dialog("Zoom", width="large")
def zoom_dialog(
    previews: PreviewSet,
    index: int,
    view: str,
    opacity: float,
    key: str,
    channel: int | None = None,
    colours: str = AUTO_COLOURS,
) -> None:
    """One picture at a time at the dialog's full width; flipping between them shows where masks differ."""
    cells = _pictures(
        previews, index, view, opacity, channel, scheme=resolved_colours(previews, index, colours, channel)
    )
    captions = [caption for _, caption, _ in cells]
    chosen = (
        st.segmented_control(
            "Show",
            captions,
            default=captions[-1],
            key=f"{key}.zoom_pick",
            required=True,
            help="Flip between the pictures: they are drawn at the same place and scale.",
        )
        or captions[-1]
    )
    picture, caption, dice = cells[captions.index(chosen)]
    st.image(
        resize_nearest(picture, ZOOM_PX),
        caption=caption if dice is None else f"{caption} · Dice {dice:.3f}",
        width="stretch",
        output_format="PNG",
    )


def zoom_button(
    previews: PreviewSet,
    index: int,
    *,
    view: str,
    opacity: float,
    key: str,
    channel: int | None = None,
    colours: str = AUTO_COLOURS,
) -> None:
    if st.button(
        "Zoom", icon=":material/zoom_in:", key=f"{key}.zoom", help="Open this image's pictures large, one at a time"
    ):
        zoom_dialog(previews, index, view, opacity, key, channel, colours)


def view_controls(
    previews: PreviewSet, *, key: str, per_row: int | None = None, slices: bool = False, ordered: bool = True
) -> tuple[str, str, float, int, str]:
    """View, image order, opacity, pictures per row (default: everything in one row, at most 6) and
    the colour scheme (a name of ``COLOUR_SCHEMES``, or auto: by contrast with each image).

    ``slices``: the images are one volume's slices, so slice order is offered first. ``ordered``:
    False where the images are shown in name order only (paged, predicted on demand).
    """
    controls = st.columns([2, 3, 2, 2, 3])
    view = controls[0].segmented_control(
        "View", list(VIEWS), default="overlay", format_func=VIEWS.get, key=f"{key}.view", required=True
    )
    orders = [order for order in ORDERINGS if order != "disagreement" or len(previews.predictions) > 1]
    names = {**ORDERINGS, "name": "Slice order"} if slices else ORDERINGS
    if slices:
        orders.sort(key=lambda order: order != "name")
    order = (
        controls[1].selectbox("Order images by", orders, format_func=names.get, key=f"{key}.order")
        if ordered
        else "name"
    )
    opacity = controls[2].slider("Opacity", 0.1, 1.0, 0.5, 0.05, key=f"{key}.opacity")
    shown = per_row if per_row is not None else min(6, 2 + len(previews.predictions))
    per_row = controls[3].slider(
        "Zoom: pictures per row", 1, 6, shown, key=f"{key}.per_row", help="Fewer pictures per row shows each one larger"
    )
    colours = controls[4].selectbox(
        "Colours",
        list(COLOUR_CHOICES),
        format_func=COLOUR_CHOICES.get,
        key=f"{key}.colours",
        help="Mask and error colours; auto picks, per image, colours that stand out from it "
        "(e.g. cyan and yellow on red endoscopy images)",
    )
    return view, order, opacity, per_row, colours


def _step(key: str, delta: int, count: int) -> None:
    st.session_state[key] = (st.session_state.get(key, 1) - 1 + delta) % count + 1


def image_stepper(count: int, *, key: str, label: str = "Image") -> int:
    """Previous / slider / next over ``count`` images (or slices: ``label``); returns the 1-based position."""
    image_key = f"{key}.image"
    if st.session_state.get(image_key, 1) > count:
        st.session_state[image_key] = 1
    stepper = st.columns([1, 6, 1], vertical_alignment="bottom")
    stepper[0].button(
        "Previous",
        icon=":material/chevron_left:",
        on_click=_step,
        args=(image_key, -1, count),
        key=f"{key}.prev",
        width="stretch",
    )
    if count > 1:
        stepper[1].slider(label, 1, count, key=image_key, format=f"%d of {count}")
    stepper[2].button(
        "Next",
        icon=":material/chevron_right:",
        on_click=_step,
        args=(image_key, 1, count),
        key=f"{key}.next",
        width="stretch",
    )
    return st.session_state.get(image_key, 1)
