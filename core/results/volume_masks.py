"""Whole volumes on Compare masks: every stored slice of one validation or test volume, its ground
truth, and the chosen trials' masks predicted on demand from each trial's stored weights.

A study keeps predicted masks for a few preview slices only; a volume has many, so they are
predicted when asked for (the dashboard caches each trial's model and each trial x volume). Slices
are fed as in training and evaluation: the study's image size and channels, from its frozen split.
A cross-validated trial's stored weights are fold 0's model, so its volumes are fold 0's too.
Slices left out at ingest (the dropped share of empty ones) are not in the dataset and not shown.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from core.data.images import read_mask
from core.data.tensors import resize_mask
from core.data.volumes import parse_slice_stem
from core.metrics.cases import scored_natively
from core.metrics.volumes import volume_dice_scores
from core.modeling.bundle import load_model, trial_bundle
from core.modeling.inference import predict_indices
from core.results.previews import PreviewSet, preview_set
from core.results.trials import ResultsError, get_trial
from core.search.study_source import StudySource, study_source
from core.search.validation import stored_spec

if TYPE_CHECKING:
    import optuna
    from torch import nn

    from core.modeling.bundle import BundleConfig
    from core.search.spec import StudySpec
    from core.settings import Settings

PARTS: dict[str, str] = {"val": "Validation", "test": "Test"}  # split part -> label; training volumes are not shown
BATCH = 16  # slices per forward pass: a few MB at the sizes studies use


@dataclass(frozen=True)
class VolumeSlices:
    """The stored slices of one volume in slice order, as the study's models see them."""

    volume: str
    stems: tuple[str, ...]
    images: np.ndarray  # (N, C, S, S) uint8
    masks: np.ndarray  # (N, S, S) uint8 ground truth
    num_classes: int
    total_slices: int  # slices along the axis in the source volume (stored ones may be fewer)
    originals: np.ndarray | None = None  # (N, H, W) the stored masks, where the study scores at that resolution

    def slice_index(self, position: int) -> int:
        return parse_slice_stem(self.stems[position])[1]  # type: ignore[index]


def spec_and_source(study: optuna.Study, settings: Settings) -> tuple[StudySpec, StudySource]:
    spec = stored_spec(study)
    if spec is None:
        raise ResultsError(f"study {study.study_name!r} was not made by SegTune (it has no spec)")
    return spec, study_source(spec, settings, 0 if spec.cv else None)


def split_volumes(study: optuna.Study, settings: Settings) -> dict[str, list[str]]:
    """Split part (:data:`PARTS`) -> its volume ids, sorted; {} when the study's dataset holds 2D images."""
    _, source = spec_and_source(study, settings)
    groups = source.manifest.groups
    if not groups:
        return {}
    parts = {part: sorted({groups[stem] for stem in getattr(source.split, part)}) for part in PARTS}
    return {part: volumes for part, volumes in parts.items() if volumes}


def volume_slices(study: optuna.Study, settings: Settings, part: str, volume: str) -> VolumeSlices:
    """Every stored slice of ``volume`` (which must lie in split ``part``), decoded at the study's size."""
    spec, source = spec_and_source(study, settings)
    if part not in PARTS:
        raise ResultsError(f"unknown split part {part!r}; valid: {list(PARTS)}")
    members = [stem for stem in getattr(source.split, part) if source.manifest.groups.get(stem) == volume]
    if not members:
        raise ResultsError(f"volume {volume!r} is not in the {PARTS[part].lower()} split of study {study.study_name!r}")
    stems = sorted(members, key=lambda stem: source.manifest.pair(stem).slice_index or 0)
    data = source.tensors(stems, spec.image_size, torch.device("cpu"))
    info = next((v for v in source.manifest.volumes if v.volume == volume), None)
    originals = None
    if scored_natively(study.user_attrs):  # a volume's stored slices share one size
        originals = np.stack([read_mask(source.folder / source.manifest.pair(stem).mask) for stem in stems])
    return VolumeSlices(
        volume,
        tuple(stems),
        data.images.numpy(),
        data.targets.numpy(),
        source.manifest.num_classes,
        info.total_slices if info else len(stems),
        originals,
    )


def trial_model(study: optuna.Study, number: int, artifact_store: object) -> tuple[nn.Module, BundleConfig]:
    """Trial ``number``'s model rebuilt from its stored weights and config (raises when it stored none)."""
    with tempfile.TemporaryDirectory(prefix="segtune-volume-") as tmp:
        return load_model(trial_bundle(get_trial(study, number), artifact_store, Path(tmp) / "bundle"))


@torch.no_grad()
def predict_slices(model: nn.Module, config: BundleConfig, images: np.ndarray) -> np.ndarray:
    """Class-index masks (N, S, S) uint8 for uint8 images (N, C, S, S) at the model's own size."""
    masks = []
    for start in range(0, len(images), BATCH):
        batch = torch.from_numpy(np.ascontiguousarray(images[start : start + BATCH])).float().div_(255.0)
        masks.append(predict_indices(model, batch, threshold=config.threshold).to(torch.uint8).numpy())
    return np.concatenate(masks) if masks else np.zeros((0, *images.shape[2:]), np.uint8)


def volume_set(slices: VolumeSlices, predictions: dict[int, np.ndarray], missing: tuple[int, ...] = ()) -> PreviewSet:
    """The volume's slices laid out like preview images, so the same mask grid shows them."""
    return preview_set(slices.stems, slices.images, slices.masks, predictions, slices.num_classes, missing)


def volume_dice(slices: VolumeSlices, prediction: np.ndarray) -> float:
    """Dice of the whole volume (its stored slices stacked), the figure of ``dice_per_volume``: at
    the slices' own resolution where the study scores that way (each mask resized as ``predict`` does)."""
    groups = dict.fromkeys(slices.stems, slices.volume)
    truths = slices.masks if slices.originals is None else slices.originals
    if slices.originals is not None:
        prediction = np.stack([resize_mask(mask, *truth.shape) for mask, truth in zip(prediction, truths)])
    return volume_dice_scores(prediction, truths, slices.stems, groups, slices.num_classes)[slices.volume]
