"""Image classifiers: a torchvision backbone under the tuned head of the CNN random-search study (P4).

The model is ``backbone -> head``: the backbone is a torchvision network's convolutional part
(its own classifier dropped), the head is P4's, with the four searched sizes
(:class:`ClassifierHead`). Weights are random by default. ImageNet weights are used only when they
are already in torch's local cache (``torch.hub.get_dir()/checkpoints``): a trial never downloads;
the error says which file is missing and how to fetch it once.

A grey (1-channel) input replaces the backbone's first convolution; with ImageNet weights its
kernels are the sum of the RGB ones (timm's ``adapt_input_conv``), so a grey image that repeats
into RGB gives the same features.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from core.modeling.config import ModelBuildError, ModelConfig


@dataclass(frozen=True)
class Backbone:
    """How to take the convolutional part out of one torchvision classification model."""

    factory: str  # torchvision.models function name, e.g. "mobilenet_v2"
    weights: str  # torchvision weights enum name, e.g. "MobileNet_V2_Weights"
    features: Callable[[nn.Module], nn.Module]  # full torchvision model -> its feature extractor
    channels: int  # feature channels the backbone emits


def _features(model: nn.Module) -> nn.Module:
    return model.features


def _resnet_features(model: nn.Module) -> nn.Module:
    # everything before the global pool and the fully connected layer
    return nn.Sequential(
        model.conv1, model.bn1, model.relu, model.maxpool, model.layer1, model.layer2, model.layer3, model.layer4
    )


BACKBONES: dict[str, Backbone] = {
    "MobileNetV2": Backbone("mobilenet_v2", "MobileNet_V2_Weights", _features, 1280),
    "VGG19": Backbone("vgg19", "VGG19_Weights", _features, 512),
    "ResNet18": Backbone("resnet18", "ResNet18_Weights", _resnet_features, 512),
    "ResNet50": Backbone("resnet50", "ResNet50_Weights", _resnet_features, 2048),
    "EfficientNetB0": Backbone("efficientnet_b0", "EfficientNet_B0_Weights", _features, 1280),
}


class ClassifierHead(nn.Sequential):
    """P4's head: conv(kernel, filters) + BN + ReLU -> global average pool -> dense(units) + ReLU -> dropout ->
    logits."""

    def __init__(
        self, in_channels: int, num_classes: int, *, kernel_size: int, filters: int, dense_units: int, dropout: float
    ):
        super().__init__(
            nn.Conv2d(in_channels, filters, kernel_size, padding=kernel_size // 2, bias=False),
            nn.BatchNorm2d(filters),
            nn.ReLU(inplace=True),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(filters, dense_units),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(dense_units, num_classes),
        )


class ImageClassifier(nn.Sequential):
    """``backbone`` then ``head``: logits (N, num_classes) for images (N, C, H, W)."""

    def __init__(self, backbone: nn.Module, head: ClassifierHead):
        super().__init__()
        self.backbone = backbone
        self.head = head


def check_head(config: ModelConfig) -> None:
    """Raise :class:`ModelBuildError` for head sizes no layer can take."""
    problems = [
        f"{name} must be at least 1, got {value}"
        for name, value in (
            ("head_kernel_size", config.head_kernel_size),
            ("head_filters", config.head_filters),
            ("head_dense_units", config.head_dense_units),
        )
        if value < 1
    ]
    if not 0.0 <= config.head_dropout < 1.0:
        problems.append(f"head_dropout must be in [0, 1), got {config.head_dropout}")
    if config.num_classes < 2:
        problems.append(f"a classifier needs at least 2 classes, got {config.num_classes}")
    if problems:
        raise ModelBuildError("; ".join(problems))


def build_classifier(config: ModelConfig) -> nn.Module:
    """The classifier ``config`` describes: backbone (random or cached ImageNet weights) + P4 head."""
    check_head(config)
    backbone_info = BACKBONES[config.architecture]
    full = _torchvision_model(backbone_info, config.encoder_weights, config.architecture)
    backbone = backbone_info.features(full)
    if config.in_channels != 3:
        _adapt_first_conv(backbone, config.in_channels)
    head = ClassifierHead(
        backbone_info.channels,
        config.num_classes,
        kernel_size=config.head_kernel_size,
        filters=config.head_filters,
        dense_units=config.head_dense_units,
        dropout=config.head_dropout,
    )
    return ImageClassifier(backbone, head)


def _torchvision_model(backbone: Backbone, weights: str | None, architecture: str) -> nn.Module:
    from torchvision import models

    model = getattr(models, backbone.factory)(weights=None)
    if weights is None:
        return model
    if weights != "imagenet":
        raise ModelBuildError(f"unknown weights {weights!r} for {architecture}; valid: [None, 'imagenet']")
    model.load_state_dict(cached_imagenet_weights(backbone, architecture))
    return model


def weights_file(backbone: Backbone) -> Path:
    """Where torch keeps the backbone's ImageNet weights once downloaded (``torch.hub`` cache)."""
    from torchvision import models

    url = getattr(models, backbone.weights).IMAGENET1K_V1.url
    return Path(torch.hub.get_dir()) / "checkpoints" / url.rsplit("/", 1)[-1]


def cached_imagenet_weights(backbone: Backbone, architecture: str) -> dict[str, Any]:
    """The cached ImageNet state dict; never downloads (trials run offline), so a missing file is an error."""
    from torchvision import models

    path = weights_file(backbone)
    if not path.is_file():
        raise ModelBuildError(
            f"ImageNet weights for {architecture} are not on this machine (expected {path}); SegTune never downloads "
            f'during a study. Fetch them once where there is network: python -c "import torchvision; '
            f"torchvision.models.{backbone.factory}(weights='IMAGENET1K_V1')\" (or copy the file there), "
            "or train from random weights (encoder_weights null)."
        )
    return getattr(models, backbone.weights).IMAGENET1K_V1.get_state_dict(progress=False)


def _adapt_first_conv(backbone: nn.Module, in_channels: int) -> None:
    """Replace the first convolution by one taking ``in_channels`` (grey: the RGB kernels summed)."""
    parent, name, conv = next(
        (p, n, m) for p in backbone.modules() for n, m in p.named_children() if isinstance(m, nn.Conv2d)
    )
    adapted = nn.Conv2d(
        in_channels,
        conv.out_channels,
        conv.kernel_size,
        conv.stride,
        conv.padding,
        conv.dilation,
        conv.groups,
        conv.bias is not None,
    )
    with torch.no_grad():
        adapted.weight.copy_(conv.weight.sum(dim=1, keepdim=True).repeat(1, in_channels, 1, 1) / in_channels)
        if conv.bias is not None:
            adapted.bias.copy_(conv.bias)
    setattr(parent, name, adapted)
