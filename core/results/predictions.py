"""Classification results for "Compare predictions": per-image predictions, confusion matrices, disagreement.

Reads what a classification trial stored (core/training/objective.py): the ``predictions``
artifact (:class:`~core.metrics.label_predictions.LabelPredictions`: every validation image's true
label, class probabilities and fold; out of fold with cross-validation) and the
``confusion_matrix`` attr. Everything is returned as plain values (numpy arrays, DataFrames) for
the pages to render; images are read from the study's dataset by stem (:func:`prediction_images`).

Typical page flow::

    comparison = compare_predictions(study, [3, 7], artifact_store)
    table = comparison.table(order="confidence")          # one row per image, misclassified first
    wrong = comparison.misclassified(3)                    # stems trial #3 got wrong
    images = prediction_images(settings, study, wrong[:12])  # thumbnails to show side by side
    matrix = confusion_frame(study, 3)                     # counts, rows = true class, columns = predicted
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import optuna
import pandas as pd
from optuna.trial import FrozenTrial

from core.contract import ArtifactKind, StudyAttr, Task, TrialAttr, spec_attr
from core.errors import unknown_option
from core.metrics.label_predictions import LabelPredictions
from core.results.reliability import study_task
from core.results.trials import ResultsError, get_trial

if TYPE_CHECKING:
    from optuna.artifacts._protocol import ArtifactStore

    from core.settings import Settings

ORDERINGS: dict[str, str] = {
    "confidence": "Confident mistakes first",  # wrong before right; within each, most confident first
    "least_confident": "Least confident first",
    "disagreement": "Largest disagreement between trials",
    "name": "File name",
}


def _check_classification(study: optuna.Study) -> None:
    if study_task(study) != Task.CLASSIFICATION:
        raise ResultsError(
            f"study {study.study_name!r} is a {study_task(study)} study: its predictions are masks (Compare masks)"
        )


def load_predictions(study: optuna.Study, trial_number: int, artifact_store: ArtifactStore) -> LabelPredictions:
    """Trial ``trial_number``'s validation predictions (out of fold with cross-validation).

    Raises :class:`ResultsError` for a segmentation study, or a trial that stored none (failed,
    pruned, still running).
    """
    _check_classification(study)
    trial = get_trial(study, trial_number)
    predictions = _stored_predictions(trial, artifact_store)
    if predictions is None:
        raise ResultsError(
            f"trial #{trial_number} stored no predictions (state {trial.state.name.lower()}): only completed trials "
            "have them"
        )
    return predictions


def _stored_predictions(trial: FrozenTrial, artifact_store: ArtifactStore) -> LabelPredictions | None:
    artifact_id = (trial.user_attrs.get(TrialAttr.ARTIFACTS) or {}).get(ArtifactKind.PREDICTIONS)
    if not artifact_id:
        return None
    with artifact_store.open_reader(artifact_id) as reader:
        return LabelPredictions.load(reader)


def confusion_matrix(study: optuna.Study, trial_number: int) -> np.ndarray:
    """The trial's validation confusion matrix (K, K): rows = true class, columns = predicted (summed over folds)."""
    _check_classification(study)
    trial = get_trial(study, trial_number)
    stored = trial.user_attrs.get(TrialAttr.CONFUSION_MATRIX)
    if stored is None:
        raise ResultsError(
            f"trial #{trial_number} has no confusion matrix (state {trial.state.name.lower()}): only completed "
            "trials have one"
        )
    return np.asarray(stored, dtype=np.int64)


def class_names(study: optuna.Study) -> tuple[str, ...]:
    """The dataset's class names, index = label (stored with the study when it was prepared)."""
    _check_classification(study)
    return tuple(study.user_attrs.get(StudyAttr.CLASSES) or ())


def confusion_frame(study: optuna.Study, trial_number: int) -> pd.DataFrame:
    """:func:`confusion_matrix` labelled with the class names: index "true: <class>", columns "predicted: <class>"."""
    matrix = confusion_matrix(study, trial_number)
    names = class_names(study) or tuple(str(i) for i in range(len(matrix)))
    return pd.DataFrame(matrix, index=[f"true: {n}" for n in names], columns=[f"predicted: {n}" for n in names])


@dataclass(frozen=True)
class PredictionComparison:
    """Several trials' predictions on the same validation images, aligned by stem (first trial's order)."""

    stems: tuple[str, ...]
    labels: np.ndarray  # (N,) true class indices
    classes: tuple[str, ...]
    trials: dict[int, LabelPredictions]  # trial number -> its predictions, rows in ``stems`` order
    missing: tuple[int, ...] = ()  # selected trials that stored no predictions

    @property
    def trial_numbers(self) -> list[int]:
        return list(self.trials)

    def misclassified(self, trial_number: int) -> list[str]:
        """Stems trial ``trial_number`` got wrong, most confident mistake first."""
        predictions = self.trials[trial_number]
        wrong = np.flatnonzero(~predictions.correct)
        return [self.stems[i] for i in wrong[np.argsort(-predictions.confidence[wrong], kind="stable")]]

    def disagreement(self) -> np.ndarray:
        """(N,) per image, the share of trial pairs whose predicted labels differ (0 with one trial)."""
        predicted = [p.predicted for p in self.trials.values()]
        if len(predicted) < 2:
            return np.zeros(len(self.stems))
        pairs = [(a, b) for i, a in enumerate(predicted) for b in predicted[i + 1 :]]
        return np.mean([a != b for a, b in pairs], axis=0)

    def order(self, by: str) -> list[int]:
        """Image indices in the order named by ``by`` (a key of :data:`ORDERINGS`); scores are averaged over trials."""
        if by not in ORDERINGS:
            raise ResultsError(unknown_option("image order", by, ORDERINGS))
        if by == "name" or not self.trials:
            return sorted(range(len(self.stems)), key=lambda i: self.stems[i])
        confidence = np.mean([p.confidence for p in self.trials.values()], axis=0)
        wrong = np.mean([~p.correct for p in self.trials.values()], axis=0)
        keys = {
            "confidence": (-confidence, -wrong),
            "least_confident": (confidence,),
            "disagreement": (-confidence, -self.disagreement()),
        }[by]
        return [int(i) for i in np.lexsort(keys)]  # the last key sorts first

    def table(self, order: str = "confidence") -> pd.DataFrame:
        """One row per image in ``order``: stem, true class, and per trial its predicted class,
        confidence (probability of the predicted class) and whether it is right; several trials add
        ``disagreement``."""
        rows = self.order(order)
        table = pd.DataFrame(
            {"image": [self.stems[i] for i in rows], "true": [self.classes[self.labels[i]] for i in rows]}
        )
        for number, predictions in self.trials.items():
            table[f"#{number} predicted"] = [self.classes[predictions.predicted[i]] for i in rows]
            table[f"#{number} confidence"] = predictions.confidence[rows].astype(float)
            table[f"#{number} correct"] = predictions.correct[rows]
        if len(self.trials) > 1:
            table["disagreement"] = self.disagreement()[rows].astype(float)
        return table


def compare_predictions(
    study: optuna.Study, trial_numbers: Sequence[int], artifact_store: ArtifactStore
) -> PredictionComparison:
    """The selected trials' predictions aligned on the images they all validated (trials without any are listed in
    ``missing``)."""
    _check_classification(study)
    loaded: dict[int, LabelPredictions] = {}
    missing: list[int] = []
    for number in trial_numbers:
        predictions = _stored_predictions(get_trial(study, number), artifact_store)
        if predictions is None:
            missing.append(number)
        else:
            loaded[number] = predictions
    if not loaded:
        return PredictionComparison((), np.zeros(0, np.int64), (), {}, tuple(missing))
    first = next(iter(loaded.values()))
    shared = set.intersection(*(set(p.stems) for p in loaded.values()))
    stems = tuple(stem for stem in first.stems if stem in shared)
    aligned = {number: _aligned(predictions, stems) for number, predictions in loaded.items()}
    return PredictionComparison(stems, aligned[next(iter(aligned))].labels, first.classes, aligned, tuple(missing))


def _aligned(predictions: LabelPredictions, stems: tuple[str, ...]) -> LabelPredictions:
    index = {stem: i for i, stem in enumerate(predictions.stems)}
    rows = [index[stem] for stem in stems]
    return LabelPredictions(
        stems, predictions.labels[rows], predictions.probabilities[rows], predictions.folds[rows], predictions.classes
    )


def prediction_images(
    settings: Settings, study: optuna.Study, stems: Sequence[str], size: int | None = None
) -> np.ndarray:
    """The images of ``stems`` from the study's dataset as uint8 (N, C, S, S) at the study's image size
    (or ``size``), for thumbnails beside their predictions. Raises a :class:`SegTuneError` naming the
    dataset when it was deleted since."""
    from core.data.manifest import dataset_path, load_manifest
    from core.data.tensors import load_tensor_set

    spec = spec_attr(study)  # raw: one field is read, so a spec that no longer validates still opens
    dataset = study.user_attrs.get(StudyAttr.DATASET) or spec.get("dataset")
    manifest = load_manifest(settings.datasets_dir, dataset)
    channels = spec.get("channels") or manifest.channels
    data = load_tensor_set(
        dataset_path(settings.datasets_dir, dataset),
        manifest,
        list(stems),
        size or spec.get("image_size", 64),
        channels,
    )
    return data.images.numpy()
