"""Loss registry: every name builds in both modes and gives hand-computable values on tiny tensors."""

from __future__ import annotations

import math

import pytest
import torch

from core.modeling.losses import LOSSES, WeightedSum, build_loss

BIG = 20.0  # a logit this large is a certain prediction (sigmoid/softmax within 1e-8 of 0 or 1)

# 1x2x2 binary target: one foreground pixel out of four
BINARY_TARGET = torch.tensor([[[0, 1], [0, 0]]])
# 1x2x2 multiclass target with classes 0, 1, 2
MULTI_TARGET = torch.tensor([[[0, 1], [2, 2]]])


def _perfect_binary_logits(target: torch.Tensor) -> torch.Tensor:
    return (target.float() * 2 - 1).unsqueeze(1) * BIG


def _perfect_multiclass_logits(target: torch.Tensor, num_classes: int) -> torch.Tensor:
    return torch.nn.functional.one_hot(target, num_classes).permute(0, 3, 1, 2).float() * 2 * BIG - BIG


@pytest.mark.parametrize("name", LOSSES.names)
@pytest.mark.parametrize("mode", ["binary", "multiclass"])
def test_every_loss_is_near_zero_for_a_perfect_prediction_and_differentiable(name: str, mode: str) -> None:
    if mode == "binary":
        target, logits = BINARY_TARGET, _perfect_binary_logits(BINARY_TARGET)
    else:
        target, logits = MULTI_TARGET, _perfect_multiclass_logits(MULTI_TARGET, 3)
    loss_fn = build_loss(name, mode)
    perfect = loss_fn(logits, target)
    assert perfect.ndim == 0 and float(perfect) == pytest.approx(0.0, abs=1e-4)
    wrong = (-logits).requires_grad_()
    bad = loss_fn(wrong, target)
    assert float(bad.detach()) > 0.3  # a confidently wrong prediction is clearly penalised
    bad.backward()
    assert wrong.grad is not None and torch.isfinite(wrong.grad).all()


def test_bce_known_values() -> None:
    # logits 0 everywhere: BCE = ln 2 for every pixel; cross entropy over 3 classes = ln 3
    assert float(build_loss("bce", "binary")(torch.zeros(1, 1, 2, 2), BINARY_TARGET)) == pytest.approx(math.log(2))
    assert float(build_loss("bce", "multiclass")(torch.zeros(1, 3, 2, 2), MULTI_TARGET)) == pytest.approx(math.log(3))


def test_dice_and_jaccard_known_values() -> None:
    # predict the foreground pixel plus one false positive: soft dice 2*1/(2+1) -> loss 1/3;
    # jaccard 1/2 -> loss 1/2 (smp averages over the foreground channel only in binary mode)
    logits = torch.full((1, 1, 2, 2), -BIG)
    logits[0, 0, 0, 1] = BIG
    logits[0, 0, 1, 1] = BIG
    assert float(build_loss("dice", "binary")(logits, BINARY_TARGET)) == pytest.approx(1 / 3, abs=1e-4)
    assert float(build_loss("jaccard", "binary")(logits, BINARY_TARGET)) == pytest.approx(1 / 2, abs=1e-4)


def test_tversky_penalises_missed_foreground_more_than_false_alarms() -> None:
    loss = build_loss("tversky", "binary")
    target = torch.tensor([[[1, 1], [0, 0]]])
    missed = torch.tensor([[[[BIG, -BIG], [-BIG, -BIG]]]])  # 1 TP, 1 FN
    extra = torch.tensor([[[[BIG, BIG], [BIG, -BIG]]]])  # 2 TP, 1 FP
    # 1 - TP / (TP + 0.3 FP + 0.7 FN)
    assert float(loss(missed, target)) == pytest.approx(1 - 1 / 1.7, abs=1e-4)
    assert float(loss(extra, target)) == pytest.approx(1 - 2 / 2.3, abs=1e-4)


@pytest.mark.parametrize("name", [loss.name for loss in LOSSES if loss.parts])
@pytest.mark.parametrize("mode", ["binary", "multiclass"])
def test_hybrid_is_the_weighted_sum_of_its_parts(name: str, mode: str) -> None:
    torch.manual_seed(0)
    channels, target = (1, BINARY_TARGET) if mode == "binary" else (3, MULTI_TARGET)
    logits = torch.randn(1, channels, 2, 2)
    first, second = (float(build_loss(part, mode)(logits, target)) for part in LOSSES.get(name).parts)
    assert float(build_loss(name, mode)(logits, target)) == pytest.approx(0.5 * first + 0.5 * second, rel=1e-5)
    weighted = build_loss(name, mode, hybrid_weights=(0.2, 0.8))
    assert isinstance(weighted, WeightedSum) and weighted.weights == (0.2, 0.8)
    assert float(weighted(logits, target)) == pytest.approx(0.2 * first + 0.8 * second, rel=1e-5)


def test_uint8_targets_are_accepted() -> None:
    logits = _perfect_multiclass_logits(MULTI_TARGET, 3)
    assert float(build_loss("dice_bce", "multiclass")(logits, MULTI_TARGET.to(torch.uint8))) == pytest.approx(
        0.0, abs=1e-4
    )


def test_unknown_names_list_options() -> None:
    with pytest.raises(ValueError, match="unknown loss 'ssim'.*dice_bce"):
        build_loss("ssim", "binary")
    with pytest.raises(ValueError, match="unknown loss mode 'multilabel'.*multiclass"):
        build_loss("dice", "multilabel")
    with pytest.raises(ValueError, match="2 losses but 1 weights"):
        build_loss("dice_bce", "binary", hybrid_weights=(1.0,))
