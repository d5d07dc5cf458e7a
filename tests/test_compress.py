"""Compression on a tiny ClassicUNet trained for real on a subset of the Shenzhen lung X-rays.

Tolerances (stated here, checked below): int8 static quantization loses at most 0.03 val Dice;
the default QAT and pruning configs (no fine-tune settings given: the product's defaults) at most
0.02 for QAT and 0.03 for pruning (70 % of the weights, or 50 % of them through whole channels), and
the pruning tests also check that the same cut without its fine-tune loses more than that, so they
fail if the defaults stop fine-tuning. Pruned sparsity is exact for unstructured pruning.
"""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
import torch

from core.data.tensors import ImageSet
from core.deploy.compression.config import CompressionConfig, CompressionData, CompressionError
from core.deploy.compression.measure import compare_variants
from core.deploy.compression.methods import compress
from core.deploy.compression.pruning import prunable_layers, sparsity
from core.deploy.compression.variants import download_variant, list_variants, store_variant
from core.modeling.build import build_model
from core.modeling.bundle import BundleConfig, load_model
from core.modeling.config import ModelConfig
from core.modeling.losses import build_loss
from core.modeling.optimizers import OptimizerConfig
from core.training.loop import TrainConfig, evaluate, train_model
from tests.helpers.segmentation import load_pairs

SIZE = 64
PTQ_TOLERANCE = 0.03
QAT_TOLERANCE = 0.02
PRUNE_TOLERANCE = 0.03
MODEL = ModelConfig("ClassicUNet", 1, 2, unet_start_filters=8, unet_depth=3)


@pytest.fixture(scope="module")
def data() -> CompressionData:
    pairs = load_pairs(48)
    return CompressionData(
        pairs.subset(range(32)), pairs.subset(range(32, 40)), pairs.subset(range(40, 48)), "binary", 2
    )


@pytest.fixture(scope="module")
def trained(data: CompressionData) -> torch.nn.Module:
    torch.manual_seed(0)
    model = build_model(MODEL)
    config = TrainConfig(epochs=8, batch_size=8, optimizer=OptimizerConfig(lr=3e-3), patience=100, loss="dice_bce")
    result = train_model(model, data.train, data.val, config, mode="binary", num_classes=2)
    model.load_state_dict(result.best_state)
    return model.eval()


def val_dice(model: torch.nn.Module, data: CompressionData) -> float:
    return evaluate(model, data.val, 8, loss_fn=build_loss("bce", "binary"), mode="binary", num_classes=2)["dice"]


def test_the_tiny_model_learned(trained: torch.nn.Module, data: CompressionData) -> None:
    # otherwise "within tolerance of the original" would prove nothing
    assert val_dice(trained, data) > 0.75


def test_static_int8_keeps_dice_and_shrinks_the_file(trained: torch.nn.Module, data: CompressionData) -> None:
    variant = compress(CompressionConfig("ptq"), trained, data)
    assert variant.quantized
    original, report = compare_variants(trained, [variant], data, repeats=1)
    assert abs(report.val["dice"] - original.val["dice"]) <= PTQ_TOLERANCE
    assert report.size_mb < 0.6 * original.size_mb
    assert report.deltas["val_dice"] == pytest.approx(report.val["dice"] - original.val["dice"])
    assert (
        set(report.test) == {"dice", "iou", "f1", "nsd", "hd95"} and report.latency_ms > 0 and report.images_per_s > 0
    )
    # the boundary metrics of the original and the variant, per case at the training size
    assert 0 <= report.val["nsd"] <= 1 and report.val["hd95"] >= 0
    assert abs(report.val["nsd"] - original.val["nsd"]) <= 0.2


def test_default_quantization_aware_training_keeps_dice(trained: torch.nn.Module, data: CompressionData) -> None:
    config = CompressionConfig("qat")
    variant = compress(config, trained, data)
    assert variant.steps == config.steps_for(len(data.train)) >= config.defaults.min_steps  # it did fine-tune
    original, report = compare_variants(trained, [variant], data, repeats=1)
    assert report.val["dice"] >= original.val["dice"] - QAT_TOLERANCE
    assert report.size_mb < 0.6 * original.size_mb


def test_default_weight_pruning_recovers_what_the_cut_loses(trained: torch.nn.Module, data: CompressionData) -> None:
    before = val_dice(trained, data)
    one_shot = compress(CompressionConfig("prune", sparsity=0.7, finetune_steps=0), trained, data)
    assert val_dice(one_shot.model, data) < before - PRUNE_TOLERANCE  # the cut alone costs Dice ...
    variant = compress(CompressionConfig("prune", sparsity=0.7), trained, data)
    assert val_dice(variant.model, data) >= before - PRUNE_TOLERANCE  # ... which the default fine-tune wins back
    assert sparsity(variant.model) == pytest.approx(0.7, abs=0.002)
    assert not any(name.endswith("_orig") for name in variant.model.state_dict())  # made permanent
    original, report = compare_variants(trained, [variant], data, repeats=1)
    assert report.nonzero_params < 0.45 * original.nonzero_params
    assert report.zipped_mb < original.zipped_mb
    assert sparsity(trained) == 0.0  # the original is left untouched


def test_per_layer_pruning_prunes_every_layer(trained: torch.nn.Module, data: CompressionData) -> None:
    variant = compress(CompressionConfig("prune", sparsity=0.6, scope="layer", finetune_steps=0), trained, data)
    for module, name in prunable_layers(variant.model):
        weight = getattr(module, name)
        assert float((weight == 0).float().mean()) == pytest.approx(0.6, abs=0.01)


def test_default_channel_pruning_removes_channels_and_recovers(trained: torch.nn.Module, data: CompressionData) -> None:
    before = val_dice(trained, data)
    one_shot = compress(CompressionConfig("prune", sparsity=0.5, structured=True, finetune_steps=0), trained, data)
    assert val_dice(one_shot.model, data) < before - PRUNE_TOLERANCE
    variant = compress(CompressionConfig("prune", sparsity=0.5, structured=True), trained, data)
    assert val_dice(variant.model, data) >= before - PRUNE_TOLERANCE
    first, pruned_first = prunable_layers(trained)[0][0], prunable_layers(variant.model)[0][0]
    assert (
        pruned_first.out_channels < first.out_channels == 8
        and pruned_first.weight.shape[0] == pruned_first.out_channels
    )
    original, report = compare_variants(trained, [variant], data, repeats=1)
    assert report.total_params == pytest.approx(
        0.5 * original.total_params, rel=0.1
    )  # half the weights are gone, not zeroed
    assert report.size_mb < 0.6 * original.size_mb


def test_dynamic_quantization_applies_to_linear_layers_only(trained: torch.nn.Module, data: CompressionData) -> None:
    with pytest.raises(CompressionError, match="use method 'ptq'"):
        compress(CompressionConfig("dynamic"), trained, data)
    rgb = CompressionData(
        *(ImageSet(s.images.repeat(1, 3, 1, 1), s.targets, s.stems) for s in (data.train, data.val, data.test)),
        "binary",
        2,
    )
    segformer = build_model(ModelConfig("Segformer", 3, 2, encoder="mit_b0")).eval()
    variant = compress(CompressionConfig("dynamic"), segformer, rgb)
    images = rgb.val.images[:2].float() / 255
    with torch.no_grad():
        assert (variant.model(images) - segformer(images)).abs().max() < 0.1
    assert any("quantized" in type(m).__module__ for m in variant.model.modules())


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"method": "int4"}, "valid: \\['ptq', 'dynamic', 'qat', 'prune'\\]"),
        ({"method": "prune", "sparsity": 0.95}, "between 0.5 and 0.9"),
        ({"method": "prune", "scope": "block"}, "valid: \\['global', 'layer'\\]"),
        ({"method": "prune", "structured": True, "scope": "global"}, "use scope 'layer'"),
        ({"method": "qat", "finetune_steps": -1}, "finetune_steps must be >= 0"),
    ],
)
def test_bad_configs_say_what_would_work(kwargs: dict, message: str) -> None:
    with pytest.raises(CompressionError, match=message):
        CompressionConfig(**kwargs)


def test_variants_are_stored_with_the_trial_and_load_back(
    trained: torch.nn.Module, data: CompressionData, tmp_path: Path
) -> None:
    store = optuna.artifacts.FileSystemArtifactStore(str(tmp_path / "artifacts"))
    (tmp_path / "artifacts").mkdir()
    study = optuna.create_study(study_name="lungs")
    study.add_trial(optuna.trial.create_trial(value=0.9))
    bundle = BundleConfig(model=MODEL.to_dict(), image_size=SIZE, channels=1, classes=("background", "lung"))
    sample = data.val.images[:1].float() / 255
    variant = compress(CompressionConfig("ptq", calibration_batches=2), trained, data)
    report = compare_variants(trained, [variant], data, repeats=1)[1]
    record = store_variant(study, 0, variant, report, bundle, store, sample)

    assert list_variants(study, 0) == [record]
    assert set(record["artifacts"]) == {"torchscript", "config"}
    assert record["metrics"]["val"]["dice"] == report.val["dice"]
    model, config = load_model(download_variant(record, store, tmp_path / "variant"))
    assert config.source["variant"]["method"] == "ptq"
    images = data.val.images.float() / 255
    with torch.no_grad():
        assert torch.allclose(model(images), variant.model(images), atol=1e-5)
