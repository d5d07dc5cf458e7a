"""The two non-smp architectures of the Keras Tuner U-Net study (Huang et al. 2022, see PAPERS.md):
a configurable classic U-Net (Ronneberger et al. 2015) and its FCN-32 baseline (Long et al. 2015).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from core.errors import unknown_option
from core.modeling.config import ModelBuildError, ModelConfig, out_channels

_MAX_FILTERS = 1024  # filters double per level; the cap keeps depth 8 (the Keras Tuner study's upper bound) trainable


# Activation name -> module factory (the tunable ``unet_activation``).
ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "relu": lambda: nn.ReLU(inplace=True),
    "mish": nn.Mish,
    "elu": lambda: nn.ELU(inplace=True),
    "lrelu": lambda: nn.LeakyReLU(0.01, inplace=True),  # the Keras Tuner study's slope
}


def make_activation(name: str) -> nn.Module:
    if name not in ACTIVATIONS:
        raise ModelBuildError(unknown_option("activation", name, ACTIVATIONS))
    return ACTIVATIONS[name]()


class _ConvBlock(nn.Sequential):
    """Two 3x3 convolutions, each with batch norm before or after its activation."""

    def __init__(self, in_ch: int, out_ch: int, activation: str, bn_after_act: bool):
        layers: list[nn.Module] = []
        for ch_in in (in_ch, out_ch):
            norm_act = [make_activation(activation), nn.BatchNorm2d(out_ch)]
            layers += [
                nn.Conv2d(ch_in, out_ch, 3, padding=1, bias=False),
                *(norm_act if bn_after_act else norm_act[::-1]),
            ]
        super().__init__(*layers)


class _Up(nn.Module):
    """Upsample by 2, match the skip's size (any input size works), concatenate, convolve."""

    def __init__(
        self,
        in_ch: int,
        skip_ch: int,
        out_ch: int,
        bilinear: bool,
        block: Callable[[int, int], nn.Module],
        dropout: float,
    ):
        super().__init__()
        self.bilinear = bilinear
        self.up = nn.Conv2d(in_ch, out_ch, 1) if bilinear else nn.ConvTranspose2d(in_ch, out_ch, 2, stride=2)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.conv = block(out_ch + skip_ch, out_ch)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        if self.bilinear:
            x = self.up(F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False))
        else:
            x = self.up(x)
            x = F.pad(x, (0, skip.shape[-1] - x.shape[-1], 0, skip.shape[-2] - x.shape[-2]))
        return self.conv(self.dropout(torch.cat([x, skip], dim=1)))


class ClassicUNet(nn.Module):
    """The Keras Tuner U-Net study's configurable U-Net (start filters, depth, activation, dropout, BN placement).

    Dropout follows the Keras "start_neurons" U-Net that study builds on: after every pooling and after
    every skip concatenation. The output has the input's spatial size.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        start_filters: int = 64,
        depth: int = 4,
        activation: str = "relu",
        dropout: float = 0.0,
        bn_after_act: bool = False,
        bilinear: bool = False,
    ):
        super().__init__()
        if not 2 <= depth <= 8:
            raise ModelBuildError(f"ClassicUNet depth must be 2..8, got {depth}")
        if not 0.0 <= dropout < 1.0:
            raise ModelBuildError(f"ClassicUNet dropout must be in [0, 1), got {dropout}")
        make_activation(activation)  # fail early on an unknown name

        def block(cin: int, cout: int) -> nn.Module:
            return _ConvBlock(cin, cout, activation, bn_after_act)

        widths = [min(start_filters * 2**level, _MAX_FILTERS) for level in range(depth + 1)]
        self.down = nn.ModuleList([block(in_channels, widths[0])])
        self.down.extend(block(widths[i - 1], widths[i]) for i in range(1, depth + 1))
        self.pool = nn.MaxPool2d(2)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.up = nn.ModuleList(
            _Up(widths[i + 1], widths[i], widths[i], bilinear, block, dropout) for i in reversed(range(depth))
        )
        self.head = nn.Conv2d(widths[0], out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for i, stage in enumerate(self.down):
            if i:
                x = self.dropout(self.pool(x))
            x = stage(x)
            skips.append(x)
        x = skips.pop()
        for up in self.up:
            x = up(x, skips.pop())
        return self.head(x)


class FCN32(nn.Module):
    """That study's baseline: a small VGG-like encoder (5 poolings), a 1x1 classifier, x32 upsampling.

    Upsampling is bilinear straight to the input size, which is what loses the fine detail the study saw.
    """

    def __init__(self, in_channels: int, out_channels: int, base_filters: int = 32):
        super().__init__()
        widths = [base_filters * m for m in (1, 2, 4, 8, 8)]  # VGG's 64-128-256-512-512, halved
        layers: list[nn.Module] = []
        cin = in_channels
        for width in widths:
            layers += [
                nn.Conv2d(cin, width, 3, padding=1),
                nn.ReLU(inplace=True),
                nn.Conv2d(width, width, 3, padding=1),
                nn.ReLU(inplace=True),
                nn.MaxPool2d(2, ceil_mode=True),  # ceil: sizes below 32 still give a 1x1 map
            ]
            cin = width
        self.features = nn.Sequential(*layers)
        fc = widths[-1] * 2  # VGG's fully connected layers, as convolutions
        self.fc = nn.Sequential(
            nn.Conv2d(cin, fc, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Dropout2d(0.5),
            nn.Conv2d(fc, fc, 1),
            nn.ReLU(inplace=True),
            nn.Dropout2d(0.5),
        )
        self.classifier = nn.Conv2d(fc, out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.classifier(self.fc(self.features(x)))
        return F.interpolate(logits, size=x.shape[-2:], mode="bilinear", align_corners=False)


def build_classic_unet(config: ModelConfig) -> nn.Module:
    return ClassicUNet(
        config.in_channels,
        out_channels(config.num_classes),
        start_filters=config.unet_start_filters,
        depth=config.unet_depth,
        activation=config.unet_activation,
        dropout=config.unet_dropout,
        bn_after_act=config.unet_bn_after_act,
        bilinear=config.unet_bilinear,
    )


def build_fcn32(config: ModelConfig) -> nn.Module:
    return FCN32(config.in_channels, out_channels(config.num_classes))
