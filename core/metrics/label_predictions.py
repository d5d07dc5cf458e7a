"""A classification trial's validation predictions: the ``predictions`` artifact, written and read here.

For every validation image the trial stores its stem, true class, class probabilities and the
cross-validation fold whose model scored it. With cross-validation every image outside the test
split is validated exactly once, by the model that did not train on it (out-of-fold
predictions), so the set covers the whole train+val pool; without it, it is the validation split.
Numpy only (no torch): the results pages read it without importing the training stack.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import numpy as np


def confusion_matrix(labels: np.ndarray, predicted: np.ndarray, num_classes: int) -> np.ndarray:
    """(K, K) int64 counts: row = true class, column = predicted class."""
    labels, predicted = np.asarray(labels, dtype=np.int64), np.asarray(predicted, dtype=np.int64)
    return np.bincount(labels * num_classes + predicted, minlength=num_classes * num_classes).reshape(
        num_classes, num_classes
    )


@dataclass(frozen=True)
class LabelPredictions:
    """Per validation image: stem, true label, class probabilities, and the fold that scored it."""

    stems: tuple[str, ...]
    labels: np.ndarray  # (N,) int64 true class indices
    probabilities: np.ndarray  # (N, K) float32 softmax probabilities
    folds: np.ndarray  # (N,) int64 cross-validation fold of the model that scored the image (0 without CV)
    classes: tuple[str, ...]  # class names, index = label

    def __post_init__(self) -> None:
        n = len(self.stems)
        if not (len(self.labels) == len(self.probabilities) == len(self.folds) == n):
            raise ValueError(
                f"{n} stems but {len(self.labels)} labels, {len(self.probabilities)} probability rows, "
                f"{len(self.folds)} folds"
            )
        if self.probabilities.ndim != 2 or self.probabilities.shape[1] != len(self.classes):
            raise ValueError(f"probabilities must be (N, {len(self.classes)}), got {self.probabilities.shape}")

    def __len__(self) -> int:
        return len(self.stems)

    @property
    def predicted(self) -> np.ndarray:
        """(N,) predicted class indices: the most probable class."""
        return self.probabilities.argmax(axis=1).astype(np.int64) if len(self) else np.zeros(0, np.int64)

    @property
    def confidence(self) -> np.ndarray:
        """(N,) probability the model gave its predicted class."""
        return self.probabilities.max(axis=1) if len(self) else np.zeros(0, np.float32)

    @property
    def correct(self) -> np.ndarray:
        """(N,) bool: prediction equals the true label."""
        return self.predicted == self.labels

    def confusion_matrix(self) -> np.ndarray:
        """(K, K) counts, rows = true class, columns = predicted class."""
        return confusion_matrix(self.labels, self.predicted, len(self.classes))

    def save(self, path: Path) -> Path:
        """Write the ``predictions`` artifact (npz, no pickled objects)."""
        np.savez_compressed(
            path,
            stems=np.array(self.stems, dtype=str),
            labels=self.labels.astype(np.int64),
            probabilities=self.probabilities.astype(np.float32),
            folds=self.folds.astype(np.int64),
            classes=np.array(self.classes, dtype=str),
        )
        return path

    @classmethod
    def load(cls, source: IO[bytes] | bytes) -> LabelPredictions:
        """Read what :meth:`save` wrote (a binary file object or its bytes)."""
        data = source if isinstance(source, bytes) else source.read()
        with np.load(io.BytesIO(data), allow_pickle=False) as archive:
            return cls(
                stems=tuple(str(s) for s in archive["stems"]),
                labels=archive["labels"].astype(np.int64),
                probabilities=archive["probabilities"].astype(np.float32),
                folds=archive["folds"].astype(np.int64),
                classes=tuple(str(c) for c in archive["classes"]),
            )
