"""Per-case Dice, IoU, NSD and HD95: hand-made masks, empty cases, and a brute-force reference."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import ndimage

from core.metrics.cases import case_mean, class_scores, mean_over_cases, summarise


def square(side: int, top: int, left: int, size: int = 32) -> np.ndarray:
    mask = np.zeros((size, size), np.uint8)
    mask[top : top + side, left : left + side] = 1
    return mask


@pytest.mark.parametrize("shift", [1, 2, 3])
def test_a_square_shifted_by_k_pixels(shift: int) -> None:
    truth, pred = square(10, 8, 8), square(10, 8, 8 + shift)
    (score,) = class_scores(pred, truth, 2)
    overlap = 10 * (10 - shift)
    assert score.dice == pytest.approx(2 * overlap / 200)
    assert score.iou == pytest.approx(overlap / (200 - overlap))
    assert score.hd95 == pytest.approx(shift)
    # within a tolerance of the shift every boundary pixel is close enough; below it, some are not
    assert class_scores(pred, truth, 2, tolerance=shift)[0].nsd == pytest.approx(1.0)
    assert class_scores(pred, truth, 2, tolerance=shift - 0.5)[0].nsd < 1.0


def test_spacing_scales_distances() -> None:
    truth, pred = square(10, 8, 8), square(10, 8, 10)  # shifted 2 columns
    (score,) = class_scores(pred, truth, 2, spacing=(1.0, 0.5))  # columns 0.5 mm apart
    assert score.hd95 == pytest.approx(1.0)
    assert class_scores(pred, truth, 2, tolerance=1.0, spacing=(1.0, 0.5))[0].nsd == pytest.approx(1.0)


def test_empty_cases_follow_the_nnunet_convention() -> None:
    empty = np.zeros((16, 16), np.uint8)
    (both,) = class_scores(empty, empty, 2)
    assert all(math.isnan(v) for v in (both.dice, both.iou, both.nsd, both.hd95))
    (missed,) = class_scores(empty, square(4, 2, 2, 16), 2)
    assert (missed.dice, missed.iou, missed.nsd) == (0.0, 0.0, 0.0)
    assert missed.hd95 == pytest.approx(math.hypot(16, 16))  # the worst distance the image allows
    (invented,) = class_scores(square(4, 2, 2, 16), empty, 2)
    assert invented.dice == 0.0 and invented.hd95 == pytest.approx(math.hypot(16, 16))
    assert math.isnan(case_mean([both])["dice"])


def test_multi_class_cases_score_each_foreground_class_and_average_present_ones() -> None:
    truth = square(8, 2, 2) + 2 * square(8, 20, 20)
    pred = truth.copy()
    pred[20:28, 20:28] = 0  # class 2 missed entirely
    one, two, three = class_scores(pred, truth, 4)
    assert (one.cls, one.dice, one.hd95) == (1, 1.0, 0.0)
    assert two.dice == 0.0 and math.isnan(three.dice)  # class 3: in neither
    assert case_mean([one, two, three])["dice"] == pytest.approx(0.5)
    assert (
        mean_over_cases(
            [
                {"dice": 1.0, "iou": 1.0, "nsd": 1.0, "hd95": 0.0},
                {"dice": math.nan, "iou": math.nan, "nsd": math.nan, "hd95": math.nan},
            ]
        )["dice"]
        == 1.0
    )


def test_bad_shapes_and_tolerances_are_refused() -> None:
    with pytest.raises(ValueError, match="one"):
        class_scores(np.zeros((4, 4)), np.zeros((4, 5)), 2)
    with pytest.raises(ValueError, match="tolerance"):
        class_scores(np.zeros((4, 4)), np.zeros((4, 4)), 2, tolerance=-1)


def test_summaries_leave_nan_cases_out() -> None:
    stats = summarise([0.5, math.nan, 1.0])
    assert stats["n"] == 2 and stats["mean"] == 0.75 and stats["median"] == 0.75
    assert stats["sd"] == pytest.approx(np.std([0.5, 1.0], ddof=1))
    assert summarise([math.nan])["n"] == 0


def _reference(pred: np.ndarray, truth: np.ndarray, tolerance: float) -> tuple[float, float]:
    """Surface Dice and HD95 by brute force: boundary pixels (the mask minus its erosion), all pairwise distances."""

    def edges(mask: np.ndarray) -> np.ndarray:
        return np.argwhere(mask & ~ndimage.binary_erosion(mask))

    a, b = edges(pred.astype(bool)), edges(truth.astype(bool))
    distances = np.sqrt(((a[:, None, :] - b[None, :, :]) ** 2).sum(-1))
    a_to_b, b_to_a = distances.min(1), distances.min(0)
    nsd = ((a_to_b <= tolerance).sum() + (b_to_a <= tolerance).sum()) / (len(a) + len(b))
    return float(nsd), float(max(np.percentile(a_to_b, 95), np.percentile(b_to_a, 95)))


@pytest.mark.parametrize("seed", range(5))
def test_boundary_scores_match_a_brute_force_reference_on_random_masks(seed: int) -> None:
    rng = np.random.default_rng(seed)
    blobs = [ndimage.gaussian_filter(rng.random((40, 40)), 3) for _ in range(2)]
    pred, truth = ((blob > np.median(blob)).astype(np.uint8) for blob in blobs)
    for tolerance in (1.0, 2.0, 4.0):
        (score,) = class_scores(pred, truth, 2, tolerance=tolerance)
        nsd, hd95 = _reference(pred, truth, tolerance)
        assert score.nsd == pytest.approx(nsd, abs=1e-6)
        assert score.hd95 == pytest.approx(hd95, abs=1e-6)
