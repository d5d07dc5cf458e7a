"""Where a study's images come from: its dataset, the frozen split (or one fold of it), the channels.

Reading a source decodes no image: it checks that the study and the dataset are of one task and
that the channels fit, then freezes (or re-reads) the split. Training decodes from it
(core.training.study_data); the results pages read volumes and previews from it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from core.contract import Task
from core.data.images import channel_problem
from core.data.manifest import DatasetManifest, dataset_path, load_manifest
from core.data.splits import Split, SplitConfig, frozen_split
from core.data.tensors import ImageSet, load_tensor_set
from core.errors import SegTuneError
from core.search.spec import StudySpec
from core.search.task_fit import task_problem
from core.search.validation import SpecError

if TYPE_CHECKING:
    import torch

    from core.settings import Settings


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

    def tensors(self, stems: Sequence[str], image_size: int, device: torch.device) -> ImageSet:
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
        raise SpecError(
            {"channels": f"dataset {manifest.name!r}: {problem}; leave channels empty to use the dataset's own"}
        )
    split = frozen_split(folder, manifest.stems, split_config(spec, fold), manifest.groups, manifest.labels)
    return StudySource(manifest, folder, split, channels)
