"""The training data pipeline: decode once into uint8 tensors, batch and augment on the device.

Medical datasets are small, so a whole split fits in memory (and on a GPU): every file is decoded
once per process into an (N, C, S, S) uint8 tensor, later trials in the same worker reuse it from
a small cache, and batches are cut and augmented where the tensors live. No DataLoader workers,
no per-epoch disk reads. A segmentation dataset decodes to a :class:`TensorSet` (images + masks),
a classification dataset to a :class:`LabelSet` (images + class indices); batching and
augmentation take either.
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
class TensorSet:
    """Decoded pairs: images uint8 (N, C, S, S), masks uint8 class indices (N, S, S)."""

    images: torch.Tensor
    masks: torch.Tensor
    stems: tuple[str, ...]

    def __post_init__(self) -> None:
        if not len(self.images) == len(self.masks) == len(self.stems):
            raise ValueError(f"{len(self.images)} images, {len(self.masks)} masks and {len(self.stems)} stems differ")

    def __len__(self) -> int:
        return len(self.stems)

    @property
    def device(self) -> torch.device:
        return self.images.device

    def to(self, device: torch.device | str) -> TensorSet:
        return TensorSet(self.images.to(device), self.masks.to(device), self.stems)

    def subset(self, indices: Sequence[int]) -> TensorSet:
        index = torch.as_tensor(list(indices), dtype=torch.long, device=self.device)
        return TensorSet(self.images.index_select(0, index), self.masks.index_select(0, index),
                         tuple(self.stems[i] for i in indices))


@dataclass
class LabelSet:
    """Decoded classification items: images uint8 (N, C, S, S), class indices int64 (N,)."""

    images: torch.Tensor
    labels: torch.Tensor
    stems: tuple[str, ...]

    def __post_init__(self) -> None:
        if not len(self.images) == len(self.labels) == len(self.stems):
            raise ValueError(f"{len(self.images)} images, {len(self.labels)} labels and {len(self.stems)} stems differ")

    def __len__(self) -> int:
        return len(self.stems)

    @property
    def device(self) -> torch.device:
        return self.images.device

    def to(self, device: torch.device | str) -> LabelSet:
        return LabelSet(self.images.to(device), self.labels.to(device), self.stems)

    def subset(self, indices: Sequence[int]) -> LabelSet:
        index = torch.as_tensor(list(indices), dtype=torch.long, device=self.device)
        return LabelSet(self.images.index_select(0, index), self.labels.index_select(0, index),
                        tuple(self.stems[i] for i in indices))


DataSet = TensorSet | LabelSet  # what a dataset decodes to: per task


# --- loading --------------------------------------------------------------------------------------

_cache: OrderedDict[tuple[Any, ...], DataSet] = OrderedDict()


def load_tensor_set(
    dataset_dir: Path, manifest: DatasetManifest, stems: Sequence[str], image_size: int, channels: int
) -> DataSet:
    """Decode ``stems`` once per process, resized to ``image_size`` square with ``channels`` channels.

    A :class:`LabelSet` for a classification dataset, else a :class:`TensorSet`. The result comes
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


def _decode(dataset_dir: Path, manifest: DatasetManifest, stems: Sequence[str], size: int, channels: int) -> DataSet:
    if manifest.is_classification:
        return _decode_labelled(dataset_dir, manifest, stems, size, channels)

    def one(stem: str) -> tuple[np.ndarray, np.ndarray]:
        pair = manifest.pair(stem)
        return (prepare_image(read_image(dataset_dir / pair.image), size, channels),
                _prepare_mask(read_mask(dataset_dir / pair.mask), size))

    with ThreadPoolExecutor(max_workers=_DECODE_THREADS) as pool:
        decoded = list(pool.map(one, stems))
    images = np.stack([image for image, _ in decoded]) if decoded else np.zeros((0, channels, size, size), np.uint8)
    masks = np.stack([mask for _, mask in decoded]) if decoded else np.zeros((0, size, size), np.uint8)
    return TensorSet(torch.from_numpy(images), torch.from_numpy(masks), tuple(stems))


def _decode_labelled(dataset_dir: Path, manifest: DatasetManifest, stems: Sequence[str], size: int, channels: int) -> LabelSet:
    def one(stem: str) -> np.ndarray:
        return prepare_image(read_image(dataset_dir / manifest.pair(stem).image), size, channels)

    with ThreadPoolExecutor(max_workers=_DECODE_THREADS) as pool:
        decoded = list(pool.map(one, stems))
    images = np.stack(decoded) if decoded else np.zeros((0, channels, size, size), np.uint8)
    labels = manifest.labels
    return LabelSet(torch.from_numpy(images), torch.tensor([labels[stem] for stem in stems], dtype=torch.long), tuple(stems))


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
    """Nearest neighbour, so a resized mask holds only the original class indices."""
    return np.asarray(Image.fromarray(indices).resize((size, size), Image.Resampling.NEAREST))


# --- batches --------------------------------------------------------------------------------------


def iterate_batches(
    data: DataSet,
    batch_size: int,
    *,
    shuffle: bool,
    generator: torch.Generator | None,
    augment: AugmentConfig | None,
    drop_last: bool = False,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Float images in [0, 1] (B, C, S, S) and long targets, on ``data``'s device: masks (B, S, S)
    from a :class:`TensorSet`, class indices (B,) from a :class:`LabelSet`.

    ``generator`` (a CPU generator) drives the order and the augmentations, so a seeded run repeats.
    """
    if batch_size < 1:
        raise SegTuneError(f"batch_size must be at least 1, got {batch_size}")
    order = torch.randperm(len(data), generator=generator) if shuffle else torch.arange(len(data))
    order = order.to(data.device)
    for start in range(0, len(data), batch_size):
        index = order[start : start + batch_size]
        if drop_last and len(index) < batch_size:
            break
        images = data.images.index_select(0, index).float().div_(255.0)
        if isinstance(data, LabelSet):
            if augment is not None and augment.enabled:
                images, _ = augment_batch(images, None, augment, generator)
            yield images, data.labels.index_select(0, index)
            continue
        masks = data.masks.index_select(0, index)
        if augment is not None and augment.enabled:
            images, masks = augment_batch(images, masks, augment, generator)
        yield images, masks.long()


def augment_batch(
    images: torch.Tensor, masks: torch.Tensor | None, config: AugmentConfig, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Augment float images (B, C, S, S) and masks (B, S, S) where they are, each sample its own draw;
    ``masks=None`` (classification) augments the images alone and returns None for the masks.

    Random numbers are drawn up front on the CPU (one call for the whole batch), so the per-sample
    torchvision.transforms.v2 kernels only receive Python floats and never wait on the device; a
    batch draws the same numbers with or without masks, so a seed gives the images the same changes.
    """
    draws = torch.rand((len(images), 8), generator=generator).tolist()
    targets = masks if masks is not None else [None] * len(images)
    pairs = [_augment_one(tv_tensors.Image(image), None if mask is None else tv_tensors.Mask(mask), config, draw)
             for image, mask, draw in zip(images, targets, draws)]
    augmented = torch.stack([image for image, _ in pairs])
    return augmented, None if masks is None else torch.stack([mask for _, mask in pairs])


def _augment_one(image: torch.Tensor, mask: torch.Tensor | None, config: AugmentConfig, draw: list[float]) -> tuple[torch.Tensor, torch.Tensor | None]:
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

