"""The search engines the README lists, end to end on tiny real studies: the pruners really prune
(median, successive halving, Hyperband), random / gp / nsga2 really run, nsga2 yields a Pareto
front over two objectives, and every registry name maps to the Optuna class it promises."""

from __future__ import annotations

import optuna
import pytest
from optuna.trial import TrialState

from core.data.demo import create_demo_dataset
from core.runtime.tuning import prepare_study, run_study
from core.search.samplers import PRUNERS, SAMPLERS, make_pruner, make_sampler
from core.search.validation import spec_from_dict
from core.settings import Settings

GOOD_LR, BAD_LR = 0.03, 1e-7  # a bad trial does not learn at all


def spec(
    name: str, *, sampler: str = "random", pruner: str = "none", trials: int = 4, epochs: int = 2, **extra: object
):
    return spec_from_dict(
        {
            "name": name,
            "dataset": "demo-cells",
            "image_size": 64,
            "sampler": sampler,
            "pruner": pruner,
            "budget": {"n_trials": trials, "max_epochs": epochs},
            "preview_count": 1,
            "patience": epochs,
            "search_space": {
                "architecture": "ClassicUNet",
                "unet_start_filters": 4,
                "unet_depth": 2,
                "epochs": epochs,
                "batch_size": 4,
                "lr": {"low": 1e-7, "high": 0.1, "log": True},
            },
            **extra,
        }
    )


@pytest.fixture
def demo(workspace: Settings) -> Settings:
    create_demo_dataset(workspace.datasets_dir, count=24, size=64)
    return workspace


def test_sampler_and_pruner_names_map_to_the_promised_optuna_classes() -> None:
    base = spec(
        "classes", epochs=4
    )  # two epochs are too few to prune: "hyperband" would build no pruner (samplers.hyperband_resources)
    expected_samplers = {
        "random": optuna.samplers.RandomSampler,
        "grid": optuna.samplers.RandomSampler,
        "tpe": optuna.samplers.TPESampler,
        "gp": optuna.samplers.GPSampler,
        "nsga2": optuna.samplers.NSGAIISampler,
    }
    assert set(SAMPLERS.names) == set(expected_samplers)
    for name, cls in expected_samplers.items():
        assert type(make_sampler(base.__class__(**{**base.__dict__, "sampler": name}))) is cls, name
    expected_pruners = {
        "none": optuna.pruners.NopPruner,
        "median": optuna.pruners.MedianPruner,
        "successive_halving": optuna.pruners.SuccessiveHalvingPruner,
        "hyperband": optuna.pruners.HyperbandPruner,
    }
    assert set(PRUNERS.names) == set(expected_pruners)
    for name, cls in expected_pruners.items():
        assert type(make_pruner(base.__class__(**{**base.__dict__, "pruner": name}))) is cls, name
    assert not SAMPLERS.get("nsga2").single_objective and SAMPLERS.get("random").single_objective


@pytest.mark.parametrize("pruner", ["median", "successive_halving", "hyperband"])
def test_the_engine_prunes_trials_that_do_not_learn(pruner: str, demo: Settings) -> None:
    """Good trials first, then ones that cannot learn: the study's own pruner stops those early."""
    # four epochs: the pruners may stop a trial at epochs 2 and 3, so one noisy epoch cannot hide it
    study_spec = spec(f"prune-{pruner}", pruner=pruner, trials=7, epochs=4, objectives=[{"metric": "val_loss"}])
    study = prepare_study(study_spec, demo)
    # distinct values: a configuration that already finished would be reused, not trained again
    for lr in [GOOD_LR * (1 + i / 100) for i in range(3)] + [BAD_LR * (1 + i / 100) for i in range(4)]:
        study.enqueue_trial({"lr": lr})
    study = run_study(study_spec, demo, device="cpu")
    states = [(t.params["lr"], t.state.name, t.intermediate_values) for t in study.trials]
    pruned = [t for t in study.trials if t.state == TrialState.PRUNED]
    # a trial that cannot learn is stopped by the engine before its last epoch
    assert any(t.params["lr"] < 2 * BAD_LR and len(t.user_attrs["history"]) < 4 for t in pruned), states
    for trial in pruned:  # a pruned trial keeps the curve it reported, one value per epoch it ran
        assert set(trial.intermediate_values) == set(range(1, len(trial.user_attrs["history"]) + 1))
    assert sum(t.state == TrialState.COMPLETE for t in study.trials) + len(pruned) == 7, states


@pytest.mark.parametrize("sampler", ["random", "gp"])
def test_single_objective_samplers_run_a_study(sampler: str, demo: Settings) -> None:
    study = run_study(spec(f"sampler-{sampler}", sampler=sampler, trials=3), demo, device="cpu")
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 3
    assert isinstance(
        study.sampler, {"random": optuna.samplers.RandomSampler, "gp": optuna.samplers.GPSampler}[sampler]
    )
    assert len({t.params["lr"] for t in study.trials}) == 3  # each trial got its own point
    assert study.best_value == max(t.user_attrs["val_metrics"]["dice"] for t in study.trials)


def test_nsga2_finds_a_pareto_front_over_dice_and_size(demo: Settings) -> None:
    study_spec = spec(
        "pareto",
        sampler="nsga2",
        trials=4,
        objectives=[{"metric": "val_dice"}, {"metric": "n_params"}],
        search_space={
            "architecture": "ClassicUNet",
            "unet_start_filters": {"choices": [4, 8]},
            "unet_depth": 2,
            "epochs": 2,
            "batch_size": 4,
            "lr": 0.03,
        },
    )
    study = prepare_study(study_spec, demo)
    for filters in (4, 8, 4, 8):
        study.enqueue_trial({"unet_start_filters": filters})
    study = run_study(study_spec, demo, device="cpu")
    assert isinstance(study.sampler, optuna.samplers.NSGAIISampler)
    assert study.directions == [optuna.study.StudyDirection.MAXIMIZE, optuna.study.StudyDirection.MINIMIZE]
    trials = study.trials
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 4
    for trial in trials:
        assert trial.values == [trial.user_attrs["val_metrics"]["dice"], float(trial.user_attrs["n_params"])]

    def dominates(a: optuna.trial.FrozenTrial, b: optuna.trial.FrozenTrial) -> bool:
        better_or_equal = a.values[0] >= b.values[0] and a.values[1] <= b.values[1]
        return better_or_equal and (a.values[0] > b.values[0] or a.values[1] < b.values[1])

    front = {t.number for t in study.best_trials}
    assert front == {t.number for t in trials if not any(dominates(o, t) for o in trials)}
    small = min(trials, key=lambda t: (t.values[1], -t.values[0]))
    assert small.number in front  # the smallest model with its best dice is always on the front
