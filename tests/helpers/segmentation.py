"""Small segmentation data and models: synthetic squares, the Shenzhen lungs at a few px, a 4-filter UNet."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from core.data.tensors import ImageSet
from core.modeling.build import build_model
from core.modeling.config import ModelConfig
from tests.helpers.machine import shared_path

DPT_ENCODER = "tu-vit_tiny_patch16_224"  # the smallest real ViT; works at 64 px (dynamic_img_size)


def squares(count: int, seed: int) -> ImageSet:
    """Grey images with one bright square each; the mask marks the square."""
    generator = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 60, (count, 1, 32, 32), generator=generator, dtype=torch.uint8)
    masks = torch.zeros(count, 32, 32, dtype=torch.uint8)
    for i in range(count):
        y, x = torch.randint(0, 20, (2,), generator=generator).tolist()
        images[i, 0, y : y + 10, x : x + 10] = 220
        masks[i, y : y + 10, x : x + 10] = 1
    return ImageSet(images=images, targets=masks, stems=tuple(f"s{i}" for i in range(count)))


def tiny_unet() -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model(
        ModelConfig(architecture="ClassicUNet", in_channels=1, num_classes=2, unet_start_filters=4, unet_depth=2)
    )


def load_pairs(count: int, size: int = 64) -> ImageSet:
    """``count`` image/mask pairs spread over the lung dataset, decoded at ``size`` px."""
    source = shared_path("chest_xray_lung_shenzhen")
    files = sorted((source / "images").iterdir())[::10][:count]
    images = [
        np.asarray(Image.open(p).convert("L").resize((size, size), Image.Resampling.BILINEAR))[None] for p in files
    ]
    masks = [
        np.asarray(
            Image.open(source / "masks" / f"{p.stem}.png").convert("L").resize((size, size), Image.Resampling.NEAREST)
        )
        > 127
        for p in files
    ]
    return ImageSet(
        torch.from_numpy(np.stack(images)),
        torch.from_numpy(np.stack(masks).astype(np.uint8)),
        tuple(p.stem for p in files),
    )
