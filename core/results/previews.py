"""Preview masks: the study's fixed validation images, their ground truth and each trial's predictions.

A column of predictions is a trial's (keyed by its number) or, added with ``PreviewSet.with_masks``,
another model's on the same images, e.g. a compressed variant of a trial (keyed by a name).
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

import numpy as np
import optuna
import pandas as pd

from core.contract import ArtifactKind, StudyAttr, TrialAttr
from core.errors import unknown_option
from core.results.trials import ResultsError, get_trial

if TYPE_CHECKING:
    from optuna.artifacts._protocol import ArtifactStore


ORDERINGS: dict[str, str] = {
    "worst_dice": "Worst Dice first",
    "disagreement": "Largest disagreement between trials",
    "name": "File name",
}


@dataclass(frozen=True)
class PreviewSet:
    """Validation preview images with ground truth and the selected trials' predicted masks."""

    stems: tuple[str, ...]
    images: np.ndarray  # (N, C, S, S) uint8
    masks: np.ndarray  # (N, S, S) uint8 class indices (ground truth)
    predictions: dict[int | str, np.ndarray]  # trial number (or another model's key) -> (N, S, S) uint8 class indices
    dice: dict[int | str, np.ndarray]  # same keys -> (N,) per-image Dice
    num_classes: int  # including background
    missing: tuple[int, ...] = ()  # selected trials that stored no previews (failed, pruned, running)
    labels: dict[int | str, str] = field(default_factory=dict)  # captions of the columns that are not trials

    @property
    def trial_numbers(self) -> list[int | str]:
        """The keys of the prediction columns, in display order (trials first, then added models)."""
        return list(self.predictions)

    def label(self, key: int | str) -> str:
        """A column's caption: "Trial #N", or the label it was added with."""
        return self.labels.get(key, f"Trial #{key}")

    def with_masks(self, key: str, label: str, predictions: np.ndarray, after: int | str | None = None) -> PreviewSet:
        """This set with one more column: another model's masks for the same images (in ``stems`` order),
        placed right after column ``after`` (e.g. the trial a variant was derived from), else last."""
        if predictions.shape != self.masks.shape:
            raise ResultsError(
                f"{label}: {predictions.shape[0]} masks of {predictions.shape[1:]} px do not match the "
                f"{len(self.stems)} preview images of {self.masks.shape[1:]} px"
            )
        keys = list(self.predictions)
        keys.insert(keys.index(after) + 1 if after in keys else len(keys), key)
        columns = {**self.predictions, key: predictions.astype(np.uint8)}
        num_classes = max(self.num_classes, int(predictions.max(initial=0)) + 1)
        dice = {**self.dice, key: _dice_per_image(predictions, self.masks, num_classes)}
        return replace(
            self,
            predictions={k: columns[k] for k in keys},
            dice={k: dice[k] for k in keys},
            labels={**self.labels, key: label},
        )

    def disagreement(self) -> np.ndarray:
        """Per image, the mean fraction of pixels on which two trials' predictions differ."""
        predictions = list(self.predictions.values())
        if len(predictions) < 2:
            return np.zeros(len(self.stems))
        pairs = [(a, b) for i, a in enumerate(predictions) for b in predictions[i + 1 :]]
        return np.mean([(a != b).mean(axis=(1, 2)) for a, b in pairs], axis=0)

    def order(self, by: str) -> list[int]:
        """Image indices in the order named by ``by`` (a key of :data:`ORDERINGS`)."""
        if by not in ORDERINGS:
            raise ResultsError(unknown_option("image order", by, ORDERINGS))
        if by == "name" or not self.predictions:
            return sorted(range(len(self.stems)), key=lambda i: self.stems[i])
        if by == "worst_dice":
            score = np.mean(list(self.dice.values()), axis=0)
        else:
            score = -self.disagreement()
        return [int(i) for i in np.argsort(score, kind="stable")]

    def dice_table(self, order: Sequence[int]) -> pd.DataFrame:
        """One row per image in ``order``: its stem, each trial's Dice, and (several trials) their disagreement."""
        rows = list(order)
        table = pd.DataFrame({"image": [self.stems[i] for i in rows]})
        for number in self.trial_numbers:
            table[f"#{number}" if isinstance(number, int) else self.label(number)] = self.dice[number][rows].astype(
                float
            )
        if len(self.predictions) > 1:
            table["disagreement"] = self.disagreement()[rows].astype(float)  # computed once for all rows
        return table


def load_previews(study: optuna.Study, trial_numbers: Sequence[int], artifact_store: ArtifactStore) -> PreviewSet:
    """The study's preview images + ground truth and each trial's predictions, aligned by stem."""
    artifact_id = study.user_attrs.get(StudyAttr.PREVIEW_ARTIFACT)
    if not artifact_id:
        raise ResultsError(f"study {study.study_name!r} stored no preview images (set preview_count > 0 in its spec)")
    reference = _read_npz(artifact_store, artifact_id)
    stems = tuple(str(stem) for stem in reference["stems"])
    predictions: dict[int, np.ndarray] = {}
    missing: list[int] = []
    for number in trial_numbers:
        trial = get_trial(study, number)
        previews_id = (trial.user_attrs.get(TrialAttr.ARTIFACTS) or {}).get(ArtifactKind.PREVIEWS)
        if previews_id is None:
            missing.append(number)
            continue
        predictions[number] = _aligned(_read_npz(artifact_store, previews_id), stems, number)
    masks = reference["masks"].astype(np.uint8)
    num_classes = int(max([2, int(masks.max()) + 1, *[int(p.max()) + 1 for p in predictions.values()]]))
    return preview_set(stems, reference["images"], masks, predictions, num_classes, tuple(missing))


def preview_set(
    stems: Sequence[str],
    images: np.ndarray,
    masks: np.ndarray,
    predictions: dict[int, np.ndarray],
    num_classes: int,
    missing: tuple[int, ...] = (),
) -> PreviewSet:
    """A :class:`PreviewSet` with each trial's per-image Dice worked out."""
    dice = {number: _dice_per_image(pred, masks, num_classes) for number, pred in predictions.items()}
    return PreviewSet(tuple(stems), images, masks, predictions, dice, num_classes, missing)


def _read_npz(artifact_store: ArtifactStore, artifact_id: str) -> dict[str, np.ndarray]:
    with artifact_store.open_reader(artifact_id) as reader:
        with np.load(io.BytesIO(reader.read()), allow_pickle=False) as archive:
            return {key: archive[key] for key in archive.files}


def _aligned(stored: dict[str, np.ndarray], stems: tuple[str, ...], number: int) -> np.ndarray:
    # Trials store predictions in their own order; index them by the study's preview stems.
    index = {str(stem): i for i, stem in enumerate(stored["stems"])}
    absent = [stem for stem in stems if stem not in index]
    if absent:
        raise ResultsError(f"trial #{number}'s previews lack image(s) {absent[:3]}: were they made by another study?")
    return stored["predictions"][[index[stem] for stem in stems]].astype(np.uint8)


def _dice_per_image(predictions: np.ndarray, masks: np.ndarray, num_classes: int) -> np.ndarray:
    # The one rule for an image's Dice is core.metrics.segmentation'; imported here because it pulls in torch and
    # smp (seconds), which the other result pages never need.
    from core.metrics.segmentation import per_image_dice

    return np.array([per_image_dice(pred, truth, num_classes) for pred, truth in zip(predictions, masks)], dtype=float)
