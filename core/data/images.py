"""Reading images and stored masks the one way every part of SegTune reads them.

Images are grey or RGB picture files; an image with another number of channels (a multi-sequence
MRI slice: one channel per sequence) is a ``.npy`` array, uint8 HxWxC, which no picture format
holds losslessly for any C. :func:`save_image` picks the format, :func:`read_image` reads both.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from core.errors import SegTuneError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")
ARRAY_EXTENSION = ".npy"  # images whose channel count is neither 1 (grey) nor 3 (RGB)
PICTURE_CHANNELS = (1, 3)  # what a picture file holds, and what grey <-> RGB conversion connects
# What decoding a file that is not a readable image raises: Pillow raises all of these, SegTune its own.
UNREADABLE_IMAGE_ERRORS: tuple[type[Exception], ...] = (
    OSError,
    UnidentifiedImageError,
    ValueError,
    SyntaxError,
    Image.DecompressionBombError,
    SegTuneError,
)
MAX_CHANNELS = 64  # sequences per case (channels per image): far above any MRI protocol, below a misread 4D series

# Pillow mode -> (channels, bit depth) as SegTune reads it (palette and alpha images become RGB / grey).
IMAGE_MODES: dict[str, tuple[int, int]] = {
    "1": (1, 8),
    "L": (1, 8),
    "LA": (1, 8),
    "P": (3, 8),
    "PA": (3, 8),
    "RGB": (3, 8),
    "RGBA": (3, 8),
    "CMYK": (3, 8),
    "YCbCr": (3, 8),
    "I;16": (1, 16),
    "I;16B": (1, 16),
    "I;16L": (1, 16),
    "I;16N": (1, 16),
}
MASK_MODES = ("1", "L", "LA", "P", "RGB", "RGBA", "I;16", "I;16B", "I;16L", "I;16N")


def read_image(path: Path) -> np.ndarray:
    """Decode an image to uint8 HxWxC (C = 1 grey or 3 RGB, any C for ``.npy``); 16-bit images are min-max scaled to 8
    bits."""
    if Path(path).suffix.lower() == ARRAY_EXTENSION:
        return read_array_image(Path(path))
    with Image.open(path) as image:
        channels, depth = IMAGE_MODES.get(image.mode, (3, 8))
        if depth == 16:
            return scale_to_8bit(np.asarray(image))[..., None]
        if channels == 1:
            return np.array(image.convert("L"))[..., None]
        return np.array(image.convert("RGB"))


def read_array_image(path: Path) -> np.ndarray:
    """A ``.npy`` image: uint8 HxW or HxWxC (never unpickled: arrays of plain numbers only)."""
    try:
        pixels = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise SegTuneError(f"{path.name}: unreadable .npy image ({exc})") from exc
    if pixels.dtype != np.uint8 or pixels.ndim not in (2, 3) or 0 in pixels.shape:
        raise SegTuneError(
            f"{path.name}: a .npy image must be a uint8 HxW or HxWxC array, got {pixels.dtype} of shape {pixels.shape}"
        )
    return pixels[..., None] if pixels.ndim == 2 else pixels


def save_image(folder: Path, stem: str, pixels: np.ndarray) -> str:
    """Write uint8 HxW / HxWxC losslessly: a PNG for grey or RGB, else ``.npy``; returns the file name."""
    channels = 1 if pixels.ndim == 2 else pixels.shape[-1]
    if channels in PICTURE_CHANNELS:
        name = f"{stem}.png"
        Image.fromarray(pixels[..., 0] if pixels.ndim == 3 and channels == 1 else pixels).save(folder / name)
    else:
        name = f"{stem}{ARRAY_EXTENSION}"
        np.save(folder / name, np.ascontiguousarray(pixels, dtype=np.uint8), allow_pickle=False)
    return name


def channel_problem(have: int, want: int) -> str:
    """Why an image with ``have`` channels cannot feed a model taking ``want``, or ''.

    Grey and RGB convert into each other (as Pillow does); any other count must match exactly:
    which sequences to drop or repeat cannot be guessed.
    """
    if have == want or (have in PICTURE_CHANNELS and want in PICTURE_CHANNELS):
        return ""
    return (
        f"the image has {have} channel(s) but the model takes {want}; only grey (1) and RGB (3) convert into "
        "each other, a multi-sequence image needs a model with one input channel per sequence"
    )


def channels_label(channels: int) -> str:
    """``1 (grey)``, ``3 (RGB)`` or ``4 (sequences)``, for tables and metrics."""
    return {1: "1 (grey)", 3: "3 (RGB)"}.get(channels, f"{channels} (sequences)")


def read_mask(path: Path) -> np.ndarray:
    """Decode a stored mask to uint8 HxW class indices."""
    with Image.open(path) as image:
        if image.mode not in ("L", "P", "1"):
            raise SegTuneError(f"{path}: a stored mask must be a single-channel PNG, got mode {image.mode}")
        return np.array(image, dtype=np.uint8)


def mask_channel(values: np.ndarray, mode: str) -> tuple[np.ndarray, None] | tuple[None, str]:
    """The class-index channel of an HxWxC mask (LA / RGB / RGBA), or None and why it cannot be told.

    Colour channels must be equal (grey). With transparency, the alpha channel is the mask when the
    colour is the same everywhere (drawn as opacity) or equals the alpha; otherwise which channel
    holds the classes cannot be told, and the mask is refused rather than guessed.
    """
    colour = values[..., :1] if mode == "LA" else values[..., :3]
    alpha = values[..., -1] if mode in ("LA", "RGBA") else None
    if not (colour == colour[..., :1]).all():
        return None, "colour mask: masks must hold class indices in one channel, not colours"
    grey = colour[..., 0]
    if alpha is None or (alpha == 255).all():
        return grey, None
    if (grey == grey.flat[0]).all() or (grey == alpha).all():
        return alpha, None
    return None, (
        f"{mode} mask with both transparency and varying grey values: cannot tell which channel holds "
        "the classes; save the mask as a single-channel (grey or indexed) PNG"
    )


def scale_to_8bit(values: np.ndarray) -> np.ndarray:
    """Min-max per image: 16-bit scans rarely use the full range, so a fixed shift would leave them dark."""
    values = values.astype(np.float32)
    low, high = float(values.min()), float(values.max())
    if high <= low:
        return np.zeros(values.shape, dtype=np.uint8)
    return ((values - low) * (255.0 / (high - low)) + 0.5).astype(np.uint8)
