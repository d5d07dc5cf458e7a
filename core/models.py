"""Model registry: every segmentation-models-pytorch architecture, paper P1's classic U-Net and FCN-32.

``build_model(ModelConfig(...))`` is the one way a model is made. Names come from
:mod:`core.options`; a bad name, an encoder an architecture cannot use, or pretrained weights that
cannot be fetched raise :class:`ModelBuildError` naming the valid options instead of a traceback.

Output convention (whole project): 2 dataset classes (background/foreground) is "binary" and the
model emits 1 channel of logits (sigmoid); K > 2 classes is "multiclass" with K channels (softmax).
"""

from __future__ import annotations

import contextlib
import re
import socket
import warnings
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, fields
from typing import Any
from urllib.parse import urlparse

import torch
import torch.nn.functional as F
from torch import nn

from core import options
from core.errors import SegTuneError
from core.options import DPT_ENCODERS
from core.spec import HYPERPARAMETERS, active_hyperparameters


class ModelBuildError(SegTuneError):
    """A model cannot be built from this configuration; the message says what would work."""


def task_mode(num_classes: int) -> str:
    """"binary" for 2 classes (background + foreground), "multiclass" for more."""
    if num_classes < 2:
        raise ValueError(f"num_classes counts the background too, so it must be at least 2; got {num_classes}")
    return "binary" if num_classes == 2 else "multiclass"


def out_channels(num_classes: int) -> int:
    """Logit channels a model emits: 1 for binary (sigmoid), one per class for multiclass (softmax)."""
    return 1 if task_mode(num_classes) == "binary" else num_classes


# --- configuration ------------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelConfig:
    """Everything needed to rebuild a model; saved as JSON next to its weights."""

    architecture: str  # one of options.ARCHITECTURES
    in_channels: int  # image channels: 1 (grey) or 3 (RGB)
    num_classes: int  # dataset classes including background (2 = binary)
    # smp architectures only
    encoder: str = "resnet18"  # an smp encoder name, or "tu-<timm model>"
    encoder_depth: int = 5  # encoder stages, 3..5 (DPT: ViT blocks used as features)
    encoder_weights: str | None = None  # None (random init) or "imagenet"
    # ClassicUNet only (paper P1)
    unet_start_filters: int = 64  # filters of the first level; doubled per level
    unet_depth: int = 4  # down-sampling levels, 2..8
    unet_activation: str = "relu"  # one of options.ACTIVATIONS
    unet_dropout: float = 0.0  # dropout rate, 0 = off
    unet_bn_after_act: bool = False  # batch norm after (True) or before (False) the activation
    unet_bilinear: bool = False  # up path: bilinear upsampling (True) or transposed convolutions

    @property
    def mode(self) -> str:
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

    @classmethod
    def from_params(cls, params: dict[str, Any], in_channels: int, num_classes: int) -> ModelConfig:
        """The model part of a trial's params; parameters that do not apply keep their defaults."""
        own = {f.name for f in fields(cls)}
        chosen = {name: params[name] for name in active_hyperparameters(params) if name in own and name in params}
        # unet_bilinear is not in the tunable catalogue (yet); honour it when a caller passes it
        if "unet_bilinear" in params and params.get("architecture") == options.CLASSIC_UNET:
            chosen["unet_bilinear"] = params["unet_bilinear"]
        chosen.setdefault("architecture", HYPERPARAMETERS["architecture"].default)
        return cls(in_channels=in_channels, num_classes=num_classes, **chosen)


# --- paper P1 models ----------------------------------------------------------------------------

_MAX_FILTERS = 1024  # filters double per level; the cap keeps depth 8 (P1's upper bound) trainable


def _activation(name: str) -> nn.Module:
    factories: dict[str, Callable[[], nn.Module]] = {
        "relu": lambda: nn.ReLU(inplace=True),
        "mish": nn.Mish,
        "elu": lambda: nn.ELU(inplace=True),
        "lrelu": lambda: nn.LeakyReLU(0.01, inplace=True),  # P1's slope
    }
    if name not in factories:
        raise ModelBuildError(f"unknown activation {name!r}; valid: {list(options.ACTIVATIONS)}")
    return factories[name]()


class _ConvBlock(nn.Sequential):
    """Two 3x3 convolutions, each with batch norm before or after its activation."""

    def __init__(self, in_ch: int, out_ch: int, activation: str, bn_after_act: bool):
        layers: list[nn.Module] = []
        for ch_in in (in_ch, out_ch):
            norm_act = [_activation(activation), nn.BatchNorm2d(out_ch)]
            layers += [nn.Conv2d(ch_in, out_ch, 3, padding=1, bias=False), *(norm_act if bn_after_act else norm_act[::-1])]
        super().__init__(*layers)


class _Up(nn.Module):
    """Upsample by 2, match the skip's size (any input size works), concatenate, convolve."""

    def __init__(self, in_ch: int, skip_ch: int, out_ch: int, bilinear: bool, block: Callable[[int, int], nn.Module], dropout: float):
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
    """Paper P1's configurable U-Net (start filters, depth, activation, dropout, BN placement).

    Dropout follows the Keras "start_neurons" U-Net P1 builds on: after every pooling and after
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
        _activation(activation)  # fail early on an unknown name

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
    """Paper P1's baseline: a small VGG-like encoder (5 poolings), a 1x1 classifier, x32 upsampling.

    Upsampling is bilinear straight to the input size, which is what loses the fine detail P1 saw.
    """

    def __init__(self, in_channels: int, out_channels: int, base_filters: int = 32):
        super().__init__()
        widths = [base_filters * m for m in (1, 2, 4, 8, 8)]  # VGG's 64-128-256-512-512, halved
        layers: list[nn.Module] = []
        cin = in_channels
        for width in widths:
            layers += [
                nn.Conv2d(cin, width, 3, padding=1), nn.ReLU(inplace=True),
                nn.Conv2d(width, width, 3, padding=1), nn.ReLU(inplace=True),
                nn.MaxPool2d(2, ceil_mode=True),  # ceil: sizes below 32 still give a 1x1 map
            ]
            cin = width
        self.features = nn.Sequential(*layers)
        fc = widths[-1] * 2  # VGG's fully connected layers, as convolutions
        self.fc = nn.Sequential(
            nn.Conv2d(cin, fc, 3, padding=1), nn.ReLU(inplace=True), nn.Dropout2d(0.5),
            nn.Conv2d(fc, fc, 1), nn.ReLU(inplace=True), nn.Dropout2d(0.5),
        )
        self.classifier = nn.Conv2d(fc, out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.classifier(self.fc(self.features(x)))
        return F.interpolate(logits, size=x.shape[-2:], mode="bilinear", align_corners=False)


# --- segmentation-models-pytorch ----------------------------------------------------------------

_TIMM_PREFIX = "tu-"
_DEFAULT_DECODER_CHANNELS = (256, 128, 64, 32, 16)  # smp's default, deepest first
_DPT_INTERMEDIATE_CHANNELS = (256, 512, 1024, 1024, 1024)  # smp's default (4 levels) + one more
_NO_MIT = ("UnetPlusPlus", "Linknet")  # smp rejects the mix-transformer (mit_b*) encoders here


def _is_vit(encoder: str) -> bool:
    # plain ViTs have no down-sampling stages, so only DPT can read their features
    return encoder.startswith(_TIMM_PREFIX) and bool(re.search(r"(^|_)(vit|deit|eva|beit)", encoder[3:]))


def _check_encoder(config: ModelConfig) -> None:
    name, arch = config.encoder, config.architecture
    if name.startswith(_TIMM_PREFIX):
        import timm

        if not timm.is_model(name[3:]):
            raise ModelBuildError(
                f"unknown timm encoder {name!r}: {name[3:]!r} is not a timm model (see timm.list_models())"
            )
    elif name not in options.encoder_names():
        raise ModelBuildError(
            f"unknown encoder {name!r}; valid: {list(options.encoder_names())} or 'tu-<timm model name>'"
        )
    if arch == "DPT" and not _is_vit(name):
        raise ModelBuildError(f"DPT needs a ViT encoder ('tu-' + a timm ViT), e.g. {list(DPT_ENCODERS)}; got {name!r}")
    if arch != "DPT" and _is_vit(name):
        raise ModelBuildError(
            f"{arch} needs an encoder with down-sampling stages (e.g. resnet18); ViT encoders like {name!r} work only with DPT"
        )
    if name.startswith("mit_b") and arch in _NO_MIT:
        raise ModelBuildError(f"{arch} does not support mix-transformer encoders ({name!r}); use e.g. resnet18 or efficientnet-b0")
    if name.startswith("mit_b") and arch == "FPN" and config.encoder_depth != 5:
        raise ModelBuildError(f"FPN with {name!r} works only with encoder_depth 5, got {config.encoder_depth}")


def _smp_kwargs(config: ModelConfig) -> dict[str, Any]:
    """Per-architecture arguments that keep the output at the input's size for every encoder_depth."""
    depth, arch = config.encoder_depth, config.architecture
    if arch in ("Unet", "UnetPlusPlus", "MAnet"):
        # one decoder block per encoder stage, keeping smp's width at each resolution
        return {"decoder_channels": _DEFAULT_DECODER_CHANNELS[5 - depth:]}
    if arch == "FPN":
        return {"upsampling": 2 ** (depth - 3)}  # FPN decodes at the finest of its 4 levels
    if arch == "PSPNet":
        return {"upsampling": 2**depth}  # PSPNet decodes at the deepest level
    if arch == "DPT":
        return {
            "decoder_intermediate_channels": _DPT_INTERMEDIATE_CHANNELS[:depth],
            "dynamic_img_size": True,  # timm ViTs are fixed at 224 px unless told otherwise
        }
    return {}


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


def _build_smp(config: ModelConfig) -> nn.Module:
    import segmentation_models_pytorch as smp
    from huggingface_hub.errors import HfHubHTTPError

    _check_encoder(config)
    if not 3 <= config.encoder_depth <= 5:
        raise ModelBuildError(f"encoder_depth must be 3..5 for smp architectures, got {config.encoder_depth}")
    if config.encoder_weights not in (None, "imagenet"):
        raise ModelBuildError(f"encoder_weights must be None or 'imagenet', got {config.encoder_weights!r}")
    weights = config.encoder_weights
    if weights and config.encoder.startswith(_TIMM_PREFIX):
        weights = True  # timm encoders take a flag; the weight tag is part of the name
    guard = _offline_unless_reachable() if weights else contextlib.nullcontext()
    try:
        with guard, warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            return smp.create_model(
                config.architecture,
                encoder_name=config.encoder,
                encoder_weights=weights,
                encoder_depth=config.encoder_depth,
                in_channels=config.in_channels,
                classes=out_channels(config.num_classes),
                **_smp_kwargs(config),
            )
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


def _build_classic_unet(config: ModelConfig) -> nn.Module:
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


def _build_fcn32(config: ModelConfig) -> nn.Module:
    return FCN32(config.in_channels, out_channels(config.num_classes))


_FACTORIES: dict[str, Callable[[ModelConfig], nn.Module]] = {
    **{name: _build_smp for name in options.SMP_ARCHITECTURES},
    options.CLASSIC_UNET: _build_classic_unet,
    options.FCN32: _build_fcn32,
}
assert set(_FACTORIES) == set(options.ARCHITECTURES), "every architecture name needs a factory"


def build_model(config: ModelConfig) -> nn.Module:
    """A freshly initialised model for ``config`` (ImageNet encoder weights if asked for)."""
    factory = _FACTORIES.get(config.architecture)
    if factory is None:
        raise ModelBuildError(f"unknown architecture {config.architecture!r}; valid: {list(options.ARCHITECTURES)}")
    if config.in_channels < 1:
        raise ModelBuildError(f"in_channels must be at least 1, got {config.in_channels}")
    try:
        out_channels(config.num_classes)
    except ValueError as exc:
        raise ModelBuildError(str(exc)) from exc
    return factory(config)


# --- sizes --------------------------------------------------------------------------------------


def count_parameters(model: nn.Module) -> int:
    """All parameters, trainable or not."""
    return sum(p.numel() for p in model.parameters())


def weights_size_mb(model: nn.Module) -> float:
    """Size of the state dict saved as fp32 (MiB): floats at 4 bytes, integer buffers as they are."""
    total = 0
    for tensor in model.state_dict().values():
        total += tensor.numel() * (4 if tensor.is_floating_point() else tensor.element_size())
    return total / 2**20


def min_input_multiple(config: ModelConfig) -> int:
    """Image sides must be a multiple of this (the encoder's total down-sampling, or the ViT patch)."""
    arch = config.architecture
    if arch == options.CLASSIC_UNET:
        return 2**config.unet_depth
    if arch == options.FCN32:
        return 32
    if arch == "DPT":
        match = re.search(r"patch(\d+)", config.encoder)
        return int(match.group(1)) if match else 16  # timm's ViTs default to 16 px patches
    return 2**config.encoder_depth


def min_input_size(config: ModelConfig) -> int:
    """The smallest usable image side; larger than the multiple only for PAN."""
    if config.architecture == "PAN":
        # PAN's pyramid attention pools its deepest map (stride 8, or 16 from depth 4) three more times
        return 8 * 2 ** min(config.encoder_depth, 4)
    return min_input_multiple(config)


def input_size_problem(config: ModelConfig, image_size: int) -> str | None:
    """Why ``config`` cannot take ``image_size`` x ``image_size`` images, or None if it can."""
    multiple, smallest = min_input_multiple(config), min_input_size(config)
    if image_size % multiple:
        return f"{config.architecture} needs image sides that are a multiple of {multiple}, got {image_size}"
    if image_size < smallest:
        return f"{config.architecture} needs images of at least {smallest} px, got {image_size}"
    return None
