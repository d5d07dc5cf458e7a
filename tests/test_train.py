from __future__ import annotations

import pytest
import torch

from core.data.tensors import AugmentConfig, TensorSet
from core.errors import SegTuneError
from core.metrics.catalogue import split_metrics
from core.modeling.build import build_model
from core.modeling.config import ModelConfig
from core.modeling.losses import build_loss
from core.modeling.optimizers import OPTIMIZERS, SCHEDULES, OptimizerConfig, build_optimizer, build_scheduler
from core.training.loop import EpochRecord, TrainConfig, evaluate, measure_throughput, predict, train_model


def squares(count: int, seed: int) -> TensorSet:
    """Grey images with one bright square each; the mask marks the square."""
    generator = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 60, (count, 1, 32, 32), generator=generator, dtype=torch.uint8)
    masks = torch.zeros(count, 32, 32, dtype=torch.uint8)
    for i in range(count):
        y, x = torch.randint(0, 20, (2,), generator=generator).tolist()
        images[i, 0, y : y + 10, x : x + 10] = 220
        masks[i, y : y + 10, x : x + 10] = 1
    return TensorSet(images=images, masks=masks, stems=tuple(f"s{i}" for i in range(count)))


def tiny_unet() -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model(ModelConfig(architecture="ClassicUNet", in_channels=1, num_classes=2, unet_start_filters=4, unet_depth=2))


def test_registries_cover_every_option_name() -> None:
    model = tiny_unet()
    for name in OPTIMIZERS.names:
        optimizer = build_optimizer(model.parameters(), OptimizerConfig(name=name, momentum=0.9, nesterov=True))
        assert isinstance(optimizer, torch.optim.Optimizer)
        for schedule in SCHEDULES.names:
            build_scheduler(schedule, optimizer, epochs=10)
    with pytest.raises(SegTuneError, match="adamw"):
        build_optimizer(model.parameters(), OptimizerConfig(name="lion"))


def test_training_learns_squares_and_keeps_the_best_epoch() -> None:
    train, val = squares(24, seed=1), squares(8, seed=2)
    config = TrainConfig(epochs=12, batch_size=8, optimizer=OptimizerConfig(lr=0.02), loss="dice_bce", patience=12, select_metric="dice", select_maximize=True)
    seen: list[EpochRecord] = []
    model = tiny_unet()
    result = train_model(model, train, val, config, mode="binary", num_classes=2, on_epoch=seen.append)
    assert [record.epoch for record in seen] == list(range(1, 13))
    dices = [record.val["dice"] for record in result.history]
    assert result.val_metrics["dice"] == max(dices)
    assert max(dices) > 0.7, dices  # a constant prediction scores at most ~0.2 here
    assert result.history[-1].train_loss < result.history[0].train_loss
    assert set(result.history[0].to_dict()) >= {"epoch", "train_loss", "lr", "epoch_time_s", *(f"val_{name}" for name in split_metrics())}
    # the kept weights are the best epoch's: evaluating them reproduces its score
    model.load_state_dict(result.best_state)
    again = evaluate(model, val, 8, loss_fn=build_loss("dice_bce", "binary"), mode="binary", num_classes=2)
    assert again["dice"] == pytest.approx(result.val_metrics["dice"], abs=1e-5)
    masks = predict(model, val, 4, mode="binary")
    assert masks.shape == (8, 32, 32) and set(masks.ravel().tolist()) <= {0, 1}
    assert measure_throughput(model, val, 4) > 0


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
        train_model(tiny_unet(), train, val, TrainConfig(epochs=5, batch_size=4), mode="binary", num_classes=2, on_epoch=stop_after_two)


def test_augmented_multiclass_training_runs() -> None:
    data = squares(6, seed=5)
    data = TensorSet(images=data.images.repeat(1, 3, 1, 1), masks=data.masks * 2, stems=data.stems)
    model = build_model(ModelConfig(architecture="ClassicUNet", in_channels=3, num_classes=3, unet_start_filters=4, unet_depth=2))
    augment = AugmentConfig(hflip=True, vflip=True, rotate=10, shift_scale=0.1, brightness_contrast=0.2)
    result = train_model(model, data, data, TrainConfig(epochs=2, batch_size=3, loss="dice", augment=augment), mode="multiclass", num_classes=3)
    assert len(result.history) == 2 and 0.0 <= result.val_metrics["miou"] <= 1.0
