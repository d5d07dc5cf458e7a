"""The training data pipeline: decode once into uint8 tensors, batch and augment on the device.

Medical datasets are small, so a whole split fits in memory (and on a GPU): every file is decoded
once per process into an (N, C, S, S) uint8 tensor, later trials in the same worker reuse it from
a small cache, and batches are cut and augmented where the tensors live. No DataLoader workers,
no per-epoch disk reads. Either task decodes to an :class:`ImageSet`: images and a task-typed
target (masks for segmentation, class indices for classification); batching and augmentation are
the same code for both.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from PIL import Image
from torchvision import tv_tensors
from torchvision.transforms.v2 import InterpolationMode
from torchvision.transforms.v2 import functional as F

from core.contract import Task
from core.data.images import PICTURE_CHANNELS, channel_problem, read_image, read_mask
from core.errors import SegTuneError

if TYPE_CHECKING:
    from core.data.manifest import DatasetManifest

_CACHE_ENTRIES = 4  # decoded splits kept per process (train, val, test and preview of one study)
_DECODE_THREADS = 8  # Pillow releases the GIL while decoding, so threads speed up the first load


@dataclass(frozen=True)
class AugmentConfig:
    """Random augmentations, drawn per sample; geometry moves image and mask (when there is one) together."""

    hflip: bool = False
    vflip: bool = False
    rotate: float = 0.0  # max degrees either way
    shift_scale: float = 0.0  # max shift (fraction of the side) and scale change (fraction)
    brightness_contrast: float = 0.0  # max relative brightness and contrast change

    def __post_init__(self) -> None:
        for name in ("rotate", "shift_scale", "brightness_contrast"):
            if getattr(self, name) < 0:
                raise SegTuneError(f"augmentation {name} must be >= 0, got {getattr(self, name)}")

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> AugmentConfig:
        """Read the ``aug_*`` hyperparameters of a trial (see core.search.space.HYPERPARAMETERS)."""
        return cls(
            hflip=bool(params.get("aug_hflip", False)),
            vflip=bool(params.get("aug_vflip", False)),
            rotate=float(params.get("aug_rotate", 0.0)),
            shift_scale=float(params.get("aug_shift_scale", 0.0)),
            brightness_contrast=float(params.get("aug_brightness_contrast", 0.0)),
        )

    @property
    def enabled(self) -> bool:
        return self.hflip or self.vflip or bool(self.rotate or self.shift_scale or self.brightness_contrast)

    @property
    def geometric(self) -> bool:
        return bool(self.rotate or self.shift_scale)


@dataclass
class ImageSet:
    """Decoded items of one task: images uint8 (N, C, S, S) and one target per image.

    The target is task-typed: a class-index mask, uint8 (N, S, S), for segmentation (geometric
    augmentation moves it with its image); a class index, int64 (N,), for classification.
    """

    images: torch.Tensor
    targets: torch.Tensor
    stems: tuple[str, ...]
    task: Task = Task.SEGMENTATION

    def __post_init__(self) -> None:
        if not len(self.images) == len(self.targets) == len(self.stems):
            raise ValueError(
                f"{len(self.images)} images, {len(self.targets)} targets and {len(self.stems)} stems differ"
            )
        dims = _TARGET_DIMS[self.task]
        if self.targets.ndim != dims:
            raise ValueError(f"{self.task} targets have {dims} dimension(s), got shape {tuple(self.targets.shape)}")

    def __len__(self) -> int:
        return len(self.stems)

    @property
    def device(self) -> torch.device:
        return self.images.device

    def to(self, device: torch.device | str) -> ImageSet:
        return ImageSet(self.images.to(device), self.targets.to(device), self.stems, self.task)

    def subset(self, indices: Sequence[int]) -> ImageSet:
        index = torch.as_tensor(list(indices), dtype=torch.long, device=self.device)
        return ImageSet(
            self.images.index_select(0, index),
            self.targets.index_select(0, index),
            tuple(self.stems[i] for i in indices),
            self.task,
        )


_TARGET_DIMS: dict[Task, int] = {Task.SEGMENTATION: 3, Task.CLASSIFICATION: 1}  # (N, S, S) masks, (N,) labels


# --- loading --------------------------------------------------------------------------------------

_cache: OrderedDict[tuple[Any, ...], ImageSet] = OrderedDict()


def load_tensor_set(
    dataset_dir: Path, manifest: DatasetManifest, stems: Sequence[str], image_size: int, channels: int
) -> ImageSet:
    """Decode ``stems`` once per process, resized to ``image_size`` square with ``channels`` channels.

    Targets follow the dataset's task (masks or class indices). The result comes
    from a per-process cache when the same dataset content (its checksum covers the labels), stems,
    size and channels were loaded before; treat its tensors as read-only.
    """
    _check_request(manifest, stems, image_size, channels)
    key = (manifest.checksum, tuple(stems), image_size, channels)
    if key in _cache:
        _cache.move_to_end(key)
        return _cache[key]
    data = _decode(Path(dataset_dir), manifest, stems, image_size, channels)
    _cache[key] = data
    while len(_cache) > _CACHE_ENTRIES:
        _cache.popitem(last=False)
    return data


def clear_tensor_cache() -> None:
    _cache.clear()


def _check_request(manifest: DatasetManifest, stems: Sequence[str], image_size: int, channels: int) -> None:
    if channels < 1:
        raise SegTuneError(f"channels must be at least 1, got {channels}")
    problem = channel_problem(manifest.channels, channels)
    if problem:
        raise SegTuneError(f"dataset {manifest.name!r}: {problem}")
    if image_size < 1:
        raise SegTuneError(f"image_size must be positive, got {image_size}")
    missing = sorted(set(stems) - set(manifest.stems))
    if missing:
        raise SegTuneError(f"dataset {manifest.name!r} has no pair(s) {missing[:10]}")


def _decode(dataset_dir: Path, manifest: DatasetManifest, stems: Sequence[str], size: int, channels: int) -> ImageSet:
    def one(stem: str) -> np.ndarray:
        return prepare_image(read_image(dataset_dir / manifest.pair(stem).image), size, channels)

    with ThreadPoolExecutor(max_workers=_DECODE_THREADS) as pool:
        decoded = list(pool.map(one, stems))
        targets = _decode_targets(pool, dataset_dir, manifest, stems, size)
    images = np.stack(decoded) if decoded else np.zeros((0, channels, size, size), np.uint8)
    return ImageSet(torch.from_numpy(images), targets, tuple(stems), manifest.task)


def _decode_targets(
    pool: ThreadPoolExecutor, dataset_dir: Path, manifest: DatasetManifest, stems: Sequence[str], size: int
) -> torch.Tensor:
    """Class indices (N,) from the manifest's labels, or masks (N, S, S) decoded from the mask files."""
    if manifest.is_classification:
        labels = manifest.labels
        return torch.tensor([labels[stem] for stem in stems], dtype=torch.long)
    masks = list(pool.map(lambda stem: _prepare_mask(read_mask(dataset_dir / manifest.pair(stem).mask), size), stems))
    return torch.from_numpy(np.stack(masks) if masks else np.zeros((0, size, size), np.uint8))


def prepare_image(pixels: np.ndarray, size: int, channels: int) -> np.ndarray:
    """HxWxC uint8 -> channels x S x S uint8; Pillow's bilinear resize antialiases when shrinking.

    Grey and RGB convert into each other; other channel counts (sequences) must match and are
    resized one channel at a time (Pillow resizes the bands of an RGB image independently too).
    """
    problem = channel_problem(pixels.shape[-1], channels)
    if problem:
        raise SegTuneError(problem)
    if channels not in PICTURE_CHANNELS:
        return np.stack([_resize_band(pixels[..., band], size) for band in range(channels)])
    image = Image.fromarray(pixels[..., 0] if pixels.shape[-1] == 1 else pixels)
    image = image.convert("L" if channels == 1 else "RGB")
    resized = np.asarray(image.resize((size, size), Image.Resampling.BILINEAR))
    return resized[None] if channels == 1 else resized.transpose(2, 0, 1).copy()


def _resize_band(band: np.ndarray, size: int) -> np.ndarray:
    return np.asarray(Image.fromarray(band).resize((size, size), Image.Resampling.BILINEAR))


def _prepare_mask(indices: np.ndarray, size: int) -> np.ndarray:
    return resize_mask(indices, size, size)


def resize_mask(indices: np.ndarray, height: int, width: int) -> np.ndarray:
    """Class indices (H, W) uint8 at another size: nearest neighbour, so only the original indices occur.

    The one resize of masks: ground truth to the training size, and predictions back to their
    image's size (predict, and scores at the original resolution).
    """
    return np.asarray(Image.fromarray(indices).resize((width, height), Image.Resampling.NEAREST))


# --- batches --------------------------------------------------------------------------------------


def iterate_batches(
    data: ImageSet,
    batch_size: int,
    *,
    shuffle: bool,
    generator: torch.Generator | None,
    augment: AugmentConfig | None,
    drop_last: bool = False,
    crop: int | None = None,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Float images in [0, 1] (B, C, S, S) and long targets (masks (B, S, S) or class indices (B,)),
    on ``data``'s device.

    ``generator`` (a CPU generator) drives the order, the crops and the augmentations, so a seeded
    run repeats. ``crop`` (segmentation): each image and its mask are cut to a random ``crop`` x
    ``crop`` patch (:func:`random_crops`) before they are augmented.
    """
    if batch_size < 1:
        raise SegTuneError(f"batch_size must be at least 1, got {batch_size}")
    if crop is not None and data.task != Task.SEGMENTATION:
        raise SegTuneError(f"patches are for segmentation masks; a {data.task} set is batched whole")
    order = torch.randperm(len(data), generator=generator) if shuffle else torch.arange(len(data))
    order = order.to(data.device)
    for start in range(0, len(data), batch_size):
        index = order[start : start + batch_size]
        if drop_last and len(index) < batch_size:
            break
        images, targets = data.images.index_select(0, index), data.targets.index_select(0, index)
        if crop is not None:
            images, targets = random_crops(images, targets, crop, generator)
        images = images.float().div_(255.0)
        if augment is not None and augment.enabled:
            images, targets = augment_batch(images, targets, augment, generator)
        yield images, targets.long()


FOREGROUND_CROP_SHARE = 1 / 3  # nnU-Net's oversampling: a third of the crops are centred on foreground


def random_crops(
    images: torch.Tensor, masks: torch.Tensor, size: int, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """One ``size`` x ``size`` crop of each image (B, C, S, S) and its mask (B, S, S), where they are.

    With probability :data:`FOREGROUND_CROP_SHARE` a crop is centred (as far as the border allows)
    on a random foreground pixel of its mask, else it lies uniformly anywhere; an image without
    foreground is cropped uniformly. The random numbers come from ``generator`` on the CPU (four per
    image, whatever the masks hold), and the choice of pixel and the cut run on the device without
    a host sync, so a seeded run repeats on any device.
    """
    side = images.shape[-1]
    if not 1 <= size <= side:
        raise SegTuneError(f"a crop of {size} px does not fit images of {side} px")
    draws = torch.rand((len(images), 4), generator=generator).to(images.device)
    wants_foreground, rank, uniform = draws[:, 0] < FOREGROUND_CROP_SHARE, draws[:, 1], draws[:, 2:]
    starts = (uniform * (side - size + 1)).long().clamp_(max=side - size)  # (B, 2): row, column
    foreground = (masks > 0).flatten(1)
    counts = foreground.sum(1)
    # the k-th foreground pixel (k uniform below the count) without nonzero(), which would sync
    target = (rank * counts).long().clamp_(max=(counts - 1).clamp(min=0)).unsqueeze(1)
    pixel = torch.searchsorted(foreground.cumsum(1), target + 1).squeeze(1).clamp_(max=side * side - 1)
    centred = (torch.stack([pixel // side, pixel % side], 1) - size // 2).clamp_(0, side - size)
    starts = torch.where((wants_foreground & (counts > 0)).unsqueeze(1), centred, starts)
    offsets = torch.arange(size, device=images.device)
    rows, cols = starts[:, :1] + offsets, starts[:, 1:] + offsets  # (B, size) each
    batch = torch.arange(len(images), device=images.device)[:, None, None]
    crops = images[batch, :, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)  # advanced indexing puts C last
    return crops.contiguous(), masks[batch, rows[:, :, None], cols[:, None, :]]


def augment_batch(
    images: torch.Tensor, targets: torch.Tensor | None, config: AugmentConfig, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Augment float images (B, C, S, S) where they are, each sample its own draw.

    Masks (B, S, S) move with their images; class indices (B,), or None, are returned as given.
    Random numbers are drawn up front on the CPU (one call for the whole batch), so the per-sample
    torchvision.transforms.v2 kernels only receive Python floats and never wait on the device; a
    batch draws the same numbers with or without masks, so a seed gives the images the same changes.
    """
    draws = torch.rand((len(images), 8), generator=generator).tolist()
    masks = targets if targets is not None and targets.ndim == images.ndim - 1 else None
    pairs = [
        _augment_one(tv_tensors.Image(image), None if masks is None else tv_tensors.Mask(masks[i]), config, draw)
        for i, (image, draw) in enumerate(zip(images, draws))
    ]
    augmented = torch.stack([image for image, _ in pairs])
    return augmented, targets if masks is None else torch.stack([mask for _, mask in pairs])


def _augment_one(
    image: torch.Tensor, mask: torch.Tensor | None, config: AugmentConfig, draw: list[float]
) -> tuple[torch.Tensor, torch.Tensor | None]:
    flip_h, flip_v, angle, shift_x, shift_y, scale, brightness, contrast = draw
    if config.hflip and flip_h < 0.5:
        image, mask = F.horizontal_flip(image), None if mask is None else F.horizontal_flip(mask)
    if config.vflip and flip_v < 0.5:
        image, mask = F.vertical_flip(image), None if mask is None else F.vertical_flip(mask)
    if config.geometric:
        side = image.shape[-1]
        geometry = {
            "angle": (2 * angle - 1) * config.rotate,
            "translate": [(2 * shift_x - 1) * config.shift_scale * side, (2 * shift_y - 1) * config.shift_scale * side],
            "scale": 1.0 + (2 * scale - 1) * config.shift_scale,
            "shear": [0.0, 0.0],
        }
        image = F.affine(image, **geometry, interpolation=InterpolationMode.BILINEAR, fill=0.0)
        if mask is not None:
            mask = F.affine(mask, **geometry, fill=0)  # the Mask kernel always samples nearest
    if config.brightness_contrast:
        strength = config.brightness_contrast  # photometric: the image only, never the mask
        image = _photometric(image, 1.0 + (2 * brightness - 1) * strength, 1.0 + (2 * contrast - 1) * strength)
    return image, mask


def _photometric(image: torch.Tensor, brightness: float, contrast: float) -> torch.Tensor:
    """Brightness then contrast; torchvision's kernels take grey or RGB only, so the channels of a
    multi-sequence image are changed as grey images, each against its own mean."""
    if image.shape[-3] in PICTURE_CHANNELS:
        return F.adjust_contrast(F.adjust_brightness(image, brightness), contrast)
    bands = image.unsqueeze(-3)  # (C, 1, S, S): a batch of grey images
    return F.adjust_contrast(F.adjust_brightness(bands, brightness), contrast).squeeze(-3)
