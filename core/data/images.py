"""Reading images and stored masks the one way every part of SegTune reads them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from core.errors import SegTuneError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")

# Pillow mode -> (channels, bit depth) as SegTune reads it (palette and alpha images become RGB / grey).
IMAGE_MODES: dict[str, tuple[int, int]] = {
    "1": (1, 8), "L": (1, 8), "LA": (1, 8),
    "P": (3, 8), "PA": (3, 8), "RGB": (3, 8), "RGBA": (3, 8), "CMYK": (3, 8), "YCbCr": (3, 8),
    "I;16": (1, 16), "I;16B": (1, 16), "I;16L": (1, 16), "I;16N": (1, 16),
}
MASK_MODES = ("1", "L", "LA", "P", "RGB", "RGBA", "I;16", "I;16B", "I;16L", "I;16N")


def read_image(path: Path) -> np.ndarray:
    """Decode an image to uint8 HxWxC (C = 1 grey or 3 RGB); 16-bit images are min-max scaled to 8 bits."""
    with Image.open(path) as image:
        channels, depth = IMAGE_MODES.get(image.mode, (3, 8))
        if depth == 16:
            return scale_to_8bit(np.asarray(image))[..., None]
        if channels == 1:
            return np.array(image.convert("L"))[..., None]
        return np.array(image.convert("RGB"))


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
    return None, (f"{mode} mask with both transparency and varying grey values: cannot tell which channel holds "
                  "the classes; save the mask as a single-channel (grey or indexed) PNG")


def scale_to_8bit(values: np.ndarray) -> np.ndarray:
    """Min-max per image: 16-bit scans rarely use the full range, so a fixed shift would leave them dark."""
    values = values.astype(np.float32)
    low, high = float(values.min()), float(values.max())
    if high <= low:
        return np.zeros(values.shape, dtype=np.uint8)
    return ((values - low) * (255.0 / (high - low)) + 0.5).astype(np.uint8)
