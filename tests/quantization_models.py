"""Small models of every registry architecture, trained for real, for the int8 tests and bench.

Segmentation models learn the Shenzhen lung X-rays at 64 px (PAN at 128 px, its minimum with a
full-depth encoder), classifiers tell horizontal from vertical bars. Encoders are full depth, so
every weight of the fp32 file is used and a size ratio measures quantization, not dropped layers.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from core.contract import Task
from core.data.tensors import LabelSet
from core.deploy.compression.config import CompressionData
from core.modeling.architectures import ARCHITECTURES, CLASSIC_UNET, FCN32
from core.modeling.build import build_model
from core.modeling.config import ModelConfig
from core.modeling.optimizers import OptimizerConfig
from core.training.loop import TrainConfig, train_model
from tests.classification_sets import bar_image
from tests.test_compress import load_pairs

TRANSFORMER_ENCODERS = {"Segformer": "mit_b0", "DPT": "tu-vit_tiny_patch16_224"}
SLOW_LEARNERS = ("DPT", FCN32)  # a ViT from scratch and FCN-32's coarse output need a gentler, longer run


def model_config(architecture: str) -> ModelConfig:
    if ARCHITECTURES.get(architecture).task == Task.CLASSIFICATION:
        return ModelConfig(architecture, 1, 2)
    if architecture == CLASSIC_UNET:
        return ModelConfig(architecture, 1, 2, unet_start_filters=16, unet_depth=3)
    if architecture == FCN32:
        return ModelConfig(architecture, 1, 2)
    encoder = TRANSFORMER_ENCODERS.get(architecture, "resnet18")
    return ModelConfig(architecture, 1, 2, encoder=encoder, encoder_depth=4 if architecture == "DPT" else 5, encoder_weights=None)


def _split(items) -> tuple:
    return items.subset(range(32)), items.subset(range(32, 40)), items.subset(range(40, 48))


def datasets() -> dict[str, CompressionData]:
    """Bars for classifiers, lungs at 64 and 128 px for segmentation: 32 train / 8 val / 8 test each."""
    rng = np.random.default_rng(0)
    labels = [index % 2 for index in range(48)]
    images = torch.from_numpy(np.stack([bar_image(label, rng) for label in labels]))[:, None]
    bars = LabelSet(images, torch.tensor(labels), tuple(str(index) for index in range(48)))
    return {"bars": CompressionData(*_split(bars), "multiclass", 2),
            "lungs": CompressionData(*_split(load_pairs(48, 64)), "binary", 2),
            "lungs-128": CompressionData(*_split(load_pairs(48, 128)), "binary", 2)}


def train_small(architecture: str, data_sets: dict[str, CompressionData]) -> tuple[nn.Module, CompressionData, str]:
    """(trained model in eval mode, its data, its loss name) for one architecture of the registry."""
    classifier = ARCHITECTURES.get(architecture).task == Task.CLASSIFICATION
    data = data_sets["bars" if classifier else "lungs-128" if architecture == "PAN" else "lungs"]
    slow = architecture in SLOW_LEARNERS
    loss = "cross_entropy" if classifier else "dice_bce"
    config = TrainConfig(epochs=12 if slow else 8, batch_size=8, optimizer=OptimizerConfig(lr=1e-3 if slow or classifier else 3e-3),
                         patience=100, loss=loss)
    torch.manual_seed(0)
    model = build_model(model_config(architecture))
    result = train_model(model, data.train, data.val, config, mode=data.mode, num_classes=2)
    model.load_state_dict(result.best_state)
    return model.eval(), data, loss
