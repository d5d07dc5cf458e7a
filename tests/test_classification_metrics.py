"""Classification metrics, losses and baselines against values computed by hand (scikit-learn's definitions)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from core.errors import SegTuneError
from core.metrics.baselines import majority_label, score_baselines, score_constant_label
from core.metrics.classification import (
    ClassificationMetrics,
    LabelOutputs,
    binary_auc,
    classification_scores,
    confusion_scores,
    roc_auc,
)
from core.metrics.label_predictions import LabelPredictions, confusion_matrix
from core.modeling.classification_losses import (
    CLASSIFICATION_LOSSES,
    SoftmaxFocalLoss,
    build_classification_loss,
    takes,
)

# Three classes, six images: predicted = argmax = [0, 0, 1, 1, 2, 2], truth = [0, 0, 0, 1, 1, 2].
LABELS = np.array([0, 0, 0, 1, 1, 2])
PROBABILITIES = np.array(
    [[0.7, 0.2, 0.1], [0.6, 0.3, 0.1], [0.3, 0.5, 0.2], [0.2, 0.6, 0.2], [0.1, 0.3, 0.6], [0.2, 0.2, 0.6]],
    dtype=np.float32,
)


def test_confusion_matrix_rows_are_truth_columns_are_predictions() -> None:
    assert confusion_matrix(LABELS, PROBABILITIES.argmax(1), 3).tolist() == [[2, 1, 0], [0, 1, 1], [0, 0, 1]]


def test_three_class_scores_match_hand_computed_values() -> None:
    scores = classification_scores(LabelOutputs(LABELS, PROBABILITIES))
    assert scores["accuracy"] == pytest.approx(4 / 6)
    assert scores["precision_macro"] == pytest.approx((1 + 0.5 + 0.5) / 3)  # per class tp / predicted: 2/2, 1/2, 1/2
    assert scores["recall_macro"] == pytest.approx((2 / 3 + 1 / 2 + 1) / 3)  # per class tp / true: 2/3, 1/2, 1/1
    assert scores["balanced_accuracy"] == pytest.approx((2 / 3 + 1 / 2 + 1) / 3)
    assert scores["f1_macro"] == pytest.approx((4 / 5 + 2 / 4 + 2 / 3) / 3)  # 2tp / (2tp + fp + fn)
    # one-vs-rest AUCs by counting pairs (ties half): class 0: 9/9, class 1: 6.5/8, class 2: 4.5/5
    assert scores["roc_auc"] == pytest.approx((1 + 6.5 / 8 + 4.5 / 5) / 3)
    assert list(scores) == ["accuracy", "balanced_accuracy", "precision_macro", "recall_macro", "f1_macro", "roc_auc"]


def test_binary_auc_is_class_one_and_counts_ties_half() -> None:
    labels = np.array([0, 0, 1, 1, 1])
    p1 = np.array([0.1, 0.4, 0.35, 0.8, 0.4])
    # positive .35 beats .1 only; .8 beats both; .4 beats .1 and ties .4: (1 + 2 + 1.5) / (3 * 2)
    assert binary_auc(labels == 1, p1) == pytest.approx(4.5 / 6)
    assert roc_auc(labels, np.stack([1 - p1, p1], axis=1)) == pytest.approx(4.5 / 6)
    assert roc_auc(labels, np.stack([p1, 1 - p1], axis=1)) == pytest.approx(1.5 / 6)  # class 1's column is what counts


def test_a_never_predicted_class_scores_zero_and_a_single_true_class_has_chance_auc() -> None:
    never = confusion_scores(np.array([[2, 0], [1, 0]]))  # class 1 never predicted
    assert never["precision_macro"] == pytest.approx((2 / 3 + 0) / 2)
    assert never["recall_macro"] == never["balanced_accuracy"] == pytest.approx(0.5)
    assert never["f1_macro"] == pytest.approx((4 / 5 + 0) / 2)
    only_zero = confusion_scores(np.array([[2, 1], [0, 0]]))  # class 1 predicted, never true
    assert only_zero["balanced_accuracy"] == pytest.approx(2 / 3)  # classes present in the truth only
    assert only_zero["recall_macro"] == pytest.approx((2 / 3 + 0) / 2)  # classes in truth or predictions
    assert roc_auc(np.array([0, 0, 0]), np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]])) == 0.5
    three = roc_auc(
        np.array([0, 0, 1, 1]), np.array([[0.8, 0.1, 0.1], [0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.2, 0.7, 0.1]])
    )
    assert three == pytest.approx(1.0)  # class 2 has no positive image: left out, not a free 0.5


def test_accumulating_batches_on_the_device_equals_scoring_all_at_once() -> None:
    logits = torch.log(torch.from_numpy(PROBABILITIES))
    metrics = ClassificationMetrics(3)
    metrics.update(logits[:4], torch.from_numpy(LABELS[:4]))
    metrics.update(logits[4:], torch.from_numpy(LABELS[4:]).to(torch.uint8))
    assert metrics.compute() == pytest.approx(classification_scores(LabelOutputs(LABELS, PROBABILITIES)))
    outputs = metrics.outputs()
    assert outputs.labels.tolist() == LABELS.tolist() and np.allclose(outputs.probabilities, PROBABILITIES, atol=1e-6)
    assert metrics.predicted_fractions() == pytest.approx([2 / 6, 2 / 6, 2 / 6])
    assert metrics.target_fractions() == pytest.approx([3 / 6, 2 / 6, 1 / 6])
    with pytest.raises(SegTuneError, match=r"must be \(N, 3\)"):
        metrics.update(torch.zeros(2, 2), torch.zeros(2))
    with pytest.raises(SegTuneError, match="labels must be"):
        metrics.update(torch.zeros(2, 3), torch.zeros(2, 4))
    with pytest.raises(SegTuneError, match="no batches"):
        ClassificationMetrics(3).compute()


def test_label_predictions_round_trip_through_the_artifact_format(tmp_path) -> None:
    predictions = LabelPredictions(
        ("a", "b", "c", "d", "e", "f"), LABELS, PROBABILITIES, np.array([0, 0, 1, 1, 2, 2]), ("x", "y", "z")
    )
    loaded = LabelPredictions.load(predictions.save(tmp_path / "p.npz").read_bytes())
    assert loaded.stems == predictions.stems and loaded.classes == ("x", "y", "z")
    assert loaded.predicted.tolist() == [0, 0, 1, 1, 2, 2] and loaded.folds.tolist() == [0, 0, 1, 1, 2, 2]
    assert loaded.confidence.tolist() == pytest.approx([0.7, 0.6, 0.5, 0.6, 0.6, 0.6])
    assert loaded.correct.tolist() == [True, True, False, True, False, True]
    assert loaded.confusion_matrix().tolist() == [[2, 1, 0], [0, 1, 1], [0, 0, 1]]
    with pytest.raises(ValueError, match="probabilities must be"):
        LabelPredictions(
            ("a",), np.zeros(1, np.int64), np.ones((1, 2), np.float32), np.zeros(1, np.int64), ("x", "y", "z")
        )


def test_cross_entropy_takes_label_smoothing_and_focal_weighs_easy_images_less() -> None:
    logits = torch.tensor([[2.0, 0.0], [0.5, 0.0], [0.0, 3.0]])
    labels = torch.tensor([0, 1, 1], dtype=torch.uint8)
    log_p = torch.log_softmax(logits, 1)
    nll = -log_p[torch.arange(3), labels.long()]
    plain = build_classification_loss("cross_entropy")(logits, labels)
    assert float(plain) == pytest.approx(float(nll.mean()))
    smoothed = build_classification_loss("cross_entropy", {"label_smoothing": 0.2, "lr": 1.0})(logits, labels)
    expected = (0.8 * nll - 0.2 * log_p.mean(1)).mean()  # (1 - e) * NLL + e * mean over classes of -log p
    assert float(smoothed) == pytest.approx(float(expected))
    focal = SoftmaxFocalLoss()(logits, labels)
    p_true = nll.neg().exp()
    assert float(focal) == pytest.approx(float(((1 - p_true) ** 2 * nll).mean()))
    assert float(focal) < float(plain)
    assert (
        takes("cross_entropy", "label_smoothing")
        and not takes("focal", "label_smoothing")
        and not takes("dice", "label_smoothing")
    )
    assert set(CLASSIFICATION_LOSSES.names) == {"cross_entropy", "focal"}
    with pytest.raises(SegTuneError, match=r"unknown classification loss 'dice'; valid: \['cross_entropy', 'focal'\]"):
        build_classification_loss("dice")


def test_majority_class_baseline_scores_its_share_and_chance() -> None:
    train = torch.tensor([1, 1, 0, 1, 2])
    assert majority_label(train, 3) == {"majority_class": 1}
    scores = score_constant_label(torch.tensor([0, 1, 1, 2]), 1, 3)
    assert scores["accuracy"] == pytest.approx(0.5) and scores["balanced_accuracy"] == pytest.approx(1 / 3)
    assert scores["roc_auc"] == 0.5 and scores["precision_macro"] == pytest.approx((0 + 0.5 + 0) / 3)
    records = score_baselines(
        {"val": [torch.tensor([1, 1, 0, 0]), torch.tensor([1, 1, 1, 0])]},
        {"majority_class": 1},
        "multiclass",
        2,
        task="classification",
    )
    assert records["majority_class"]["val"]["accuracy"] == pytest.approx((0.5 + 0.75) / 2)  # the mean over folds
    assert not math.isnan(records["majority_class"]["val"]["f1_macro"])
