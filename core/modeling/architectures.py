"""The architecture registry: one entry per architecture holds everything SegTune knows about it.

An entry says which task it serves (segmentation or classification), how to build the model, which tunable
hyperparameters it takes (the spec catalogue activates the others only for it), and which image sizes it accepts (smp's
class-level ``requires_divisible_input_shape`` / output-stride rule, as a function of the config). Every entry takes
every compression method (core.deploy.compression.traceable makes each one traceable). The spec catalogue, the New study
form, validation, the results pages and compression all read this table, so adding an architecture is adding an entry
(its tests are generated from the registry). Torch-free: factories are imported on first use.

The smp entries follow ``segmentation_models_pytorch.MODEL_ARCHITECTURES_MAPPING`` (by class name);
the classifiers are torchvision backbones under a tuned head (core.modeling.classifiers).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, fields
from enum import StrEnum
from typing import Any

from core.contract import Task
from core.modeling.config import ModelConfig
from core.registry import Registry, lazy


class Family(StrEnum):
    SMP = "smp"  # segmentation-models-pytorch: encoder + decoder
    CUSTOM = "custom"  # defined in core.modeling.custom
    TORCHVISION = "torchvision"  # a torchvision classification backbone + head (core.modeling.classifiers)


@dataclass(frozen=True)
class InputRule:
    """Image sides must be a multiple of ``multiple`` and at least ``minimum`` pixels."""

    multiple: int
    minimum: int

    def problem(self, architecture: str, image_size: int) -> str | None:
        if image_size % self.multiple:
            return f"{architecture} needs image sides that are a multiple of {self.multiple}, got {image_size}"
        if image_size < self.minimum:
            return f"{architecture} needs images of at least {self.minimum} px, got {image_size}"
        return None


SMP_HYPERPARAMETERS = ("encoder", "encoder_depth", "encoder_weights")
CLASSIC_UNET_HYPERPARAMETERS = (
    "unet_start_filters",
    "unet_depth",
    "unet_activation",
    "unet_dropout",
    "unet_bn_after_act",
)
CLASSIFIER_HYPERPARAMETERS = ("encoder_weights", "head_kernel_size", "head_filters", "head_dense_units", "head_dropout")


def _encoder_stride(config: ModelConfig) -> InputRule:
    stride = 2**config.encoder_depth  # the encoder's total down-sampling
    return InputRule(stride, stride)


def _pan_rule(config: ModelConfig) -> InputRule:
    # PAN's pyramid attention pools its deepest map (stride 8, or 16 from depth 4) three more times
    return InputRule(2**config.encoder_depth, 8 * 2 ** min(config.encoder_depth, 4))


def _vit_patch(config: ModelConfig) -> InputRule:
    match = re.search(r"patch(\d+)", config.encoder)
    patch = int(match.group(1)) if match else 16  # timm's ViTs default to 16 px patches
    return InputRule(patch, patch)


_DECODER_CHANNELS = (256, 128, 64, 32, 16)  # smp's default, deepest first
_DPT_INTERMEDIATE_CHANNELS = (256, 512, 1024, 1024, 1024)  # smp's default (4 levels) + one more


def _per_stage_decoder(config: ModelConfig) -> dict[str, Any]:
    # one decoder block per encoder stage, keeping smp's width at each resolution
    return {"decoder_channels": _DECODER_CHANNELS[5 - config.encoder_depth :]}


def _no_kwargs(config: ModelConfig) -> dict[str, Any]:
    return {}


@dataclass(frozen=True)
class Architecture:
    name: str
    family: Family
    build: Callable[[ModelConfig], Any]  # ModelConfig -> torch.nn.Module
    hyperparameters: tuple[str, ...]  # the tunable names this architecture takes (besides the common ones)
    input_rule: Callable[[ModelConfig], InputRule]
    # smp only: constructor arguments that keep the output at the input's size for every encoder_depth
    smp_kwargs: Callable[[ModelConfig], dict[str, Any]] = _no_kwargs
    description: str = ""
    task: Task = Task.SEGMENTATION  # what the model outputs: a mask, or one label per image


def _smp(
    name: str,
    description: str,
    *,
    kwargs: Callable[[ModelConfig], dict[str, Any]] = _no_kwargs,
    rule: Callable[[ModelConfig], InputRule] = _encoder_stride,
) -> Architecture:
    return Architecture(
        name, Family.SMP, lazy("core.modeling.smp_models:build_smp"), SMP_HYPERPARAMETERS, rule, kwargs, description
    )


def _classifier(name: str, description: str) -> Architecture:
    # five stride-2 stages, then global pooling: any multiple of 32 works
    return Architecture(
        name,
        Family.TORCHVISION,
        lazy("core.modeling.classifiers:build_classifier"),
        CLASSIFIER_HYPERPARAMETERS,
        lambda c: InputRule(32, 32),
        description=description,
        task=Task.CLASSIFICATION,
    )


CLASSIC_UNET = "ClassicUNet"
FCN32 = "FCN32"
DEFAULT_ARCHITECTURE = "Unet"
DEFAULT_CLASSIFIER = "MobileNetV2"

ARCHITECTURES: Registry[Architecture] = Registry(
    "architecture",
    [
        _smp(
            "Unet",
            "U-Net with a pretrained-style encoder (ResNet-UNet when the encoder is a ResNet)",
            kwargs=_per_stage_decoder,
        ),
        _smp("UnetPlusPlus", "U-Net++: nested, densely connected skip paths", kwargs=_per_stage_decoder),
        _smp("MAnet", "Multi-scale attention U-Net", kwargs=_per_stage_decoder),
        _smp("Linknet", "LinkNet: light decoder with additive skips"),
        _smp(
            "FPN", "Feature pyramid network", kwargs=lambda c: {"upsampling": 2 ** (c.encoder_depth - 3)}
        ),  # decodes at the finest of its 4 levels
        _smp(
            "PSPNet", "Pyramid scene parsing network", kwargs=lambda c: {"upsampling": 2**c.encoder_depth}
        ),  # decodes at the deepest level
        _smp("PAN", "Pyramid attention network", rule=_pan_rule),
        _smp("DeepLabV3", "DeepLabV3: atrous spatial pyramid pooling"),
        _smp("DeepLabV3Plus", "DeepLabV3+: ASPP with a light decoder"),
        _smp("UPerNet", "Unified perceptual parsing network"),
        _smp("Segformer", "SegFormer decoder (an MLP head over multi-scale features)"),
        _smp(
            "DPT",
            "Dense prediction transformer over a ViT encoder",
            kwargs=lambda c: {
                "decoder_intermediate_channels": _DPT_INTERMEDIATE_CHANNELS[: c.encoder_depth],
                "dynamic_img_size": True,
            },  # timm ViTs are fixed at 224 px unless told otherwise
            rule=_vit_patch,
        ),
        Architecture(
            CLASSIC_UNET,
            Family.CUSTOM,
            lazy("core.modeling.custom:build_classic_unet"),
            CLASSIC_UNET_HYPERPARAMETERS,
            lambda c: InputRule(2**c.unet_depth, 2**c.unet_depth),
            description="Classic U-Net with a tunable shape (the Keras Tuner U-Net study)",
        ),
        Architecture(
            FCN32,
            Family.CUSTOM,
            lazy("core.modeling.custom:build_fcn32"),
            (),
            lambda c: InputRule(32, 32),
            description="FCN-32s baseline (Long et al. 2015)",
        ),
        _classifier("MobileNetV2", "MobileNetV2 (torchvision) under the tuned head of the CNN random-search study"),
        _classifier("VGG19", "VGG19 (torchvision, no batch norm) under the tuned head of the CNN random-search study"),
        _classifier("ResNet18", "ResNet-18 (torchvision) under the tuned head"),
        _classifier("ResNet50", "ResNet-50 (torchvision) under the tuned head"),
        _classifier("EfficientNetB0", "EfficientNet-B0 (torchvision) under the tuned head"),
    ],
)


def names(family: Family | None = None, task: Task | str | None = None) -> tuple[str, ...]:
    """Architecture names, optionally of one family and/or one task, in registry order."""
    return tuple(
        entry.name
        for entry in ARCHITECTURES
        if (family is None or entry.family == family) and (task is None or entry.task == task)
    )


def task_of(architecture: str) -> Task:
    """The task an architecture serves (a :class:`SegTuneError` listing the valid names if unknown)."""
    return ARCHITECTURES.get(architecture).task


def takes(architecture: Any, hyperparameter: str) -> bool:
    """Whether ``architecture`` (a name, maybe not yet valid) takes ``hyperparameter``."""
    return architecture in ARCHITECTURES and hyperparameter in ARCHITECTURES.get(architecture).hyperparameters


def input_size_problem(config: ModelConfig, image_size: int) -> str | None:
    """Why ``config`` cannot take ``image_size`` x ``image_size`` images, or None if it can."""
    return ARCHITECTURES.get(config.architecture).input_rule(config).problem(config.architecture, image_size)


def config_from_params(params: dict[str, Any], in_channels: int, num_classes: int) -> ModelConfig:
    """The model part of a trial's params: only the hyperparameters its architecture takes.

    ``num_classes`` is the dataset's: segmentation classes with the background, or classification labels.
    """
    architecture = params.get("architecture", DEFAULT_ARCHITECTURE)
    own = {f.name for f in fields(ModelConfig)}
    taken = ARCHITECTURES.get(architecture).hyperparameters
    chosen = {name: params[name] for name in taken if name in own and name in params}
    return ModelConfig(architecture=architecture, in_channels=in_channels, num_classes=num_classes, **chosen)
