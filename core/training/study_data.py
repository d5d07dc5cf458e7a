"""A study's images as trials see them: the frozen split (or one fold of it) decoded on a device.

Without cross-validation there is one split (``fold=None``). With ``"cv": {"folds": k}`` the
test images are held out first and the rest is cut into k group-aware, seeded, frozen folds
(:func:`core.data.splits.make_split` with ``k_folds``); fold ``f`` validates on its own images and
trains on the other k - 1 folds. Every fold shares one test split.

A classification study reads a classification dataset (its parts are :class:`~core.data.tensors.ImageSet` with labels,
and its splits and folds are stratified by class); a study and a dataset of different tasks are
refused before anything is decoded, saying what to change.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from core.contract import Mode
from core.data.images import read_mask
from core.data.manifest import DatasetManifest
from core.data.splits import Split
from core.data.tensors import ImageSet
from core.modeling.config import task_mode
from core.search.spec import StudySpec
from core.search.study_source import study_source
from core.settings import Settings


@dataclass
class StudyData:
    manifest: DatasetManifest
    split: Split
    channels: int
    train: ImageSet
    val: ImageSet
    test: ImageSet | None
    preview: ImageSet
    fold: int | None = None  # the cross-validation fold these tensors are (None: no cross-validation)
    folder: Path | None = None  # the dataset's folder, where the original masks are (None: score at training size)

    @property
    def num_classes(self) -> int:
        """Segmentation: classes with the background; classification: labels."""
        return self.manifest.num_classes

    @property
    def mode(self) -> Mode:
        """How logits are read: a classifier's are always one per class (softmax)."""
        return Mode.MULTICLASS if self.manifest.is_classification else task_mode(self.num_classes)

    def original_masks(self, part: ImageSet) -> list[np.ndarray] | None:
        """Each image's mask as stored in the dataset, at its own size (None: unknown, or not a mask task)."""
        if self.folder is None or self.manifest.is_classification:
            return None
        return [read_mask(self.folder / self.manifest.pair(stem).mask) for stem in part.stems]


def preview_stems(split: Split, count: int) -> list[str]:
    """A fixed subset of validation images whose predictions every trial stores (fold 0's with CV)."""
    return sorted(split.val)[:count]


def load_study_data(
    spec: StudySpec, settings: Settings, device: torch.device, fold: int | None = None, pool: ImageSet | None = None
) -> StudyData:
    """Decode the study's dataset once and put its splits on ``device``.

    ``pool`` (every image of the dataset, already decoded) lets the folds of a cross-validated
    study share one decode: each fold's parts are index subsets of it.
    """
    source = study_source(spec, settings, fold)
    split, size = source.split, spec.image_size

    def part(stems: Sequence[str]) -> ImageSet:
        if pool is None:
            return source.tensors(stems, size, device)
        position = {stem: index for index, stem in enumerate(pool.stems)}
        return pool.subset([position[stem] for stem in stems])

    test = part(split.test) if split.test else None
    preview = part(preview_stems(split, spec.preview_count))
    return StudyData(
        source.manifest, split, source.channels, part(split.train), part(split.val), test, preview, fold, source.folder
    )


def load_pool(spec: StudySpec, settings: Settings, device: torch.device) -> ImageSet:
    """Every image of the study's dataset on ``device``, for cross-validation's folds to subset."""
    source = study_source(spec, settings, 0)
    stems = sorted((*source.split.train, *source.split.val, *source.split.test))
    return source.tensors(stems, spec.image_size, device)
