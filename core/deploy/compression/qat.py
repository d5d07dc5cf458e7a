"""The QAT recipe: start where PTQ is, then let the weights adapt to int8 rounding without drifting.

A plain fake-quant fine-tune of an already trained model loses accuracy before it gains any
(bench/RESULTS.md: -0.21 Dice on the lung benchmark): its observers start empty, so the first
steps train against arbitrary ranges, and BatchNorm layers (folded into the convolutions by
``prepare_qat_fx``) replace their trained statistics with those of small fine-tune batches. Here
the observers are first calibrated on training batches with fake quantization off (exactly PTQ's
calibration), BatchNorm statistics stay frozen throughout, and the observers are frozen halfway so
the second half fine-tunes against the ranges the int8 model will use (PyTorch's QAT recipe).
"""

from __future__ import annotations

import torch
from torch import nn

from core.deploy.compression.config import CompressionConfig, CompressionData, StepCallback
from core.deploy.compression.finetune import batches, finetune, freeze_batch_norm

OBSERVERS_FROZEN_AT = 0.5  # fraction of the fine-tune after which the quantization ranges stay fixed


def calibrate(prepared: nn.Module, data: CompressionData, config: CompressionConfig) -> None:
    """Fill the observers from ``calibration_batches`` training batches, fake quantization off."""
    from torch.ao.quantization import disable_fake_quant, enable_fake_quant

    generator = torch.Generator().manual_seed(config.seed)
    prepared.eval().apply(disable_fake_quant)
    with torch.no_grad():
        for _, (images, _masks) in zip(range(config.calibration_batches), batches(data.train, config, generator)):
            prepared(images)
    prepared.apply(enable_fake_quant)


def _train_with_frozen_statistics(model: nn.Module) -> None:
    from torch.ao.nn.intrinsic.qat import freeze_bn_stats

    model.train()
    model.apply(freeze_bn_stats)  # conv+BN pairs fused by prepare_qat_fx
    freeze_batch_norm(model)  # BatchNorm layers left unfused


def qat_finetune(
    prepared: nn.Module, data: CompressionData, config: CompressionConfig, total: int, steps: StepCallback | None
) -> None:
    """Calibrate ``prepared`` (a prepare_qat_fx model), then fine-tune it ``total`` steps."""
    from torch.ao.quantization import disable_observer

    calibrate(prepared, data, config)
    frozen_at = int(total * OBSERVERS_FROZEN_AT)

    def on_step(step: int) -> bool:
        if step == frozen_at:
            prepared.apply(disable_observer)
        return False

    finetune(prepared, data, config, total, on_step=on_step, train_mode=_train_with_frozen_statistics, steps=steps)
