"""Scores at the original resolution: the native evaluator, and a real study scored on 128-px masks
while it trains at 32 px."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from core.contract import StudyAttr, TrialAttr
from core.data.tensors import ImageSet
from core.modeling.losses import build_loss
from core.settings import Settings
from core.training.loop import evaluate_detailed
from core.training.native import NATIVE_EVALUATION, evaluate_native, scored_natively


class Brightness(nn.Module):
    """Foreground where the pixel is bright: a one-logit model with no weights to learn."""

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return 20.0 * (images[:, :1] - 0.5)


def discs(count: int, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Bright discs on dark ground: images (N, 1, S, S) uint8 and their masks (N, S, S) uint8."""
    yy, xx = np.mgrid[:size, :size] / size
    masks = np.stack([((yy - 0.3 - 0.1 * i) ** 2 + (xx - 0.5) ** 2 < 0.04 + 0.01 * i) for i in range(count)]).astype(
        np.uint8
    )
    return torch.from_numpy(masks[:, None] * 255), torch.from_numpy(masks)


def test_at_the_training_size_native_scores_equal_the_training_scores() -> None:
    images, masks = discs(3, 32)
    data = ImageSet(images, masks, ("a", "b", "c"))
    loss = build_loss("dice_bce", "binary")
    plain = evaluate_detailed(Brightness(), data, 2, loss_fn=loss, mode="binary", num_classes=2)
    native, rows = evaluate_native(
        Brightness(), data, list(masks.numpy()), 2, loss_fn=loss, mode="binary", num_classes=2
    )
    assert {k: native.metrics[k] for k in plain.metrics} == pytest.approx(plain.metrics)
    assert np.array_equal(native.image_counts, plain.image_counts)
    assert native.metrics["nsd"] == 1.0 and native.metrics["hd95"] == 0.0  # a perfect model
    assert [(row.stem, row.height, row.width) for row in rows] == [("a", 32, 32), ("b", 32, 32), ("c", 32, 32)]


def test_a_large_original_is_scored_on_its_own_pixels() -> None:
    small, _ = discs(2, 32)
    _, large = discs(2, 128)  # the originals, 4x larger
    data = ImageSet(small, torch.zeros(2, 32, 32, dtype=torch.uint8), ("a", "b"))
    evaluation, rows = evaluate_native(
        Brightness(), data, list(large.numpy()), 2, loss_fn=build_loss("bce", "binary"), mode="binary", num_classes=2
    )
    tp, fp, fn = evaluation.image_counts[:, 0].T
    assert list(tp + fn) == [int(m.sum()) for m in large.numpy()]  # every original foreground pixel counted
    assert all((row.height, row.width) == (128, 128) for row in rows)
    # upsampled from 32 px, the disc's edge is a few pixels off, never more
    assert 0.9 < evaluation.metrics["dice"] < 1.0 and 0 < evaluation.metrics["hd95"] <= 4
    with pytest.raises(ValueError, match="1 original masks for 2 images"):
        evaluate_native(
            Brightness(),
            data,
            list(large.numpy()[:1]),
            2,
            loss_fn=build_loss("bce", "binary"),
            mode="binary",
            num_classes=2,
        )


def test_a_new_study_is_scored_at_the_original_resolution(workspace: Settings) -> None:
    from core.data.demo import create_demo_dataset
    from core.runtime.tuning import run_study
    from core.search.validation import spec_from_dict

    create_demo_dataset(workspace.datasets_dir, count=16, size=128)
    spec = spec_from_dict(
        {
            "name": "native",
            "dataset": "demo-cells",
            "image_size": 32,
            "sampler": "random",
            "pruner": "none",
            "budget": {"n_trials": 1, "max_epochs": 1},
            "preview_count": 2,
            "search_space": {
                "architecture": "ClassicUNet",
                "unet_start_filters": 4,
                "unet_depth": 2,
                "batch_size": 8,
                "epochs": 1,
            },
        }
    )
    study = run_study(spec, workspace, device="cpu")
    assert study.user_attrs[StudyAttr.EVALUATION] == NATIVE_EVALUATION and scored_natively(study)
    attrs = study.trials[0].user_attrs
    cases = attrs[TrialAttr.VAL_CASES]
    assert cases and all((row["height"], row["width"]) == (128, 128) for row in cases)
    assert {"name", "dice", "iou", "nsd", "hd95"} <= set(cases[0])
    assert not math.isnan(attrs[TrialAttr.VAL_METRICS]["nsd"]) and TrialAttr.TEST_CASES in attrs
    # the stored per-image counts are native pixels: each image's tp + fn is its 128-px foreground
    assert len(attrs[TrialAttr.VAL_IMAGE_COUNTS]) == len(cases)


def test_a_study_without_the_attribute_was_scored_at_training_size() -> None:
    class Old:
        user_attrs: dict = {}

    assert not scored_natively(Old())  # type: ignore[arg-type]
