"""The sampler and pruner registries: how a study picks its next trial and stops bad ones early."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass

import optuna

from core.registry import Registry
from core.search.spec import StudySpec

TPE_MAX_STARTUP = 10  # random trials before TPE models the space: a quarter of the budget, 2..10
HYPERBAND_MIN_EPOCHS = 1  # Hyperband's min resource; its max is the budget's max_epochs
HYPERBAND_REDUCTION = 3  # keep the best third at each rung
SHORT_STUDY_EPOCHS = 5  # at most this many epochs per trial: Hyperband prunes gently (hyperband_resources)
SHORT_STUDY_REDUCTION = 2  # ... keeping the better half, not the best third


def tpe_startup_trials(spec: StudySpec) -> int:
    """Random trials before TPE starts modelling (bench/RESULTS.md "Search efficiency": 4 of a
    16-trial budget reached random search's best in a third of its compute)."""
    return min(TPE_MAX_STARTUP, max(2, (spec.budget.n_trials or 20) // 4))


def _tpe(spec: StudySpec, seed: int) -> optuna.samplers.BaseSampler:
    # group=True lets multivariate TPE model conditional spaces; constant_liar spreads parallel trials.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.samplers.TPESampler(
            seed=seed, multivariate=True, group=True, constant_liar=True, n_startup_trials=tpe_startup_trials(spec)
        )


@dataclass(frozen=True)
class Sampler:
    name: str
    build: Callable[[StudySpec, int], optuna.samplers.BaseSampler]  # (spec, seed)
    single_objective: bool = True
    multi_objective: bool = True


SAMPLERS: Registry[Sampler] = Registry(
    "sampler",
    [
        Sampler("random", lambda spec, seed: optuna.samplers.RandomSampler(seed=seed)),
        # Grid points are enqueued as fixed-parameter trials; the sampler only fills what is not fixed.
        Sampler("grid", lambda spec, seed: optuna.samplers.RandomSampler(seed=seed)),
        Sampler("tpe", _tpe),
        Sampler(
            "gp",
            lambda spec, seed: optuna.samplers.GPSampler(
                seed=seed, independent_sampler=optuna.samplers.RandomSampler(seed=seed)
            ),
        ),
        Sampler("nsga2", lambda spec, seed: optuna.samplers.NSGAIISampler(seed=seed), single_objective=False),
    ],
)


def hyperband_resources(spec: StudySpec) -> tuple[int, int, int] | None:
    """(min_resource, max_resource, reduction_factor) for Hyperband, in epochs (times folds with CV);
    None where a study is too short to prune.

    With 1 epoch and a factor of 3, a 3-epoch study judged trials after their first epoch, when
    curves are too young to tell, and again at their last, discarding finished work (5 of 8 trials
    were pruned). A short study (at most SHORT_STUDY_EPOCHS epochs) judges a trial once, just past
    half its epochs (min * factor > max: never at its last), and keeps the better half. A study of
    two steps or fewer has no such epoch and is not pruned.
    """
    max_resource = spec.budget.max_epochs * spec.folds
    if spec.budget.max_epochs > SHORT_STUDY_EPOCHS:
        return HYPERBAND_MIN_EPOCHS, max_resource, HYPERBAND_REDUCTION
    if max_resource <= 2:
        return None
    return max_resource // 2 + 1, max_resource, SHORT_STUDY_REDUCTION


def _hyperband(spec: StudySpec) -> optuna.pruners.BasePruner:
    resources = hyperband_resources(spec)
    if resources is None:
        return optuna.pruners.NopPruner()
    min_resource, max_resource, reduction = resources
    return optuna.pruners.HyperbandPruner(
        min_resource=min_resource, max_resource=max_resource, reduction_factor=reduction
    )


@dataclass(frozen=True)
class Pruner:
    name: str
    build: Callable[[StudySpec], optuna.pruners.BasePruner]


PRUNERS: Registry[Pruner] = Registry(
    "pruner",
    [
        Pruner("none", lambda spec: optuna.pruners.NopPruner()),
        Pruner("median", lambda spec: optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=1)),
        Pruner("successive_halving", lambda spec: optuna.pruners.SuccessiveHalvingPruner(min_resource=1)),
        # The default (StudySpec.pruner): with TPE it reached random search's best in a fifth of its compute.
        Pruner("hyperband", _hyperband),
    ],
)


def make_sampler(spec: StudySpec, worker_index: int = 0) -> optuna.samplers.BaseSampler:
    """The spec's sampler; each parallel worker gets its own seed so they don't draw the same points."""
    # wrapped: a seed near the top of its range (2**32 - 1) plus a worker index must stay one numpy accepts
    return SAMPLERS.get(spec.sampler).build(spec, (spec.seed + worker_index) % 2**32)


def make_pruner(spec: StudySpec) -> optuna.pruners.BasePruner:
    return PRUNERS.get(spec.pruner).build(spec)
