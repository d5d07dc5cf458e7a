"""The shared datasets the benches measure on (../shared/datasets beside the repository), and the
plain default model they start from. Benchmark-only: the product never reads these folders."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
from PIL import Image

SHARED = Path(__file__).resolve().parents[2] / "shared" / "datasets"
DATASETS = {  # key -> (folder, invert masks: make the thin membranes the foreground)
    "em": ("em_membrane_isbi2012", True),
    "shenzhen": ("chest_xray_lung_shenzhen", False),
    "liver": ("ct_liver_msd", False),
}
# The plain default: smp U-Net resnet18, random init, Adam 1e-3, Dice+BCE, batch 8.
DEFAULT_SPACE = {
    "architecture": "Unet",
    "encoder": "resnet18",
    "encoder_weights": None,
    "optimizer": "adam",
    "lr": 1e-3,
    "loss": "dice_bce",
    "batch_size": 8,
}


def copy_shared(key: str, out: Path, count: int | None = None) -> Path:
    """Dataset ``key``'s first ``count`` pairs by name (all when None) in ``out`` as images/ + masks/
    (0/255; EM's inverted), with its split.csv when it has one and every pair is copied."""
    name, invert = DATASETS[key]
    source = SHARED / name
    images = sorted((source / "images").iterdir())[:count]
    (out / "images").mkdir(parents=True)
    (out / "masks").mkdir()
    for path in images:
        shutil.copy(path, out / "images" / path.name)
        mask = np.asarray(Image.open(next((source / "masks").glob(f"{path.stem}.*"))).convert("L")) > 127
        Image.fromarray(((~mask if invert else mask) * 255).astype(np.uint8)).save(out / "masks" / f"{path.stem}.png")
    if count is None and (source / "split.csv").is_file():
        shutil.copy(source / "split.csv", out / "split.csv")
    return out
