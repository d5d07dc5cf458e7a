"""The auto preset: a spec planned from the dataset's fingerprint, with the reasons for each choice."""

from __future__ import annotations

import pytest

from core.data.manifest import DatasetManifest, PairInfo
from core.search.auto import Fingerprint, plan, plan_for_manifest
from core.search.presets import AUTO, load_preset
from core.search.validation import spec_from_dict
from core.settings import Settings
from tests.helpers.machine import shared_dataset
from tests.helpers.studies import copy_pairs


def fingerprint(**changes: object) -> Fingerprint:
    base = dict(
        count=600,
        channels=1,
        bit_depth=8,
        median_height=512,
        median_width=512,
        num_classes=2,
        foreground_median=0.2,
        empty_fraction=0.0,
        class_fractions=(0.2,),
    )
    return Fingerprint(**(base | changes))


def test_small_foreground_grey_scans_get_overlap_losses_and_no_up_down_flips() -> None:
    auto = plan(fingerprint(foreground_median=0.02, empty_fraction=0.4), dataset="ct")
    space = auto.spec["search_space"]
    assert set(space["loss"]["choices"]) == {"dice_focal", "tversky", "dice_bce"}
    assert (
        space["aug_hflip"] == {"choices": [False, True]}
        and space["aug_vflip"] is False
        and max(space["aug_rotate"]["choices"]) <= 10
    )
    text = "\n".join(auto.reasons)
    assert "2.0 %" in text and "40 % of the images have no foreground" in text and "no up-down flips" in text
    spec = spec_from_dict(auto.spec)  # the plan is a valid study
    assert spec.sampler == "tpe" and spec.pruner == "hyperband" and spec.image_size == 512


def test_large_foreground_colour_images_get_pixel_losses_and_every_flip() -> None:
    auto = plan(fingerprint(channels=3, foreground_median=0.5, count=80), dataset="cells")
    space = auto.spec["search_space"]
    assert space["loss"]["choices"][0] == "dice_bce" and "bce" in space["loss"]["choices"]
    assert space["aug_vflip"] == {"choices": [False, True]} and space["aug_rotate"] == {
        "choices": [0.0, 90.0]
    }  # off first: the plain default
    assert space["encoder"]["choices"] == ["resnet18", "resnet34"]  # a small set: light encoders
    assert auto.spec["budget"]["max_epochs"] == 50 and any("only 80 pairs" in r for r in auto.reasons)


def test_imbalanced_classes_get_class_balanced_losses() -> None:
    auto = plan(fingerprint(num_classes=4, class_fractions=(0.3, 0.1, 0.01)), dataset="organs")
    assert auto.spec["search_space"]["loss"]["choices"] == ["dice_focal", "dice", "tversky"]
    assert any("imbalanced (rarest/commonest = 0.03)" in r for r in auto.reasons)


@pytest.mark.parametrize(
    ("device", "side", "size", "batches"),
    [
        ("cuda", 512, 512, [2, 4]),
        ("cpu", 512, 256, [4, 8]),
        ("cuda", 256, 256, [8, 16]),
        ("cuda", 100, 96, [16, 32]),
        ("cpu", 40, 64, [16, 32]),
    ],
)
def test_image_and_batch_size_fit_the_device(device: str, side: int, size: int, batches: list[int]) -> None:
    auto = plan(
        fingerprint(median_height=side, median_width=side, count=5000), dataset="d", device=device, hours=1000
    )  # time is no limit here
    assert (
        auto.spec.get("patch_size", auto.spec["image_size"]) == size and size % 32 == 0
    )  # the side a training step sees
    assert auto.spec["search_space"]["batch_size"] == {"choices": batches}
    assert any(f"image size {size} px" in r for r in auto.reasons)


@pytest.mark.parametrize(
    ("device", "side", "native", "patch"),
    [
        ("cuda", 1024, 1024, 512),
        ("cuda", 2000, 1024, 512),
        ("cpu", 512, 512, 256),
        ("cpu", 520, 512, 256),
    ],
)
def test_images_twice_the_side_that_fits_train_on_patches_at_native_size(
    device: str, side: int, native: int, patch: int
) -> None:
    auto = plan(fingerprint(median_height=side, median_width=side + 100), dataset="em", device=device, hours=1000)
    assert (auto.spec["image_size"], auto.spec["patch_size"]) == (native, patch)
    assert any(
        f"patches of {patch} px from images at {native} px" in r and "slides a window" in r for r in auto.reasons
    )
    assert spec_from_dict(auto.spec).patch_size == patch  # a valid study


def test_images_under_twice_the_side_that_fits_are_resized_whole() -> None:
    auto = plan(fingerprint(median_height=1000, median_width=1000), dataset="d", device="cuda")
    assert auto.spec["image_size"] == 512 and "patch_size" not in auto.spec
    assert not any("patches" in r for r in auto.reasons)


def test_few_images_keep_several_steps_per_epoch_and_wide_images_rotate_less() -> None:
    auto = plan(fingerprint(count=10, median_width=800, median_height=400), dataset="d")
    assert auto.spec["search_space"]["batch_size"] == 2  # ~7 training images
    assert auto.spec["search_space"]["aug_rotate"] == {"choices": [0.0, 5.0]} and any(
        "not square (aspect 2.00)" in r for r in auto.reasons
    )


def manifest(
    pairs: list[tuple[int, int, tuple[float, ...]]],
    classes: tuple[str, ...] = ("background", "foreground"),
    channels: int = 1,
) -> DatasetManifest:
    return DatasetManifest(
        name="synthetic",
        created="2026-01-01T00:00:00Z",
        source="x",
        channels=channels,
        bit_depth=16,
        classes=classes,
        checksum="0",
        pairs=tuple(
            PairInfo(f"p{i}", f"images/p{i}.png", f"masks/p{i}.png", h, w, fg) for i, (h, w, fg) in enumerate(pairs)
        ),
    )


def test_fingerprint_from_a_manifest() -> None:
    fp = Fingerprint.from_manifest(
        manifest(
            [(300, 400, (0.1, 0.0)), (200, 300, (0.0, 0.0)), (300, 500, (0.3, 0.05))], classes=("background", "a", "b")
        )
    )
    assert (fp.count, fp.median_height, fp.median_width, fp.num_classes, fp.bit_depth) == (3, 300, 400, 3, 16)
    assert fp.foreground_median == pytest.approx(0.1) and fp.empty_fraction == pytest.approx(1 / 3)
    assert fp.class_fractions == pytest.approx((0.4 / 3, 0.05 / 3)) and fp.class_balance == pytest.approx(0.125)
    assert fp.aspect == pytest.approx(4 / 3)


def test_auto_preset_on_a_real_dataset(workspace: Settings, tmp_path) -> None:
    from core.data.ingest import ingest_dataset
    from core.data.manifest import load_manifest

    source = copy_pairs(shared_dataset("ct_liver_msd"), tmp_path / "liver", 24, every=20)
    ingest_dataset(source, "liver", workspace.datasets_dir)
    liver = load_manifest(workspace.datasets_dir, "liver")
    auto = plan_for_manifest(liver, device="cpu")
    assert auto.spec["image_size"] == 256 and auto.spec["dataset"] == "liver"
    fp = Fingerprint.from_manifest(liver)
    assert 0 < fp.foreground_median < 0.3 and fp.channels == 1
    spec = load_preset(AUTO, "liver", "liver-auto", manifest=liver, device="cpu")
    assert spec.name == "liver-auto" and spec.search_space["aug_vflip"].value is False
    with pytest.raises(Exception, match="manifest"):
        load_preset(AUTO, "liver")


def test_patches_are_dropped_when_sliding_window_validation_would_not_fit_the_budget() -> None:
    """The windows' cost is counted: at a budget the resized plan just fits, patches (more validation
    passes) do not, and the plan says so; with room to spare the estimate includes the windows."""
    from core.search.auto import _patches_within_budget, _Sizing
    from core.search.cost import profile_for, sliding_windows, study_estimate

    fp = fingerprint(median_height=1024, median_width=1024, count=200)
    profile = profile_for("cpu")
    resized = study_estimate(profile, side=256, train=140, val=32, cost=1.0, epochs=10, n_trials=4)
    sizing = _Sizing(side=256, epochs=10, n_trials=4, tier=0, estimate=resized)
    reasons: list[str] = []
    assert _patches_within_budget(fp, sizing, 1.0, profile, resized.total_s, reasons) == ({}, sizing)
    assert "not cut into patches" in reasons[0] and f"{sliding_windows(1024, 256)} windows an image" in reasons[0]
    patches, patched = _patches_within_budget(fp, sizing, 1.0, profile, 100 * resized.total_s, reasons)
    assert patches == {"image_size": 1024, "patch_size": 256} and patched.estimate.total_s > resized.total_s
    assert any("patches of 256 px from images at 1024 px" in reason for reason in reasons)
