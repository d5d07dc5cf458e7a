"""Patch training and sliding-window prediction: crops, windows, the spec field and a real study."""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import optuna
import pytest
import torch
from torch import nn

import core.data.tensors
import core.training.loop
from core.contract import Task
from core.data.tensors import ImageSet, iterate_batches, random_crops
from core.errors import SegTuneError
from core.modeling.inference import (
    predict_indices,
    predict_probabilities,
    probabilities,
    probability_logits,
    sliding_window_probabilities,
    window_count,
)
from core.search.validation import SpecError, spec_from_dict
from core.settings import Settings


def conv_net(out_channels: int, seed: int = 0) -> nn.Module:
    """Two 3x3 convolutions with zero padding: what a pixel gets depends on where it is near a border."""
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, out_channels, 3, padding=1)).eval()


# --- sliding windows ------------------------------------------------------------------------------


@pytest.mark.parametrize("out_channels", [1, 3])
def test_a_patch_that_covers_the_image_is_the_whole_image_forward(out_channels: int) -> None:
    images = torch.rand(2, 1, 64, 64)
    models = [conv_net(out_channels, 0), conv_net(out_channels, 1)]  # an ensemble with TTA: the options compose
    whole = predict_probabilities(models, images, tta=True)
    assert torch.allclose(sliding_window_probabilities(models, images, 64, tta=True), whole, atol=1e-6)
    assert torch.equal(predict_indices(models[0], images, patch_size=64), predict_indices(models[0], images))


@pytest.mark.parametrize("out_channels", [1, 3])
def test_smaller_windows_of_a_per_pixel_model_blend_back_to_the_whole_image(out_channels: int) -> None:
    torch.manual_seed(0)
    model = nn.Conv2d(1, out_channels, 1).eval()  # each pixel's output reads that pixel only: windows cannot change it
    images = torch.rand(3, 1, 64, 64)
    blended = sliding_window_probabilities(model, images, 32)
    assert blended.shape == (3, out_channels, 64, 64)
    assert torch.allclose(blended, predict_probabilities(model, images), atol=1e-5)


def test_windows_overlap_by_half_a_patch_in_batches() -> None:
    seen: list[tuple[int, ...]] = []

    class Spy(nn.Module):
        def forward(self, images: torch.Tensor) -> torch.Tensor:
            seen.append(tuple(images.shape))
            return images[:, :1]

    sliding_window_probabilities(Spy(), torch.rand(2, 1, 96, 96), 32, windows_per_batch=4)
    assert all(shape[-2:] == (32, 32) and shape[0] <= 4 for shape in seen)
    assert sum(shape[0] for shape in seen) == 2 * window_count(96, 32) == 2 * 25  # steps of 16 px: 5 per side
    assert window_count(64, 64) == 1 and window_count(512, 256) == 9


def test_a_window_near_its_border_counts_less_where_windows_overlap() -> None:
    """Gaussian blending: a pixel near one window's border and near another's centre takes the
    second window's answer (a plain mean of the two would give 0.5)."""

    class Halves(nn.Module):  # border-aware: logit +5 in a window's left half, -5 in its right half
        def forward(self, images: torch.Tensor) -> torch.Tensor:
            logits = torch.full((len(images), 1, *images.shape[-2:]), -5.0)
            logits[..., : images.shape[-1] // 2] = 5.0
            return logits

    # windows start at columns 0, 16 and 32; row 16 is the windows' middle row
    probs = sliding_window_probabilities(Halves(), torch.zeros(1, 1, 32, 64), 32)[0, 0, 16]
    assert probs[17] < 0.05  # window 0's right half, 1.5 px from its centre; window 1's left border
    assert probs[30] > 0.95  # window 0's right border; window 1's left half, 1.5 px from its centre
    assert probs[5] > 0.99 and probs[60] < 0.01  # covered by one window only


@pytest.mark.parametrize("out_channels", [1, 3])
def test_probability_logits_read_back_as_the_probabilities(out_channels: int) -> None:
    probs = probabilities(torch.randn(2, out_channels, 4, 4))
    assert torch.allclose(probabilities(probability_logits(probs)), probs, atol=1e-5)


# --- crops --------------------------------------------------------------------------------------


def numbered(count: int = 2, side: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 images whose every pixel holds its own position (row * side + column), 2 channels, and
    masks that hold the same numbers modulo 3: a crop's position can be read off its first pixel."""
    position = torch.arange(side * side, dtype=torch.uint8).reshape(side, side)
    images = torch.stack([torch.stack([position, 255 - position])] * count)
    return images, (position % 3).expand(count, side, side).clone()


def test_crops_have_the_patch_shape_and_their_masks_stay_aligned() -> None:
    images, masks = numbered()
    generator = torch.Generator().manual_seed(0)
    for _ in range(20):
        crops, crop_masks = random_crops(images, masks, 8, generator)
        assert crops.shape == (2, 2, 8, 8) and crop_masks.shape == (2, 8, 8) and crops.dtype == torch.uint8
        for image, crop, mask, crop_mask in zip(images, crops, masks, crop_masks):
            row, col = divmod(int(crop[0, 0, 0]), 16)
            assert torch.equal(crop, image[:, row : row + 8, col : col + 8])  # a block of the image, both channels
            assert torch.equal(crop_mask, mask[row : row + 8, col : col + 8])


def test_foreground_crops_contain_the_foreground(monkeypatch: pytest.MonkeyPatch) -> None:
    images = torch.zeros(4, 1, 64, 64, dtype=torch.uint8)
    masks = torch.zeros(4, 64, 64, dtype=torch.uint8)
    masks[0, 2, 60] = masks[1, 63, 0] = masks[2, 30:33, 40:43] = 1  # near the borders, and a blob; image 3 is empty
    generator = torch.Generator().manual_seed(1)
    monkeypatch.setattr(core.data.tensors, "FOREGROUND_CROP_SHARE", 1.0)  # every crop asks for foreground
    for _ in range(10):
        _, crop_masks = random_crops(images, masks, 16, generator)
        assert all(int(crop_masks[i].sum()) > 0 for i in range(3)) and int(crop_masks[3].sum()) == 0
    monkeypatch.setattr(
        core.data.tensors, "FOREGROUND_CROP_SHARE", 0.0
    )  # uniform crops: a single pixel is mostly missed
    hits = sum(int(random_crops(images, masks, 16, generator)[1][0].sum()) for _ in range(50))
    assert hits < 25


def test_a_third_of_the_crops_are_centred_on_foreground_by_default() -> None:
    images = torch.zeros(300, 1, 64, 64, dtype=torch.uint8)
    masks = torch.zeros(300, 64, 64, dtype=torch.uint8)
    masks[:, 0, 0] = 1  # uniform 16 px crops hold the corner pixel 1 time in 49
    _, crop_masks = random_crops(images, masks, 16, torch.Generator().manual_seed(2))
    share = float((crop_masks.flatten(1).sum(1) > 0).float().mean())
    assert 0.25 < share < 0.45


def test_a_seeded_crop_sequence_repeats_and_crops_come_before_augmentation() -> None:
    from core.data.tensors import AugmentConfig

    images, masks = numbered(6, 32)
    data = ImageSet(images, masks, tuple(f"s{i}" for i in range(6)))

    def run(seed: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        generator = torch.Generator().manual_seed(seed)
        return list(
            iterate_batches(
                data, 4, shuffle=True, generator=generator, augment=AugmentConfig(hflip=True, rotate=10), crop=16
            )
        )

    first, again, other = run(3), run(3), run(4)
    assert [b[0].shape for b in first] == [(4, 2, 16, 16), (2, 2, 16, 16)] and first[0][1].shape == (4, 16, 16)
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(first, again))
    assert not all(torch.equal(a[0], b[0]) for a, b in zip(first, other))


def test_crops_refuse_what_they_cannot_cut() -> None:
    labels = ImageSet(
        torch.zeros(2, 1, 32, 32, dtype=torch.uint8), torch.zeros(2, dtype=torch.long), ("a", "b"), Task.CLASSIFICATION
    )
    with pytest.raises(SegTuneError, match="patches are for segmentation"):
        next(iterate_batches(labels, 2, shuffle=False, generator=None, augment=None, crop=16))
    with pytest.raises(SegTuneError, match="does not fit images of 32 px"):
        random_crops(torch.zeros(1, 1, 32, 32), torch.zeros(1, 32, 32), 64)


# --- the spec field -----------------------------------------------------------------------------


def test_patch_size_is_optional_validated_and_written_only_when_set() -> None:
    old = spec_from_dict({"name": "s", "dataset": "d", "image_size": 64})
    assert (
        old.patch_size is None and "patch_size" not in old.to_dict()
    )  # specs stored before patches read and compare the same
    patched = spec_from_dict({"name": "s", "dataset": "d", "image_size": 512, "patch_size": 128})
    assert patched.patch_size == 128 and spec_from_dict(patched.to_dict()) == patched
    assert spec_from_dict({"name": "s", "dataset": "d", "patch_size": None}).patch_size is None
    for bad, expected in (
        (48, "multiple of 32 from 32 to image_size (64)"),
        (128, "got 128"),
        (0, "got 0"),
        ("32", "must be int"),
    ):
        with pytest.raises(SpecError) as error:
            spec_from_dict({"name": "s", "dataset": "d", "image_size": 64, "patch_size": bad})
        assert expected in error.value.problems["patch_size"]
    with pytest.raises(SpecError) as error:
        spec_from_dict({"name": "s", "dataset": "d", "task": "classification", "image_size": 64, "patch_size": 32})
    assert "a classification study sees each image whole" in error.value.problems["patch_size"]


def test_the_estimate_probes_a_batch_of_patches_and_counts_the_windows(
    workspace: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    import core.training.estimate
    from core.data.demo import create_demo_dataset
    from core.data.manifest import load_manifest
    from core.data.splits import split_sizes
    from core.training.estimate import VAL_COST, estimate_trial_cost

    create_demo_dataset(workspace.datasets_dir, count=10, size=64)
    sides: list[int] = []

    def one_second(model: nn.Module, images: torch.Tensor) -> float:
        sides.append(images.shape[-1])
        return 1.0

    monkeypatch.setattr(core.training.estimate, "_time_train_step", one_second)
    base = {
        "name": "s",
        "dataset": "demo-cells",
        "image_size": 64,
        "search_space": {"architecture": "ClassicUNet", "unet_start_filters": 4, "unet_depth": 2, "batch_size": 2},
    }
    whole = estimate_trial_cost(spec_from_dict(base), workspace)
    patched = estimate_trial_cost(spec_from_dict({**base, "patch_size": 32}), workspace)
    assert sides == [64, 32]
    manifest = load_manifest(workspace.datasets_dir, "demo-cells")
    sizes = split_sizes(manifest.stems, spec_from_dict(base).split, manifest.groups)
    steps = math.ceil(sizes["train"] / 2)  # one second each; a 64 px image has 9 windows of 32 px, 2 per batch
    assert whole.seconds_per_epoch == pytest.approx(steps + VAL_COST * math.ceil(sizes["val"] / 2))
    assert patched.seconds_per_epoch == pytest.approx(steps + VAL_COST * math.ceil(9 * sizes["val"] / 2))


# --- a real study -------------------------------------------------------------------------------


def test_a_patch_study_trains_on_crops_and_scores_by_sliding_window(
    workspace: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    from core.data.demo import create_demo_dataset
    from core.runtime.tuning import run_study

    create_demo_dataset(workspace.datasets_dir, count=12, size=64)
    crops: list[int | None] = []
    windows: list[int] = []
    real_batches, real_windows = core.training.loop.iterate_batches, core.training.loop.sliding_window_probabilities

    def batches(*args: Any, crop: int | None = None, **kwargs: Any) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        crops.append(crop)
        return real_batches(*args, crop=crop, **kwargs)

    def sliding(model: nn.Module, images: torch.Tensor, patch_size: int, **kwargs: object) -> torch.Tensor:
        windows.append(patch_size)
        return real_windows(model, images, patch_size, **kwargs)

    monkeypatch.setattr(core.training.loop, "iterate_batches", batches)
    monkeypatch.setattr(core.training.loop, "sliding_window_probabilities", sliding)
    spec = spec_from_dict(
        {
            "name": "patches",
            "dataset": "demo-cells",
            "image_size": 64,
            "patch_size": 32,
            "sampler": "random",
            "pruner": "none",
            "budget": {"n_trials": 1, "max_epochs": 1},
            "preview_count": 2,
            "search_space": {
                "architecture": "ClassicUNet",
                "unet_start_filters": 4,
                "unet_depth": 2,
                "batch_size": 4,
                "epochs": 1,
                "lr": 3e-3,
            },
        }
    )
    trial = run_study(spec, workspace, device="cpu").trials[0]
    assert trial.state == optuna.trial.TrialState.COMPLETE, trial.user_attrs.get("error")
    assert 32 in crops and windows and set(windows) == {32}  # training cut crops; evaluation slid 32 px windows
    assert 0.0 <= trial.value <= 1.0 and trial.value == trial.user_attrs["val_metrics"]["dice"]
    assert "dice" in trial.user_attrs["test_metrics"]


def test_throughput_with_a_patch_times_the_sliding_window(monkeypatch: pytest.MonkeyPatch) -> None:
    from core.training.loop import measure_throughput

    sides: list[int] = []
    real = core.training.loop.sliding_window_probabilities

    def sliding(model: nn.Module, images: torch.Tensor, patch_size: int, **kwargs: object) -> torch.Tensor:
        sides.append(patch_size)
        return real(model, images, patch_size, **kwargs)

    monkeypatch.setattr(core.training.loop, "sliding_window_probabilities", sliding)
    data = ImageSet(torch.zeros(2, 1, 64, 64, dtype=torch.uint8), torch.zeros(2, 64, 64, dtype=torch.uint8), ("a", "b"))
    assert measure_throughput(conv_net(1), data, 2, repeats=1) > 0 and not sides  # whole images: no window
    assert measure_throughput(conv_net(1), data, 2, repeats=1, patch_size=32) > 0 and sides == [
        32,
        32,
    ]  # warm-up + one timed pass
