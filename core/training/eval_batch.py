"""The batch size a trial's validation runs at: larger than training's, as large as fits.

Validation keeps no activations for backward and no optimizer state, so it fits batches several
times the training batch; fewer, larger batches mean fewer kernel launches per epoch (what a
small model on a GPU is bound by). On CUDA one probe forward at the training batch measures the
memory an image takes and the batch is sized to a share of the memory free now (packed trials
share the device: each takes a quarter of what is left); on the CPU it is a fixed multiple.
Metrics are accumulated from counts, so they do not depend on the batch (the mean loss is a mean
of batch means, as before).
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

import torch
from torch import nn

from core.data.tensors import ImageSet, iterate_batches

CPU_MULTIPLE = 4  # CPU: validation batch = this x the training batch
MAX_MULTIPLE = 16  # CUDA: at most this x the training batch (more saves few launches)
FREE_MEMORY_SHARE = 0.25  # CUDA: the share of the free device memory validation may take


def evaluation_batch_size(
    model: nn.Module,
    data: ImageSet,
    train_batch: int,
    precision: Callable[[], AbstractContextManager[Any]],
    layout: Callable[[torch.Tensor], torch.Tensor],
) -> int:
    """Validation's batch size for ``model`` on ``data`` (never below ``train_batch``, never above the set)."""
    if len(data) <= train_batch:
        return train_batch
    device = data.images.device
    if device.type != "cuda":
        return min(len(data), train_batch * CPU_MULTIPLE)
    fits = int(
        FREE_MEMORY_SHARE
        * torch.cuda.mem_get_info(device)[0]
        / _bytes_per_image(model, data, train_batch, precision, layout)
    )
    return max(train_batch, min(fits, len(data), train_batch * MAX_MULTIPLE))


@torch.no_grad()
def _bytes_per_image(
    model: nn.Module,
    data: ImageSet,
    batch: int,
    precision: Callable[[], AbstractContextManager[Any]],
    layout: Callable[[torch.Tensor], torch.Tensor],
) -> float:
    """Peak memory of one eval-mode forward at ``batch``, per image (the model's weights excluded)."""
    device = data.images.device
    images, _target = next(iterate_batches(data, batch, shuffle=False, generator=None, augment=None))
    model.eval()
    torch.cuda.synchronize(device)
    before = torch.cuda.memory_allocated(device)
    torch.cuda.reset_peak_memory_stats(device)
    with precision():
        model(layout(images))
    return max(1.0, (torch.cuda.max_memory_allocated(device) - before) / len(images))
