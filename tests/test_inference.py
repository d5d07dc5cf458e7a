"""The one inference function: how outputs are read, mirror TTA and fold ensembles."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from core.modeling.inference import (
    MIRROR_AXES,
    class_indices,
    class_probabilities,
    predict_indices,
    predict_probabilities,
    probabilities,
)


class Fixed(nn.Module):
    """Returns stored logits whatever the input (so flips of the input do not change them)."""

    def __init__(self, logits: torch.Tensor):
        super().__init__()
        self.logits = logits

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.logits.expand(len(images), *self.logits.shape[1:])


class LeftHalf(nn.Module):
    """One logit per pixel: high on the left half of the image, whatever the pixels (not flip-equivariant)."""

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        width = images.shape[-1]
        logits = torch.full((len(images), 1, *images.shape[-2:]), -10.0)
        logits[..., : width // 2] = 10.0
        return logits


def test_one_channel_is_a_sigmoid_with_an_inclusive_threshold() -> None:
    logits = torch.tensor([[[[2.0, -2.0, 0.0]]]])
    probs = probabilities(logits)
    assert probs.shape == (1, 1, 1, 3)
    assert class_indices(probs).tolist() == [[[1, 0, 1]]]  # sigmoid(0) == 0.5 counts as foreground
    assert class_indices(probs, threshold=0.95).tolist() == [[[0, 0, 0]]]
    assert class_probabilities(probs)[0, :, 0, 0].tolist() == pytest.approx(
        [1 - torch.sigmoid(torch.tensor(2.0)).item(), torch.sigmoid(torch.tensor(2.0)).item()]
    )


def test_several_channels_are_a_softmax_and_an_argmax() -> None:
    multi = torch.tensor([[[[0.1, 3.0]], [[2.0, 0.0]], [[0.0, 1.0]]]])  # (1, 3, 1, 2)
    probs = probabilities(multi)
    assert probs.sum(dim=1).flatten().tolist() == pytest.approx([1.0, 1.0])
    assert class_indices(probs).tolist() == [[[1, 0]]]
    assert class_indices(probs).dtype == torch.long
    labels = probabilities(torch.tensor([[0.0, 1.0], [3.0, -1.0]]))  # a classifier: (N, K)
    assert class_indices(labels).tolist() == [1, 0]
    assert class_probabilities(labels) is labels


def test_tta_flips_a_mask_back_before_averaging() -> None:
    images = torch.zeros(2, 1, 4, 4)
    plain = predict_probabilities(LeftHalf(), images)
    mirrored = predict_probabilities(LeftHalf(), images, tta=True)
    # the left-half model sees the image mirrored left-right in half of the passes; flipped back,
    # those passes say "right half", so every pixel averages to 0.5
    assert plain[0, 0, 0].tolist() == pytest.approx([1.0, 1.0, 0.0, 0.0], abs=1e-4)
    assert mirrored[0, 0, 0].tolist() == pytest.approx([0.5, 0.5, 0.5, 0.5], abs=1e-4)
    assert len(MIRROR_AXES) == 4


def test_tta_of_a_classifier_averages_labels_without_flipping_them() -> None:
    model = Fixed(torch.tensor([[0.0, 2.0]]))
    images = torch.rand(3, 1, 8, 8)
    assert torch.allclose(predict_probabilities(model, images, tta=True), predict_probabilities(model, images))


def test_an_ensemble_averages_probabilities() -> None:
    images = torch.zeros(1, 1, 2, 2)
    sure, unsure = Fixed(torch.full((1, 1, 2, 2), 10.0)), Fixed(torch.full((1, 1, 2, 2), -0.5))
    expected = (torch.sigmoid(torch.tensor(10.0)) + torch.sigmoid(torch.tensor(-0.5))) / 2
    averaged = predict_probabilities([sure, unsure], images)
    assert averaged.flatten().tolist() == pytest.approx([expected.item()] * 4)
    assert predict_indices([sure, unsure], images).flatten().tolist() == [1, 1, 1, 1]
    assert predict_indices([sure, unsure], images, threshold=0.8).flatten().tolist() == [0, 0, 0, 0]
    with pytest.raises(ValueError, match="at least one model"):
        predict_probabilities([], images)
