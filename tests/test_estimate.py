"""The one-batch cost probe shown on the New study page."""

from __future__ import annotations

from core.data.demo import create_demo_dataset
from core.search.validation import spec_from_dict
from core.settings import Settings
from core.training.estimate import estimate_trial_cost, typical_params
from tests.helpers.studies import tiny_study


def test_typical_params_take_first_choice_and_middle_of_ranges() -> None:
    spec = spec_from_dict(
        {
            "name": "s",
            "dataset": "d",
            "search_space": {
                "architecture": {"choices": ["ClassicUNet", "Unet"]},
                "unet_depth": {"low": 2, "high": 4},
                "lr": {"low": 1e-4, "high": 1e-2, "log": True},
            },
        }
    )
    params = typical_params(spec)
    assert params["architecture"] == "ClassicUNet" and params["unet_depth"] == 3
    assert abs(params["lr"] - 1e-3) < 1e-12
    assert "encoder" not in params  # inactive for the classic U-Net


def test_probe_measures_a_tiny_model(workspace: Settings) -> None:
    create_demo_dataset(workspace.datasets_dir, count=10, size=64)
    spec = spec_from_dict(
        {
            "name": "s",
            "dataset": "demo-cells",
            "image_size": 64,
            "budget": {"n_trials": 2, "max_epochs": 3},
            "search_space": {
                "architecture": "ClassicUNet",
                "unet_start_filters": 4,
                "unet_depth": 2,
                "batch_size": 4,
                "epochs": 5,
            },
        }
    )
    cost = estimate_trial_cost(spec, workspace)
    assert cost.n_params > 0 and cost.weights_mb > 0
    assert cost.seconds_per_epoch > 0 and cost.epochs == 3
    assert cost.seconds_per_trial == cost.seconds_per_epoch * 3


def test_the_estimate_counts_the_parameters_a_real_trial_trains(workspace: Settings) -> None:
    """The probe's size is the real model's: the same count a tuned trial of those params records."""
    import torch

    from core.modeling.build import build_model
    from core.modeling.config import ModelConfig

    study = tiny_study(workspace, "sizes", previews=1)
    spec = spec_from_dict(study.user_attrs["spec"])
    cost = estimate_trial_cost(spec, workspace)
    trial = study.trials[0]
    assert cost.n_params == trial.user_attrs["n_params"]
    model = build_model(ModelConfig("ClassicUNet", 1, 2, unet_start_filters=4, unet_depth=2))
    assert cost.n_params == sum(p.numel() for p in model.parameters() if p.requires_grad)
    bigger = spec_from_dict(
        {
            **study.user_attrs["spec"],
            "name": "bigger",
            "search_space": {**study.user_attrs["spec"]["search_space"], "unet_start_filters": 8},
        }
    )
    assert (
        estimate_trial_cost(bigger, workspace).n_params > 3 * cost.n_params
    )  # ~4x: conv weights scale with filters squared
    state_bytes = sum(t.numel() * t.element_size() for t in model.state_dict().values() if isinstance(t, torch.Tensor))
    assert abs(cost.weights_mb - trial.user_attrs["weights_mb"]) < 1e-9
    assert abs(cost.weights_mb - state_bytes / 2**20) < 1e-12  # fp32 weights + buffers, in MiB
