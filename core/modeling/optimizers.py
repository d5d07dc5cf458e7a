"""The optimizer and learning-rate schedule registries.

Each optimizer entry names the tunable hyperparameters it takes beyond ``lr`` and
``weight_decay`` (momentum for SGD/RMSprop, Nesterov for SGD), so the spec catalogue suggests them
only where they apply.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from core.registry import Registry


@dataclass(frozen=True)
class OptimizerConfig:
    name: str = "adam"
    lr: float = 1e-3
    weight_decay: float = 0.0
    momentum: float = 0.9  # SGD and RMSprop only
    nesterov: bool = False  # SGD only


@dataclass(frozen=True)
class Optimizer:
    name: str
    build: Callable[[Any, OptimizerConfig], torch.optim.Optimizer]  # (parameters, config)
    hyperparameters: tuple[str, ...] = ()  # tunable names it takes besides lr and weight_decay


OPTIMIZERS: Registry[Optimizer] = Registry(
    "optimizer",
    [
        Optimizer("adam", lambda p, c: torch.optim.Adam(p, lr=c.lr, weight_decay=c.weight_decay)),
        Optimizer("adamw", lambda p, c: torch.optim.AdamW(p, lr=c.lr, weight_decay=c.weight_decay)),
        Optimizer(
            "sgd",
            lambda p, c: torch.optim.SGD(
                p, lr=c.lr, weight_decay=c.weight_decay, momentum=c.momentum, nesterov=c.nesterov and c.momentum > 0
            ),
            ("momentum", "nesterov"),
        ),
        Optimizer(
            "rmsprop",
            lambda p, c: torch.optim.RMSprop(p, lr=c.lr, weight_decay=c.weight_decay, momentum=c.momentum),
            ("momentum",),
        ),
        Optimizer("adagrad", lambda p, c: torch.optim.Adagrad(p, lr=c.lr, weight_decay=c.weight_decay)),
        Optimizer("nadam", lambda p, c: torch.optim.NAdam(p, lr=c.lr, weight_decay=c.weight_decay)),
    ],
)


def build_optimizer(parameters: Any, config: OptimizerConfig) -> torch.optim.Optimizer:
    return OPTIMIZERS.get(config.name).build(parameters, config)


def takes(optimizer: Any, hyperparameter: str) -> bool:
    """Whether ``optimizer`` (a name, maybe not yet valid) takes ``hyperparameter``."""
    return optimizer in OPTIMIZERS and hyperparameter in OPTIMIZERS.get(optimizer).hyperparameters


def _step_schedule(optimizer: torch.optim.Optimizer, epochs: int) -> torch.optim.lr_scheduler.LRScheduler:
    # The cell-segmentation optimizer x loss study: keep the LR, then drop it 1000x (1e-4 -> 1e-7)
    # for the last 60% of training.
    return torch.optim.lr_scheduler.StepLR(optimizer, step_size=max(1, math.ceil(epochs * 0.4)), gamma=1e-3)


@dataclass(frozen=True)
class Schedule:
    name: str
    build: Callable[[torch.optim.Optimizer, int], Any]  # (optimizer, epochs) -> scheduler or None


SCHEDULES: Registry[Schedule] = Registry(
    "learning-rate schedule",
    [
        Schedule("none", lambda optimizer, epochs: None),
        Schedule(
            "cosine",
            lambda optimizer, epochs: torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(1, epochs)),
        ),
        Schedule("step", _step_schedule),
        Schedule(
            "plateau",
            lambda optimizer, epochs: torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, factor=0.1, patience=2),
        ),
    ],
)


def build_scheduler(name: str, optimizer: torch.optim.Optimizer, epochs: int) -> Any:
    return SCHEDULES.get(name).build(optimizer, epochs)
