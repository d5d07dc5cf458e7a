"""The sampler and pruner registries: how a study picks its next trial and stops bad ones early."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass

import optuna

from core.registry import Registry
from core.search.spec import StudySpec


def _tpe(spec: StudySpec, seed: int) -> optuna.samplers.BaseSampler:
    # group=True lets multivariate TPE model conditional spaces; constant_liar spreads parallel trials.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.samplers.TPESampler(
            seed=seed, multivariate=True, group=True, constant_liar=True, n_startup_trials=min(10, max(2, (spec.budget.n_trials or 20) // 4))
        )


@dataclass(frozen=True)
class Sampler:
    name: str
    build: Callable[[StudySpec, int], optuna.samplers.BaseSampler]  # (spec, seed)
    single_objective: bool = True
    multi_objective: bool = True


SAMPLERS: Registry[Sampler] = Registry("sampler", [
    Sampler("random", lambda spec, seed: optuna.samplers.RandomSampler(seed=seed)),
    # Grid points are enqueued as fixed-parameter trials; the sampler only fills what is not fixed.
    Sampler("grid", lambda spec, seed: optuna.samplers.RandomSampler(seed=seed)),
    Sampler("tpe", _tpe),
    Sampler("gp", lambda spec, seed: optuna.samplers.GPSampler(seed=seed, independent_sampler=optuna.samplers.RandomSampler(seed=seed))),
    Sampler("nsga2", lambda spec, seed: optuna.samplers.NSGAIISampler(seed=seed), single_objective=False),
])


@dataclass(frozen=True)
class Pruner:
    name: str
    build: Callable[[StudySpec], optuna.pruners.BasePruner]


PRUNERS: Registry[Pruner] = Registry("pruner", [
    Pruner("none", lambda spec: optuna.pruners.NopPruner()),
    Pruner("median", lambda spec: optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=1)),
    Pruner("successive_halving", lambda spec: optuna.pruners.SuccessiveHalvingPruner(min_resource=1)),
    Pruner("hyperband", lambda spec: optuna.pruners.HyperbandPruner(min_resource=1, max_resource=spec.budget.max_epochs * spec.folds, reduction_factor=3)),
])


def make_sampler(spec: StudySpec, worker_index: int = 0) -> optuna.samplers.BaseSampler:
    """The spec's sampler; each parallel worker gets its own seed so they don't draw the same points."""
    return SAMPLERS.get(spec.sampler).build(spec, spec.seed + worker_index)


def make_pruner(spec: StudySpec) -> optuna.pruners.BasePruner:
    return PRUNERS.get(spec.pruner).build(spec)
