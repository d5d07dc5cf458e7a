"""Every validation and test image of a 2D study on Compare masks, not only its preview images.

A study stores predicted masks for its few preview images (``preview_count``); the others are
predicted when the user pages to them, a page at a time, by the function that predicts volume
slices (:func:`core.results.volume_masks.predict_slices`), from each trial's stored weights, at the
study's image size and channels, from its frozen split. A cross-validated trial's weights are fold
1's model, so the images are fold 1's validation and test images.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch

from core.results.previews import PreviewSet, preview_set
from core.results.trials import ResultsError

# The volume view's reading of a study's spec and frozen split (fold 1's with CV), shared.
from core.results.volume_masks import spec_and_source

if TYPE_CHECKING:
    import optuna

    from core.settings import Settings

PARTS: dict[str, str] = {"val": "Validation", "test": "Test"}  # split part -> label; training images are not shown
PAGE_SIZE = 8  # images decoded and predicted together: one forward batch at the sizes studies use


@dataclass(frozen=True)
class ImagePage:
    """One page of a split part's images in name order, as the study's models see them."""

    part: str
    page: int  # 0-based
    stems: tuple[str, ...]
    images: np.ndarray  # (N, C, S, S) uint8
    masks: np.ndarray  # (N, S, S) uint8 ground truth
    num_classes: int


def split_images(study: optuna.Study, settings: Settings) -> dict[str, list[str]]:
    """Split part (:data:`PARTS`) -> its image stems in name order; parts without images left out."""
    _, source = spec_and_source(study, settings)
    parts = {part: sorted(getattr(source.split, part)) for part in PARTS}
    return {part: stems for part, stems in parts.items() if stems}


def image_page(study: optuna.Study, settings: Settings, part: str, page: int, page_size: int = PAGE_SIZE) -> ImagePage:
    """Page ``page`` (0-based) of split ``part``'s images, decoded at the study's size."""
    if part not in PARTS:
        raise ResultsError(f"unknown split part {part!r}; valid: {list(PARTS)}")
    spec, source = spec_and_source(study, settings)
    stems = sorted(getattr(source.split, part))
    pages = max(1, -(-len(stems) // page_size))
    if not 0 <= page < pages:
        raise ResultsError(f"page {page + 1} does not exist: the {PARTS[part].lower()} split has {len(stems)} images, {pages} page(s)")
    chosen = stems[page * page_size:(page + 1) * page_size]
    data = source.tensors(chosen, spec.image_size, torch.device("cpu"))
    return ImagePage(part, page, tuple(chosen), data.images.numpy(), data.targets.numpy(), source.manifest.num_classes)


def page_set(page: ImagePage, predictions: Mapping[int, np.ndarray], missing: tuple[int, ...] = ()) -> PreviewSet:
    """The page laid out like preview images, so the same mask grid shows it."""
    return preview_set(page.stems, page.images, page.masks, dict(predictions), page.num_classes, missing)
