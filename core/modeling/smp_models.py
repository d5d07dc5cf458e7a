"""segmentation-models-pytorch architectures: the arguments that keep outputs at the input size,
offline-safe ImageNet weights, and errors that say what would work.
"""

from __future__ import annotations

import contextlib
import socket
import warnings
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlparse

from torch import nn

from core.modeling.architectures import ARCHITECTURES
from core.modeling.config import ModelBuildError, ModelConfig, out_channels
from core.modeling.encoders import TIMM_PREFIX, check_encoder


def _hub_reachable(timeout_s: float = 3.0) -> bool:
    """Whether the Hugging Face Hub (where smp and timm keep weights) answers within a few seconds."""
    from huggingface_hub import constants

    host = urlparse(constants.ENDPOINT).hostname or "huggingface.co"
    try:
        with socket.create_connection((host, 443), timeout=timeout_s):
            return True
    except OSError:
        return False


@contextlib.contextmanager
def _offline_unless_reachable() -> Iterator[None]:
    """Without network, use only cached weights: huggingface_hub would otherwise retry for ~25-50 s."""
    from huggingface_hub import constants

    if _hub_reachable():
        yield
        return
    saved = constants.HF_HUB_OFFLINE
    constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        constants.HF_HUB_OFFLINE = saved


def smp_arguments(config: ModelConfig, weights: str | bool | None) -> dict[str, Any]:
    """The constructor arguments of ``config``'s smp class (the same for building and for ``config.json``)."""
    return {
        "encoder_name": config.encoder,
        "encoder_weights": weights,
        "encoder_depth": config.encoder_depth,
        "in_channels": config.in_channels,
        "classes": out_channels(config.num_classes),
        **ARCHITECTURES.get(config.architecture).smp_kwargs(config),
    }


def hub_config(config: ModelConfig) -> dict[str, Any]:
    """smp's ``config.json`` for a trained ``config``: what ``smp.from_pretrained(folder)`` rebuilds it from.

    ``_model_class`` names the smp class (SegTune's architecture names are smp's class names), as
    ``SMPHubMixin.save_pretrained`` writes it. No encoder weights: the trained ones are in
    ``model.safetensors``, and loading must not try to download ImageNet weights first.
    """
    return {"_model_class": config.architecture, **smp_arguments(config, None)}


def build_smp(config: ModelConfig) -> nn.Module:
    import segmentation_models_pytorch as smp
    from huggingface_hub.errors import HfHubHTTPError

    check_encoder(config)
    if not 3 <= config.encoder_depth <= 5:
        raise ModelBuildError(f"encoder_depth must be 3..5 for smp architectures, got {config.encoder_depth}")
    if config.encoder_weights not in (None, "imagenet"):
        raise ModelBuildError(f"encoder_weights must be None or 'imagenet', got {config.encoder_weights!r}")
    weights = config.encoder_weights
    if weights and config.encoder.startswith(TIMM_PREFIX):
        weights = True  # timm encoders take a flag; the weight tag is part of the name
    guard = _offline_unless_reachable() if weights else contextlib.nullcontext()
    try:
        with guard, warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            return smp.create_model(config.architecture, **smp_arguments(config, weights))
    except (OSError, HfHubHTTPError) as exc:
        raise ModelBuildError(
            f"could not download ImageNet weights for {config.encoder!r} (offline?); use "
            f"encoder_weights=None, or connect once so they are cached. Cause: {exc}"
        ) from exc
    except (ValueError, KeyError, AssertionError, RuntimeError) as exc:
        raise ModelBuildError(
            f"cannot build {config.architecture} with encoder {config.encoder!r}, "
            f"encoder_depth {config.encoder_depth}: {exc}"
        ) from exc
