"""Pictures of masks: class colours, masks overlaid on images, and error maps.

numpy + PIL only, so the dashboard, the CLI and reports draw masks the same way. Images come in
as uint8 ``HxW``, ``HxWxC`` or ``CxHxW`` (the layout of the study preview arrays); C is 1 (grey),
3 (RGB) or any other count (multi-sequence scans: shown as one chosen channel, else the first
three as RGB); masks as ``HxW`` integer class indices (0 = background). Everything returns uint8
``HxWx3`` RGB.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image

from core.errors import SegTuneError

RGB = tuple[int, int, int]

# Foreground classes 1, 2, ... take these colours in turn (colour-blind-friendly, Okabe-Ito order).
CLASS_PALETTE: tuple[RGB, ...] = (
    (230, 159, 0),
    (86, 180, 233),
    (0, 158, 115),
    (240, 228, 66),
    (0, 114, 178),
    (213, 94, 0),
    (204, 121, 167),
    (255, 255, 255),
)

# Error-map colours: what a reader of the Compare page learns once and then reads at a glance.
TRUE_POSITIVE: RGB = (0, 200, 83)  # green: foreground found with the right class
FALSE_POSITIVE: RGB = (255, 61, 0)  # red: foreground predicted where the truth has none
FALSE_NEGATIVE: RGB = (41, 121, 255)  # blue: true foreground missed or given the wrong class
ERROR_COLORS: dict[str, RGB] = {
    "true positive": TRUE_POSITIVE,
    "false positive": FALSE_POSITIVE,
    "false negative": FALSE_NEGATIVE,
}


@dataclass(frozen=True)
class MaskColours:
    """A colour scheme for mask pictures: foreground classes in turn, and the error-map colours."""

    label: str
    classes: tuple[RGB, ...]
    errors: Mapping[str, RGB]  # the keys of ERROR_COLORS


# The standard scheme reads on grey scans; on reddish images (endoscopy, H&E stains) its orange
# masks and red false positives drown, so a cool scheme paints in cyan, yellow and blue there.
COLOUR_SCHEMES: dict[str, MaskColours] = {
    "standard": MaskColours("Standard (orange masks; green / red / blue errors)", CLASS_PALETTE, ERROR_COLORS),
    "cool": MaskColours(
        "Cool, for red or pink images (cyan masks; cyan / yellow / blue errors)",
        ((0, 229, 255), (255, 234, 0), (41, 98, 255), (255, 255, 255), (0, 158, 115), (204, 121, 167)),
        {"true positive": (0, 229, 255), "false positive": (255, 234, 0), "false negative": (41, 98, 255)},
    ),
    "warm": MaskColours(
        "Warm, for blue or green images (yellow masks; yellow / magenta / white errors)",
        ((255, 214, 0), (255, 109, 0), (255, 64, 129), (255, 255, 255), (213, 0, 249), (230, 159, 0)),
        {"true positive": (255, 214, 0), "false positive": (213, 0, 249), "false negative": (255, 255, 255)},
    ),
}
AUTO_COLOURS = "auto"  # pick the scheme by contrast with the image (contrast_scheme)
CONTRAST_SAMPLE = 4096  # pixels sampled to judge an image's colours
LEGIBLE = (
    130.0  # mean RGB distance from the pixels from which a colour reads well (the weakest standard one on grey: ~154)
)


def colour_scheme(name: str) -> MaskColours:
    if name not in COLOUR_SCHEMES:
        raise SegTuneError(f"unknown colour scheme {name!r}; valid: {[AUTO_COLOURS, *COLOUR_SCHEMES]}")
    return COLOUR_SCHEMES[name]


def contrast_scheme(image: np.ndarray) -> str:
    """The standard scheme while all its colours (the first mask colour and the error colours)
    stand clear of the image's pixels (mean distance LEGIBLE or more), so the familiar colours stay
    where they read; else the scheme whose least visible colour stands farthest from them."""
    pixels = to_rgb(image).reshape(-1, 3).astype(np.float32)
    pixels = pixels[:: max(1, len(pixels) // CONTRAST_SAMPLE)]

    def visibility(scheme: MaskColours) -> float:
        colours = np.asarray([scheme.classes[0], *scheme.errors.values()], dtype=np.float32)
        distances = np.linalg.norm(pixels[:, None, :] - colours[None, :, :], axis=-1)  # (pixels, colours)
        return float(distances.mean(axis=0).min())

    if visibility(COLOUR_SCHEMES["standard"]) >= LEGIBLE:
        return "standard"
    return max(COLOUR_SCHEMES, key=lambda name: visibility(COLOUR_SCHEMES[name]))


def class_colors(num_classes: int, palette: Sequence[RGB] = CLASS_PALETTE) -> list[RGB]:
    """One colour per class index; index 0 (background) is black and never painted."""
    if num_classes < 1:
        raise SegTuneError(f"num_classes must be at least 1, got {num_classes}")
    return [(0, 0, 0)] + [palette[i % len(palette)] for i in range(num_classes - 1)]


def to_rgb(image: np.ndarray, channel: int | None = None) -> np.ndarray:
    """An image as uint8 ``HxWx3``: grey is repeated, ``CxHxW`` transposed; ``channel`` shows that one
    channel as grey; otherwise an image of more than 3 channels shows its first three (RGB), of two
    its two with a black third."""
    array = np.asarray(image)
    if array.ndim == 3 and _channels_first(array.shape):
        array = np.moveaxis(array, 0, -1)
    if array.ndim == 3 and channel is not None:
        if not 0 <= channel < array.shape[-1]:
            raise SegTuneError(
                f"channel {channel} does not exist: the image has {array.shape[-1]} (0..{array.shape[-1] - 1})"
            )
        array = array[..., channel]
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim == 2:
        array = np.repeat(array[..., None], 3, axis=-1)
    if array.ndim != 3 or array.shape[-1] < 2:
        raise SegTuneError(f"expected an image of shape HxW, HxWxC or CxHxW, got {array.shape}")
    if array.shape[-1] == 2:
        array = np.concatenate([array, np.zeros_like(array[..., :1])], axis=-1)
    array = array[..., :3]
    if array.dtype != np.uint8:
        array = np.clip(array, 0, 255).astype(np.uint8)
    return array


def _channels_first(shape: tuple[int, ...]) -> bool:
    """``CxHxW`` rather than ``HxWxC``: the channel axis is the short one (1/3 channels as before;
    any other count when the first axis is shorter than both image sides)."""
    if shape[0] in (1, 3) and shape[-1] not in (1, 3):
        return True
    return shape[-1] not in (1, 3) and shape[0] < min(shape[1], shape[2])


def overlay_mask(
    image: np.ndarray, mask: np.ndarray, colors: Sequence[RGB] | None = None, alpha: float = 0.5
) -> np.ndarray:
    """``image`` with every foreground class of ``mask`` blended in its colour at opacity ``alpha``."""
    rgb = to_rgb(image)
    labels = _labels(mask, rgb.shape[:2])
    if not 0.0 <= alpha <= 1.0:
        raise SegTuneError(f"alpha must be between 0 and 1, got {alpha}")
    colors = list(colors) if colors is not None else class_colors(int(labels.max()) + 1)
    if labels.max() >= len(colors):
        raise SegTuneError(f"mask has class {int(labels.max())} but only {len(colors)} colours were given")
    painted = np.asarray(colors, dtype=np.float32)[labels]
    return _blend(rgb, painted, labels > 0, alpha)


def error_map(
    prediction: np.ndarray,
    target: np.ndarray,
    image: np.ndarray | None = None,
    alpha: float = 0.6,
    colours: Mapping[str, RGB] = ERROR_COLORS,
) -> np.ndarray:
    """True positives, false positives and false negatives in ``colours`` (:data:`ERROR_COLORS`'s keys).

    Drawn over ``image`` when given (else over black). A pixel whose true class is predicted as
    another foreground class counts as a false negative: the truth was missed.
    """
    target_labels = _labels(target, None)
    predicted = _labels(prediction, target_labels.shape)
    base = to_rgb(image) if image is not None else np.zeros((*target_labels.shape, 3), np.uint8)
    if base.shape[:2] != target_labels.shape:
        raise SegTuneError(f"image is {base.shape[:2]} but the masks are {target_labels.shape}")
    painted = np.zeros((*target_labels.shape, 3), np.float32)
    hit = (predicted == target_labels) & (target_labels > 0)
    false_positive = (predicted > 0) & (target_labels == 0)
    false_negative = (target_labels > 0) & ~hit
    painted[hit] = colours["true positive"]
    painted[false_positive] = colours["false positive"]
    painted[false_negative] = colours["false negative"]
    return _blend(base, painted, hit | false_positive | false_negative, alpha)


def resize_nearest(image: np.ndarray, size: int) -> np.ndarray:
    """A square ``size`` x ``size`` copy, nearest neighbour (keeps mask classes and hard pixels)."""
    return np.asarray(Image.fromarray(np.asarray(image)).resize((size, size), Image.Resampling.NEAREST))


def shrink(image: np.ndarray, max_side: int) -> np.ndarray:
    """A smaller copy (aspect kept, smooth resampling) whose longer side is at most ``max_side``."""
    picture = Image.fromarray(np.asarray(image))
    picture.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    return np.asarray(picture)


def _labels(mask: np.ndarray, shape: tuple[int, ...] | None) -> np.ndarray:
    labels = np.asarray(mask)
    if labels.ndim == 3 and labels.shape[0] == 1:
        labels = labels[0]
    if labels.ndim != 2:
        raise SegTuneError(f"a mask must be HxW class indices, got shape {labels.shape}")
    if shape is not None and labels.shape != tuple(shape):
        raise SegTuneError(f"mask is {labels.shape} but the image is {tuple(shape)}")
    if labels.size and labels.min() < 0:
        raise SegTuneError("a mask cannot hold negative class indices")
    return labels.astype(np.int64)


def _blend(base: np.ndarray, painted: np.ndarray, where: np.ndarray, alpha: float) -> np.ndarray:
    out = base.astype(np.float32)
    out[where] = (1.0 - alpha) * out[where] + alpha * painted[where]
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)
