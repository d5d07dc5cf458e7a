"""Mask pictures: overlays, error maps, colours."""

from __future__ import annotations

import numpy as np
import pytest

from core.data.visual import (
    FALSE_NEGATIVE,
    FALSE_POSITIVE,
    TRUE_POSITIVE,
    class_colors,
    error_map,
    overlay_mask,
    shrink,
    to_rgb,
)
from core.errors import SegTuneError


def test_overlay_paints_only_foreground_with_class_colours() -> None:
    image = np.full((4, 4), 100, np.uint8)
    mask = np.zeros((4, 4), np.uint8)
    mask[0, 0], mask[1, 1] = 1, 2
    colors = class_colors(3)
    out = overlay_mask(image, mask, colors, alpha=1.0)
    assert out.shape == (4, 4, 3) and out.dtype == np.uint8
    assert tuple(out[0, 0]) == colors[1] and tuple(out[1, 1]) == colors[2]
    assert tuple(out[3, 3]) == (100, 100, 100)
    half = overlay_mask(image, mask, colors, alpha=0.5)
    assert tuple(half[0, 0]) == tuple(round((100 + c) / 2) for c in colors[1])


def test_overlay_accepts_channel_first_previews() -> None:
    image = np.zeros((3, 8, 8), np.uint8)
    image[0] = 255
    out = overlay_mask(image, np.zeros((8, 8), np.uint8), alpha=0.5)
    assert tuple(out[0, 0]) == (255, 0, 0)
    assert to_rgb(np.zeros((8, 8, 1), np.uint8)).shape == (8, 8, 3)


def test_overlay_rejects_mismatched_shapes_and_missing_colours() -> None:
    with pytest.raises(SegTuneError, match="mask is"):
        overlay_mask(np.zeros((4, 4), np.uint8), np.zeros((5, 5), np.uint8))
    with pytest.raises(SegTuneError, match="colours"):
        overlay_mask(np.zeros((4, 4), np.uint8), np.full((4, 4), 3, np.uint8), class_colors(2))


def test_error_map_colours_hits_false_positives_and_misses() -> None:
    target = np.array([[1, 1], [0, 0]], np.uint8)
    prediction = np.array([[1, 0], [1, 0]], np.uint8)
    out = error_map(prediction, target, alpha=1.0)
    assert tuple(out[0, 0]) == TRUE_POSITIVE
    assert tuple(out[0, 1]) == FALSE_NEGATIVE
    assert tuple(out[1, 0]) == FALSE_POSITIVE
    assert tuple(out[1, 1]) == (0, 0, 0)


def test_shrink_keeps_aspect() -> None:
    assert shrink(np.zeros((100, 50, 3), np.uint8), 40).shape == (40, 20, 3)


def test_colour_schemes_are_picked_by_contrast_with_the_image() -> None:
    """Issue 24: orange masks and red false positives were hard to see on reddish (endoscopy) images."""
    from core.data.visual import COLOUR_SCHEMES, colour_scheme, contrast_scheme

    def flat(rgb: tuple[int, int, int]) -> np.ndarray:
        return np.zeros((16, 16, 3), np.uint8) + np.array(rgb, np.uint8)

    assert contrast_scheme(flat((128, 128, 128))) == "standard"  # grey scans keep the familiar colours
    assert contrast_scheme(np.full((16, 16), 30, np.uint8)) == "standard"
    assert contrast_scheme(flat((180, 90, 80))) == "cool"  # a polyp's red: cyan / yellow / blue
    assert contrast_scheme(flat((40, 80, 200))) == "warm"  # blue stains: yellow / magenta / white
    target, prediction = np.array([[1, 0]], np.uint8), np.array([[1, 1]], np.uint8)
    cool = colour_scheme("cool")
    out = error_map(prediction, target, alpha=1.0, colours=cool.errors)
    assert tuple(out[0, 0]) == cool.errors["true positive"] and tuple(out[0, 1]) == cool.errors["false positive"]
    assert class_colors(3, cool.classes)[1:] == list(cool.classes[:2])
    assert all(
        set(scheme.errors) == {"true positive", "false positive", "false negative"}
        for scheme in COLOUR_SCHEMES.values()
    )
    with pytest.raises(
        SegTuneError, match=r"unknown colour scheme 'neon'; valid: \['auto', 'standard', 'cool', 'warm'\]"
    ):
        colour_scheme("neon")
