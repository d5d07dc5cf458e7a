"""The valid option names of every SegTune registry, importable without torch.

The factories (models, losses, optimizers, samplers, pruners) are keyed by these names, and the
tests check that every name here has a working factory. The dashboard builds its forms from them.
"""

from __future__ import annotations

import re
from functools import cache

CLASSIC_UNET = "ClassicUNet"  # paper P1's configurable U-Net
FCN32 = "FCN32"  # paper P1's baseline

# Every segmentation-models-pytorch architecture (smp.MODEL_ARCHITECTURES_MAPPING, by class name).
SMP_ARCHITECTURES: tuple[str, ...] = (
    "Unet", "UnetPlusPlus", "MAnet", "Linknet", "FPN", "PSPNet", "PAN",
    "DeepLabV3", "DeepLabV3Plus", "UPerNet", "Segformer", "DPT",
)
ARCHITECTURES: tuple[str, ...] = (*SMP_ARCHITECTURES, CLASSIC_UNET, FCN32)

ACTIVATIONS: tuple[str, ...] = ("relu", "mish", "elu", "lrelu")  # lrelu: slope 0.01 (P1)
OPTIMIZERS: tuple[str, ...] = ("adam", "adamw", "sgd", "rmsprop", "adagrad", "nadam")
SCHEDULERS: tuple[str, ...] = ("none", "cosine", "step", "plateau")
LOSSES: tuple[str, ...] = (
    "bce", "dice", "jaccard", "focal", "tversky", "lovasz",
    "dice_bce", "dice_focal", "jaccard_bce",
)
SAMPLERS: tuple[str, ...] = ("random", "grid", "tpe", "gp", "nsga2")
MULTI_OBJECTIVE_SAMPLERS: tuple[str, ...] = ("random", "grid", "tpe", "gp", "nsga2")
PRUNERS: tuple[str, ...] = ("none", "median", "successive_halving", "hyperband")

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def is_valid_name(name: str) -> bool:
    """Names of datasets and studies double as folder names: keep them safe for every filesystem."""
    return bool(_NAME.match(name)) and ".." not in name


# timm ViTs (through smp's "tu-" universal encoder) known to work with DPT, the only
# architecture that can read features of an encoder without down-sampling stages.
DPT_ENCODERS: tuple[str, ...] = (
    "tu-vit_tiny_patch16_224", "tu-vit_small_patch16_224", "tu-vit_base_patch16_224",
    "tu-vit_large_patch16_224", "tu-deit_small_patch16_224", "tu-deit_base_patch16_224",
)


@cache
def encoder_names() -> tuple[str, ...]:
    """segmentation-models-pytorch encoder names plus the DPT ViTs (imports smp, so only when needed)."""
    import segmentation_models_pytorch as smp

    return (*smp.encoders.get_encoder_names(), *DPT_ENCODERS)
