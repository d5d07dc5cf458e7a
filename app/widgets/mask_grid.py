"""One preview image side by side: image | ground truth | each trial's prediction, with Dice.

Masks are drawn by ``core.visual`` (overlay or true/false positive/negative error map) and scaled
up with nearest-neighbour so small training images stay crisp when zoomed.
"""

from __future__ import annotations

import numpy as np
import streamlit as st

from core.data.images import PICTURE_CHANNELS
from core.data.visual import ERROR_COLORS, class_colors, error_map, overlay_mask, resize_nearest, to_rgb
from core.results.previews import PreviewSet

VIEWS: dict[str, str] = {"overlay": "Mask overlay", "errors": "Error map"}
DISPLAY_PX = 512  # pictures are upscaled (nearest) to this before the browser fits them to a column


def error_legend() -> None:
    """The three error colours, so the map reads at a glance."""
    chips = " ".join(
        f'<span style="display:inline-flex;align-items:center;margin-right:1.2rem">'
        f'<span style="width:0.9rem;height:0.9rem;border-radius:3px;margin-right:0.4rem;'
        f'background:rgb{color}"></span>{name}</span>'
        for name, color in ERROR_COLORS.items()
    )
    st.markdown(chips, unsafe_allow_html=True)


def channel_picker(channels: int, key: str) -> int | None:
    """Which channel of a multi-sequence image to show (None: the first three as RGB); grey/RGB need no choice."""
    if channels in PICTURE_CHANNELS:
        return None
    return st.selectbox("Channel shown", [None, *range(channels)], key=key,
                        format_func=lambda c: "first 3 as RGB" if c is None else f"sequence {c:04d}",
                        help=f"The images have {channels} channels, one per MRI sequence; a screen shows three at most.")


def mask_row(previews: PreviewSet, index: int, *, view: str, opacity: float, per_row: int, channel: int | None = None,
             caption: str | None = None) -> None:
    """Image, ground truth, then every trial's prediction for preview ``index``, ``per_row`` a row.

    Fewer pictures per row is the zoom: each fills its column, scaled up pixel-exact. ``channel``:
    the channel shown of a multi-sequence image (:func:`channel_picker`); ``caption``: the image's
    (default: its stem).
    """
    image = to_rgb(previews.images[index], channel)
    truth = previews.masks[index]
    colors = class_colors(previews.num_classes)
    cells: list[tuple[np.ndarray, str, float | None]] = [
        (image, caption or previews.stems[index], None),
        (overlay_mask(image, truth, colors, opacity), "Ground truth", None),
    ]
    for number in previews.trial_numbers:
        prediction = previews.predictions[number][index]
        picture = error_map(prediction, truth, image, alpha=opacity) if view == "errors" else overlay_mask(image, prediction, colors, opacity)
        cells.append((picture, f"Trial #{number}", float(previews.dice[number][index])))
    for start in range(0, len(cells), per_row):
        for column, (picture, caption, dice) in zip(st.columns(per_row), cells[start:start + per_row]):
            with column:
                st.image(resize_nearest(picture, DISPLAY_PX), caption=caption, width="stretch", output_format="PNG")
                if dice is not None:
                    st.metric("Dice", f"{dice:.3f}")
