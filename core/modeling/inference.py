"""Model output -> class probabilities -> class indices: the one place SegTune reads a model.

Every caller that turns a model's output into a prediction goes through here: the training loop's
scores and previews, the metrics, ``predict`` (images and volumes), the volume viewer and the
compressed variants. Test-time augmentation and fold ensembles are options of
:func:`predict_probabilities` (they average probabilities); sliding windows cut images into
patches and feed the same function.

How an output is read follows the model's head, not the task:

- **one output channel** (a binary segmentation model): the sigmoid is the foreground's
  probability; a pixel is foreground where it is >= the threshold (0.5 unless the bundle says
  otherwise);
- **several channels** (multi-class masks, or a classifier's one logit per class): the softmax over
  the channels; the class of highest probability wins.

Probabilities keep that shape (one channel for a binary model), so averaging over flips or models
is the same code for every head; :func:`class_probabilities` spells out every class's probability,
background first, for files a user reads.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager, nullcontext
from typing import Any

import torch
from torch import nn

Models = nn.Module | Sequence[nn.Module]  # one model, or a fold ensemble whose probabilities are averaged

# Mirror TTA (nnU-Net's default): the image as it is and flipped along each spatial axis and both.
MIRROR_AXES: tuple[tuple[int, ...], ...] = ((), (-1,), (-2,), (-2, -1))


def autocast(device: torch.device) -> AbstractContextManager[Any]:
    """Mixed precision on CUDA (bf16 where supported); full precision on the CPU."""
    if device.type != "cuda":
        return nullcontext()
    dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.autocast(device_type="cuda", dtype=dtype)


def to_model_layout(images: torch.Tensor) -> torch.Tensor:
    """channels_last on CUDA (what cuDNN's fastest convolutions want); unchanged on the CPU."""
    return images.contiguous(memory_format=torch.channels_last) if images.is_cuda else images


def forward(model: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """float32 logits for float images in [0, 1], with the device's precision and layout."""
    with autocast(images.device):
        return model(to_model_layout(images)).float()


def probabilities(logits: torch.Tensor) -> torch.Tensor:
    """Sigmoid of a single output channel (the foreground's probability), else softmax over channels."""
    logits = logits.float()
    return torch.sigmoid(logits) if logits.shape[1] == 1 else torch.softmax(logits, dim=1)


def class_indices(probs: torch.Tensor, threshold: float = 0.5) -> torch.Tensor:
    """Class indices (long; (N, H, W) for masks, (N,) for labels) from :func:`probabilities`.

    One channel: 1 where the foreground's probability is >= ``threshold``; several: the argmax.
    """
    if probs.shape[1] == 1:
        return (probs[:, 0] >= threshold).long()
    return probs.argmax(dim=1)


def class_probabilities(probs: torch.Tensor) -> torch.Tensor:
    """Every class's probability, background first: a binary model's one channel becomes two."""
    return torch.cat([1 - probs, probs], dim=1) if probs.shape[1] == 1 else probs


@torch.no_grad()
def predict_probabilities(models: Models, images: torch.Tensor, *, tta: bool = False) -> torch.Tensor:
    """:func:`probabilities` of ``images`` (float (N, C, H, W) in [0, 1]), averaged over models and flips.

    ``models`` is one model or a fold ensemble (each model's probabilities weigh the same). With
    ``tta`` every model also sees the images mirrored along each spatial axis and both
    (:data:`MIRROR_AXES`); a mask output is flipped back before it is averaged, a label output
    (N, K) is averaged as it is.
    """
    members = [models] if isinstance(models, nn.Module) else list(models)
    if not members:
        raise ValueError("predict_probabilities needs at least one model")
    flips = MIRROR_AXES if tta else ((),)
    total: torch.Tensor | None = None
    for model in members:
        model.eval()
        for axes in flips:
            probs = probabilities(forward(model, _flip(images, axes)))
            probs = _flip(probs, axes) if probs.ndim == images.ndim else probs
            total = probs if total is None else total + probs
    assert total is not None  # at least one model and one flip ran
    return total / (len(members) * len(flips))


def predict_indices(
    models: Models, images: torch.Tensor, *, threshold: float = 0.5, tta: bool = False
) -> torch.Tensor:
    """Class indices of ``images``: :func:`class_indices` of :func:`predict_probabilities`."""
    return class_indices(predict_probabilities(models, images, tta=tta), threshold)


def _flip(tensor: torch.Tensor, axes: tuple[int, ...]) -> torch.Tensor:
    return torch.flip(tensor, axes) if axes else tensor
