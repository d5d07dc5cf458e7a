"""The search defaults chosen from bench/search_efficiency.py: TPE with Hyperband pruning."""

from __future__ import annotations

import optuna

from core.search.samplers import (
    HYPERBAND_MIN_EPOCHS,
    HYPERBAND_REDUCTION,
    make_pruner,
    make_sampler,
    tpe_startup_trials,
)
from core.search.validation import spec_from_dict


def spec(**changes: object):
    return spec_from_dict({"name": "s", "dataset": "d", **changes})


def test_a_spec_without_sampler_or_pruner_gets_tpe_and_hyperband() -> None:
    default = spec(budget={"n_trials": 16, "max_epochs": 12})
    assert isinstance(make_sampler(default), optuna.samplers.TPESampler)
    pruner = make_pruner(default)
    assert isinstance(pruner, optuna.pruners.HyperbandPruner)
    assert (pruner._min_resource, pruner._max_resource, pruner._reduction_factor) == (
        HYPERBAND_MIN_EPOCHS,
        12,
        HYPERBAND_REDUCTION,
    )


def test_tpe_startup_is_a_quarter_of_the_budget_within_2_to_10() -> None:
    assert [tpe_startup_trials(spec(budget={"n_trials": n})) for n in (4, 16, 30, 200)] == [2, 4, 7, 10]
    assert tpe_startup_trials(spec(budget={"n_trials": None, "timeout_s": 60})) == 5
    assert make_sampler(spec(budget={"n_trials": 16}))._n_startup_trials == 4


def _pruned_epochs(pruner: optuna.pruners.BasePruner, epochs: int, seed: int, n_trials: int = 8) -> list[int]:
    """Run ``n_trials`` trials of noisy rising curves under ``pruner``; the epoch each pruned trial stopped at."""
    import random

    rng = random.Random(seed)
    study = optuna.create_study(direction="maximize", pruner=pruner, sampler=optuna.samplers.RandomSampler(seed=0))
    stopped: list[int] = []

    def objective(trial: optuna.Trial) -> float:
        skill = rng.random()
        for epoch in range(1, epochs + 1):
            trial.report(skill * epoch / epochs + rng.random() * 0.1, epoch)
            if trial.should_prune():
                stopped.append(epoch)
                raise optuna.TrialPruned
        return skill

    study.optimize(objective, n_trials=n_trials)
    return stopped


def test_a_short_study_is_pruned_once_past_half_its_epochs_and_never_at_its_last() -> None:
    """Issue 24: Hyperband pruned 5 of 8 trials of a 3-epoch study, judging them after one epoch and
    again at their last (finished work thrown away). A study of at most SHORT_STUDY_EPOCHS epochs
    judges a trial once, just past half its epochs, and keeps the better half."""
    from core.search.samplers import SHORT_STUDY_EPOCHS, SHORT_STUDY_REDUCTION, hyperband_resources

    short = spec(budget={"n_trials": 8, "max_epochs": 3})
    assert hyperband_resources(short) == (2, 3, SHORT_STUDY_REDUCTION)
    assert hyperband_resources(spec(budget={"max_epochs": 4})) == (3, 4, 2)
    assert hyperband_resources(spec(budget={"max_epochs": SHORT_STUDY_EPOCHS})) == (3, SHORT_STUDY_EPOCHS, 2)
    assert hyperband_resources(spec(budget={"max_epochs": SHORT_STUDY_EPOCHS + 1})) == (
        1,
        SHORT_STUDY_EPOCHS + 1,
        3,
    )  # longer: as benchmarked
    assert isinstance(
        make_pruner(spec(budget={"max_epochs": 2})), optuna.pruners.NopPruner
    )  # no epoch before the last past half
    old = optuna.pruners.HyperbandPruner(min_resource=1, max_resource=3, reduction_factor=3)
    old_stops = {epoch for seed in range(3) for epoch in _pruned_epochs(old, 3, seed)}
    assert old_stops == {1, 3}  # what the issue saw: judged after one epoch, and at the last
    for epochs in (3, 4, 5):
        stops = {
            epoch
            for seed in range(3)
            for epoch in _pruned_epochs(make_pruner(spec(budget={"max_epochs": epochs})), epochs, seed)
        }
        assert stops == {epochs // 2 + 1}, epochs  # once, past half the epochs, never the last
