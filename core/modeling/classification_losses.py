"""The classification loss registry: cross-entropy (with label smoothing) and softmax focal loss.

Every loss is called as ``loss(logits, labels)`` with logits (N, K) and long labels (N,) of class
indices, whatever the number of classes (a classifier always emits one logit per class). The
segmentation losses (pixel targets, binary/multiclass modes) are :mod:`core.modeling.losses`'.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from core.registry import Registry

FOCAL_GAMMA = 2.0  # Lin et al. 2017's default: easy images (p_t -> 1) weigh (1 - p_t)^2 as much


class SoftmaxFocalLoss(nn.Module):
    """``mean((1 - p_t)^gamma * -log p_t)`` over images, p_t the softmax probability of the true class."""

    def __init__(self, gamma: float = FOCAL_GAMMA):
        super().__init__()
        self.gamma = gamma

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        log_p = F.log_softmax(logits.float(), dim=1).gather(1, labels.long().unsqueeze(1)).squeeze(1)
        return (-(1.0 - log_p.exp()).pow(self.gamma) * log_p).mean()


class _LongLabels(nn.Module):
    """Cross-entropy wants long labels; cached label tensors may be narrower ints."""

    def __init__(self, loss: nn.Module):
        super().__init__()
        self.loss = loss

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return self.loss(logits, labels.long())


@dataclass(frozen=True)
class ClassificationLoss:
    name: str
    description: str
    build: Callable[[dict[str, Any]], nn.Module]  # the loss's own hyperparameters -> loss(logits, labels)
    hyperparameters: tuple[str, ...] = ()  # tunable names it takes (the spec catalogue activates them only for it)


CLASSIFICATION_LOSSES: Registry[ClassificationLoss] = Registry(
    "classification loss",
    [
        ClassificationLoss(
            "cross_entropy",
            "softmax cross-entropy, optionally with label smoothing",
            lambda p: _LongLabels(nn.CrossEntropyLoss(label_smoothing=float(p.get("label_smoothing", 0.0)))),
            ("label_smoothing",),
        ),
        ClassificationLoss(
            "focal", f"softmax focal loss (gamma {FOCAL_GAMMA}: down-weights easy images)", lambda p: SoftmaxFocalLoss()
        ),
    ],
)
DEFAULT_CLASSIFICATION_LOSS = "cross_entropy"


def build_classification_loss(name: str, params: dict[str, Any] | None = None) -> nn.Module:
    """The loss ``name`` with the hyperparameters it takes from ``params`` (others are ignored)."""
    entry = CLASSIFICATION_LOSSES.get(name)
    own = {key: value for key, value in (params or {}).items() if key in entry.hyperparameters}
    return entry.build(own)


def takes(loss: Any, hyperparameter: str) -> bool:
    """Whether ``loss`` (a name, maybe not yet valid) takes ``hyperparameter``."""
    return loss in CLASSIFICATION_LOSSES and hyperparameter in CLASSIFICATION_LOSSES.get(loss).hyperparameters
