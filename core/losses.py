"""Loss registry over ``segmentation_models_pytorch.losses`` plus weighted hybrids (paper P3).

Every loss is called as ``loss(logits, target)`` with logits (N, C, H, W) and a long target
(N, H, W) of class indices (uint8 works too), whatever the underlying loss wants: binary losses
get the target as (N, 1, H, W) floats, multiclass losses as long indices.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from segmentation_models_pytorch import losses as smp_losses
from torch import nn

from core import options
from core.errors import SegTuneError

MODES = ("binary", "multiclass")
HYBRIDS: dict[str, tuple[str, str]] = {
    "dice_bce": ("dice", "bce"),
    "dice_focal": ("dice", "focal"),
    "jaccard_bce": ("jaccard", "bce"),
}
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
        if self.mode == "binary":
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


def _bce(mode: str) -> nn.Module:
    return nn.BCEWithLogitsLoss() if mode == "binary" else nn.CrossEntropyLoss()


_BASE: dict[str, Callable[[str], nn.Module]] = {
    "bce": _bce,
    "dice": lambda mode: smp_losses.DiceLoss(mode, from_logits=True),
    "jaccard": lambda mode: smp_losses.JaccardLoss(mode, from_logits=True),
    "focal": lambda mode: smp_losses.FocalLoss(mode),
    "tversky": lambda mode: smp_losses.TverskyLoss(mode, from_logits=True, alpha=TVERSKY_ALPHA, beta=TVERSKY_BETA),
    "lovasz": lambda mode: smp_losses.LovaszLoss(mode, from_logits=True),
}
assert set(_BASE) | set(HYBRIDS) == set(options.LOSSES), "every loss name needs a factory"


def _base_loss(name: str, mode: str) -> nn.Module:
    return _ClassIndexTarget(_BASE[name](mode), mode)


def build_loss(name: str, mode: str, hybrid_weights: tuple[float, float] = (0.5, 0.5)) -> nn.Module:
    """The loss ``name`` for ``mode`` ("binary" or "multiclass"); hybrids weigh their two parts."""
    if mode not in MODES:
        raise SegTuneError(f"unknown loss mode {mode!r}; valid: {list(MODES)}")
    if name in HYBRIDS:
        return WeightedSum([_base_loss(part, mode) for part in HYBRIDS[name]], hybrid_weights)
    if name not in _BASE:
        raise SegTuneError(f"unknown loss {name!r}; valid: {list(options.LOSSES)}")
    return _base_loss(name, mode)
