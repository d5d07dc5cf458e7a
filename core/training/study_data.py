"""A study's images as trials see them: the frozen split (or one fold of it) decoded on a device.

Without cross-validation there is one split (``fold=None``). With ``"cv": {"folds": k}`` the
test images are held out first and the rest is cut into k group-aware, seeded, frozen folds
(:func:`core.data.splits.make_split` with ``k_folds``); fold ``f`` validates on its own images and
trains on the other k - 1 folds. Every fold shares one test split.

A classification study reads a classification dataset (its parts are :class:`~core.data.tensors.LabelSet`
and its splits and folds are stratified by class); a study and a dataset of different tasks are
refused before anything is decoded, saying what to change.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from core.contract import Mode, Task
from core.data.images import channel_problem
from core.data.manifest import DatasetManifest, dataset_path, load_manifest
from core.data.splits import Split, SplitConfig, frozen_split
from core.data.tensors import DataSet, load_tensor_set
from core.errors import SegTuneError
from core.modeling.config import task_mode
from core.search.spec import StudySpec
from core.search.task_fit import task_problem
from core.search.validation import SpecError
from core.settings import Settings


@dataclass
class StudyData:
    manifest: DatasetManifest
    split: Split
    channels: int
    train: DataSet
    val: DataSet
    test: DataSet | None
    preview: DataSet
    fold: int | None = None  # the cross-validation fold these tensors are (None: no cross-validation)

    @property
    def num_classes(self) -> int:
        """Segmentation: classes with the background; classification: labels."""
        return self.manifest.num_classes

    @property
    def mode(self) -> Mode:
        """How logits are read: a classifier's are always one per class (softmax)."""
        return Mode.MULTICLASS if self.manifest.is_classification else task_mode(self.num_classes)


def preview_stems(split: Split, count: int) -> list[str]:
    """A fixed subset of validation images whose predictions every trial stores (fold 0's with CV)."""
    return sorted(split.val)[:count]


def split_config(spec: StudySpec, fold: int | None = None) -> SplitConfig:
    """The split a trial (or one fold of it) trains and validates on."""
    if spec.cv is None:
        return spec.split
    return dataclasses.replace(spec.split, k_folds=spec.cv.folds, fold=fold or 0)


@dataclass(frozen=True)
class StudySource:
    """Where a study's images come from: the dataset, its frozen split, the channels to feed."""

    manifest: DatasetManifest
    folder: Path
    split: Split
    channels: int

    def tensors(self, stems: Sequence[str], image_size: int, device: torch.device) -> DataSet:
        return load_tensor_set(self.folder, self.manifest, list(stems), image_size, self.channels).to(device)


def study_source(spec: StudySpec, settings: Settings, fold: int | None = None) -> StudySource:
    """Read the manifest and freeze (or re-read) the split of ``fold`` (fold 0 with CV when None); decodes no image.

    Raises :class:`SegTuneError` when the study's task is not the dataset's.
    """
    manifest = load_manifest(settings.datasets_dir, spec.dataset)
    problem = task_problem(spec, Task(manifest.task))
    if problem:
        raise SegTuneError(problem)
    folder = dataset_path(settings.datasets_dir, spec.dataset)
    channels = spec.channels or manifest.channels
    problem = channel_problem(manifest.channels, channels)
    if problem:  # before any split is frozen or image decoded: the study is refused at submit
        raise SpecError({"channels": f"dataset {manifest.name!r}: {problem}; leave channels empty to use the dataset's own"})
    split = frozen_split(folder, manifest.stems, split_config(spec, fold), manifest.groups, manifest.labels)
    return StudySource(manifest, folder, split, channels)


def load_study_data(spec: StudySpec, settings: Settings, device: torch.device, fold: int | None = None, pool: DataSet | None = None) -> StudyData:
    """Decode the study's dataset once and put its splits on ``device``.

    ``pool`` (every image of the dataset, already decoded) lets the folds of a cross-validated
    study share one decode: each fold's parts are index subsets of it.
    """
    source = study_source(spec, settings, fold)
    split, size = source.split, spec.image_size

    def part(stems: Sequence[str]) -> DataSet:
        if pool is None:
            return source.tensors(stems, size, device)
        position = {stem: index for index, stem in enumerate(pool.stems)}
        return pool.subset([position[stem] for stem in stems])

    test = part(split.test) if split.test else None
    preview = part(preview_stems(split, spec.preview_count))
    return StudyData(source.manifest, split, source.channels, part(split.train), part(split.val), test, preview, fold)


def load_pool(spec: StudySpec, settings: Settings, device: torch.device) -> DataSet:
    """Every image of the study's dataset on ``device``, for cross-validation's folds to subset."""
    source = study_source(spec, settings, 0)
    stems = sorted((*source.split.train, *source.split.val, *source.split.test))
    return source.tensors(stems, spec.image_size, device)
