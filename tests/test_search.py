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
    spec = spec_with(
        {
            "architecture": {"choices": ["Unet", "ClassicUNet"]},
            "encoder": {"choices": ["resnet18", "resnet34"]},
            "unet_depth": {"low": 2, "high": 4},
            "optimizer": {"choices": ["adam", "sgd"]},
            "momentum": {"low": 0.5, "high": 0.99},
            "epochs": 50,
        },
        budget={"n_trials": 5, "max_epochs": 7},
    )
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
    spec = spec_with(
        {
            "architecture": {"choices": ["Unet", "ClassicUNet"]},
            "encoder": {"choices": ["resnet18", "resnet34", "resnet50"]},
            "unet_depth": {"low": 2, "high": 3},
            "lr": {"choices": [0.01, 0.001]},
        },
        sampler="grid",
    )
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


@pytest.mark.parametrize(
    "space",
    [
        {
            "architecture": {"choices": ["Unet", "ClassicUNet", "FCN32"]},
            "encoder": {"choices": ["resnet18", "resnet34"]},
            "unet_depth": {"low": 2, "high": 4},
            "optimizer": {"choices": ["sgd", "adam", "rmsprop"]},
            "momentum": {"choices": [0.8, 0.9]},
            "nesterov": {"choices": [False, True]},
        },
        {
            "architecture": {"choices": ["ClassicUNet", "ClassicUNet"]},
            "unet_start_filters": {"low": 8, "high": 64, "step": 8},
            "lr": {"low": 0.001, "high": 0.01, "step": 0.001},
            "batch_size": {"choices": [4, 8, 8]},
        },
        {"encoder": {"choices": ["resnet18", "resnet34"]}, "aug_hflip": {"choices": [False, True]}},
        {},
    ],
)
def test_size_by_arithmetic_equals_the_listed_grid(space: dict) -> None:
    from core.search.size import search_space_size

    spec = spec_with(space, sampler="grid")
    assert search_space_size(spec) == len(grid_points(spec))


def test_a_huge_grid_is_counted_not_listed_and_refused() -> None:
    from core.search.size import MAX_GRID_POINTS, search_space_size
    from core.search.validation import SpecError

    space = {
        "batch_size": {"low": 1, "high": 1024},
        "epochs": {"low": 1, "high": 10_000},
        "lr": {"choices": [0.1, 0.01]},
    }
    assert search_space_size(spec_with(space)) == 1024 * 10_000 * 2  # tpe: a size to show, never listed
    with pytest.raises(SpecError) as info:
        spec_with(space, sampler="grid")
    assert (
        f"{1024 * 10_000 * 2:,}" in info.value.problems["sampler"]
        and f"{MAX_GRID_POINTS:,}" in info.value.problems["sampler"]
    )
    with pytest.raises(SegTuneError, match="above the limit"):
        grid_points(spec_with(space))  # a spec that skipped validation still cannot be listed
    assert search_space_size(spec_with({"lr": {"low": 1e-4, "high": 1e-2}})) is None


@pytest.mark.parametrize("command", ["submit", "tune"])
def test_the_cli_refuses_a_huge_grid_with_one_message(command: str, workspace, tmp_path, capsys) -> None:
    import json

    from core.cli import main

    path = tmp_path / "big.json"
    path.write_text(
        json.dumps(
            {
                "name": "big",
                "dataset": "demo-cells",
                "sampler": "grid",
                "search_space": {"batch_size": {"low": 1, "high": 1024}, "epochs": {"low": 1, "high": 10000}},
            }
        )
    )
    assert main([command, "--spec", str(path)]) == 2
    err = capsys.readouterr().err
    assert "sampler: the grid has 10,240,000 points, above the limit of 10,000" in err and "Traceback" not in err
