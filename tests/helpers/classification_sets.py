"""Small classification datasets for tests and benches, stored as ingest stores them (images/ + dataset.json).

- :func:`write_bars`: synthetic grey images whose bright bar is horizontal (class 0) or vertical
  (class 1): learnable in an epoch or two, with noise so it is not trivial.
- :func:`write_liver_crops`: real CT from ``../shared/datasets/ct_liver_msd``. Every slice there
  shows liver, so each slice gives two 128 px quadrant crops: the quadrant with the most liver
  ("liver") and one without a liver pixel ("no_liver"), grouped by volume (the number after the
  first ``_``), so no patient crosses a split. Tests reach it through :func:`liver_crops`, which
  skips (or fails in CI) when the shared datasets are absent.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from core.contract import Task
from core.data.manifest import MANIFEST_FILE, DatasetManifest, PairInfo, folder_checksum
from tests.helpers.machine import shared_dataset

BARS = ("horizontal", "vertical")
LIVER = ("no_liver", "liver")
CROP = 128  # a quadrant of the 256 px liver slices
LIVER_SHARE = 0.05  # a "liver" crop holds at least this share of liver pixels


def write_classification(
    datasets_dir: Path,
    name: str,
    images: Sequence[np.ndarray],
    labels: Sequence[int],
    classes: Sequence[str],
    groups: Sequence[str] | None = None,
) -> DatasetManifest:
    """Store grey uint8 ``images`` with their class indices as classification dataset ``name``."""
    folder = Path(datasets_dir) / name
    (folder / "images").mkdir(parents=True)
    pairs = []
    for index, (pixels, label) in enumerate(zip(images, labels)):
        stem = f"{groups[index]}_{index:04d}" if groups else f"img{index:04d}"
        Image.fromarray(pixels).save(folder / "images" / f"{stem}.png")
        pairs.append(
            PairInfo(
                stem,
                f"images/{stem}.png",
                "",
                pixels.shape[0],
                pixels.shape[1],
                (),
                label=int(label),
                volume=groups[index] if groups else None,
            )
        )
    names = {pair.stem: classes[pair.label] for pair in pairs}
    manifest = DatasetManifest(
        name=name,
        created="2026-01-01T00:00:00+00:00",
        source="tests",
        channels=1,
        bit_depth=8,
        classes=tuple(classes),
        pairs=tuple(pairs),
        checksum=folder_checksum(folder, names),
        task=Task.CLASSIFICATION,
    )
    (folder / MANIFEST_FILE).write_text(json.dumps(manifest.to_dict()), encoding="utf-8")
    return manifest


def bar_image(label: int, rng: np.random.Generator, size: int = 64) -> np.ndarray:
    image = rng.normal(60, 25, (size, size)).clip(0, 255)
    start, length, width = rng.integers(4, size // 3), rng.integers(size // 2, size - 8), max(3, size // 10)
    offset = rng.integers(4, size - width - 4)
    if label:
        image[start : start + length, offset : offset + width] = 220
    else:
        image[offset : offset + width, start : start + length] = 220
    return image.astype(np.uint8)


def write_bars(
    datasets_dir: Path,
    name: str = "bars",
    count: int = 24,
    *,
    seed: int = 0,
    size: int = 64,
    labels: Sequence[int] | None = None,
) -> DatasetManifest:
    """``count`` bar images, alternating classes unless ``labels`` are given."""
    rng = np.random.default_rng(seed)
    labels = list(labels) if labels is not None else [index % 2 for index in range(count)]
    return write_classification(datasets_dir, name, [bar_image(label, rng, size) for label in labels], labels, BARS)


def liver_crop_pairs(source: Path, volumes: int | None = None) -> tuple[list[np.ndarray], list[int], list[str]]:
    """(crops, labels, volume ids) from the slices of the first ``volumes`` volumes (all when None)."""
    masks = sorted((source / "masks").iterdir())
    volume_ids = sorted({path.stem.split("_")[1] for path in masks})[:volumes]
    crops, labels, groups = [], [], []
    for path in masks:
        volume = path.stem.split("_")[1]
        if volume not in volume_ids:
            continue
        mask = np.asarray(Image.open(path)) > 0
        image = np.asarray(Image.open(source / "images" / path.name).convert("L"))
        corners = [(y, x) for y in (0, CROP) for x in (0, CROP)]
        shares = [mask[y : y + CROP, x : x + CROP].mean() for y, x in corners]
        best, empty = int(np.argmax(shares)), [i for i, share in enumerate(shares) if share == 0]
        if shares[best] < LIVER_SHARE or not empty:
            continue
        for index, label in ((best, 1), (empty[0], 0)):
            y, x = corners[index]
            crops.append(image[y : y + CROP, x : x + CROP].copy())
            labels.append(label)
            groups.append(volume)
    return crops, labels, groups


def write_liver_crops(
    source: Path, datasets_dir: Path, name: str = "liver-crops", volumes: int | None = None
) -> DatasetManifest:
    """The liver / no-liver crop dataset of the first ``volumes`` volumes of ``source`` (ct_liver_msd)."""
    crops, labels, groups = liver_crop_pairs(source, volumes)
    return write_classification(datasets_dir, name, crops, labels, LIVER, groups)


def liver_crops(datasets_dir: Path, name: str = "liver-crops", volumes: int = 6) -> DatasetManifest:
    """:func:`write_liver_crops` from the shared datasets (skips, or fails in CI, when they are absent)."""
    return write_liver_crops(shared_dataset("ct_liver_msd"), datasets_dir, name, volumes)


def tiny_classification_study(
    settings, name: str, *, dataset: str = "bars", trials: int = 1, cv: int | None = None, extra: dict | None = None
):
    """A real, fast classification study (MobileNetV2 with a small head, 64 px, 2 epochs) on ``dataset``;
    the synthetic bars are written when that dataset is asked for and missing."""
    from core.data.manifest import dataset_names
    from core.runtime.tuning import run_study
    from core.search.validation import spec_from_dict

    if dataset == "bars" and dataset not in dataset_names(settings.datasets_dir):
        write_bars(settings.datasets_dir, "bars", 24)
    data = {
        "name": name,
        "dataset": dataset,
        "task": "classification",
        "image_size": 64,
        "sampler": "random",
        "pruner": "none",
        "budget": {"n_trials": trials, "max_epochs": 2},
        "preview_count": 3,
        "search_space": {
            "architecture": "MobileNetV2",
            "head_filters": 8,
            "head_dense_units": 8,
            "batch_size": 8,
            "epochs": 2,
            "lr": 3e-3,
        },
        **(extra or {}),
    }
    if cv:
        data.update(cv={"folds": cv}, split={"test": 0.25})
    return run_study(spec_from_dict(data), settings, device="cpu")
