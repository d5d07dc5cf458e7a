"""Model output -> class probabilities -> class indices: the one place SegTune reads a model.

Every caller that turns a model's output into a prediction goes through here: the training loop's
scores and previews, the metrics, ``predict`` (images and volumes), the volume viewer and the
compressed variants. Test-time augmentation and fold ensembles are options of
:func:`predict_probabilities` (they average probabilities); :func:`sliding_window_probabilities`
cuts images into patches, feeds each batch of patches to the same function and blends them.

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

import math
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


# nnU-Net's sliding window: neighbouring windows overlap by half a patch, and each window's pixels
# are weighted by a Gaussian of sigma = patch / 8 around its centre (the borders, which see the
# least context, count least).
WINDOW_OVERLAP = 0.5
WINDOW_SIGMA_SCALE = 1 / 8


@torch.no_grad()
def sliding_window_probabilities(
    models: Models,
    images: torch.Tensor,
    patch_size: int,
    *,
    overlap: float = WINDOW_OVERLAP,
    tta: bool = False,
    windows_per_batch: int = 8,
) -> torch.Tensor:
    """:func:`predict_probabilities` over ``patch_size`` windows of ``images`` (N, C, H, W), blended.

    Windows overlap by ``overlap`` of a patch and are fed ``windows_per_batch`` at a time; every
    pixel's probabilities are the Gaussian-weighted mean of the windows that cover it (MONAI's
    ``sliding_window_inference``, imported here because only patch-trained models need it). A patch
    that covers the image is one window: the whole-image forward.
    """
    from monai.inferers import sliding_window_inference

    def predictor(windows: torch.Tensor) -> torch.Tensor:
        return predict_probabilities(models, windows, tta=tta)

    probs = sliding_window_inference(
        images,
        patch_size,
        windows_per_batch,
        predictor,
        overlap=overlap,
        mode="gaussian",
        sigma_scale=WINDOW_SIGMA_SCALE,
    )
    assert isinstance(probs, torch.Tensor)  # one output per window: a tensor, never a tuple or dict
    return probs


def window_count(side: int, patch_size: int, overlap: float = WINDOW_OVERLAP) -> int:
    """Windows :func:`sliding_window_probabilities` runs over a ``side`` x ``side`` image (MONAI's grid)."""
    if patch_size >= side:
        return 1
    step = max(1, int(patch_size * (1 - overlap)))
    return (math.ceil((side - patch_size) / step) + 1) ** 2


def probability_logits(probs: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Logits that :func:`probabilities` maps back to ``probs`` (within ``eps``), for losses and
    scorers that read logits: the logit of one channel, the log of several (softmax ignores the
    missing constant)."""
    if probs.shape[1] == 1:
        return torch.logit(probs, eps=eps)
    return probs.clamp_min(eps).log()


def predict_indices(
    models: Models,
    images: torch.Tensor,
    *,
    threshold: float = 0.5,
    tta: bool = False,
    patch_size: int | None = None,
) -> torch.Tensor:
    """Class indices of ``images``: :func:`class_indices` of :func:`predict_probabilities`, or of
    :func:`sliding_window_probabilities` when a ``patch_size`` is given (a patch-trained model)."""
    if patch_size is None:
        return class_indices(predict_probabilities(models, images, tta=tta), threshold)
    return class_indices(sliding_window_probabilities(models, images, patch_size, tta=tta), threshold)


def _flip(tensor: torch.Tensor, axes: tuple[int, ...]) -> torch.Tensor:
    return torch.flip(tensor, axes) if axes else tensor
