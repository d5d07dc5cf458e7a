from __future__ import annotations

import optuna
import pytest

from core.errors import SegTuneError
from core.search.presets import load_preset
from core.search.samplers import PRUNERS, SAMPLERS, make_pruner, make_sampler
from core.search.suggest import enqueue_grid, grid_points, suggest_params
from core.search.validation import spec_from_dict


def spec_with(space: dict, **extra: object):
    return spec_from_dict({"name": "s", "dataset": "d", "search_space": space, **extra})


def test_every_sampler_and_pruner_name_has_a_factory() -> None:
    spec = spec_with({})
    for name in PRUNERS.names:
        assert isinstance(make_pruner(spec_with({}, pruner=name)), optuna.pruners.BasePruner)
    for entry in SAMPLERS:
        objectives = [{"metric": "val_dice"}, {"metric": "n_params"}] if not entry.single_objective else ["val_dice"]
        sampled = spec_with({}, sampler=entry.name, objectives=objectives, pruner="none")
        assert isinstance(make_sampler(sampled), optuna.samplers.BaseSampler)
    assert isinstance(make_sampler(spec), optuna.samplers.TPESampler)


def test_unknown_factory_names_list_the_options() -> None:
    spec = spec_with({})
    object.__setattr__(spec, "sampler", "annealing")
    with pytest.raises(SegTuneError, match="tpe"):
        make_sampler(spec)


def test_conditional_parameters_are_suggested_only_when_active() -> None:
    spec = spec_with({
        "architecture": {"choices": ["Unet", "ClassicUNet"]},
        "encoder": {"choices": ["resnet18", "resnet34"]},
        "unet_depth": {"low": 2, "high": 4},
        "optimizer": {"choices": ["adam", "sgd"]},
        "momentum": {"low": 0.5, "high": 0.99},
        "epochs": 50,
    }, budget={"n_trials": 5, "max_epochs": 7})
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    seen = set()
    for _ in range(30):
        trial = study.ask()
        params = suggest_params(trial, spec)
        seen.add(params["architecture"])
        smp = params["architecture"] == "Unet"
        assert ("encoder" in trial.params) == smp and ("encoder" in params) == smp
        assert ("unet_depth" in trial.params) == (not smp)
        assert ("momentum" in trial.params) == (params["optimizer"] == "sgd")
        assert params["epochs"] == 7  # capped by the budget's max_epochs
        study.tell(trial, 0.5)
    assert seen == {"Unet", "ClassicUNet"}


def test_grid_enumerates_only_valid_combinations() -> None:
    spec = spec_with({
        "architecture": {"choices": ["Unet", "ClassicUNet"]},
        "encoder": {"choices": ["resnet18", "resnet34", "resnet50"]},
        "unet_depth": {"low": 2, "high": 3},
        "lr": {"choices": [0.01, 0.001]},
    }, sampler="grid")
    points = grid_points(spec)
    # Unet: 3 encoders x 2 lr; ClassicUNet: 2 depths x 2 lr — no encoder/depth cross product.
    assert len(points) == 3 * 2 + 2 * 2
    assert all(("encoder" in p) != ("unet_depth" in p) for p in points)


def test_paper_p5_grid_has_45_runs_and_enqueues_once() -> None:
    spec = load_preset("p5-resnet-unet-mri", "d")
    study = optuna.create_study()
    assert enqueue_grid(study, spec) == 45
    enqueue_grid(study, spec)
    waiting = study.get_trials(states=(optuna.trial.TrialState.WAITING,))
    assert len(waiting) == 45
    trial = study.ask()
    params = suggest_params(trial, spec)
    assert params["encoder"] in {"resnet18", "resnet34", "resnet50", "resnet101", "resnet152"}
    assert params["lr"] in {0.01, 0.001, 0.0001}
