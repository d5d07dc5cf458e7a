"""The loss registry: ``segmentation_models_pytorch.losses`` plus weighted hybrids (as in the cell-segmentation
optimizer x loss study).

Over ``segmentation_models_pytorch.losses`` Every loss is called as ``loss(logits, target)`` with logits (N, C, H, W)
and a long target (N, H, W) of class indices (uint8 works too), whatever the underlying loss wants: binary losses get
the target as (N, 1, H, W) floats, multiclass losses as long indices.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import ModuleType

import torch
from torch import nn

from core.contract import Mode
from core.errors import SegTuneError, unknown_option
from core.registry import Registry

TVERSKY_ALPHA, TVERSKY_BETA = 0.3, 0.7  # FN weigh more than FP; 0.5/0.5 would just be Dice


class _ClassIndexTarget(nn.Module):
    """Feeds a loss (N, H, W) class-index targets in the form it wants.

    Binary smp/torch losses want (N, 1, H, W) floats (1 = foreground); multiclass ones want long
    indices, which uint8 masks from the data cache are not.
    """

    def __init__(self, loss: nn.Module, mode: str):
        super().__init__()
        self.loss = loss
        self.mode = mode

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if self.mode == Mode.BINARY:
            return self.loss(logits, target.unsqueeze(1).to(logits.dtype))
        return self.loss(logits, target.long())


class WeightedSum(nn.Module):
    """``sum(w_i * loss_i(logits, target))``: the Dice-BCE style hybrids."""

    def __init__(self, losses: Sequence[nn.Module], weights: Sequence[float]):
        super().__init__()
        if len(losses) != len(weights):
            raise ValueError(f"{len(losses)} losses but {len(weights)} weights")
        self.losses = nn.ModuleList(losses)
        self.weights = tuple(float(w) for w in weights)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return sum(w * loss(logits, target) for w, loss in zip(self.weights, self.losses))


def _smp_losses() -> ModuleType:
    # segmentation-models-pytorch takes seconds to import: only when a loss is built
    from segmentation_models_pytorch import losses

    return losses


def _bce(mode: Mode) -> nn.Module:
    return nn.BCEWithLogitsLoss() if mode == Mode.BINARY else nn.CrossEntropyLoss()


@dataclass(frozen=True)
class Loss:
    name: str
    description: str
    build: Callable[[Mode], nn.Module] | None = None  # the raw loss for a mode (before target adaptation)
    parts: tuple[str, ...] = ()  # or a hybrid: the weighted sum of these single losses


LOSSES: Registry[Loss] = Registry(
    "loss",
    [
        Loss("bce", "binary / categorical cross-entropy", _bce),
        Loss("dice", "soft Dice", lambda mode: _smp_losses().DiceLoss(mode, from_logits=True)),
        Loss("jaccard", "soft Jaccard (IoU)", lambda mode: _smp_losses().JaccardLoss(mode, from_logits=True)),
        Loss("focal", "focal loss (down-weights easy pixels)", lambda mode: _smp_losses().FocalLoss(mode)),
        Loss(
            "tversky",
            f"Tversky (alpha {TVERSKY_ALPHA}, beta {TVERSKY_BETA}: small foreground)",
            lambda mode: _smp_losses().TverskyLoss(mode, from_logits=True, alpha=TVERSKY_ALPHA, beta=TVERSKY_BETA),
        ),
        Loss(
            "lovasz",
            "Lovasz hinge / softmax (optimises IoU)",
            lambda mode: _smp_losses().LovaszLoss(mode, from_logits=True),
        ),
        Loss("dice_bce", "Dice + cross-entropy", parts=("dice", "bce")),
        Loss("dice_focal", "Dice + focal", parts=("dice", "focal")),
        Loss("jaccard_bce", "Jaccard + cross-entropy", parts=("jaccard", "bce")),
    ],
)


def _single(name: str, mode: Mode) -> nn.Module:
    build = LOSSES.get(name).build
    if build is None:
        raise SegTuneError(f"loss {name!r} is a hybrid; hybrids combine single losses only")
    return _ClassIndexTarget(build(mode), mode)


def build_loss(name: str, mode: str, hybrid_weights: tuple[float, float] = (0.5, 0.5)) -> nn.Module:
    """The loss ``name`` for ``mode`` ("binary" or "multiclass"); hybrids weigh their two parts."""
    if mode not in Mode.__members__.values():
        raise SegTuneError(unknown_option("loss mode", mode, list(Mode)))
    entry = LOSSES.get(name)
    if entry.parts:
        return WeightedSum([_single(part, Mode(mode)) for part in entry.parts], hybrid_weights)
    return _single(name, Mode(mode))
