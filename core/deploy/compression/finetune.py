"""The recovery fine-tune QAT and pruning share: Adam on the training split, hooks between steps."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import torch
from torch import nn

from core.data.tensors import ImageSet, iterate_batches
from core.deploy.compression.config import CompressionConfig, CompressionData, CompressionError, StepCallback
from core.training.loop import task_loss

# on_step(step) runs before each step; it returns True when it replaced parameters (channel
# pruning does), so the optimizer is rebuilt over the new ones.
StepHook = Callable[[int], bool]


def batches(
    data: ImageSet, config: CompressionConfig, generator: torch.Generator
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Endless shuffled training batches (fine-tunes count steps; an epoch is ``len(data) // batch_size`` of them)."""
    drop_last = len(data) > config.batch_size
    while True:
        yielded = False
        for batch in iterate_batches(
            data, config.batch_size, shuffle=True, generator=generator, augment=None, drop_last=drop_last
        ):
            yielded = True
            yield batch
        if not yielded:
            raise CompressionError("no training images to calibrate or fine-tune on")


def freeze_batch_norm(model: nn.Module) -> None:
    """Keep BatchNorm layers on their trained running statistics while the rest trains: a short
    fine-tune on small batches would otherwise overwrite them with noisy batch statistics."""
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.eval()


def finetune(
    model: nn.Module,
    data: CompressionData,
    config: CompressionConfig,
    total: int,
    *,
    on_step: StepHook | None = None,
    train_mode: Callable[[nn.Module], None] = nn.Module.train,
    steps: StepCallback | None = None,
) -> None:
    """``total`` Adam steps at the config's fine-tune rate; ``train_mode(model)`` sets the layers'
    modes before the first step, ``steps(done, total)`` hears each step."""
    torch.manual_seed(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    loss_fn = task_loss(config.loss, data.train, data.mode)

    def optimizer() -> torch.optim.Optimizer:
        return torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=config.finetune_lr)

    adam = optimizer()
    train_mode(model)
    for step, (images, masks) in zip(range(total), batches(data.train, config, generator)):
        if on_step is not None and on_step(step):
            adam = optimizer()
        adam.zero_grad(set_to_none=True)
        loss_fn(model(images), masks).backward()
        adam.step()
        if steps is not None:
            steps(step + 1, total)
    model.eval()
