"""Train and evaluate one model on in-memory tensors: the loop every trial runs.

Pure PyTorch with no Optuna inside: the caller passes an ``on_epoch`` callback that reports,
prunes or cancels by raising. Metrics and losses accumulate on the device; the host syncs once
per epoch, when the epoch's numbers are read.

One loop serves both tasks; the data's task (:class:`~core.data.tensors.ImageSet`) picks the loss
and the scorer from :data:`TASK_LOSSES` and :data:`TASK_SCORERS`: masks are trained with a
segmentation loss and scored by :class:`~core.metrics.segmentation.SegmentationMetrics`, labels
with a classification loss and :class:`~core.metrics.classification.ClassificationMetrics`.
Best-epoch selection, early stopping, the epoch callback (pruning, cancellation), progress and
timings are the same code for both. Model outputs are read by :mod:`core.modeling.inference`.

With a ``patch_size`` (segmentation), training sees random crops of that side (foreground-aware,
:func:`~core.data.tensors.random_crops`) and evaluation and prediction slide a window of that side
over every whole image (:func:`~core.modeling.inference.sliding_window_probabilities`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from core.contract import Task
from core.data.tensors import AugmentConfig, ImageSet, iterate_batches
from core.errors import SegTuneError
from core.metrics.classification import ClassificationMetrics, LabelOutputs
from core.metrics.segmentation import SegmentationMetrics
from core.modeling.classification_losses import build_classification_loss
from core.modeling.inference import (
    autocast,
    forward,
    predict_indices,
    probability_logits,
    sliding_window_probabilities,
    to_model_layout,
)
from core.modeling.losses import build_loss
from core.modeling.optimizers import OptimizerConfig, build_optimizer, build_scheduler
from core.search.spec import CompileMode
from core.training.compiled import compile_model, drops_partial_batch
from core.training.eval_batch import evaluation_batch_size

# --- the training configuration and results -----------------------------------------------------


@dataclass(frozen=True)
class TrainConfig:
    """Everything the loop needs besides the model and the data."""

    epochs: int = 10
    batch_size: int = 8
    optimizer: OptimizerConfig = OptimizerConfig()
    scheduler: str = "none"
    loss: str = "dice_bce"  # a segmentation loss, or a classification one when the data are labels
    label_smoothing: float = 0.0  # classification cross-entropy only
    patience: int = 5  # epochs without val-loss improvement before stopping early
    augment: AugmentConfig = AugmentConfig()
    seed: int = 0
    select_metric: str = "loss"  # val metric whose best epoch is kept ("loss" or e.g. "dice")
    select_maximize: bool = False
    compile_mode: str = CompileMode.OFF  # the spec's "compile": eager, or torch.compile (core.training.compiled)
    eval_batch_size: int | None = None  # validation's batch; None: the largest that fits (core.training.eval_batch)
    patch_size: int | None = None  # segmentation: train on random crops of this side, predict by sliding window

    @classmethod
    def from_params(
        cls,
        params: dict[str, Any],
        *,
        patience: int,
        seed: int,
        select_metric: str = "loss",
        select_maximize: bool = False,
        compile_mode: str = CompileMode.OFF,
        patch_size: int | None = None,
    ) -> TrainConfig:
        optimizer = OptimizerConfig(
            name=params["optimizer"],
            lr=params["lr"],
            weight_decay=params["weight_decay"],
            momentum=params.get("momentum", 0.0),
            nesterov=params.get("nesterov", False),
        )
        return cls(
            epochs=params["epochs"],
            batch_size=params["batch_size"],
            optimizer=optimizer,
            scheduler=params["scheduler"],
            loss=params["loss"],
            label_smoothing=params.get("label_smoothing", 0.0),
            patience=patience,
            augment=AugmentConfig.from_params(params),
            seed=seed,
            select_metric=select_metric,
            select_maximize=select_maximize,
            compile_mode=compile_mode,
            patch_size=patch_size,
        )


@dataclass
class EpochRecord:
    """One epoch's numbers, as stored in a trial's ``history``."""

    epoch: int  # 1-based
    train_loss: float
    val: dict[str, float]  # the task's split metrics (core.metrics.catalogue.split_metrics) and loss
    lr: float
    epoch_time_s: float

    def to_dict(self) -> dict[str, float]:
        record: dict[str, float] = {"epoch": self.epoch, "train_loss": self.train_loss}
        record.update({f"val_{name}": value for name, value in self.val.items()})
        record.update({"lr": self.lr, "epoch_time_s": self.epoch_time_s})
        return record


@dataclass
class TrainResult:
    history: list[EpochRecord]
    best_epoch: int
    best_state: dict[str, torch.Tensor]
    stopped_early: bool
    train_time_s: float
    val_metrics: dict[str, float] = field(default_factory=dict)  # at the best epoch
    compile_warning: str | None = None  # why torch.compile fell back to eager (core.training.compiled)


EpochCallback = Callable[[EpochRecord], None]
BatchCallback = Callable[[int, int, int], None]  # (epoch, batches done in it, batches per epoch), 1-based


# --- devices ------------------------------------------------------------------------------------


def resolve_device(device: str = "auto") -> torch.device:
    """'auto' picks CUDA when present (the worker has set CUDA_VISIBLE_DEVICES), else the CPU."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    resolved = torch.device(device)
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise SegTuneError(f"device {device!r} asked for, but no CUDA GPU is visible; use 'cpu' or 'auto'")
    return resolved


def prepare_model(model: nn.Module, device: torch.device) -> nn.Module:
    model = model.to(device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        model = model.to(memory_format=torch.channels_last)
    return model


# --- the loop -----------------------------------------------------------------------------------


def train_model(
    model: nn.Module,
    train_data: ImageSet,
    val_data: ImageSet,
    config: TrainConfig,
    *,
    mode: str,
    num_classes: int,
    on_epoch: EpochCallback | None = None,
    on_batch: BatchCallback | None = None,
) -> TrainResult:
    """Train with early stopping on val loss; keep the weights of the best epoch.

    ``on_epoch`` runs after every epoch and may raise (pruning, cancellation) to stop training.
    ``on_batch`` (progress) runs after every training step without a host sync; when it is None
    the loop pays one ``is None`` test per batch.
    """
    device = train_data.images.device
    torch.manual_seed(config.seed)
    generator = torch.Generator().manual_seed(config.seed)  # batch order and augmentation draws: on the CPU
    loss_fn = training_loss(config, train_data, mode).to(device)
    optimizer = build_optimizer(model.parameters(), config.optimizer)
    scheduler = build_scheduler(config.scheduler, optimizer, config.epochs)
    scaler = torch.amp.GradScaler("cuda", enabled=device.type == "cuda" and not torch.cuda.is_bf16_supported())

    history: list[EpochRecord] = []
    best_score, best_epoch, best_state = -math.inf, 0, _copy_state(model)
    best_loss, epochs_without_improvement = math.inf, 0
    started = time.perf_counter()  # compiling counts in the trial's time
    # compiling's warm-up step: a batch shaped like training's (patches when the config crops); its own
    # generator, so the trial's draws are untouched
    warm_up = iterate_batches(
        train_data,
        config.batch_size,
        shuffle=False,
        generator=torch.Generator().manual_seed(0),
        augment=None,
        crop=config.patch_size,
    )
    images, target = next(warm_up)
    run = compile_model(
        model, config.compile_mode, (to_model_layout(images), target), loss_fn, lambda: autocast(device)
    )
    eval_batch = config.eval_batch_size or evaluation_batch_size(
        model, val_data, config.batch_size, lambda: autocast(device), to_model_layout
    )
    for epoch in range(1, config.epochs + 1):
        epoch_start = time.perf_counter()
        train_loss = _train_epoch(
            run.module, train_data, config, loss_fn, optimizer, scaler, generator, _for_epoch(on_batch, epoch)
        )
        val = evaluate(
            run.module,
            val_data,
            eval_batch,
            loss_fn=loss_fn,
            mode=mode,
            num_classes=num_classes,
            patch_size=config.patch_size,
        )
        lr = optimizer.param_groups[0]["lr"]
        _step_scheduler(scheduler, val["loss"])
        record = EpochRecord(epoch, train_loss, val, lr, time.perf_counter() - epoch_start)
        history.append(record)

        score = val[config.select_metric] if config.select_maximize else -val[config.select_metric]
        if score > best_score:
            best_score, best_epoch, best_state = score, epoch, _copy_state(model)
        if val["loss"] < best_loss - 1e-6:
            best_loss, epochs_without_improvement = val["loss"], 0
        else:
            epochs_without_improvement += 1
        if on_epoch is not None:
            on_epoch(record)
        if epochs_without_improvement >= config.patience:
            break
    stopped_early = len(history) < config.epochs
    return TrainResult(
        history,
        best_epoch,
        best_state,
        stopped_early,
        time.perf_counter() - started,
        history[best_epoch - 1].val,
        run.warning,
    )


def training_loss(config: TrainConfig, data: ImageSet, mode: str) -> nn.Module:
    """The loss ``config`` names, for the task of ``data`` (labels: classification; masks: segmentation in ``mode``)."""
    return task_loss(config.loss, data, mode, label_smoothing=config.label_smoothing)


# Each task's loss factory: (loss name, mode, label smoothing) -> module.
TASK_LOSSES: dict[Task, Callable[[str, str, float], nn.Module]] = {
    Task.SEGMENTATION: lambda name, mode, _smoothing: build_loss(name, mode),
    Task.CLASSIFICATION: lambda name, _mode, smoothing: build_classification_loss(name, {"label_smoothing": smoothing}),
}


def task_loss(name: str, data: ImageSet, mode: str, *, label_smoothing: float = 0.0) -> nn.Module:
    """Loss ``name`` for ``data``'s task (segmentation losses in ``mode``; ``label_smoothing``: classification)."""
    return TASK_LOSSES[data.task](name, mode, label_smoothing)


def _train_epoch(
    model: nn.Module,
    data: ImageSet,
    config: TrainConfig,
    loss_fn: nn.Module,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    generator: torch.Generator,
    on_batch: Callable[[int, int], None] | None = None,
) -> float:
    model.train()
    device = data.images.device
    total = torch.zeros((), device=device)
    batches = 0
    augment = config.augment if config.augment.enabled else None
    drop_partial = drops_partial_batch(config.compile_mode)
    per_epoch = batches_per_epoch(len(data), config.batch_size, drop_partial)
    drop_last = per_epoch < math.ceil(len(data) / config.batch_size)
    stream = iterate_batches(
        data,
        config.batch_size,
        shuffle=True,
        generator=generator,
        augment=augment,
        drop_last=drop_last,
        crop=config.patch_size,
    )
    for images, target in stream:
        images = to_model_layout(images)
        optimizer.zero_grad(set_to_none=True)
        with autocast(device):
            loss = loss_fn(model(images), target)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        total += loss.detach().float()
        batches += 1
        if on_batch is not None:
            on_batch(batches, per_epoch)
    return float(total / max(batches, 1))  # the epoch's one host sync


def batches_per_epoch(n_images: int, batch_size: int, drop_partial: bool = False) -> int:
    """Training steps in one epoch. A last batch of one image breaks batch norm, and CUDA graphs
    (``drop_partial``) replay one batch shape: such a last batch is dropped when the set is larger than one batch."""
    if n_images > batch_size and (n_images % batch_size == 1 or (drop_partial and n_images % batch_size)):
        return n_images // batch_size
    return math.ceil(n_images / batch_size)


def _for_epoch(on_batch: BatchCallback | None, epoch: int) -> Callable[[int, int], None] | None:
    if on_batch is None:
        return None
    return lambda batch, batches: on_batch(epoch, batch, batches)


def _step_scheduler(scheduler: Any, val_loss: float) -> None:
    if scheduler is None:
        return
    if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
        scheduler.step(val_loss)
    else:
        scheduler.step()


def _copy_state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {name: tensor.detach().clone() for name, tensor in model.state_dict().items()}


def eval_batches(data: ImageSet, batch_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    return iterate_batches(data, batch_size, shuffle=False, generator=None, augment=None)


@dataclass
class Evaluation:
    """A model scored on a set of images: the metrics and what results pages need beyond them."""

    metrics: dict[str, float]  # every split metric of the task plus "loss"
    predicted_fractions: (
        np.ndarray
    )  # share of pixels (segmentation; background first) or images predicted as each class
    target_fractions: np.ndarray  # share of pixels or images that truly are each class
    image_counts: np.ndarray | None = None  # segmentation: (images, foreground classes, 3): tp, fp, fn per image
    outputs: LabelOutputs | None = None  # classification: each image's label and class probabilities


Scorer = SegmentationMetrics | ClassificationMetrics


# Each task's metric accumulator: (mode, classes) -> scorer.
TASK_SCORERS: dict[Task, Callable[[str, int], Scorer]] = {
    Task.SEGMENTATION: SegmentationMetrics,
    Task.CLASSIFICATION: lambda _mode, num_classes: ClassificationMetrics(num_classes),
}


def scorer_for(data: ImageSet, mode: str, num_classes: int) -> Scorer:
    """The metric accumulator for ``data``'s task (segmentation in ``mode``)."""
    return TASK_SCORERS[data.task](mode, num_classes)


def evaluate(
    model: nn.Module,
    data: ImageSet,
    batch_size: int,
    *,
    loss_fn: nn.Module,
    mode: str,
    num_classes: int,
    patch_size: int | None = None,
) -> dict[str, float]:
    """Val/test metrics plus mean loss over ``data``, accumulated on the device (by sliding window with a
    ``patch_size``)."""
    return evaluate_detailed(
        model, data, batch_size, loss_fn=loss_fn, mode=mode, num_classes=num_classes, patch_size=patch_size
    ).metrics


@torch.no_grad()
def evaluate_detailed(
    model: nn.Module,
    data: ImageSet,
    batch_size: int,
    *,
    loss_fn: nn.Module,
    mode: str,
    num_classes: int,
    patch_size: int | None = None,
) -> Evaluation:
    """:func:`evaluate` plus the predicted class shares and each image's record (counts or label outputs).

    With a ``patch_size`` the blended sliding-window probabilities stand in for the logits (as
    :func:`~core.modeling.inference.probability_logits`), so loss and metrics score what
    :func:`predict` predicts.
    """
    model.eval()
    device = data.images.device
    scorer = scorer_for(data, mode, num_classes)
    total_loss = torch.zeros((), device=device)
    batches = 0
    for images, target in eval_batches(data, batch_size):
        logits = model_logits(model, images, patch_size, batch_size)
        total_loss += loss_fn(logits, target).detach()
        scorer.update(logits, target)
        batches += 1
    result = scorer.compute()
    result["loss"] = float(total_loss / max(batches, 1))
    evaluation = Evaluation(result, scorer.predicted_fractions(), scorer.target_fractions())
    if isinstance(scorer, ClassificationMetrics):
        evaluation.outputs = scorer.outputs()
    else:
        evaluation.image_counts = scorer.image_counts()
    return evaluation


def model_logits(model: nn.Module, images: torch.Tensor, patch_size: int | None, batch_size: int) -> torch.Tensor:
    if patch_size is None:
        return forward(model, images)
    return probability_logits(sliding_window_probabilities(model, images, patch_size, windows_per_batch=batch_size))


def predict(model: nn.Module, data: ImageSet, batch_size: int, *, patch_size: int | None = None) -> np.ndarray:
    """Predicted class indices for every image of ``data``, in its targets' dtype: masks (N, S, S)
    uint8, or labels (N,) int64; by sliding window with a ``patch_size``."""
    outputs = [predict_indices(model, images, patch_size=patch_size) for images, _ in eval_batches(data, batch_size)]
    return torch.cat(outputs).to(data.targets.dtype).cpu().numpy()


@torch.no_grad()
def measure_throughput(
    model: nn.Module, data: ImageSet, batch_size: int, *, repeats: int = 3, patch_size: int | None = None
) -> float:
    """Inference images per second on ``data``'s device (best of ``repeats`` passes; whole images
    by sliding window with a ``patch_size``)."""
    model.eval()
    device = data.images.device
    sample = data.subset(list(range(min(len(data), batch_size * 2))))
    timings = []
    for _ in range(repeats + 1):  # the first pass warms up kernels and caches; it is not counted
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        for images, _masks in eval_batches(sample, batch_size):
            model_logits(model, images, patch_size, batch_size)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        timings.append(time.perf_counter() - start)
    best = min(timings[1:])
    return len(sample) / best if best > 0 else 0.0
