"""Decoded tensor sets, the per-process cache, batching and on-device augmentation (core.data)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import PIL.Image
import pytest
import torch
from PIL import Image

from core.data.ingest import ingest_dataset
from core.data.manifest import DatasetManifest
from core.data.tensors import (
    AugmentConfig,
    ImageSet,
    augment_batch,
    clear_tensor_cache,
    iterate_batches,
    load_tensor_set,
)
from core.errors import SegTuneError

SIZE = 32


def pattern(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """An asymmetric bright blob (so every flip and rotation shows) and the mask marking it."""
    mask = np.zeros((SIZE, SIZE), np.uint8)
    mask[4 + seed % 3 : 14, 3:10] = 1
    mask[4:8, 10 : 20 + seed % 5] = 1  # an 'L' shape
    image = np.where(mask == 1, 220, 30).astype(np.uint8)
    return image, mask


@pytest.fixture
def dataset(tmp_path: Path) -> tuple[Path, DatasetManifest]:
    for i in range(6):
        image, mask = pattern(i)
        Image.fromarray(image).save(tmp_path / f"p{i}.png")
        Image.fromarray(mask * 255).save(tmp_path / f"p{i}_mask.png")
    manifest = ingest_dataset(tmp_path, "pat", tmp_path / "store")
    clear_tensor_cache()
    return tmp_path / "store" / "pat", manifest


def test_shapes_dtypes_and_resize(dataset: tuple[Path, DatasetManifest]) -> None:
    folder, manifest = dataset
    data = load_tensor_set(folder, manifest, manifest.stems[:4], 16, 1)
    assert data.images.shape == (4, 1, 16, 16) and data.images.dtype == torch.uint8
    assert data.targets.shape == (4, 16, 16) and data.targets.dtype == torch.uint8
    assert set(data.targets.unique().tolist()) == {0, 1}  # nearest keeps class indices
    assert data.stems == manifest.stems[:4] and len(data) == 4
    expected = np.asarray(Image.fromarray(pattern(0)[1]).resize((16, 16), Image.Resampling.NEAREST))
    assert np.array_equal(data.targets[0].numpy(), expected)


def test_grey_to_rgb_and_back(dataset: tuple[Path, DatasetManifest]) -> None:
    folder, manifest = dataset
    rgb = load_tensor_set(folder, manifest, ["p1"], SIZE, 3)
    assert rgb.images.shape == (1, 3, SIZE, SIZE)
    assert torch.equal(rgb.images[0, 0], rgb.images[0, 2])
    assert np.array_equal(rgb.images[0, 0].numpy(), pattern(1)[0])
    Image.fromarray(np.dstack([pattern(1)[0]] * 3)).save(folder / "images" / "p1.png")  # make it RGB on disk
    clear_tensor_cache()
    grey = load_tensor_set(folder, manifest, ["p1"], SIZE, 1)
    assert grey.images.shape == (1, 1, SIZE, SIZE)
    assert np.array_equal(grey.images[0, 0].numpy(), pattern(1)[0])


def test_cache_hit_never_reads_disk(dataset: tuple[Path, DatasetManifest], monkeypatch: pytest.MonkeyPatch) -> None:
    folder, manifest = dataset
    opened: list[str] = []
    real_open = PIL.Image.open

    def counting_open(path: object, *args: object, **kwargs: object) -> PIL.Image.Image:
        opened.append(str(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(PIL.Image, "open", counting_open)
    first = load_tensor_set(folder, manifest, manifest.stems, SIZE, 1)
    assert len(opened) == 12  # each image and mask decoded once
    again = load_tensor_set(folder, manifest, list(manifest.stems), SIZE, 1)
    assert len(opened) == 12 and again.images is first.images
    load_tensor_set(folder, manifest, manifest.stems, 16, 1)  # another size is another entry
    assert len(opened) == 24


def test_cache_is_a_small_lru(dataset: tuple[Path, DatasetManifest], monkeypatch: pytest.MonkeyPatch) -> None:
    folder, manifest = dataset
    for size in (8, 16, 24, 32, 40):
        load_tensor_set(folder, manifest, ["p0"], size, 1)
    opened: list[object] = []
    real_open = PIL.Image.open
    monkeypatch.setattr(PIL.Image, "open", lambda path, *a, **k: opened.append(path) or real_open(path, *a, **k))
    load_tensor_set(folder, manifest, ["p0"], 40, 1)
    assert opened == []
    load_tensor_set(folder, manifest, ["p0"], 8, 1)  # the oldest entry was evicted
    assert len(opened) == 2


def test_bad_requests(dataset: tuple[Path, DatasetManifest]) -> None:
    folder, manifest = dataset
    with pytest.raises(SegTuneError, match=r"no pair\(s\) \['nope'\]"):
        load_tensor_set(folder, manifest, ["p0", "nope"], SIZE, 1)
    with pytest.raises(SegTuneError, match="has 1 channel.*takes 2"):  # grey converts to RGB only
        load_tensor_set(folder, manifest, ["p0"], SIZE, 2)
    with pytest.raises(SegTuneError, match="channels must be at least 1"):
        load_tensor_set(folder, manifest, ["p0"], SIZE, 0)


def test_tensor_set_subset_and_to(dataset: tuple[Path, DatasetManifest]) -> None:
    folder, manifest = dataset
    data = load_tensor_set(folder, manifest, manifest.stems, SIZE, 1)
    part = data.subset([2, 0])
    assert part.stems == ("p2", "p0") and torch.equal(part.targets[1], data.targets[0])
    moved = part.to("cpu")
    assert moved.device.type == "cpu" and len(moved) == 2
    with pytest.raises(ValueError, match="differ"):
        ImageSet(data.images, data.targets[:2], data.stems)


# --- batches --------------------------------------------------------------------------------------


def synthetic(count: int = 10) -> ImageSet:
    pairs = [pattern(i) for i in range(count)]
    images = torch.from_numpy(np.stack([image for image, _ in pairs]))[:, None]
    masks = torch.from_numpy(np.stack([mask for _, mask in pairs]))
    return ImageSet(images, masks, tuple(f"s{i}" for i in range(count)))


def test_batches_in_order_types_and_drop_last() -> None:
    data = synthetic()
    batches = list(iterate_batches(data, 4, shuffle=False, generator=None, augment=None))
    assert [len(images) for images, _ in batches] == [4, 4, 2]
    images, masks = batches[0]
    assert images.dtype == torch.float32 and masks.dtype == torch.long
    assert images.shape == (4, 1, SIZE, SIZE) and masks.shape == (4, SIZE, SIZE)
    assert torch.allclose(images, data.images[:4].float() / 255)
    assert torch.equal(masks, data.targets[:4].long())
    dropped = list(iterate_batches(data, 4, shuffle=False, generator=None, augment=None, drop_last=True))
    assert len(dropped) == 2


def test_shuffle_is_seeded_and_complete() -> None:
    count = 10
    labelled = ImageSet(
        torch.arange(count, dtype=torch.uint8).view(count, 1, 1, 1).expand(count, 1, 4, 4).clone(),
        torch.zeros((count, 4, 4), dtype=torch.uint8),
        tuple(str(i) for i in range(count)),
    )

    def order(seed: int) -> list[int]:
        batches = iterate_batches(
            labelled, 3, shuffle=True, generator=torch.Generator().manual_seed(seed), augment=None
        )
        return [round(float(image[0, 0, 0]) * 255) for images, _ in batches for image in images]

    assert sorted(order(0)) == list(range(count))
    assert order(0) == order(0) and order(0) != order(1)


def test_flips_move_image_and_mask_together() -> None:
    data = synthetic(16)
    images = data.images.float() / 255
    out_images, out_masks = augment_batch(
        images, data.targets, AugmentConfig(hflip=True), torch.Generator().manual_seed(0)
    )
    flipped = 0
    for i in range(16):
        if torch.equal(out_masks[i], data.targets[i]):
            assert torch.equal(out_images[i], images[i])
        else:
            assert torch.equal(out_masks[i], data.targets[i].flip(-1)) and torch.equal(
                out_images[i], images[i].flip(-1)
            )
            flipped += 1
    assert 0 < flipped < 16  # drawn per sample, not once per batch


def test_geometry_keeps_alignment_and_photometry_spares_the_mask() -> None:
    data = synthetic(8)
    config = AugmentConfig(hflip=True, vflip=True, rotate=40.0, shift_scale=0.15, brightness_contrast=0.3)
    batches = iterate_batches(data, 8, shuffle=False, generator=torch.Generator().manual_seed(1), augment=config)
    images, masks = next(batches)
    assert images.shape == (8, 1, SIZE, SIZE) and masks.dtype == torch.long
    assert set(masks.unique().tolist()) <= {0, 1}
    assert not torch.equal(masks, data.targets.long())  # something moved
    for image, mask in zip(images, masks):
        inside, outside = image[0][mask == 1], image[0][mask == 0]
        # The mask still marks the bright blob: interpolation blurs only its border.
        assert inside.median() > 0.5 > outside.median()
    photometric = AugmentConfig(brightness_contrast=0.5)
    images, masks = augment_batch(
        data.images.float() / 255, data.targets, photometric, torch.Generator().manual_seed(2)
    )
    assert torch.equal(masks, data.targets)
    assert not torch.allclose(images, data.images.float() / 255)
    assert images.min() >= 0 and images.max() <= 1


def test_augment_config_from_params() -> None:
    assert not AugmentConfig.from_params({}).enabled
    config = AugmentConfig.from_params(
        {"aug_hflip": True, "aug_rotate": 15, "aug_brightness_contrast": 0.2, "lr": 1e-3}
    )
    assert config == AugmentConfig(hflip=True, rotate=15.0, brightness_contrast=0.2) and config.enabled
    assert AugmentConfig(shift_scale=0.1).geometric and not AugmentConfig(hflip=True).geometric
    with pytest.raises(SegTuneError, match="rotate must be >= 0"):
        AugmentConfig(rotate=-1.0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_augmentation_runs_on_the_gpu() -> None:
    data = synthetic(8).to("cuda")
    config = AugmentConfig(hflip=True, rotate=30.0, shift_scale=0.1, brightness_contrast=0.2)
    images, masks = next(
        iterate_batches(data, 8, shuffle=True, generator=torch.Generator().manual_seed(0), augment=config)
    )
    assert images.is_cuda and masks.is_cuda
    for image, mask in zip(images, masks):
        assert image[0][mask == 1].median() > 0.5 > image[0][mask == 0].median()


def test_demo_dataset_is_deterministic_minority_foreground_and_ingested(tmp_path: Path) -> None:
    from core.data.demo import create_demo_dataset
    from core.data.manifest import DatasetError

    store = tmp_path / "store"
    first = create_demo_dataset(store, name="demo-a", count=8, size=64, seed=3)
    again = create_demo_dataset(store, name="demo-b", count=8, size=64, seed=3)
    other = create_demo_dataset(store, name="demo-c", count=8, size=64, seed=4)
    assert first.checksum == again.checksum != other.checksum  # a seed fixes every pixel
    assert first.is_binary and first.channels == 1 and len(first.pairs) == 8 and first.sizes == {"64x64": 8}
    fractions = [pair.foreground[0] for pair in first.pairs]
    # Cells are a minority but never absent, so a constant prediction scores poorly.
    assert all(0.03 < f < 0.5 for f in fractions) and 0.08 < sum(fractions) / len(fractions) < 0.4
    data = load_tensor_set(store / "demo-a", first, first.stems, 64, 1)
    bright_cells = data.images[:, 0].float()[data.targets == 1].mean()
    assert bright_cells > data.images[:, 0].float()[data.targets == 0].mean() + 20  # the masks mark the cells
    with pytest.raises(DatasetError, match="already exists"):
        create_demo_dataset(store, name="demo-a", count=8, size=64)
    assert sorted(p.name for p in store.iterdir()) == ["demo-a", "demo-b", "demo-c"]
