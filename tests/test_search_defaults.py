"""The search defaults chosen from bench/search_efficiency.py: TPE with Hyperband pruning."""

from __future__ import annotations

import optuna

from core.search.samplers import HYPERBAND_MIN_EPOCHS, HYPERBAND_REDUCTION, make_pruner, make_sampler, tpe_startup_trials
from core.search.validation import spec_from_dict


def spec(**changes: object):
    return spec_from_dict({"name": "s", "dataset": "d", **changes})


def test_a_spec_without_sampler_or_pruner_gets_tpe_and_hyperband() -> None:
    default = spec(budget={"n_trials": 16, "max_epochs": 12})
    assert isinstance(make_sampler(default), optuna.samplers.TPESampler)
    pruner = make_pruner(default)
    assert isinstance(pruner, optuna.pruners.HyperbandPruner)
    assert (pruner._min_resource, pruner._max_resource, pruner._reduction_factor) == (HYPERBAND_MIN_EPOCHS, 12, HYPERBAND_REDUCTION)


def test_tpe_startup_is_a_quarter_of_the_budget_within_2_to_10() -> None:
    assert [tpe_startup_trials(spec(budget={"n_trials": n})) for n in (4, 16, 30, 200)] == [2, 4, 7, 10]
    assert tpe_startup_trials(spec(budget={"n_trials": None, "timeout_s": 60})) == 5
    assert make_sampler(spec(budget={"n_trials": 16}))._n_startup_trials == 4
