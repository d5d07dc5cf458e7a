"""An earlier study to warm-start from: four finished trials and a failed one over a small UNet space."""

from __future__ import annotations

import optuna
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState

from core.contract import StudyAttr
from core.search.spec import StudySpec
from core.search.validation import spec_from_dict

SPACE = {
    "architecture": "ClassicUNet",
    "unet_start_filters": {"low": 4, "high": 64, "step": 4},
    "optimizer": {"choices": ["adam", "sgd", "rmsprop"]},
    "lr": {"low": 1e-5, "high": 1e-1, "log": True},
    "epochs": 2,
}
DISTRIBUTIONS = {
    "unet_start_filters": IntDistribution(4, 64, step=4),
    "optimizer": CategoricalDistribution(["adam", "sgd", "rmsprop"]),
    "lr": FloatDistribution(1e-5, 1e-1, log=True),
}


def spec(name: str, dataset: str = "demo-cells", space: dict | None = None) -> StudySpec:
    return spec_from_dict(
        {
            "name": name,
            "dataset": dataset,
            "image_size": 64,
            "sampler": "random",
            "pruner": "none",
            "budget": {"n_trials": 10, "max_epochs": 2},
            "search_space": space or SPACE,
        }
    )


def earlier_study(
    storage: optuna.storages.BaseStorage, name: str = "earlier", dataset: str = "demo-cells"
) -> optuna.Study:
    """Trials of val 0.6, 0.9, 0.8, 0.7 (filters 8, 32, 16, 64) and one failed trial, on ``dataset``."""
    study = optuna.create_study(storage=storage, study_name=name, direction="maximize")
    study.set_user_attr(StudyAttr.SPEC, spec(name, dataset).to_dict())
    study.set_user_attr(StudyAttr.DATASET, dataset)
    for value, filters, optimizer, lr in [
        (0.6, 8, "sgd", 1e-2),
        (0.9, 32, "adam", 1e-3),
        (0.8, 16, "adam", 3e-3),
        (0.7, 64, "rmsprop", 1e-4),
    ]:
        study.add_trial(
            optuna.trial.create_trial(
                value=value,
                params={"unet_start_filters": filters, "optimizer": optimizer, "lr": lr},
                distributions=DISTRIBUTIONS,
            )
        )
    study.add_trial(
        optuna.trial.create_trial(
            state=TrialState.FAIL,
            params={"unet_start_filters": 4, "optimizer": "sgd", "lr": 0.1},
            distributions=DISTRIBUTIONS,
        )
    )
    return study
