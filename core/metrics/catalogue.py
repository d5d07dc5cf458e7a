"""The metric catalogue: every number SegTune records about a trial, with how to read it. Torch-free.

Objectives, the metrics training may select its best epoch on, leaderboard columns, curve choices,
model cards and compression reports are all derived from :data:`METRICS`; adding a metric is one
entry here plus the code that computes it (a test ties every entry to a computed value).

Each metric names the tasks it is defined for: pixel metrics (Dice, IoU, ...) for segmentation,
image-label metrics (accuracy, balanced accuracy, macro F1, ROC AUC, ...) for classification, and
the loss, learning rate, throughput and size for both. Every view below takes the study's task
(segmentation when left out, the task of specs written before tasks existed).

Scopes:
- ``split``: computed on a split of images; stored as ``val_<name>`` / ``test_<name>`` (and
  ``train_<name>`` per epoch where training computes it).
- ``epoch``: a per-epoch value of training itself (the learning rate).
- ``volume``: computed once when a trial ends, on a split of a *volume* dataset with its slices
  stacked back into volumes (Dice per volume, what nnU-Net and the papers report); stored like
  split metrics as ``val_<name>`` / ``test_<name>``. Not known per epoch, so an objective on it
  cannot drive pruning and the best epoch is kept on the validation loss.
- ``case``: computed once when a trial ends, per case (image) at the original resolution against the
  original masks, then averaged over cases (boundary metrics: NSD, HD95; core.metrics.cases);
  stored like split metrics. Not known per epoch, like volume metrics.
- ``trial``: one figure per finished trial (throughput, size).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from core.contract import Mode, Task
from core.registry import Registry


class Direction(StrEnum):
    MAXIMIZE = "maximize"
    MINIMIZE = "minimize"


class Scope(StrEnum):
    SPLIT = "split"
    EPOCH = "epoch"
    VOLUME = "volume"
    CASE = "case"
    TRIAL = "trial"


class Source(StrEnum):
    """What computes the value (the test checks each source produces every name it should)."""

    PIXEL_COUNTS = "pixel_counts"  # core.metrics.segmentation.SegmentationMetrics, pooled over pixels
    PER_IMAGE = "per_image"  # core.metrics.segmentation.SegmentationMetrics, per image then averaged
    LOSS = "loss"  # the training loss, evaluated on a split
    TRAINER = "trainer"  # the training loop (learning rate)
    MEASUREMENT = "measurement"  # measured on the trained model (throughput, size)
    VOLUMES = "volumes"  # core.metrics.volumes.dice_per_volume, at trial end on volume datasets
    CLASS_PREDICTIONS = "class_predictions"  # core.metrics.classification.ClassificationMetrics, from image labels
    CASES = "cases"  # core.metrics.cases, per case at the original resolution, at trial end


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
    modes: frozenset[Mode] = frozenset(Mode)  # the segmentation modes it is defined for
    tasks: frozenset[Task] = frozenset({Task.SEGMENTATION})  # the study tasks it is defined for


_UP, _DOWN = Direction.MAXIMIZE, Direction.MINIMIZE
_AT_TRIAL_END = (Scope.VOLUME, Scope.CASE)  # stored as val_/test_ but computed once, when the trial ends
_SPLIT, _COUNTS = Scope.SPLIT, Source.PIXEL_COUNTS
_BOTH, _LABELS = frozenset(Task), frozenset({Task.CLASSIFICATION})

METRICS: Registry[Metric] = Registry(
    "metric",
    [
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
        Metric("nsd", "NSD (surface Dice)", _UP, Scope.CASE, Source.CASES, report=True),
        Metric("hd95", "HD95 (px)", _DOWN, Scope.CASE, Source.CASES, report=True),
        # classification (image labels; the macro means and the AUC rules: core.metrics.classification)
        Metric("accuracy", "Accuracy", _UP, _SPLIT, Source.CLASS_PREDICTIONS, curve=True, report=True, tasks=_LABELS),
        Metric(
            "balanced_accuracy",
            "Balanced accuracy",
            _UP,
            _SPLIT,
            Source.CLASS_PREDICTIONS,
            curve=True,
            report=True,
            tasks=_LABELS,
        ),
        Metric("precision_macro", "Precision (macro)", _UP, _SPLIT, Source.CLASS_PREDICTIONS, tasks=_LABELS),
        Metric("recall_macro", "Recall (macro)", _UP, _SPLIT, Source.CLASS_PREDICTIONS, tasks=_LABELS),
        Metric("f1_macro", "F1 (macro)", _UP, _SPLIT, Source.CLASS_PREDICTIONS, curve=True, report=True, tasks=_LABELS),
        Metric("roc_auc", "ROC AUC", _UP, _SPLIT, Source.CLASS_PREDICTIONS, curve=True, tasks=_LABELS),
        # both tasks
        Metric("loss", "Loss", _DOWN, _SPLIT, Source.LOSS, curve=True, tasks=_BOTH),
        Metric("lr", "Learning rate", _DOWN, Scope.EPOCH, Source.TRAINER, objective=False, curve=True, tasks=_BOTH),
        Metric("images_per_s", "Throughput (images/s)", _UP, Scope.TRIAL, Source.MEASUREMENT, tasks=_BOTH),
        Metric("n_params", "Parameters", _DOWN, Scope.TRIAL, Source.MEASUREMENT, tasks=_BOTH),
    ],
)
DEFAULT_OBJECTIVE = "val_dice"  # segmentation's; see default_objective
DEFAULT_OBJECTIVES: dict[Task, str] = {
    Task.SEGMENTATION: DEFAULT_OBJECTIVE,
    Task.CLASSIFICATION: "val_balanced_accuracy",  # not fooled by a majority class, unlike accuracy
}


def default_objective(task: Task | str = Task.SEGMENTATION) -> str:
    """The objective a spec of ``task`` optimises when it names none."""
    return DEFAULT_OBJECTIVES[Task(task)]


def task_metrics(task: Task | str = Task.SEGMENTATION) -> tuple[Metric, ...]:
    """The catalogue entries defined for ``task``, in catalogue order."""
    return tuple(m for m in METRICS if Task(task) in m.tasks)


def split_metrics(source: Source | None = None, *, task: Task | str = Task.SEGMENTATION) -> tuple[str, ...]:
    """Names of ``task``'s metrics computed on a split (optionally only those ``source`` computes)."""
    return tuple(m.name for m in task_metrics(task) if m.scope == _SPLIT and (source is None or m.source == source))


def volume_metrics() -> tuple[str, ...]:
    """Names of the metrics computed per volume at trial end (volume datasets only)."""
    return tuple(m.name for m in METRICS if m.scope == Scope.VOLUME)


def stored_metrics(task: Task | str = Task.SEGMENTATION) -> tuple[str, ...]:
    """Every name stored under ``val_``/``test_`` of a trial: split metrics, then trial-end ones (volume, case)."""
    return split_metrics(task=task) + tuple(m.name for m in task_metrics(task) if m.scope in _AT_TRIAL_END)


def objective_metrics(task: Task | str = Task.SEGMENTATION) -> dict[str, Direction]:
    """Every name a spec of ``task`` may optimise -> its natural direction (``val_<name>`` for split metrics)."""
    return {_objective_name(m): m.direction for m in task_metrics(task) if m.objective}


def objective_task(objective: str) -> Task | None:
    """The one task whose objectives include ``objective`` (None: both, or neither)."""
    tasks = [task for task in Task if objective in objective_metrics(task)]
    return tasks[0] if len(tasks) == 1 else None


def epoch_objectives(task: Task | str = Task.SEGMENTATION) -> tuple[str, ...]:
    """Objectives known after every epoch: a trial may be pruned and its best epoch kept on them."""
    return tuple(_objective_name(m) for m in task_metrics(task) if m.objective and m.scope == _SPLIT)


def curve_metrics(task: Task | str = Task.SEGMENTATION) -> tuple[str, ...]:
    return tuple(m.name for m in task_metrics(task) if m.curve)


def report_metrics(task: Task | str = Task.SEGMENTATION) -> tuple[str, ...]:
    return tuple(m.name for m in task_metrics(task) if m.report)


def label(name: str) -> str:
    """A display label for a metric name, with or without its ``val_``/``test_``/``train_`` prefix."""
    for prefix, words in (("val_", "Validation "), ("test_", "Test "), ("train_", "Training ")):
        if name.startswith(prefix) and name.removeprefix(prefix) in METRICS:
            return words + METRICS.get(name.removeprefix(prefix)).label
    return METRICS.get(name).label if name in METRICS else name


def case_metrics() -> tuple[str, ...]:
    """Names of the per-case metrics computed at the original resolution when a trial ends."""
    return tuple(m.name for m in METRICS if m.scope == Scope.CASE)


def _objective_name(metric: Metric) -> str:
    return f"val_{metric.name}" if metric.scope in (_SPLIT, *_AT_TRIAL_END) else metric.name
