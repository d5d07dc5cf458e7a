"""A cross-validated trial's fold models as one ensemble, scored on the test split.

Each fold model predicts the (shared) test split as soon as it is trained; its probabilities are
added up on the CPU, so the k models never sit in memory together. When the trial ends, the
average is decided and scored exactly like a single model's test masks (at the original resolution
where the study is scored that way), and stored beside the fold models' mean
(``TrialAttr.ENSEMBLE_TEST_METRICS``): the figure nnU-Net reports for its 5-fold ensemble.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from core.data.tensors import ImageSet
from core.modeling.inference import class_indices, predict_probabilities, sliding_window_probabilities
from core.training.loop import eval_batches
from core.training.native import CaseScorer


class FoldEnsemble:
    """The running sum of the fold models' test probabilities."""

    def __init__(self, test: ImageSet | None, batch_size: int, patch_size: int | None = None):
        self.test, self.batch_size, self.patch_size = test, batch_size, patch_size
        self.total: torch.Tensor | None = None
        self.members = 0

    def add(self, model: nn.Module) -> None:
        """One more fold model's probabilities on the test split."""
        if self.test is None or not len(self.test):
            return
        probs = torch.cat(
            [self._probabilities(model, images).cpu() for images, _ in eval_batches(self.test, self.batch_size)]
        )
        self.total = probs if self.total is None else self.total + probs
        self.members += 1

    def _probabilities(self, model: nn.Module, images: torch.Tensor) -> torch.Tensor:
        if self.patch_size is None:
            return predict_probabilities(model, images)
        return sliding_window_probabilities(model, images, self.patch_size, windows_per_batch=self.batch_size)

    def metrics(self, mode: str, num_classes: int, originals: Sequence[np.ndarray] | None) -> dict[str, float] | None:
        """The averaged model's test metrics (against ``originals`` when given, else the training-size
        masks); None without a test split or with fewer than two members."""
        if self.total is None or self.test is None or self.members < 2:
            return None
        masks = class_indices(self.total / self.members).to(torch.uint8).numpy()
        truths = list(originals) if originals is not None else list(self.test.targets.cpu().numpy())
        scorer = CaseScorer(mode, num_classes)
        for stem, mask, truth in zip(self.test.stems, masks, truths):
            scorer.add(stem, mask, truth)
        return scorer.metrics()
