"""Building models from their configuration, and their sizes."""

from __future__ import annotations

from torch import nn

from core.modeling.architectures import ARCHITECTURES
from core.modeling.config import ModelBuildError, ModelConfig, out_channels


def build_model(config: ModelConfig) -> nn.Module:
    """A freshly initialised model for ``config`` (ImageNet encoder weights if asked for)."""
    if config.architecture not in ARCHITECTURES:
        raise ModelBuildError(ARCHITECTURES.problem(config.architecture) or "")
    if config.in_channels < 1:
        raise ModelBuildError(f"in_channels must be at least 1, got {config.in_channels}")
    try:
        out_channels(config.num_classes)
    except ValueError as exc:
        raise ModelBuildError(str(exc)) from exc
    return ARCHITECTURES.get(config.architecture).build(config)


def count_parameters(model: nn.Module) -> int:
    """All parameters, trainable or not."""
    return sum(p.numel() for p in model.parameters())


def weights_size_mb(model: nn.Module) -> float:
    """Size of the state dict saved as fp32 (MiB): floats at 4 bytes, integer buffers as they are."""
    total = 0
    for tensor in model.state_dict().values():
        total += tensor.numel() * (4 if tensor.is_floating_point() else tensor.element_size())
    return total / 2**20
