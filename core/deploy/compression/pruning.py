"""Gradual magnitude pruning: single weights (torch.nn.utils.prune) or whole channels (torch-pruning).

Both prune in stages over the first half of the fine-tune, so the network adapts to each cut
before the next (the cell-segmentation optimizer x loss study raised sparsity every 100 steps),
and recover at full sparsity over the second half. Weight pruning leaves zeros in a dense tensor:
the file only shrinks once compressed. Channel pruning removes the channels: torch-pruning's
dependency graph cuts every layer coupled to a channel (the next convolution's inputs, BatchNorm,
skip connections, concatenations) so the model is smaller and faster as stored; the bundle
records the new layer shapes (core.modeling.pruned).
"""

from __future__ import annotations

import copy
import math
from typing import Any

import torch
from torch import nn
from torch.nn.utils import prune

from core.deploy.compression.config import CompressionConfig, CompressionData, CompressionError, StepCallback
from core.deploy.compression.finetune import finetune

_PRUNABLE = (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)
STAGES = 5  # pruning stages over the first half of the fine-tune
# torch-pruning's dependency graph does not terminate on MAnet's position-attention block (a known
# torch-pruning limitation with attention reshapes); refused up front instead of hanging.
CHANNEL_PRUNING_UNSUPPORTED: dict[str, str] = {
    "MAnet": "torch-pruning's dependency graph cannot follow MAnet's position-attention block",
}


def prunable_layers(model: nn.Module) -> list[tuple[nn.Module, str]]:
    """Conv/Linear weights, except the output layer: pruning its channels would delete classes."""
    layers = [(module, "weight") for module in model.modules() if isinstance(module, _PRUNABLE)]
    return layers[:-1]  # modules() lists the head last for every architecture SegTune builds


def sparsity(model: nn.Module) -> float:
    """Fraction of zeros among the prunable weights."""
    weights = [getattr(module, name) for module, name in prunable_layers(model)]
    total = sum(w.numel() for w in weights)
    return sum(int((w == 0).sum()) for w in weights) / total if total else 0.0


def stage_steps(total: int) -> list[int]:
    """The steps at which a stage starts: spread over the first half of ``total`` (all at 0 for a one-shot)."""
    ramp = total // 2
    return [ramp * stage // STAGES for stage in range(STAGES)]


# --- single weights -----------------------------------------------------------------------------


def _apply_weight_pruning(layers: list[tuple[nn.Module, str]], amount: float, config: CompressionConfig) -> None:
    """Prune to ``amount`` in total, ranking the current (already masked) weights."""
    for module, name in layers:
        if prune.is_pruned(module):
            prune.remove(module, name)  # pruned weights are zero now, so they rank first again
    if config.prune_scope == "global":
        prune.global_unstructured(layers, pruning_method=prune.L1Unstructured, amount=amount)
    else:
        for module, name in layers:
            prune.l1_unstructured(module, name, amount=amount)


def weight_pruning(
    model: nn.Module, data: CompressionData, config: CompressionConfig, total: int, steps: StepCallback | None
) -> nn.Module:
    """Gradual L1 magnitude pruning of single weights (global threshold or per layer)."""
    pruned = copy.deepcopy(model)
    layers = prunable_layers(pruned)
    if not layers:
        raise CompressionError("this model has no prunable Conv/Linear layers besides its output layer")
    starts = stage_steps(total)

    def on_step(step: int) -> bool:
        due = [stage for stage, start in enumerate(starts, 1) if start == step]
        if due:  # a short fine-tune starts several stages at once: the last one counts
            _apply_weight_pruning(layers, config.sparsity * max(due) / STAGES, config)
        return False  # masks re-parametrize the same tensors: the optimizer keeps them

    if total == 0:
        on_step(0)
    finetune(pruned, data, config, total, on_step=on_step, steps=steps)
    for module, name in layers:
        prune.remove(module, name)  # make it permanent: plain weights with zeros, no masks
    return pruned.eval()


# --- whole channels -----------------------------------------------------------------------------


def channel_ratio(weight_sparsity: float) -> float:
    """The share of channels to remove per layer for ``weight_sparsity`` of the weights: a convolution
    loses that share of its inputs and of its outputs, so it keeps (1 - ratio)^2 of its weights."""
    return 1.0 - math.sqrt(1.0 - weight_sparsity)


def _kept_whole(model: nn.Module) -> list[nn.Module]:
    """Layers torch-pruning must not cut: the output layer (its channels are the classes) and
    attention blocks (heads reshape channels in ways the dependency graph cannot follow)."""
    layers = [module for module in model.modules() if isinstance(module, _PRUNABLE)]
    return layers[-1:] + [module for module in model.modules() if "attention" in type(module).__name__.lower()]


def _channel_pruner(model: nn.Module, example: torch.Tensor, config: CompressionConfig) -> Any:
    import torch_pruning as tp

    return tp.pruner.BasePruner(
        model,
        example,
        importance=tp.importance.GroupMagnitudeImportance(p=2),
        pruning_ratio=channel_ratio(config.sparsity),
        iterative_steps=STAGES,
        ignored_layers=_kept_whole(model),
    )


def check_channel_pruning(architecture: str) -> None:
    if architecture in CHANNEL_PRUNING_UNSUPPORTED:
        raise CompressionError(
            f"channel pruning is not available for {architecture}: {CHANNEL_PRUNING_UNSUPPORTED[architecture]}; "
            "prune single weights instead (structured off)"
        )


def channel_pruning(
    model: nn.Module, data: CompressionData, config: CompressionConfig, total: int, steps: StepCallback | None
) -> nn.Module:
    """Gradual channel pruning with torch-pruning: a smaller model (core.modeling.pruned.channel_record tells how)."""
    check_channel_pruning(type(model).__name__)
    pruned = copy.deepcopy(model).eval()
    example = data.train.images[:1].float().div(255.0)
    try:
        pruner = _channel_pruner(pruned, example, config)
    except Exception as exc:
        raise CompressionError(
            f"channel pruning cannot trace this model ({type(exc).__name__}: {str(exc)[:200]}); "
            "prune single weights instead (structured off)"
        ) from exc
    starts = stage_steps(total)

    def on_step(step: int) -> bool:
        stages = sum(1 for start in starts if start == step)
        for _ in range(stages):
            pruner.step()  # each call cuts up to the next share of the schedule (ratio * stage / STAGES)
        return stages > 0

    try:
        if total == 0:
            on_step(0)
        finetune(pruned, data, config, total, on_step=on_step, steps=steps)
    except (RuntimeError, IndexError) as exc:
        raise CompressionError(
            f"channel pruning broke this model ({type(exc).__name__}: {str(exc)[:200]}); "
            "prune single weights instead (structured off)"
        ) from exc
    return pruned.eval()
