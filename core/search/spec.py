"""Study specifications: the typed, versioned description of one tuning study.

A spec is plain JSON (or YAML) on disk and a :class:`StudySpec` in code; :mod:`core.search.validation`
reads and checks it. Search dimensions are :mod:`core.search.space`'s.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from core.contract import Task
from core.data.splits import SplitConfig
from core.metrics.catalogue import DEFAULT_OBJECTIVE, Direction
from core.search.space import ParamSpec, hyperparameters

SPEC_VERSION = 1


class CompileMode(StrEnum):
    """How a trial's model runs (core.training.compiled): eager, or compiled with ``torch.compile``."""

    # eager PyTorch: the default (bench/RESULTS.md "Compiled training": compile loses on the CPU; GPU figures pending)
    OFF = "off"
    DEFAULT = "default"  # torch.compile (inductor): fused kernels; compiling costs seconds to minutes per trial
    # torch.compile + CUDA graphs: fewer kernel launches; static shapes (a partial training batch is dropped)
    REDUCE_OVERHEAD = "reduce-overhead"


@dataclass(frozen=True)
class Objective:
    metric: str = DEFAULT_OBJECTIVE
    direction: str = Direction.MAXIMIZE  # specs may leave it out: the metric's natural direction is used


@dataclass(frozen=True)
class Budget:
    n_trials: int | None = 20  # trials for the whole study, across all workers
    timeout_s: float | None = None  # wall-clock limit for the study
    max_epochs: int = 20  # cap on any trial's epochs; Hyperband's max resource


@dataclass(frozen=True)
class CrossValidation:
    """Cross-validation per trial: the test split is held out first, the rest is cut into ``folds``
    group-aware, seeded, frozen folds; each trial trains one model per fold and its objective is
    the mean of the fold validation metrics."""

    folds: int = 5  # 2..10

    def to_dict(self) -> dict[str, Any]:
        return {"folds": self.folds}


CV_FOLDS_RANGE = (2, 10)


@dataclass(frozen=True)
class StudySpec:
    """Everything needed to run (and re-run) a study. Defaults give a sensible single-objective study."""

    name: str
    dataset: str
    search_space: dict[str, ParamSpec] = field(
        default_factory=dict
    )  # names from the task's catalogue (core.search.space.hyperparameters)
    image_size: int = 256  # square side in pixels; a multiple of 32
    patch_size: int | None = (
        None  # None: train on whole images; else random P x P crops of them, sliding-window prediction
    )
    channels: int | None = (
        None  # 1 grey or 3 RGB (they convert), or a multi-sequence dataset's count; None = the dataset's own
    )
    objectives: tuple[Objective, ...] = (Objective(),)
    budget: Budget = Budget()
    sampler: str = "tpe"  # a name of core.search.samplers.SAMPLERS
    pruner: str = "hyperband"  # a name of core.search.samplers.PRUNERS; see bench/RESULTS.md "Search efficiency"
    patience: int = 5  # early stopping: epochs without val-loss improvement
    seed: int = 0
    split: SplitConfig = SplitConfig()
    preview_count: int = 8  # validation images whose predicted masks are stored per trial (1..64)
    cv: CrossValidation | None = None  # None: one train/val split; else k-fold cross-validation per trial
    description: str = ""
    task: str = (
        Task.SEGMENTATION
    )  # "segmentation" (masks) or "classification" (one label per image); the dataset's must match
    compile: str = (
        CompileMode.OFF
    )  # a CompileMode value: eager, or torch.compile (with CUDA graphs for "reduce-overhead")
    # configurations queued as the first trials (the auto plan's plain default)
    first_trials: tuple[dict[str, Any], ...] = ()
    version: int = SPEC_VERSION

    @property
    def is_classification(self) -> bool:
        return self.task == Task.CLASSIFICATION

    @property
    def directions(self) -> list[str]:
        return [objective.direction for objective in self.objectives]

    @property
    def is_multi_objective(self) -> bool:
        return len(self.objectives) > 1

    @property
    def folds(self) -> int:
        """Models trained per trial: 1 without cross-validation."""
        return self.cv.folds if self.cv else 1

    def param(self, name: str) -> ParamSpec:
        """The search dimension for ``name``: the spec's own, else the task catalogue's default (fixed)."""
        if name in self.search_space:
            return self.search_space[name]
        return ParamSpec.fixed(hyperparameters(self.task)[name].default)

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "name": self.name,
            "dataset": self.dataset,
            "description": self.description,
            "image_size": self.image_size,
            "channels": self.channels,
            "objectives": [{"metric": o.metric, "direction": o.direction} for o in self.objectives],
            "budget": {
                "n_trials": self.budget.n_trials,
                "timeout_s": self.budget.timeout_s,
                "max_epochs": self.budget.max_epochs,
            },
            "sampler": self.sampler,
            "pruner": self.pruner,
            "patience": self.patience,
            "seed": self.seed,
            "split": self.split.to_dict(),
            "preview_count": self.preview_count,
            "search_space": {name: spec.to_json() for name, spec in self.search_space.items()},
            # written only when set, so specs stored before cross-validation, tasks and patches existed compare equal
            **({"cv": self.cv.to_dict()} if self.cv else {}),
            **({"task": str(self.task)} if self.task != Task.SEGMENTATION else {}),
            **({"compile": str(self.compile)} if self.compile != CompileMode.OFF else {}),
            **({"first_trials": [dict(params) for params in self.first_trials]} if self.first_trials else {}),
            **({"patch_size": self.patch_size} if self.patch_size is not None else {}),
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)
