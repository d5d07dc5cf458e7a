from __future__ import annotations

import math
import time

import pytest
import torch

from core.contract import Task
from core.data.tensors import AugmentConfig, ImageSet
from core.errors import SegTuneError
from core.metrics.catalogue import split_metrics
from core.modeling.build import build_model
from core.modeling.config import ModelConfig
from core.modeling.losses import build_loss
from core.modeling.optimizers import OPTIMIZERS, SCHEDULES, OptimizerConfig, build_optimizer, build_scheduler
from core.training.loop import (
    EpochRecord,
    TrainConfig,
    TrainResult,
    evaluate,
    evaluate_detailed,
    measure_throughput,
    predict,
    train_model,
)
from tests.helpers.segmentation import squares, tiny_unet


def test_registries_cover_every_option_name() -> None:
    model = tiny_unet()
    for name in OPTIMIZERS.names:
        optimizer = build_optimizer(model.parameters(), OptimizerConfig(name=name, momentum=0.9, nesterov=True))
        assert isinstance(optimizer, torch.optim.Optimizer)
        for schedule in SCHEDULES.names:
            build_scheduler(schedule, optimizer, epochs=10)
    with pytest.raises(SegTuneError, match="adamw"):
        build_optimizer(model.parameters(), OptimizerConfig(name="lion"))


def test_a_trials_params_become_the_training_configuration() -> None:
    """What the objective hands the loop: every tuned value, the selection metric, and no momentum
    or Nesterov for a space that does not tune them (not OptimizerConfig's SGD default of 0.9)."""
    params = {
        "optimizer": "sgd",
        "lr": 0.05,
        "weight_decay": 1e-4,
        "epochs": 7,
        "batch_size": 16,
        "scheduler": "cosine",
        "loss": "focal",
        "aug_hflip": True,
    }
    config = TrainConfig.from_params(params, patience=3, seed=11, select_metric="iou", select_maximize=True)
    assert config == TrainConfig(
        epochs=7,
        batch_size=16,
        optimizer=OptimizerConfig(name="sgd", lr=0.05, weight_decay=1e-4, momentum=0.0, nesterov=False),
        scheduler="cosine",
        loss="focal",
        patience=3,
        augment=AugmentConfig(hflip=True),
        seed=11,
        select_metric="iou",
        select_maximize=True,
    )
    tuned = TrainConfig.from_params(
        {**params, "momentum": 0.8, "nesterov": True, "label_smoothing": 0.1}, patience=3, seed=11
    )
    assert (tuned.optimizer.momentum, tuned.optimizer.nesterov, tuned.label_smoothing) == (0.8, True, 0.1)
    assert (tuned.select_metric, tuned.select_maximize) == ("loss", False)  # val loss unless told


def test_training_learns_squares_and_keeps_the_best_epoch() -> None:
    train, val = squares(24, seed=1), squares(8, seed=2)
    config = TrainConfig(
        epochs=12,
        batch_size=8,
        optimizer=OptimizerConfig(lr=0.02),
        loss="dice_bce",
        patience=12,
        select_metric="dice",
        select_maximize=True,
    )
    seen: list[EpochRecord] = []
    model = tiny_unet()
    result = train_model(model, train, val, config, mode="binary", num_classes=2, on_epoch=seen.append)
    assert [record.epoch for record in seen] == list(range(1, 13))
    dices = [record.val["dice"] for record in result.history]
    assert result.val_metrics["dice"] == max(dices)
    assert max(dices) > 0.7, dices  # a constant prediction scores at most ~0.2 here
    assert result.history[-1].train_loss < result.history[0].train_loss
    assert set(result.history[0].to_dict()) >= {
        "epoch",
        "train_loss",
        "lr",
        "epoch_time_s",
        *(f"val_{name}" for name in split_metrics()),
    }
    # the kept weights are the best epoch's: evaluating them reproduces its score
    model.load_state_dict(result.best_state)
    again = evaluate(model, val, 8, loss_fn=build_loss("dice_bce", "binary"), mode="binary", num_classes=2)
    assert again["dice"] == pytest.approx(result.val_metrics["dice"], abs=1e-5)
    masks = predict(model, val, 4)
    assert masks.shape == (8, 32, 32) and set(masks.ravel().tolist()) <= {0, 1}
    assert measure_throughput(model, val, 4) > 0


class Brightness(torch.nn.Module):
    """Foreground logit = gain * (pixel - 0.5) + shift: with shift 0 it finds the squares exactly;
    a large negative shift predicts no foreground at all. Kept fixed by lr 0; no batch norm."""

    def __init__(self) -> None:
        super().__init__()
        self.gain = torch.nn.Parameter(torch.tensor(40.0))
        self.shift = torch.nn.Parameter(torch.tensor(0.0))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.gain * (images[:, :1] - 0.5) + self.shift


@pytest.mark.parametrize(("select_metric", "maximize"), [("dice", True), ("loss", False)])
def test_the_best_epoch_is_kept_when_later_epochs_are_worse(select_metric: str, maximize: bool) -> None:
    """Epoch 2 is perfect, epochs 1, 3 and 4 are not: the result must be epoch 2's, not the last."""
    train, val = squares(8, seed=6), squares(4, seed=7)
    model = Brightness()
    model.shift.data.fill_(-60.0)  # epoch 1: no foreground at all
    next_shift = {1: 0.0, 2: 15.0, 3: -60.0}  # epoch 2 exact, epoch 3 all foreground, epoch 4 none

    def degrade(record: EpochRecord) -> None:
        with torch.no_grad():
            model.shift.fill_(next_shift.get(record.epoch, -60.0))

    config = TrainConfig(
        epochs=4,
        batch_size=4,
        optimizer=OptimizerConfig(name="sgd", lr=0.0),
        patience=10,
        select_metric=select_metric,
        select_maximize=maximize,
    )
    result = train_model(model, train, val, config, mode="binary", num_classes=2, on_epoch=degrade)
    dices = [record.val["dice"] for record in result.history]
    assert dices[0] == 0.0 and dices[1] == pytest.approx(1.0) and dices[2] < 0.6 and dices[3] == 0.0, dices
    assert result.best_epoch == 2
    assert result.val_metrics == result.history[1].val
    assert result.best_state["shift"].item() == 0.0  # the weights of epoch 2, not of the last epoch
    assert model.shift.item() == -60.0  # the model itself ends at its last (bad) epoch


def test_early_stopping_and_callbacks_can_stop_training() -> None:
    train, val = squares(8, seed=3), squares(4, seed=4)
    frozen = TrainConfig(epochs=20, batch_size=4, optimizer=OptimizerConfig(lr=0.0), patience=2)
    result = train_model(tiny_unet(), train, val, frozen, mode="binary", num_classes=2)
    assert result.stopped_early and len(result.history) == 3  # lr 0: val loss never improves after epoch 1

    class Stop(Exception):
        pass

    def stop_after_two(record: EpochRecord) -> None:
        if record.epoch == 2:
            raise Stop

    with pytest.raises(Stop):
        train_model(
            tiny_unet(),
            train,
            val,
            TrainConfig(epochs=5, batch_size=4),
            mode="binary",
            num_classes=2,
            on_epoch=stop_after_two,
        )


def test_augmented_multiclass_training_runs() -> None:
    data = squares(6, seed=5)
    data = ImageSet(images=data.images.repeat(1, 3, 1, 1), targets=data.targets * 2, stems=data.stems)
    model = build_model(
        ModelConfig(architecture="ClassicUNet", in_channels=3, num_classes=3, unet_start_filters=4, unet_depth=2)
    )
    augment = AugmentConfig(hflip=True, vflip=True, rotate=10, shift_scale=0.1, brightness_contrast=0.2)
    result = train_model(
        model,
        data,
        data,
        TrainConfig(epochs=2, batch_size=3, loss="dice", augment=augment),
        mode="multiclass",
        num_classes=3,
    )
    assert len(result.history) == 2 and 0.0 <= result.val_metrics["miou"] <= 1.0


def brightness_run(
    settings: dict[int, tuple[float, float]], config: TrainConfig
) -> tuple[TrainResult, Brightness, float]:
    """Train Brightness with lr 0 while ``settings`` sets (gain, shift) after each epoch: the val
    scores of every epoch are chosen by the test. Returns the result, the model and the wall time."""
    train, val = squares(8, seed=6), squares(4, seed=7)
    model = Brightness()
    model.gain.data.fill_(settings[0][0])
    model.shift.data.fill_(settings[0][1])

    def next_epoch(record: EpochRecord) -> None:
        gain, shift = settings.get(record.epoch, settings[0])
        with torch.no_grad():
            model.gain.fill_(gain)
            model.shift.fill_(shift)

    started = time.perf_counter()
    result = train_model(model, train, val, config, mode="binary", num_classes=2, on_epoch=next_epoch)
    return result, model, time.perf_counter() - started


def test_of_equally_good_epochs_the_first_is_kept() -> None:
    """Epochs 2 and 3 both segment perfectly (different weights): the earlier one is kept."""
    config = TrainConfig(
        epochs=4,
        batch_size=4,
        optimizer=OptimizerConfig(name="sgd", lr=0.0),
        patience=10,
        select_metric="dice",
        select_maximize=True,
    )
    result, _, _ = brightness_run({0: (40.0, -60.0), 1: (40.0, 0.0), 2: (40.0, 5.0), 3: (40.0, -60.0)}, config)
    assert [record.val["dice"] for record in result.history] == [0.0, pytest.approx(1.0), pytest.approx(1.0), 0.0]
    assert result.best_epoch == 2 and result.best_state["shift"].item() == 0.0


def test_small_real_improvements_keep_training_and_times_add_up() -> None:
    """Val loss falls a little every epoch (a sharper model each time): patience 1 must not stop it,
    while an epoch that improves by less than 1e-6 does count as no improvement."""
    sharper = {0: (10.0, 0.0), **{epoch: (10.0 + 2 * epoch, 0.0) for epoch in range(1, 5)}}
    config = TrainConfig(
        epochs=5, batch_size=4, optimizer=OptimizerConfig(name="sgd", lr=1e-3), scheduler="plateau", patience=1
    )
    result, _, wall = brightness_run(sharper, config)
    losses = [record.val["loss"] for record in result.history]
    assert len(losses) == 5 and not result.stopped_early and result.best_epoch == 5
    assert all(0 < earlier - later < 0.5 for earlier, later in zip(losses, losses[1:])), losses
    assert [record.lr for record in result.history] == [pytest.approx(1e-3)] * 5  # plateau saw the falling val loss
    assert 0 < sum(record.epoch_time_s for record in result.history) <= result.train_time_s <= wall
    stalled = {0: (10.0, 0.0), 1: (10.00001, 0.0)}  # epoch 2 is better, by ~3e-7: less than 1e-6
    result, _, _ = brightness_run(
        stalled, TrainConfig(epochs=5, batch_size=4, optimizer=OptimizerConfig(name="sgd", lr=0.0), patience=1)
    )
    losses = [record.val["loss"] for record in result.history]
    assert len(losses) == 2 and result.stopped_early and 0 < losses[0] - losses[1] < 1e-6, losses


@pytest.mark.parametrize("batch_size", [3, 8])
def test_the_val_loss_is_the_mean_over_the_evaluation_batches(batch_size: int) -> None:
    val = squares(8, seed=7)
    model, loss_fn = Brightness(), build_loss("dice_bce", "binary")
    model.shift.data.fill_(3.0)  # imperfect, so every batch has its own loss
    with torch.no_grad():
        images = val.images.float() / 255
        batches = [(images[i : i + batch_size], val.targets[i : i + batch_size]) for i in range(0, 8, batch_size)]
        expected = sum(float(loss_fn(model(x), y)) for x, y in batches) / len(batches)
    assert evaluate(model, val, batch_size, loss_fn=loss_fn, mode="binary", num_classes=2)["loss"] == pytest.approx(
        expected, rel=1e-6
    )


def test_a_detailed_evaluation_counts_each_image_and_the_class_shares() -> None:
    """What the results pages read besides the metrics: per-image tp/fp/fn (bootstrap intervals)
    and the predicted / true class shares (degenerate-trial flags), over several batches."""
    val = squares(6, seed=9)
    model = Brightness()
    model.shift.data.fill_(19.0)  # the squares plus background pixels above grey 6 (no logit is exactly 0): imperfect
    with torch.no_grad():
        predicted = (model(val.images.float() / 255)[:, 0] > 0).long()
    truth = val.targets.long()
    detail = evaluate_detailed(model, val, 4, loss_fn=build_loss("dice_bce", "binary"), mode="binary", num_classes=2)
    expected_counts = torch.stack(
        [(predicted & truth).sum((1, 2)), (predicted & (1 - truth)).sum((1, 2)), ((1 - predicted) & truth).sum((1, 2))],
        dim=-1,
    )
    assert detail.image_counts.tolist() == expected_counts[:, None, :].tolist()  # (images, foreground classes, 3)
    assert expected_counts[:, 1].sum() > 0  # there are false positives to count
    share = float(predicted.float().mean())
    assert detail.predicted_fractions.tolist() == pytest.approx([1 - share, share])
    assert detail.target_fractions.tolist() == pytest.approx(
        [1 - float(truth.float().mean()), float(truth.float().mean())]
    )
    assert detail.metrics == evaluate(
        model, val, 4, loss_fn=build_loss("dice_bce", "binary"), mode="binary", num_classes=2
    )


def test_a_cosine_schedule_sets_each_epochs_learning_rate() -> None:
    """The scheduler steps once per epoch over ``config.epochs``: the recorded lr follows the cosine."""
    config = TrainConfig(
        epochs=4, batch_size=4, optimizer=OptimizerConfig(name="sgd", lr=0.1), scheduler="cosine", patience=10
    )
    result, _, _ = brightness_run({0: (40.0, 0.0)}, config)
    expected = [0.05 * (1 + math.cos(math.pi * epoch / 4)) for epoch in range(4)]
    assert [record.lr for record in result.history] == pytest.approx(expected)


def test_progress_reports_every_batch_of_every_epoch() -> None:
    """on_batch gets (epoch, batch, batches per epoch); 9 images in batches of 4 drop the last single image."""
    seen: list[tuple[int, int, int]] = []
    config = TrainConfig(epochs=2, batch_size=4, optimizer=OptimizerConfig(name="sgd", lr=0.0), patience=10)
    train_model(
        Brightness(),
        squares(9, seed=6),
        squares(4, seed=7),
        config,
        mode="binary",
        num_classes=2,
        on_batch=lambda *step: seen.append(step),
    )
    assert seen == [(1, 1, 2), (1, 2, 2), (2, 1, 2), (2, 2, 2)]


def test_a_seeded_run_is_not_changed_by_other_code_drawing_random_numbers() -> None:
    """Batch order comes from the run's own generator: a callback that uses torch's global RNG
    between epochs (as other code in the worker process may) leaves the trained weights unchanged."""
    train, val = squares(8, seed=3), squares(4, seed=4)
    config = TrainConfig(epochs=3, batch_size=2, optimizer=OptimizerConfig(lr=0.02), patience=10, seed=5)
    quiet = train_model(tiny_unet(), train, val, config, mode="binary", num_classes=2)
    noisy = train_model(
        tiny_unet(), train, val, config, mode="binary", num_classes=2, on_epoch=lambda _record: torch.rand(100)
    )
    assert [r.train_loss for r in noisy.history] == [r.train_loss for r in quiet.history]
    assert all(torch.equal(noisy.best_state[name], tensor) for name, tensor in quiet.best_state.items())


class MeanBrightness(torch.nn.Module):
    """Two-class image classifier: class 1's logit rises with the mean pixel (square present or not)."""

    def __init__(self) -> None:
        super().__init__()
        self.gain = torch.nn.Parameter(torch.tensor(30.0))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        mean = images.mean(dim=(1, 2, 3))
        return torch.stack([torch.zeros_like(mean), self.gain * (mean - 0.15)], dim=1)


def test_labelled_images_are_trained_and_scored_as_classification() -> None:
    """A classification ImageSet gets a classification loss and scorer: per-image labels and class probabilities."""
    squares_set = squares(6, seed=8)
    images = squares_set.images.clone()
    images[3:] = 20  # the last three are plain grey: class 0
    data = ImageSet(
        images=images, targets=torch.tensor([1, 1, 1, 0, 0, 0]), stems=squares_set.stems, task=Task.CLASSIFICATION
    )
    model = MeanBrightness()
    # validation at the training batch here: a mean of batch means depends on the batch
    config = TrainConfig(
        epochs=1,
        batch_size=4,
        loss="cross_entropy",
        optimizer=OptimizerConfig(name="sgd", lr=0.0),
        patience=10,
        eval_batch_size=4,
    )
    result = train_model(model, data, data, config, mode="binary", num_classes=2)
    detail = evaluate_detailed(model, data, 4, loss_fn=torch.nn.CrossEntropyLoss(), mode="binary", num_classes=2)
    assert detail.outputs is not None and detail.image_counts is None
    assert detail.outputs.labels.tolist() == [1, 1, 1, 0, 0, 0] and detail.outputs.predicted.tolist() == [
        1,
        1,
        1,
        0,
        0,
        0,
    ]
    with torch.no_grad():
        expected = torch.softmax(model(images.float() / 255), dim=1).numpy()
    assert detail.outputs.probabilities == pytest.approx(expected, rel=1e-5)
    assert result.history[0].val["loss"] == pytest.approx(detail.metrics["loss"], rel=1e-6)
