"""A model's configuration: what to build, for how many channels and classes. Torch-free.

Output convention (whole project): a segmentation model of 2 dataset classes (background/foreground)
is "binary" and emits 1 channel of logits (sigmoid); K > 2 classes is "multiclass" with K channels
(softmax). A classifier always emits one logit per class (softmax), however many classes.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

from core.contract import Mode
from core.errors import SegTuneError


class ModelBuildError(SegTuneError):
    """A model cannot be built from this configuration; the message says what would work."""


def task_mode(num_classes: int) -> Mode:
    """:attr:`Mode.BINARY` for 2 classes (background + foreground), :attr:`Mode.MULTICLASS` for more."""
    if num_classes < 2:
        raise ValueError(f"num_classes counts the background too, so it must be at least 2; got {num_classes}")
    return Mode.BINARY if num_classes == 2 else Mode.MULTICLASS


def out_channels(num_classes: int) -> int:
    """Logit channels a model emits: 1 for binary (sigmoid), one per class for multiclass (softmax)."""
    return 1 if task_mode(num_classes) == Mode.BINARY else num_classes


@dataclass(frozen=True)
class ModelConfig:
    """Everything needed to rebuild a model; saved as JSON next to its weights."""

    architecture: str  # a name of core.modeling.architectures.ARCHITECTURES
    in_channels: int  # image channels: 1 (grey), 3 (RGB), or one per MRI sequence
    num_classes: int  # segmentation: dataset classes including background (2 = binary); classification: labels
    # smp architectures only
    encoder: str = "resnet18"  # an smp encoder name, or "tu-<timm model>"
    encoder_depth: int = 5  # encoder stages, 3..5 (DPT: ViT blocks used as features)
    encoder_weights: str | None = None  # None (random init) or "imagenet" (smp encoders and classifier backbones)
    # ClassicUNet only (Ronneberger et al. 2015's U-Net as configured by the Keras Tuner study)
    unet_start_filters: int = 64  # filters of the first level; doubled per level
    unet_depth: int = 4  # down-sampling levels, 2..8
    unet_activation: str = "relu"  # a name of core.modeling.custom.ACTIVATIONS
    unet_dropout: float = 0.0  # dropout rate, 0 = off
    unet_bn_after_act: bool = False  # batch norm after (True) or before (False) the activation
    unet_bilinear: bool = False  # up path: bilinear upsampling (True) or transposed convolutions
    # classifiers only (the head of the CNN random-search study, core.modeling.classifiers.ClassifierHead)
    head_kernel_size: int = 3  # the head's convolution kernel, P4: 1, 3, 5, 7
    head_filters: int = 64  # its filters, P4: 32..128
    head_dense_units: int = 128  # units of the dense layer, P4: 16..128
    head_dropout: float = 0.5  # dropout before the logits, P4: 0.2..0.5

    @property
    def mode(self) -> Mode:
        return task_mode(self.num_classes)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        valid = [f.name for f in fields(cls)]
        unknown = sorted(set(data) - set(valid))
        if unknown:
            raise ModelBuildError(f"unknown model config key(s) {unknown}; valid: {valid}")
        missing = [name for name in ("architecture", "in_channels", "num_classes") if name not in data]
        if missing:
            raise ModelBuildError(f"model config is missing {missing}")
        return cls(**data)
