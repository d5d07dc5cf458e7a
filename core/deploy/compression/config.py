"""What to compress and how: the method registry's settings, and the data a variant sees."""

from __future__ import annotations

import math
import platform
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from core.contract import Mode, Task
from core.data.tensors import ImageSet
from core.errors import SegTuneError, unknown_option
from core.metrics.catalogue import report_metrics
from core.runtime.tasks import BackgroundTask, TaskSubject, start_task

if TYPE_CHECKING:
    from core.settings import Settings

METHODS: tuple[str, ...] = ("ptq", "dynamic", "qat", "prune")
FINETUNE_METHODS: tuple[str, ...] = ("qat", "prune")
PRUNE_SCOPES: tuple[str, ...] = ("global", "layer")
# The cell-segmentation optimizer x loss study's range: beyond it accuracy collapses, below it little is won.
SPARSITY_RANGE = (0.5, 0.9)
REPORT_METRICS: tuple[str, ...] = report_metrics()  # segmentation's; a study's own: CompressionData.report_metrics
StepCallback = Callable[[int, int], None]  # (steps done, steps in all) of a fine-tune
ProgressCallback = Callable[[float, str], None]  # (fraction done 0..1, what is happening)
TASK_KIND = "compress"  # the background tasks that derive variants
# What the dashboard chooses for a background compression (its task's options); batch size, loss
# and seed come from the trial itself.
LAUNCH_OPTIONS: tuple[str, ...] = ("sparsity", "structured", "scope", "finetune_epochs", "finetune_steps", "lr")


class CompressionError(SegTuneError):
    """A compression method cannot be applied as asked; the message says what would work."""


@contextmanager
def quiet_quantization() -> Iterator[None]:
    # torch.ao.quantization warns that it will move to torchao; it is still the tool that runs here.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", UserWarning)
        yield


def quantized_backend() -> str:
    """The CPU int8 backend for this machine: x86 (fbgemm/onednn kernels) or qnnpack on ARM."""
    arm = platform.machine().lower() in ("arm64", "aarch64")
    backend = "qnnpack" if arm else "x86"
    if backend not in torch.backends.quantized.supported_engines:
        raise CompressionError(
            f"this torch build has no {backend!r} int8 engine; available: {torch.backends.quantized.supported_engines}"
        )
    return backend


# --- configuration ------------------------------------------------------------------------------


@dataclass(frozen=True)
class FinetuneDefaults:
    """A method's recovery fine-tune when the config leaves it open (measured: bench/RESULTS.md "Compression")."""

    epochs: float  # passes over the training split: the fine-tune grows with the data, as training did
    min_steps: int  # floor for small training splits, where a few epochs are only a handful of batches
    lr: float  # Adam; well below training rates: the model is already trained


# QAT starts from PTQ-calibrated observers with BatchNorm statistics frozen, so it only has to adapt
# the weights to the rounding: a low rate keeps it where PTQ already is. Pruning has to re-learn
# what the removed weights did: more epochs at a higher rate; channels lose the most and get the most.
FINETUNE_DEFAULTS: dict[str, FinetuneDefaults] = {
    "qat": FinetuneDefaults(epochs=2.0, min_steps=20, lr=1e-5),
    "prune": FinetuneDefaults(epochs=4.0, min_steps=40, lr=1e-4),
    "channels": FinetuneDefaults(epochs=6.0, min_steps=60, lr=3e-4),
}


@dataclass(frozen=True)
class CompressionConfig:
    """One variant to derive. Fine-tunes run ``finetune_epochs`` passes over the training split
    (``finetune_steps`` overrides that with a fixed number of optimizer steps); None = the method's default."""

    method: str  # one of METHODS
    sparsity: float = 0.7  # prune: fraction of the prunable weights removed (0.5-0.9)
    structured: bool = (
        False  # prune: remove whole channels (physically: a smaller, faster model) instead of single weights
    )
    scope: str | None = None  # prune: "global" (one threshold) or "layer"; None = global, or layer if structured
    finetune_epochs: float | None = None  # qat/prune: recovery fine-tune, in epochs of the training split
    finetune_steps: int | None = None  # qat/prune: a fixed number of steps instead (0 = one-shot)
    lr: float | None = None  # fine-tune learning rate (Adam)
    batch_size: int = 8
    calibration_batches: int = 8  # ptq and qat: training batches the observers see before conversion / the fine-tune
    loss: str = "dice_bce"  # fine-tune loss (the trial's own loss is a good choice)
    seed: int = 0

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise CompressionError(unknown_option("compression method", self.method, METHODS))
        low, high = SPARSITY_RANGE
        if self.method == "prune" and not low <= self.sparsity <= high:
            raise CompressionError(f"sparsity must be between {low} and {high}, got {self.sparsity}")
        if self.scope is not None and self.scope not in PRUNE_SCOPES:
            raise CompressionError(unknown_option("pruning scope", self.scope, PRUNE_SCOPES))
        if self.structured and self.scope == "global":
            raise CompressionError(
                "channel pruning removes the same share of channels in every layer; use scope 'layer'"
            )
        for name in ("finetune_epochs", "finetune_steps", "calibration_batches"):
            if (getattr(self, name) or 0) < 0:
                raise CompressionError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.lr is not None and self.lr <= 0:
            raise CompressionError(f"lr must be > 0, got {self.lr}")
        if self.batch_size < 1:
            raise CompressionError(f"batch_size must be >= 1, got {self.batch_size}")

    @property
    def prune_scope(self) -> str:
        return self.scope or ("layer" if self.structured else "global")

    @property
    def defaults(self) -> FinetuneDefaults:
        """The fine-tune defaults of this method (qat, prune, or prune with ``structured``: "channels")."""
        if self.method not in FINETUNE_METHODS:
            raise CompressionError(f"{self.label} does not fine-tune; only {list(FINETUNE_METHODS)} do")
        return FINETUNE_DEFAULTS["channels" if self.structured else self.method]

    @property
    def finetune_lr(self) -> float:
        return self.lr if self.lr is not None else self.defaults.lr

    def steps_for(self, train_size: int) -> int:
        """Fine-tune steps on a training split of ``train_size`` images (batches that drop the last partial one)."""
        if self.finetune_steps is not None:
            return self.finetune_steps
        epochs = self.finetune_epochs if self.finetune_epochs is not None else self.defaults.epochs
        if epochs == 0:
            return 0
        per_epoch = max(1, train_size // self.batch_size)
        return max(self.defaults.min_steps, math.ceil(epochs * per_epoch))

    @property
    def label(self) -> str:
        """A short name for tables: "int8 static", "pruned 70% global", ..."""
        if self.method != "prune":
            return {"ptq": "int8 static", "dynamic": "int8 dynamic", "qat": "int8 QAT"}[self.method]
        kind = "channels" if self.structured else self.prune_scope
        return f"pruned {self.sparsity:.0%} {kind}"

    def params(self) -> dict[str, Any]:
        """The settings that matter for this method (stored with the variant)."""
        data = asdict(self)
        keep = {
            "ptq": ("calibration_batches",),
            "dynamic": (),
            "qat": ("calibration_batches", "finetune_epochs", "finetune_steps", "lr", "batch_size", "loss", "seed"),
            "prune": (
                "sparsity",
                "structured",
                "scope",
                "finetune_epochs",
                "finetune_steps",
                "lr",
                "batch_size",
                "loss",
                "seed",
            ),
        }[self.method]
        data["scope"] = self.prune_scope
        if self.method in FINETUNE_METHODS:
            data["lr"] = self.finetune_lr
        return {name: data[name] for name in keep}


@dataclass(frozen=True)
class CompressionData:
    """What a variant is calibrated / fine-tuned on (train) and scored on (val, test), on the CPU."""

    train: ImageSet
    val: ImageSet
    test: ImageSet | None
    mode: Mode
    num_classes: int

    @property
    def task(self) -> Task:
        """The splits' task."""
        return self.train.task

    @property
    def report_metrics(self) -> tuple[str, ...]:
        """The metrics a variant is scored on: the task's report metrics (core.metrics.catalogue)."""
        return report_metrics(self.task)


@dataclass
class CompressedVariant:
    config: CompressionConfig
    model: nn.Module  # on the CPU, eval mode
    quantized: bool  # int8: CPU only, saved as TorchScript
    seconds: float  # time the method took
    steps: int = 0  # fine-tune steps run (qat/prune)
    channels: dict[str, dict[str, Any]] = field(default_factory=dict)  # channel pruning: core.modeling.pruned record

    @property
    def params(self) -> dict[str, Any]:
        """The config's settings plus what they resolved to on this data (steps run)."""
        extra = {"steps_run": self.steps} if self.config.method in FINETUNE_METHODS else {}
        return {**self.config.params(), **extra}


def start_compression(settings: Settings, study: str, trial: int, config: CompressionConfig) -> BackgroundTask:
    """Derive ``config`` from ``trial`` of ``study`` in the background (``python -m core compress``),
    recording the study, trial, method and options as the task's subject for the dashboard to read."""
    subject = TaskSubject(
        study=study, trial=trial, method=config.method, options={name: getattr(config, name) for name in LAUNCH_OPTIONS}
    )
    return start_task(settings, TASK_KIND, compress_argv(study, trial, config), subject)


def compress_argv(study: str, trial: int, config: CompressionConfig) -> list[str]:
    """The ``python -m core`` arguments that derive ``config`` (what :func:`start_compression` runs)."""
    argv = [
        "compress",
        "--study",
        study,
        "--trial",
        str(trial),
        "--method",
        config.method,
        "--sparsity",
        str(config.sparsity),
    ]
    for flag, value in (("--epochs", config.finetune_epochs), ("--steps", config.finetune_steps), ("--lr", config.lr)):
        if value is not None:
            argv += [flag, str(value)]
    if config.structured:
        argv.append("--structured")
    if config.scope is not None:
        argv += ["--scope", config.scope]
    return argv
