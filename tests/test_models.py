"""Model registry: every architecture builds and keeps the input size; bad configs fail clearly.

Kept fast on CPU: 64 px, batch 2, no_grad, resnet18 (smp) and vit_tiny (DPT). Each smp
architecture is built twice (1 channel binary, 3 channels multiclass) at encoder_depth 3 and
once more at the default depth 5 for the architectures whose output size depends on the depth.
"""

from __future__ import annotations

import time

import pytest
import torch

from core.modeling import smp_models
from core.modeling.architectures import (
    ARCHITECTURES,
    CLASSIC_UNET,
    FCN32,
    Family,
    config_from_params,
    input_size_problem,
    names,
)
from core.modeling.build import build_model, count_parameters, weights_size_mb
from core.modeling.config import ModelBuildError, ModelConfig, out_channels, task_mode
from core.modeling.custom import ACTIVATIONS, ClassicUNet, make_activation
from tests.helpers.segmentation import DPT_ENCODER

CASES = [(1, 2), (3, 4)]  # (in_channels, num_classes): binary grey and multiclass RGB


def _forward(config: ModelConfig, size: int = 64) -> torch.Tensor:
    model = build_model(config).eval()
    with torch.no_grad():
        return model(torch.randn(2, config.in_channels, size, size))


def _smp_config(arch: str, in_channels: int, num_classes: int, depth: int = 3) -> ModelConfig:
    encoder = DPT_ENCODER if arch == "DPT" else "resnet18"
    return ModelConfig(arch, in_channels, num_classes, encoder=encoder, encoder_depth=depth)


def test_task_mode_and_out_channels() -> None:
    assert (task_mode(2), out_channels(2)) == ("binary", 1)
    assert (task_mode(5), out_channels(5)) == ("multiclass", 5)
    with pytest.raises(ValueError, match="at least 2"):
        task_mode(1)


# Each smp architecture once, alternating grey/binary and RGB/multiclass across the registry (the
# encoder's in_channels and the head's classes are shared smp code), DPT's own encoder path twice.
SMP_CASES = [(arch, *CASES[i % 2]) for i, arch in enumerate(names(Family.SMP))] + [("DPT", *CASES[0])]


@pytest.mark.parametrize("arch,in_channels,num_classes", SMP_CASES)
def test_smp_architecture_keeps_input_size(arch: str, in_channels: int, num_classes: int) -> None:
    y = _forward(_smp_config(arch, in_channels, num_classes))
    assert y.shape == (2, out_channels(num_classes), 64, 64)


@pytest.mark.parametrize("arch", ["FPN", "PSPNet"])
def test_depth_dependent_heads_keep_input_size_at_depth_5(arch: str) -> None:
    # FPN / PSPNet upsampling is scaled with encoder_depth (tested at 3 above)
    assert _forward(_smp_config(arch, 1, 2, depth=5)).shape == (2, 1, 64, 64)


@pytest.mark.parametrize("in_channels,num_classes", CASES)
@pytest.mark.parametrize("arch", [CLASSIC_UNET, FCN32])
def test_paper_models_keep_input_size(arch: str, in_channels: int, num_classes: int) -> None:
    config = ModelConfig(arch, in_channels, num_classes, unet_start_filters=8, unet_depth=3)
    assert _forward(config).shape == (2, out_channels(num_classes), 64, 64)


@pytest.mark.parametrize(
    "depth,activation,bn_after_act,dropout",
    [
        (2, "relu", False, 0.0),
        (3, "mish", True, 0.2),
        (4, "elu", False, 0.5),
        (5, "lrelu", True, 0.0),
    ],
)
def test_classic_unet_depths_and_activations(depth: int, activation: str, bn_after_act: bool, dropout: float) -> None:
    config = ModelConfig(
        CLASSIC_UNET,
        1,
        3,
        unet_start_filters=4,
        unet_depth=depth,
        unet_activation=activation,
        unet_bn_after_act=bn_after_act,
        unet_dropout=dropout,
    )
    assert _forward(config).shape == (2, 3, 64, 64)


def test_classic_unet_activations_are_the_papers() -> None:
    slopes = {name: make_activation(name) for name in ACTIVATIONS}
    assert isinstance(slopes["mish"], torch.nn.Mish) and isinstance(slopes["elu"], torch.nn.ELU)
    assert isinstance(slopes["lrelu"], torch.nn.LeakyReLU) and slopes["lrelu"].negative_slope == 0.01


def test_classic_unet_options_change_the_network() -> None:
    plain = ClassicUNet(1, 1, start_filters=4, depth=2)
    bn_after = ClassicUNet(1, 1, start_filters=4, depth=2, bn_after_act=True)
    dropout = ClassicUNet(1, 1, start_filters=4, depth=2, dropout=0.3)
    bilinear = ClassicUNet(1, 1, start_filters=4, depth=2, bilinear=True)
    first = list(plain.down[0])
    assert isinstance(first[1], torch.nn.BatchNorm2d) and isinstance(first[2], torch.nn.ReLU)
    after = list(bn_after.down[0])
    assert isinstance(after[1], torch.nn.ReLU) and isinstance(after[2], torch.nn.BatchNorm2d)
    assert not any(isinstance(m, torch.nn.Dropout) for m in plain.modules())
    # one dropout shared by the poolings, one per concatenation
    assert sum(isinstance(m, torch.nn.Dropout) for m in dropout.modules()) == 3
    x1 = torch.randn(1, 1, 32, 32)
    assert not torch.equal(dropout.train()(x1), dropout(x1))  # active while training
    assert not any(isinstance(m, torch.nn.ConvTranspose2d) for m in bilinear.modules())
    x = torch.randn(2, 1, 64, 64)
    for model in (bn_after, dropout.eval(), bilinear):
        assert model(x).shape == (2, 1, 64, 64)
    # odd sizes still come back at the input size (upsampled maps are matched to the skips)
    assert plain(torch.randn(1, 1, 36, 44)).shape == (1, 1, 36, 44)
    assert bilinear(torch.randn(1, 1, 36, 44)).shape == (1, 1, 36, 44)


def test_classic_unet_filters_double_per_level() -> None:
    model = ClassicUNet(1, 1, start_filters=8, depth=3)
    assert [stage[0].out_channels for stage in model.down] == [8, 16, 32, 64]


def test_fcn32_upsamples_to_any_input_size() -> None:
    model = build_model(ModelConfig(FCN32, 3, 2)).eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, 96, 64)).shape == (1, 1, 96, 64)
        assert model(torch.randn(1, 3, 40, 40)).shape == (1, 1, 40, 40)


def test_unknown_architecture_lists_options() -> None:
    with pytest.raises(ModelBuildError, match="unknown architecture 'SegNet'.*ClassicUNet"):
        build_model(ModelConfig("SegNet", 3, 2))


def test_unknown_encoder_lists_options() -> None:
    with pytest.raises(ModelBuildError, match="unknown encoder 'resnet7'.*resnet18"):
        build_model(ModelConfig("Unet", 3, 2, encoder="resnet7"))
    with pytest.raises(ModelBuildError, match="not a timm model"):
        build_model(ModelConfig("Unet", 3, 2, encoder="tu-not_a_model"))


def test_bad_unet_options_are_named() -> None:
    with pytest.raises(ModelBuildError, match="unknown activation 'gelu'.*mish"):
        build_model(ModelConfig(CLASSIC_UNET, 1, 2, unet_activation="gelu"))
    with pytest.raises(ModelBuildError, match="depth must be 2..8, got 9"):
        build_model(ModelConfig(CLASSIC_UNET, 1, 2, unet_depth=9))
    with pytest.raises(ModelBuildError, match="num_classes"):
        build_model(ModelConfig(CLASSIC_UNET, 1, 1))


@pytest.mark.parametrize(
    "config,message",
    [
        (ModelConfig("DPT", 3, 2, encoder="resnet18"), "DPT needs a ViT encoder.*vit_tiny"),
        (ModelConfig("Unet", 3, 2, encoder=DPT_ENCODER), "work only with DPT"),
        (ModelConfig("UnetPlusPlus", 3, 2, encoder="mit_b0"), "does not support mix-transformer"),
        (ModelConfig("FPN", 3, 2, encoder="mit_b0", encoder_depth=4), "only with encoder_depth 5"),
        (ModelConfig("Unet", 3, 2, encoder_depth=6), "encoder_depth must be 3..5"),
        (ModelConfig("Unet", 3, 2, encoder_weights="instagram"), "None or 'imagenet'"),
    ],
)
def test_incompatible_encoders_and_depths_fail_clearly(config: ModelConfig, message: str) -> None:
    with pytest.raises(ModelBuildError, match=message):
        build_model(config)


def test_imagenet_weights_offline_fail_fast(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    # Simulate no network, and an empty weights cache so nothing can be found locally.
    import segmentation_models_pytorch  # noqa: F401  (import time is not what is measured)
    from huggingface_hub import constants

    monkeypatch.setattr(smp_models, "_hub_reachable", lambda timeout_s=3.0: False)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    start = time.monotonic()
    with pytest.raises(
        ModelBuildError, match=r"could not download ImageNet weights for 'resnet18' \(offline\?\).*encoder_weights=None"
    ):
        build_model(ModelConfig("Unet", 3, 2, encoder_weights="imagenet"))
    assert time.monotonic() - start < 15  # huggingface_hub alone would retry for 25-50 s
    assert constants.HF_HUB_OFFLINE is False  # offline mode was only for the build


def test_failed_download_is_a_model_build_error(monkeypatch: pytest.MonkeyPatch) -> None:
    import segmentation_models_pytorch.encoders as smp_encoders

    def refuse(*args: object, **kwargs: object) -> str:
        raise OSError("connection refused")

    monkeypatch.setattr(smp_models, "_hub_reachable", lambda timeout_s=3.0: True)
    monkeypatch.setattr(smp_encoders, "hf_hub_download", refuse)
    with pytest.raises(ModelBuildError, match="could not download ImageNet weights.*Cause: connection refused"):
        build_model(ModelConfig("Linknet", 3, 2, encoder_weights="imagenet"))


def test_config_round_trips_and_rejects_unknown_keys() -> None:
    config = ModelConfig(CLASSIC_UNET, 1, 3, unet_depth=5, unet_activation="mish")
    assert ModelConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ModelBuildError, match="unknown model config key.*'depth'.*valid"):
        ModelConfig.from_dict({**config.to_dict(), "depth": 3})


def test_from_params_takes_only_parameters_that_apply() -> None:
    params = {
        "architecture": "Unet",
        "encoder": "resnet34",
        "encoder_depth": 4,
        "unet_depth": 7,
        "lr": 0.1,
        "optimizer": "adam",
    }
    config = config_from_params(params, in_channels=1, num_classes=2)
    assert (config.architecture, config.encoder, config.encoder_depth) == ("Unet", "resnet34", 4)
    assert config.unet_depth == 4  # a ClassicUNet-only parameter keeps its default for Unet
    unet = config_from_params(
        {"architecture": "ClassicUNet", "encoder": "resnet34", "unet_depth": 6, "unet_bn_after_act": True}, 3, 4
    )
    assert (unet.unet_depth, unet.unet_bn_after_act, unet.encoder) == (6, True, "resnet18")
    assert (unet.in_channels, unet.num_classes) == (3, 4)


def test_parameter_count_and_size() -> None:
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.BatchNorm2d(2))
    # conv 2*1*3*3 + 2 bias, bn weight + bias = 24 parameters
    assert count_parameters(model) == 24
    # state dict: 24 params + 4 running stats at 4 bytes, num_batches_tracked (int64) at 8 bytes
    assert weights_size_mb(model) == pytest.approx((28 * 4 + 8) / 2**20)


def test_min_input_multiple_and_size() -> None:
    assert min_input_multiple(ModelConfig("Unet", 3, 2)) == 32
    assert min_input_multiple(ModelConfig("Unet", 3, 2, encoder_depth=3)) == 8
    assert min_input_multiple(ModelConfig(CLASSIC_UNET, 3, 2, unet_depth=6)) == 64
    assert min_input_multiple(ModelConfig(FCN32, 3, 2)) == 32
    assert min_input_multiple(ModelConfig("DPT", 3, 2, encoder=DPT_ENCODER)) == 16
    assert min_input_size(ModelConfig("PAN", 3, 2, encoder_depth=3)) == 64
    assert min_input_size(ModelConfig("PAN", 3, 2)) == 128
    assert input_size_problem(ModelConfig("PAN", 3, 2), 64) == "PAN needs images of at least 128 px, got 64"
    assert "multiple of 64" in input_size_problem(ModelConfig(CLASSIC_UNET, 3, 2, unet_depth=6), 96)
    assert input_size_problem(ModelConfig("PAN", 3, 2), 192) is None


def test_pan_works_at_its_minimum_size_at_depth_5() -> None:
    config = ModelConfig("PAN", 1, 2)
    assert _forward(config, size=min_input_size(config)).shape == (2, 1, 128, 128)


def min_input_multiple(config: ModelConfig) -> int:
    return ARCHITECTURES.get(config.architecture).input_rule(config).multiple


def min_input_size(config: ModelConfig) -> int:
    return ARCHITECTURES.get(config.architecture).input_rule(config).minimum
