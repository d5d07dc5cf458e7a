"""Metrics against values worked out by hand on 2x2 masks; accumulation; zero-division rules."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from core.errors import SegTuneError
from core.metrics.segmentation import (
    METRIC_NAMES,
    SegmentationMetrics,
    image_dice_scores,
    mean_image_dice,
    per_image_dice,
    pooled_dice,
)

BIG = 20.0


def _binary_logits(pred: list[list[list[int]]]) -> torch.Tensor:
    return (torch.tensor(pred).float() * 2 - 1).unsqueeze(1) * BIG


def _multiclass_logits(pred: list[list[list[int]]], num_classes: int) -> torch.Tensor:
    return torch.nn.functional.one_hot(torch.tensor(pred), num_classes).permute(0, 3, 1, 2).float()


def test_binary_one_of_each() -> None:
    # pred [[1, 1], [0, 0]] vs target [[1, 0], [1, 0]]: 1 TP, 1 FP, 1 FN, 1 TN
    metrics = SegmentationMetrics("binary", 2)
    metrics.update(_binary_logits([[[1, 1], [0, 0]]]), torch.tensor([[[1, 0], [1, 0]]]))
    result = metrics.compute()
    assert set(result) == set(METRIC_NAMES)
    assert result["dice"] == pytest.approx(0.5)  # 2*1 / (2*1 + 1 + 1)
    assert result["f1"] == result["dice"]
    assert result["iou"] == pytest.approx(1 / 3)  # 1 / (1 + 1 + 1)
    assert result["miou"] == pytest.approx(1 / 3)  # background has the same counts mirrored
    assert result["pixel_accuracy"] == pytest.approx(0.5)
    assert result["precision"] == pytest.approx(0.5)
    assert result["recall"] == pytest.approx(0.5)
    assert result["specificity"] == pytest.approx(0.5)


def test_binary_asymmetric_counts_and_miou() -> None:
    # 2x2 target with 1 foreground pixel; prediction marks it and one more: TP 1, FP 1, FN 0, TN 2
    metrics = SegmentationMetrics("binary", 2)
    metrics.update(_binary_logits([[[1, 1], [0, 0]]]), torch.tensor([[[1, 0], [0, 0]]]))
    result = metrics.compute()
    assert result["dice"] == pytest.approx(2 / 3)
    assert result["iou"] == pytest.approx(1 / 2)
    assert result["precision"] == pytest.approx(1 / 2)
    assert result["recall"] == pytest.approx(1.0)
    assert result["specificity"] == pytest.approx(2 / 3)
    assert result["pixel_accuracy"] == pytest.approx(3 / 4)
    # background: TP 2 (TN above), FP 0, FN 1 -> IoU 2/3; mean with 1/2
    assert result["miou"] == pytest.approx((1 / 2 + 2 / 3) / 2)


def test_threshold_moves_the_binary_decision() -> None:
    logits = torch.logit(torch.tensor([[[[0.6, 0.4]]]]))
    target = torch.tensor([[[1, 1]]])
    low, high = SegmentationMetrics("binary", 2, threshold=0.3), SegmentationMetrics("binary", 2, threshold=0.5)
    low.update(logits, target)
    high.update(logits, target)
    assert low.compute()["recall"] == pytest.approx(1.0)
    assert high.compute()["recall"] == pytest.approx(0.5)


def test_multi_batch_accumulation_equals_one_big_batch() -> None:
    torch.manual_seed(0)
    logits, target = torch.randn(6, 4, 8, 8), torch.randint(0, 4, (6, 8, 8))
    whole, parts = SegmentationMetrics("multiclass", 4), SegmentationMetrics("multiclass", 4)
    whole.update(logits, target)
    for chunk in range(3):
        parts.update(logits[2 * chunk : 2 * chunk + 2], target[2 * chunk : 2 * chunk + 2])
    assert parts.compute() == pytest.approx(whole.compute())
    parts.reset()
    parts.update(logits[:2], target[:2])
    assert parts.compute() != pytest.approx(whole.compute())  # reset forgot the earlier batches


def test_multiclass_macro_and_miou_by_hand() -> None:
    # target [[0, 1], [2, 2]], prediction [[0, 1], [1, 2]]
    # class 0: TP 1 FP 0 FN 0 -> IoU 1, dice 1
    # class 1: TP 1 FP 1 FN 0 -> IoU 1/2, dice 2/3, precision 1/2, recall 1
    # class 2: TP 1 FP 0 FN 1 -> IoU 1/2, dice 2/3, precision 1, recall 1/2
    metrics = SegmentationMetrics("multiclass", 3)
    metrics.update(_multiclass_logits([[[0, 1], [1, 2]]], 3), torch.tensor([[[0, 1], [2, 2]]]))
    result = metrics.compute()
    assert result["iou"] == pytest.approx(1 / 2)  # macro over classes 1, 2
    assert result["miou"] == pytest.approx((1 + 1 / 2 + 1 / 2) / 3)  # background included
    assert result["dice"] == pytest.approx(2 / 3)
    assert result["precision"] == pytest.approx(3 / 4)
    assert result["recall"] == pytest.approx(3 / 4)
    assert result["pixel_accuracy"] == pytest.approx(3 / 4)
    # specificity: class 1 TN 2 FP 1 -> 2/3; class 2 TN 2 FP 0 -> 1
    assert result["specificity"] == pytest.approx((2 / 3 + 1) / 2)


def test_empty_mask_predicted_empty_is_perfect() -> None:
    metrics = SegmentationMetrics("binary", 2)
    metrics.update(_binary_logits([[[0, 0], [0, 0]]]), torch.zeros(1, 2, 2, dtype=torch.long))
    assert metrics.compute() == pytest.approx({name: 1.0 for name in METRIC_NAMES})


def test_missed_or_invented_foreground_scores_zero() -> None:
    missed = SegmentationMetrics("binary", 2)
    missed.update(_binary_logits([[[0, 0], [0, 0]]]), torch.tensor([[[1, 0], [0, 0]]]))
    result = missed.compute()
    assert (result["dice"], result["precision"], result["recall"]) == (0.0, 0.0, 0.0)  # precision is 0/0 with an FN
    invented = SegmentationMetrics("binary", 2)
    invented.update(_binary_logits([[[1, 0], [0, 0]]]), torch.zeros(1, 2, 2, dtype=torch.long))
    result = invented.compute()
    assert (result["dice"], result["recall"], result["specificity"]) == (0.0, 0.0, pytest.approx(3 / 4))


def test_classes_absent_everywhere_are_left_out_of_means() -> None:
    # 4 classes, class 3 in neither target nor prediction: means over classes 1 and 2 only
    metrics = SegmentationMetrics("multiclass", 4)
    metrics.update(_multiclass_logits([[[0, 1], [2, 2]]], 4), torch.tensor([[[0, 1], [2, 2]]]))
    result = metrics.compute()
    assert result["dice"] == pytest.approx(1.0) and result["miou"] == pytest.approx(1.0)


def test_absent_class_gets_no_free_score_in_an_imperfect_multiclass_mean() -> None:
    # 4 classes, class 3 in neither target nor prediction; the prediction is wrong on one pixel.
    # target [[0, 1], [2, 2]], prediction [[0, 1], [1, 2]]: classes 1 and 2 have dice 2/3, IoU 1/2.
    # A mean giving class 3 a free 1.0 would read dice 7/9 and mIoU (1 + 1/2 + 1/2 + 1) / 4.
    metrics = SegmentationMetrics("multiclass", 4)
    metrics.update(_multiclass_logits([[[0, 1], [1, 2]]], 4), torch.tensor([[[0, 1], [2, 2]]]))
    result = metrics.compute()
    assert result["dice"] == pytest.approx(2 / 3)
    assert result["f1"] == pytest.approx(2 / 3)
    assert result["iou"] == pytest.approx(1 / 2)
    assert result["miou"] == pytest.approx((1 + 1 / 2 + 1 / 2) / 3)
    assert result["precision"] == pytest.approx(3 / 4) and result["recall"] == pytest.approx(3 / 4)
    assert result["specificity"] == pytest.approx((2 / 3 + 1) / 2)
    # a class predicted but absent from the target is present: it scores 0, not a free 1.0
    invented = SegmentationMetrics("multiclass", 4)
    invented.update(_multiclass_logits([[[0, 1], [3, 2]]], 4), torch.tensor([[[0, 1], [2, 2]]]))
    assert invented.compute()["dice"] == pytest.approx((1 + 2 / 3 + 0) / 3)


def test_no_class_present_means_a_perfect_score() -> None:
    metrics = SegmentationMetrics("multiclass", 3)
    metrics.update(_multiclass_logits([[[0, 0], [0, 0]]], 3), torch.zeros(1, 2, 2, dtype=torch.long))
    assert metrics.compute() == pytest.approx({name: 1.0 for name in METRIC_NAMES})


def test_bad_input_is_named() -> None:
    with pytest.raises(ValueError, match="3 classes.*'multiclass'"):
        SegmentationMetrics("binary", 3)
    with pytest.raises(ValueError, match="unknown mode 'multilabel'"):
        SegmentationMetrics("multilabel", 3)
    metrics = SegmentationMetrics("multiclass", 3)
    with pytest.raises(ValueError, match=r"\(N, 3, H, W\)"):
        metrics.update(torch.zeros(1, 1, 2, 2), torch.zeros(1, 2, 2, dtype=torch.long))
    with pytest.raises(SegTuneError) as info:
        metrics.update(torch.zeros(2, 3, 4, 5), torch.zeros(2, 5, 4, dtype=torch.long))
    assert str(info.value) == "target must be (N, H, W) = (2, 4, 5), got (2, 5, 4)"
    with pytest.raises(ValueError, match="call update"):
        metrics.compute()


def test_per_image_dice() -> None:
    target = np.array([[0, 1], [1, 0]])
    assert per_image_dice(np.array([[0, 1], [0, 0]]), target, 2) == pytest.approx(2 / 3)
    assert per_image_dice(np.zeros((2, 2), int), np.zeros((2, 2), int), 2) == 1.0
    # classes 1 (dice 1) and 2 (dice 0); class 3 absent from both is left out
    assert per_image_dice(np.array([[1, 2], [0, 0]]), np.array([[1, 0], [2, 0]]), 4) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="shape"):
        per_image_dice(np.zeros((2, 2)), np.zeros((3, 3)), 2)


def test_bad_modes_list_the_valid_ones() -> None:
    with pytest.raises(ValueError, match=r"unknown mode 'multilabel'; valid: \['binary', 'multiclass'\]"):
        SegmentationMetrics("multilabel", 2)


def test_per_image_and_pooled_dice_from_counts_by_hand() -> None:
    """(images, foreground classes, 3) tp/fp/fn: a class empty in an image's truth and prediction is
    left out of that image, an image with nothing is NaN (left out of the mean), and the pooled Dice
    sums the counts first and leaves out the classes absent everywhere (class 3 here)."""
    counts = np.array(
        [
            [[1, 1, 0], [0, 0, 0], [0, 0, 0]],  # class 1: 2/3; class 2 left out -> 2/3
            [[1, 0, 3], [0, 1, 0], [0, 0, 0]],  # class 1: 2/5; class 2: 0 -> 0.2
            [[0, 0, 0], [0, 0, 0], [0, 0, 0]],  # nothing anywhere -> NaN
            [[3, 0, 0], [1, 0, 1], [0, 0, 0]],  # 1.0 and 2/3 -> 5/6
        ]
    )
    scores = image_dice_scores(counts)
    assert scores[[0, 1, 3]] == pytest.approx([2 / 3, 0.2, 5 / 6]) and np.isnan(scores[2])
    assert mean_image_dice(counts) == pytest.approx((2 / 3 + 0.2 + 5 / 6) / 3)
    assert pooled_dice(counts) == pytest.approx(
        (10 / 14 + 2 / 4) / 2
    )  # class 1: tp 5, fp 1, fn 3; class 2: tp 1, fp 1, fn 1
    assert pooled_dice(np.zeros((2, 3, 3))) == 1.0 and mean_image_dice(np.zeros((2, 3, 3))) == 1.0
    assert pooled_dice(np.array([[[2, 0, 0], [0, 1, 0]]])) == 0.5  # one invented pixel makes a class present (Dice 0)


def test_image_counts_and_class_fractions_by_hand() -> None:
    metrics = SegmentationMetrics("multiclass", 3)
    for name in ("image_counts", "predicted_fractions", "target_fractions"):
        with pytest.raises(SegTuneError, match=rf"^no batches seen: call update\(\) before {name}\(\)$"):
            getattr(metrics, name)()
    pred = [[[0, 1], [1, 2]], [[0, 0], [0, 2]]]
    target = [[[0, 1], [2, 2]], [[1, 1], [0, 0]]]
    metrics.update(_multiclass_logits(pred, 3), torch.tensor(target))
    # image 0: class 1 tp 1, fp 1 (a 2 called 1); class 2 tp 1, fn 1. Image 1: class 1 fn 2; class 2 fp 1
    counts = metrics.image_counts()
    assert counts.dtype == np.int64 and counts.tolist() == [[[1, 1, 0], [1, 0, 1]], [[0, 0, 2], [0, 1, 0]]]
    # over all 8 pixels: background's tp, fp, fn, tn are 2, 2, 1, 3 and class 1's 1, 1, 2, 4 (same total)
    assert metrics.predicted_fractions().tolist() == pytest.approx([4 / 8, 2 / 8, 2 / 8])
    assert metrics.target_fractions().tolist() == pytest.approx([3 / 8, 3 / 8, 2 / 8])
