"""The metric catalogue: every number SegTune records about a trial, with how to read it. Torch-free.

Objectives, the metrics training may select its best epoch on, leaderboard columns, curve choices,
model cards and compression reports are all derived from :data:`METRICS`; adding a metric is one
entry here plus the code that computes it (a test ties every entry to a computed value).

Scopes:
- ``split``: computed on a split of images; stored as ``val_<name>`` / ``test_<name>`` (and
  ``train_<name>`` per epoch where training computes it).
- ``epoch``: a per-epoch value of training itself (the learning rate).
- ``volume``: computed once when a trial ends, on a split of a *volume* dataset with its slices
  stacked back into volumes (Dice per volume, what nnU-Net and the papers report); stored like
  split metrics as ``val_<name>`` / ``test_<name>``. Not known per epoch, so an objective on it
  cannot drive pruning and the best epoch is kept on the validation loss.
- ``trial``: one figure per finished trial (throughput, size).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from core.contract import Mode
from core.registry import Registry


class Direction(StrEnum):
    MAXIMIZE = "maximize"
    MINIMIZE = "minimize"


class Scope(StrEnum):
    SPLIT = "split"
    EPOCH = "epoch"
    VOLUME = "volume"
    TRIAL = "trial"


class Source(StrEnum):
    """What computes the value (the test checks each source produces every name it should)."""

    PIXEL_COUNTS = "pixel_counts"  # core.metrics.segmentation.SegmentationMetrics, pooled over pixels
    PER_IMAGE = "per_image"  # core.metrics.segmentation.SegmentationMetrics, per image then averaged
    LOSS = "loss"  # the training loss, evaluated on a split
    TRAINER = "trainer"  # the training loop (learning rate)
    MEASUREMENT = "measurement"  # measured on the trained model (throughput, size)
    VOLUMES = "volumes"  # core.metrics.volumes.dice_per_volume, at trial end on volume datasets


@dataclass(frozen=True)
class Metric:
    name: str
    label: str
    direction: Direction
    scope: Scope
    source: Source
    objective: bool = True  # may be optimised (as val_<name> for split metrics)
    curve: bool = False  # offered on the learning-curves page
    report: bool = False  # shown in compression trade-off reports
    modes: frozenset[Mode] = frozenset(Mode)  # the tasks it is defined for


_UP, _DOWN = Direction.MAXIMIZE, Direction.MINIMIZE
_SPLIT, _COUNTS = Scope.SPLIT, Source.PIXEL_COUNTS

METRICS: Registry[Metric] = Registry("metric", [
    Metric("dice", "Dice", _UP, _SPLIT, _COUNTS, curve=True, report=True),
    Metric("dice_per_image", "Dice (per image)", _UP, _SPLIT, Source.PER_IMAGE, curve=True),
    Metric("iou", "IoU", _UP, _SPLIT, _COUNTS, curve=True, report=True),
    Metric("miou", "mIoU", _UP, _SPLIT, _COUNTS, curve=True),
    Metric("pixel_accuracy", "Pixel accuracy", _UP, _SPLIT, _COUNTS, curve=True),
    Metric("precision", "Precision", _UP, _SPLIT, _COUNTS),
    Metric("recall", "Recall", _UP, _SPLIT, _COUNTS),
    Metric("f1", "F1", _UP, _SPLIT, _COUNTS, report=True),
    Metric("specificity", "Specificity", _UP, _SPLIT, _COUNTS, objective=False),
    Metric("dice_per_volume", "Dice per volume", _UP, Scope.VOLUME, Source.VOLUMES, report=False),
    Metric("loss", "Loss", _DOWN, _SPLIT, Source.LOSS, curve=True),
    Metric("lr", "Learning rate", _DOWN, Scope.EPOCH, Source.TRAINER, objective=False, curve=True),
    Metric("images_per_s", "Throughput (images/s)", _UP, Scope.TRIAL, Source.MEASUREMENT),
    Metric("n_params", "Parameters", _DOWN, Scope.TRIAL, Source.MEASUREMENT),
])
DEFAULT_OBJECTIVE = "val_dice"


def split_metrics(source: Source | None = None) -> tuple[str, ...]:
    """Names of the metrics computed on a split (optionally only those ``source`` computes)."""
    return tuple(m.name for m in METRICS if m.scope == _SPLIT and (source is None or m.source == source))


def volume_metrics() -> tuple[str, ...]:
    """Names of the metrics computed per volume at trial end (volume datasets only)."""
    return tuple(m.name for m in METRICS if m.scope == Scope.VOLUME)


def stored_metrics() -> tuple[str, ...]:
    """Every name stored under ``val_``/``test_`` of a trial: split metrics, then volume metrics."""
    return split_metrics() + volume_metrics()


def objective_metrics() -> dict[str, Direction]:
    """Every name a spec may optimise -> its natural direction (``val_<name>`` for split metrics)."""
    return {_objective_name(m): m.direction for m in METRICS if m.objective}


def epoch_objectives() -> tuple[str, ...]:
    """Objectives known after every epoch: a trial may be pruned and its best epoch kept on them."""
    return tuple(_objective_name(m) for m in METRICS if m.objective and m.scope == _SPLIT)


def curve_metrics() -> tuple[str, ...]:
    return tuple(m.name for m in METRICS if m.curve)


def report_metrics() -> tuple[str, ...]:
    return tuple(m.name for m in METRICS if m.report)


def label(name: str) -> str:
    """A display label for a metric name, with or without its ``val_``/``test_``/``train_`` prefix."""
    for prefix, words in (("val_", "Validation "), ("test_", "Test "), ("train_", "Training ")):
        if name.startswith(prefix) and name.removeprefix(prefix) in METRICS:
            return words + METRICS.get(name.removeprefix(prefix)).label
    return METRICS.get(name).label if name in METRICS else name


def _objective_name(metric: Metric) -> str:
    return f"val_{metric.name}" if metric.scope in (_SPLIT, Scope.VOLUME) else metric.name
