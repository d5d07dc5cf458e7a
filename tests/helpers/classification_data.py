"""Classification sources for tests: synthetic class folders, and CT tiles with and without liver.

Every slice of ``../shared/datasets/ct_liver_msd`` shows some liver, so the real set is cut into
quadrant tiles: a tile whose mask holds no liver is "no liver", one that is at least
``LIVER_MIN`` liver is "liver" (tiles with a sliver are left out as ambiguous). Tile stems keep the
slice's name, so the volume id (``LIVER_GROUPS``) still groups them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from tests.helpers.machine import shared_dataset

LIVER_GROUPS = r"^[^_]+_(\d+)"  # ct_liver_msd: the number after the first '_' is the volume id
LIVER_MIN = 0.05  # share of a tile that must be liver for the tile to count as "liver"
TILE = 64


def blob_image(seed: int, size: int = 32, vertical: bool = False) -> np.ndarray:
    """A distinct grey picture per seed: noise with a bright bar, upright or lying by class."""
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 90, (size, size), dtype=np.uint8)
    if vertical:
        image[2:-2, size // 3 : size // 3 + 4] = 230
    else:
        image[size // 3 : size // 3 + 4, 2:-2] = 230
    return image


def class_folders(root: Path, counts: dict[str, int], size: int = 32, suffix: str = ".png") -> Path:
    """``root/<class>/<class>_<i><suffix>`` for each class; every picture differs (seeded)."""
    seed = 0
    for index, (name, count) in enumerate(counts.items()):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(count):
            seed += 1
            Image.fromarray(blob_image(seed, size, vertical=bool(index % 2))).save(
                root / name / f"{name}_{i:03d}{suffix}"
            )
    return root


def liver_tiles(target: Path, slices: int = 42, every: int = 15) -> Path:
    """A segmentation source (images/ + masks/) of 64 px CT tiles, some with liver and some without."""
    source = shared_dataset("ct_liver_msd")
    (target / "images").mkdir(parents=True)
    (target / "masks").mkdir(parents=True)
    for image_path in sorted((source / "images").iterdir())[::every][:slices]:
        for name, image, mask in _tiles(image_path, source / "masks" / image_path.name):
            Image.fromarray(image).save(target / "images" / f"{name}.png")
            Image.fromarray(mask).save(target / "masks" / f"{name}.png")
    return target


def liver_class_folders(target: Path, slices: int = 42, every: int = 15) -> Path:
    """The same tiles sorted into ``liver/`` and ``no liver/`` class folders (no masks)."""
    source = shared_dataset("ct_liver_msd")
    for image_path in sorted((source / "images").iterdir())[::every][:slices]:
        for name, image, mask in _tiles(image_path, source / "masks" / image_path.name):
            folder = target / ("liver" if mask.any() else "no liver")
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(image).save(folder / f"{name}.png")
    return target


def _tiles(image_path: Path, mask_path: Path) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(stem, 64 px tile, 0/255 tile mask) for each clear quadrant of one 256 px slice."""
    image, mask = np.asarray(Image.open(image_path).convert("L")), np.asarray(Image.open(mask_path).convert("L")) > 0
    half = image.shape[0] // 2
    tiles = []
    for quadrant, (row, col) in enumerate(((0, 0), (0, half), (half, 0), (half, half))):
        part, liver = image[row : row + half, col : col + half], mask[row : row + half, col : col + half]
        if 0 < liver.mean() < LIVER_MIN:
            continue
        small = np.asarray(Image.fromarray(part).resize((TILE, TILE), Image.Resampling.BILINEAR))
        small_mask = np.asarray(
            Image.fromarray(liver.astype(np.uint8) * 255).resize((TILE, TILE), Image.Resampling.NEAREST)
        )
        tiles.append((f"{image_path.stem}_q{quadrant}", small, small_mask))
    return tiles
