"""Channel pruning removes channels for real: smaller layers, fewer parameters, a smaller file, and a
variant that loads back from its stored folder, runs and exports to ONNX (onnxruntime), for every
architecture in the registry (random 64 px data: shapes and round trips, not accuracy — that is
tests/test_compress.py's)."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
import torch

from core.contract import Task
from core.data.tensors import ImageSet
from core.deploy.compression.config import CompressionConfig, CompressionData, CompressionError
from core.deploy.compression.measure import compare_variants, count_nonzero
from core.deploy.compression.methods import compress
from core.deploy.compression.pruning import CHANNEL_PRUNING_UNSUPPORTED, channel_ratio
from core.deploy.compression.variants import download_variant, save_variant, store_variant
from core.deploy.export import export_onnx
from core.modeling.architectures import ARCHITECTURES, task_of
from core.modeling.build import build_model
from core.modeling.bundle import BundleConfig, load_bundle, load_model
from core.modeling.config import ModelConfig

CONFIG = CompressionConfig("prune", sparsity=0.5, structured=True, finetune_steps=1, batch_size=2)
# smallest settings each architecture accepts (DPT needs a ViT and its patch grid, PAN 128 px); the
# pyramid pooling of PSPNet/UPerNet (bins 1, 2, 3, 6 on the stride-32 map) exports to ONNX only when
# the bins divide that map: 192 px
ENCODERS = {"Segformer": "mit_b0", "DPT": "tu-vit_tiny_patch16_224"}  # transformer encoders
SIZES = {"DPT": 224, "PAN": 128, "PSPNet": 192, "UPerNet": 192}


def model_config(architecture: str, channels: int = 1, encoder: str | None = None) -> ModelConfig:
    if architecture == "ClassicUNet":
        return ModelConfig(architecture, channels, 2, unet_start_filters=8, unet_depth=3)
    if architecture == "FCN32":
        return ModelConfig(architecture, channels, 2)
    return ModelConfig(
        architecture,
        channels,
        2,
        encoder=encoder or ENCODERS.get(architecture, "resnet18"),
        encoder_depth=4 if architecture == "DPT" else 5,
    )


def random_data(size: int, channels: int = 1, count: int = 4) -> CompressionData:
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (count, channels, size, size), generator=generator, dtype=torch.uint8)
    masks = torch.randint(0, 2, (count, size, size), generator=generator, dtype=torch.uint8)
    pairs = ImageSet(images, masks, tuple(f"img{i}" for i in range(count)))
    return CompressionData(pairs, pairs, None, "binary", 2)


def round_trip(
    model: torch.nn.Module, model_config: ModelConfig, data: CompressionData, folder: Path, kept: float = 0.75
) -> None:
    """Prune, save as a variant folder, load it back: same outputs, and it exports to ONNX."""
    variant = compress(CONFIG, model, data)
    bundle = BundleConfig(
        model=model_config.to_dict(),
        image_size=data.train.images.shape[-1],
        channels=model_config.in_channels,
        classes=("background", "foreground"),
    )
    images = data.val.images.float() / 255
    save_variant(variant, bundle, folder, images[:1])
    loaded, config = load_model(folder)
    assert config.pruned_channels == variant.channels and config.pruned_channels
    with torch.no_grad():
        assert torch.allclose(loaded(images), variant.model(images), atol=1e-5)
    onnx = export_onnx(loaded, images[:2], folder / "model.onnx")  # checked against PyTorch with onnxruntime
    assert (
        onnx.max_abs_diff is not None and onnx.path.stat().st_size < (folder / "model.safetensors").stat().st_size * 1.1
    )
    assert count_nonzero(loaded)[1] < kept * count_nonzero(model)[1]


@pytest.mark.parametrize("architecture", [name for name in ARCHITECTURES.names if task_of(name) == Task.SEGMENTATION])
def test_every_architecture_prunes_channels_and_loads_back(architecture: str, tmp_path: Path) -> None:
    channels = 3 if architecture in ENCODERS else 1
    config = model_config(architecture, channels)
    model = build_model(config).eval()
    data = random_data(SIZES.get(architecture, 64), channels)
    if architecture in CHANNEL_PRUNING_UNSUPPORTED:
        with pytest.raises(CompressionError, match=f"not available for {architecture}: .*prune single weights instead"):
            compress(CONFIG, model, data)
        return
    # transformer encoders keep their attention blocks whole (Segformer's mit_b0 keeps ~83 % of its weights)
    round_trip(model, config, data, tmp_path / "variant", kept=0.9 if architecture in ENCODERS else 0.75)


def test_depthwise_convolutions_keep_their_groups(tmp_path: Path) -> None:
    # MobileNetV2's depthwise convolutions have groups == channels: the record must carry groups too
    config = model_config("Unet", encoder="mobilenet_v2")
    round_trip(build_model(config).eval(), config, random_data(64), tmp_path / "variant")


def test_the_pruned_file_is_smaller_and_its_layers_are_narrower(tmp_path: Path) -> None:
    config = model_config("Unet")
    model = build_model(config).eval()
    data = random_data(64)
    variant = compress(CONFIG, model, data)
    original, report = compare_variants(model, [variant], data, repeats=1)
    assert report.size_mb < 0.6 * original.size_mb and report.total_params < 0.6 * original.total_params
    conv = variant.model.encoder.layer1[0].conv1
    kept = round(64 * (1 - channel_ratio(CONFIG.sparsity)))
    assert conv.out_channels == conv.weight.shape[0] == kept < 64
    assert variant.channels["encoder.layer1.0.conv1"]["out_channels"] == kept
    assert report.latency_ms > 0


def test_channel_ratio_removes_the_asked_share_of_weights() -> None:
    for sparsity in (0.5, 0.7, 0.9):
        assert (1 - channel_ratio(sparsity)) ** 2 == pytest.approx(1 - sparsity)


def test_a_stored_pruned_variant_downloads_and_loads(tmp_path: Path) -> None:
    config = model_config("ClassicUNet")
    model = build_model(config).eval()
    data = random_data(64)
    variant = compress(CONFIG, model, data)
    report = compare_variants(model, [variant], data, repeats=1)[1]
    store = optuna.artifacts.FileSystemArtifactStore(str(tmp_path / "artifacts"))
    (tmp_path / "artifacts").mkdir()
    study = optuna.create_study(study_name="tiny")
    study.add_trial(optuna.trial.create_trial(value=0.9))
    bundle = BundleConfig(model=config.to_dict(), image_size=64, channels=1, classes=("background", "foreground"))
    record = store_variant(study, 0, variant, report, bundle, store, data.val.images[:1].float() / 255)
    assert set(record["artifacts"]) == {"weights", "config"} and record["params"]["steps_run"] == 1
    loaded, loaded_config = load_bundle(download_variant(record, store, tmp_path / "variant"))
    assert loaded_config.source["variant"]["params"]["structured"] is True
    images = data.val.images.float() / 255
    with torch.no_grad():
        assert torch.allclose(loaded(images), variant.model(images), atol=1e-5)
