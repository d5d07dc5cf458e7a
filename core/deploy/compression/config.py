"""What to compress and how: the method registry's settings, and the data a variant sees."""

from __future__ import annotations

import platform
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from core.contract import Mode, Task
from core.data.tensors import DataSet, LabelSet
from core.errors import SegTuneError, unknown_option
from core.metrics.catalogue import report_metrics

METHODS: tuple[str, ...] = ("ptq", "dynamic", "qat", "prune")
PRUNE_SCOPES: tuple[str, ...] = ("global", "layer")
# The cell-segmentation optimizer x loss study's range: beyond it accuracy collapses, below it little is won.
SPARSITY_RANGE = (0.5, 0.9)
REPORT_METRICS: tuple[str, ...] = report_metrics()  # segmentation's; a study's own: CompressionData.report_metrics
StepCallback = Callable[[int, int], None]  # (steps done, steps in all) of a fine-tune
ProgressCallback = Callable[[float, str], None]  # (fraction done 0..1, what is happening)


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
        raise CompressionError(f"this torch build has no {backend!r} int8 engine; available: {torch.backends.quantized.supported_engines}")
    return backend

# --- configuration ------------------------------------------------------------------------------


@dataclass(frozen=True)
class CompressionConfig:
    """One variant to derive. Steps count optimizer steps (batches) of the fine-tune."""

    method: str  # one of METHODS
    sparsity: float = 0.7  # prune: fraction of prunable weights set to zero (0.5-0.9)
    structured: bool = False  # prune: whole output channels (L2 norm) instead of single weights
    scope: str | None = None  # prune: "global" (one threshold) or "layer"; None = global, or layer if structured
    finetune_steps: int = 100  # qat/prune: recovery fine-tune length; 0 = one-shot (channel pruning needs it)
    ramp_every: int = 10  # prune: raise sparsity every N steps over the first half of the fine-tune
    lr: float = 5e-4  # fine-tune learning rate (Adam); below training rates, the model is already trained
    batch_size: int = 8
    calibration_batches: int = 8  # ptq: training batches the observers see
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
            raise CompressionError("channel-structured pruning is per layer (torch prunes channels layer by layer); use scope 'layer'")
        for name in ("finetune_steps", "calibration_batches"):
            if getattr(self, name) < 0:
                raise CompressionError(f"{name} must be >= 0, got {getattr(self, name)}")
        for name in ("ramp_every", "batch_size"):
            if getattr(self, name) < 1:
                raise CompressionError(f"{name} must be >= 1, got {getattr(self, name)}")

    @property
    def prune_scope(self) -> str:
        return self.scope or ("layer" if self.structured else "global")

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
            "qat": ("finetune_steps", "lr", "batch_size", "loss", "seed"),
            "prune": ("sparsity", "structured", "scope", "finetune_steps", "ramp_every", "lr", "batch_size", "loss", "seed"),
        }[self.method]
        return {name: (self.prune_scope if name == "scope" else data[name]) for name in keep}


@dataclass(frozen=True)
class CompressionData:
    """What a variant is calibrated / fine-tuned on (train) and scored on (val, test), on the CPU."""

    train: DataSet
    val: DataSet
    test: DataSet | None
    mode: Mode
    num_classes: int

    @property
    def task(self) -> Task:
        """Classification when the splits are labels (:class:`LabelSet`), else segmentation."""
        return Task.CLASSIFICATION if isinstance(self.train, LabelSet) else Task.SEGMENTATION

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


def compress_argv(study: str, trial: int, config: CompressionConfig) -> list[str]:
    """The ``python -m core`` arguments that derive ``config`` (what the dashboard starts as a task)."""
    argv = ["compress", "--study", study, "--trial", str(trial), "--method", config.method,
            "--sparsity", str(config.sparsity), "--steps", str(config.finetune_steps),
            "--ramp-every", str(config.ramp_every), "--lr", str(config.lr)]
    if config.structured:
        argv.append("--structured")
    if config.scope is not None:
        argv += ["--scope", config.scope]
    return argv
