"""Classifier registry: every backbone builds under P4's head, takes grey or RGB, and loads only cached weights."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from core.contract import Task
from core.modeling import classifiers
from core.modeling.architectures import ARCHITECTURES, Family, config_from_params, input_size_problem, names, task_of
from core.modeling.build import build_model
from core.modeling.classifiers import BACKBONES, ClassifierHead, ImageClassifier
from core.modeling.config import ModelBuildError, ModelConfig

CLASSIFIERS = names(task=Task.CLASSIFICATION)


def test_the_registry_holds_the_papers_backbones_and_more() -> None:
    assert {"MobileNetV2", "VGG19", "ResNet18", "ResNet50", "EfficientNetB0"} <= set(CLASSIFIERS)
    assert set(CLASSIFIERS) == set(BACKBONES)  # every entry has a backbone recipe, and no recipe is unreachable
    assert all(ARCHITECTURES.get(name).family == Family.TORCHVISION for name in CLASSIFIERS)
    assert task_of("Unet") == Task.SEGMENTATION and task_of("VGG19") == Task.CLASSIFICATION
    assert not set(CLASSIFIERS) & set(names(task=Task.SEGMENTATION))


@pytest.mark.parametrize("arch", CLASSIFIERS)
def test_every_classifier_gives_one_logit_per_class(arch: str) -> None:
    in_channels, classes = (1, 2) if CLASSIFIERS.index(arch) % 2 == 0 else (3, 4)
    model = build_model(ModelConfig(arch, in_channels, classes, head_filters=8, head_dense_units=8)).eval()
    with torch.no_grad():
        assert model(torch.rand(2, in_channels, 64, 64)).shape == (2, classes)
        assert model(torch.rand(1, in_channels, 32, 32)).shape == (1, classes)  # the input rule's minimum
    assert input_size_problem(ModelConfig(arch, 1, 2), 32) is None and "multiple of 32" in input_size_problem(
        ModelConfig(arch, 1, 2), 48
    )


def test_the_head_is_the_papers_with_its_four_searched_sizes() -> None:
    params = {
        "architecture": "ResNet18",
        "head_kernel_size": 5,
        "head_filters": 96,
        "head_dense_units": 16,
        "head_dropout": 0.3,
        "encoder": "ignored",
        "unet_depth": 3,
    }
    config = config_from_params(params, 1, 3)
    assert (config.head_kernel_size, config.head_filters, config.head_dense_units, config.head_dropout) == (
        5,
        96,
        16,
        0.3,
    )
    assert config.encoder == ModelConfig("x", 1, 1).encoder  # a segmentation-only parameter is not taken
    model = build_model(config)
    assert isinstance(model, ImageClassifier) and isinstance(model.head, ClassifierHead)
    conv, bn, _relu, _pool, _flatten, dense, _relu2, dropout, out = model.head
    assert conv.kernel_size == (5, 5) and conv.in_channels == 512 and conv.out_channels == 96 and bn.num_features == 96
    assert (dense.in_features, dense.out_features, dropout.p, out.out_features) == (96, 16, 0.3, 3)


def test_bad_head_sizes_are_named() -> None:
    with pytest.raises(ModelBuildError, match="head_filters must be at least 1, got 0; head_dropout must be in"):
        build_model(ModelConfig("MobileNetV2", 1, 2, head_filters=0, head_dropout=1.0))
    with pytest.raises(ModelBuildError, match="num_classes|at least 2"):
        build_model(ModelConfig("MobileNetV2", 1, 1))


def _cache_in(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr(torch.hub, "_hub_dir", str(tmp_path / "hub"))
    return classifiers.weights_file(BACKBONES["ResNet18"])


def test_imagenet_weights_are_never_downloaded_and_the_error_says_how_to_get_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    expected = _cache_in(tmp_path, monkeypatch)
    with pytest.raises(ModelBuildError) as error:
        build_model(ModelConfig("ResNet18", 3, 2, encoder_weights="imagenet"))
    message = str(error.value)
    assert (
        str(expected) in message
        and "resnet18(weights='IMAGENET1K_V1')" in message
        and "encoder_weights null" in message
    )
    assert not expected.exists()


def test_cached_imagenet_weights_load_and_a_grey_input_sums_the_rgb_kernels(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from torchvision.models import resnet18

    path = _cache_in(tmp_path, monkeypatch)
    path.parent.mkdir(parents=True)
    reference = resnet18()
    torch.save(reference.state_dict(), path)
    rgb = build_model(ModelConfig("ResNet18", 3, 2, encoder_weights="imagenet"))
    grey = build_model(ModelConfig("ResNet18", 1, 2, encoder_weights="imagenet"))
    assert torch.equal(rgb.backbone[0].weight, reference.conv1.weight)
    assert torch.equal(rgb.backbone[4][0].conv1.weight, reference.layer1[0].conv1.weight)
    assert torch.allclose(grey.backbone[0].weight, reference.conv1.weight.sum(dim=1, keepdim=True))
    # a grey image through the grey model = the same image repeated into RGB through the RGB backbone
    image = torch.rand(1, 1, 64, 64)
    with torch.no_grad():
        assert torch.allclose(grey.backbone.eval()(image), rgb.backbone.eval()(image.repeat(1, 3, 1, 1)), atol=1e-4)
