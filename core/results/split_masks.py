"""Every validation and test image of a 2D study on Compare masks, not only its preview images.

A study stores predicted masks for its few preview images (``preview_count``); the others are
predicted when the user pages to them, a page at a time, by the function that predicts volume
slices (:func:`core.results.volume_masks.predict_slices`), from each trial's stored weights, at the
study's image size and channels, from its frozen split. A cross-validated trial's weights are fold
1's model, so the images are fold 1's validation and test images.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import torch

from core.contract import TrialAttr
from core.data.images import read_image, read_mask
from core.data.tensors import resize_mask
from core.results.previews import PreviewSet, preview_set
from core.results.trials import ResultsError

# The volume view's reading of a study's spec and frozen split (fold 1's with CV), shared.
from core.results.volume_masks import spec_and_source

if TYPE_CHECKING:
    import optuna
    from optuna.trial import FrozenTrial

    from core.settings import Settings

PARTS: dict[str, str] = {"val": "Validation", "test": "Test"}  # split part -> label; training images are not shown
CASE_COLUMNS: tuple[str, ...] = ("dice", "nsd", "hd95")  # the per-case table's scores of each trial
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
        raise ResultsError(
            f"page {page + 1} does not exist: the {PARTS[part].lower()} split has {len(stems)} images, {pages} page(s)"
        )
    chosen = stems[page * page_size : (page + 1) * page_size]
    data = source.tensors(chosen, spec.image_size, torch.device("cpu"))
    return ImagePage(part, page, tuple(chosen), data.images.numpy(), data.targets.numpy(), source.manifest.num_classes)


def page_set(page: ImagePage, predictions: Mapping[int, np.ndarray], missing: tuple[int, ...] = ()) -> PreviewSet:
    """The page laid out like preview images, so the same mask grid shows it."""
    return preview_set(page.stems, page.images, page.masks, dict(predictions), page.num_classes, missing)


def native_case(
    study: optuna.Study,
    settings: Settings,
    stem: str,
    predictions: Mapping[int, np.ndarray],
    missing: tuple[int, ...] = (),
) -> PreviewSet:
    """One image at its original size: the image and mask as stored in the dataset, and each trial's
    mask (predicted at the study's size) resized to it by the rule scores at the original
    resolution use (:func:`core.data.tensors.resize_mask`), so the zoom shows the scored pixels."""
    _, source = spec_and_source(study, settings)
    pair = source.manifest.pair(stem)
    image = read_image(source.folder / pair.image)
    truth = read_mask(source.folder / pair.mask)
    resized = {number: resize_mask(mask, *truth.shape)[None] for number, mask in predictions.items()}
    return preview_set(
        (stem,), image.transpose(2, 0, 1)[None], truth[None], resized, source.manifest.num_classes, missing
    )


def case_frame(trials: Sequence[FrozenTrial], part: str) -> pd.DataFrame:
    """Each image's scores at its original size (``val_cases`` / ``test_cases``), one column per trial
    and metric: ``#3 dice``, ``#3 nsd``, ``#3 hd95``; empty for trials scored at the training size."""
    if part not in PARTS:
        raise ResultsError(f"unknown split part {part!r}; valid: {list(PARTS)}")
    attr = TrialAttr.VAL_CASES if part == "val" else TrialAttr.TEST_CASES
    frame = pd.DataFrame(columns=["image", "size"])
    for trial in trials:
        rows = trial.user_attrs.get(attr) or []
        if not rows:
            continue
        scores = pd.DataFrame(
            [
                {
                    "image": r["name"],
                    "size": f"{r['width']}x{r['height']}",
                    **{f"#{trial.number} {m}": r[m] for m in CASE_COLUMNS},
                }
                for r in rows
            ]
        )
        frame = scores if frame.empty else frame.merge(scores, on=["image", "size"], how="outer")
    return frame.sort_values("image", ignore_index=True) if not frame.empty else frame
