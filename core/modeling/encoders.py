"""Encoder names and which architectures can use which encoders (smp and timm). Torch-free.

segmentation-models-pytorch and timm are imported only when a name must be checked.
"""

from __future__ import annotations

import re
from functools import cache

from core.errors import unknown_option
from core.modeling.config import ModelBuildError, ModelConfig

TIMM_PREFIX = "tu-"
# timm ViTs (through smp's "tu-" universal encoder) known to work with DPT, the only
# architecture that can read features of an encoder without down-sampling stages.
DPT_ENCODERS: tuple[str, ...] = (
    "tu-vit_tiny_patch16_224",
    "tu-vit_small_patch16_224",
    "tu-vit_base_patch16_224",
    "tu-vit_large_patch16_224",
    "tu-deit_small_patch16_224",
    "tu-deit_base_patch16_224",
)
_NO_MIT = ("UnetPlusPlus", "Linknet")  # smp rejects the mix-transformer (mit_b*) encoders here


@cache
def encoder_names() -> tuple[str, ...]:
    """segmentation-models-pytorch encoder names plus the DPT ViTs (imports smp, so only when needed)."""
    import segmentation_models_pytorch as smp

    return (*smp.encoders.get_encoder_names(), *DPT_ENCODERS)


def is_vit(encoder: str) -> bool:
    """Plain ViTs have no down-sampling stages, so only DPT can read their features."""
    return encoder.startswith(TIMM_PREFIX) and bool(re.search(r"(^|_)(vit|deit|eva|beit)", encoder[3:]))


def check_encoder(config: ModelConfig) -> None:
    """Raise :class:`ModelBuildError` when ``config.architecture`` cannot use ``config.encoder``."""
    name, arch = config.encoder, config.architecture
    if name.startswith(TIMM_PREFIX):
        import timm

        if not timm.is_model(name[3:]):
            raise ModelBuildError(
                f"unknown timm encoder {name!r}: {name[3:]!r} is not a timm model (see timm.list_models())"
            )
    elif name not in encoder_names():
        raise ModelBuildError(unknown_option("encoder", name, encoder_names()) + " or 'tu-<timm model name>'")
    if arch == "DPT" and not is_vit(name):
        raise ModelBuildError(f"DPT needs a ViT encoder ('tu-' + a timm ViT), e.g. {list(DPT_ENCODERS)}; got {name!r}")
    if arch != "DPT" and is_vit(name):
        raise ModelBuildError(
            f"{arch} needs an encoder with down-sampling stages (e.g. resnet18); ViT encoders like {name!r} work "
            "only with DPT"
        )
    if name.startswith("mit_b") and arch in _NO_MIT:
        raise ModelBuildError(
            f"{arch} does not support mix-transformer encoders ({name!r}); use e.g. resnet18 or efficientnet-b0"
        )
    if name.startswith("mit_b") and arch == "FPN" and config.encoder_depth != 5:
        raise ModelBuildError(f"FPN with {name!r} works only with encoder_depth 5, got {config.encoder_depth}")
