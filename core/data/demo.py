"""The built-in demo dataset: synthetic microscopy-like cells, so SegTune works before any upload.

Images are grey, noisy, blurred ellipses of varied size and brightness on an uneven background;
masks mark the ellipses. Cells cover a minority of the pixels (roughly 10-35%) so that a constant
prediction scores poorly and a tuned model visibly beats an untuned one. The generated files go
through :func:`core.data.ingest.ingest_dataset` like any upload.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

from core.data.ingest import ingest_dataset
from core.data.manifest import DatasetManifest
from core.errors import SegTuneError

DEMO_NAME = "demo-cells"


def create_demo_dataset(
    datasets_dir: Path, name: str = DEMO_NAME, count: int = 60, size: int = 128, seed: int = 0
) -> DatasetManifest:
    """Generate ``count`` image/mask pairs of ``size`` pixels and ingest them as dataset ``name``."""
    if count < 3 or size < 32:
        raise SegTuneError(f"the demo needs count >= 3 and size >= 32; got count={count}, size={size}")
    rng = np.random.default_rng(seed)
    with tempfile.TemporaryDirectory(prefix=f"segtune-demo-seed{seed}-") as tmp:
        root = Path(tmp)
        (root / "images").mkdir()
        (root / "masks").mkdir()
        for index in range(count):
            image, mask = _cell_image(rng, size)
            Image.fromarray(image).save(root / "images" / f"cell_{index:03d}.png")
            Image.fromarray(mask * np.uint8(255)).save(root / "masks" / f"cell_{index:03d}.png")
        return ingest_dataset(root, name, datasets_dir)


def _cell_image(rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray]:
    """One grey uint8 image and its 0/1 uint8 mask."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    mask = np.zeros((size, size), dtype=bool)
    cells = np.zeros((size, size), dtype=np.float32)
    for _ in range(int(rng.integers(5, 13))):
        radius = _ellipse_radius(rng, xx, yy)
        inside = radius <= 1.0
        mask |= inside
        # Brighter towards the middle, like a nucleus; dim cells make the task less trivial.
        cells = np.maximum(cells, inside * rng.uniform(0.25, 0.7) * (1.0 - 0.35 * radius))
    background = rng.uniform(0.08, 0.25) + rng.uniform(-0.1, 0.1) * xx + rng.uniform(-0.1, 0.1) * yy
    blurred = _blur(np.clip(background + cells, 0.0, 1.0), radius=rng.uniform(0.6, 1.6))
    noisy = blurred + rng.normal(0.0, rng.uniform(0.02, 0.06), size=(size, size))
    return (np.clip(noisy, 0.0, 1.0) * 255 + 0.5).astype(np.uint8), mask.astype(np.uint8)


def _ellipse_radius(rng: np.random.Generator, xx: np.ndarray, yy: np.ndarray) -> np.ndarray:
    """Normalised elliptic distance from a random cell centre: <= 1 inside the cell."""
    cx, cy = rng.uniform(0.08, 0.92, size=2)
    a, b = rng.uniform(0.05, 0.12, size=2)  # semi-axes as fractions of the image side
    angle = rng.uniform(0.0, np.pi)
    dx, dy = xx - cx, yy - cy
    u = (dx * np.cos(angle) + dy * np.sin(angle)) / a
    v = (-dx * np.sin(angle) + dy * np.cos(angle)) / b
    return np.sqrt(u * u + v * v)


def _blur(values: np.ndarray, radius: float) -> np.ndarray:
    image = Image.fromarray((values * 255).astype(np.uint8))
    return np.asarray(image.filter(ImageFilter.GaussianBlur(radius)), dtype=np.float32) / 255
