"""From a spec's search space to Optuna: parameter suggestion, samplers, pruners, grids, presets.

This is the only module that calls ``trial.suggest_*``: conditional parameters (an encoder only for
smp architectures, U-Net shape only for the classic U-Net) are suggested only when active, so the
samplers never see values that were drawn and then ignored.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna

from core.errors import SegTuneError
from core.spec import HYPERPARAMETERS, ParamSpec, StudySpec, spec_from_dict

PRESETS_DIR = Path(__file__).parent / "presets"


def suggest_params(trial: optuna.Trial, spec: StudySpec) -> dict[str, Any]:
    """Every active hyperparameter's value for this trial (fixed ones included, not suggested)."""
    params: dict[str, Any] = {}
    for name, hp in HYPERPARAMETERS.items():
        if hp.active(params):
            params[name] = _suggest(trial, name, spec.param(name))
    params["epochs"] = min(params["epochs"], spec.budget.max_epochs)
    return params


def _suggest(trial: optuna.Trial, name: str, dim: ParamSpec) -> Any:
    if dim.kind == "fixed":
        return dim.value
    if dim.kind == "choice":
        return trial.suggest_categorical(name, list(dim.choices))
    if dim.kind == "int":
        step = 1 if dim.log else int(dim.step or 1)
        return trial.suggest_int(name, int(dim.low), int(dim.high), step=step, log=dim.log)
    return trial.suggest_float(name, dim.low, dim.high, step=dim.step, log=dim.log)


def grid_points(spec: StudySpec) -> list[dict[str, Any]]:
    """Every combination of the tuned dimensions, honouring conditions (no inactive duplicates)."""
    partials: list[dict[str, Any]] = [{}]
    for name, hp in HYPERPARAMETERS.items():
        values = spec.param(name).candidate_values()
        partials = [
            {**partial, name: value} if hp.active(partial) else partial
            for partial in partials
            for value in (values if hp.active(partial) else [None])
        ]
    tuned = [name for name, dim in spec.search_space.items() if dim.kind != "fixed"]
    unique = {json.dumps({n: p[n] for n in tuned if n in p}, sort_keys=True) for p in partials}
    return [json.loads(point) for point in sorted(unique)]


def enqueue_grid(study: optuna.Study, spec: StudySpec) -> int:
    """Queue each grid point once as a WAITING trial; returns the grid's size."""
    points = grid_points(spec)
    if not study.user_attrs.get("grid_enqueued"):
        for point in points:
            study.enqueue_trial(point, skip_if_exists=True)
        study.set_user_attr("grid_enqueued", True)
    return len(points)


# --- samplers and pruners -----------------------------------------------------------------------


def _tpe(spec: StudySpec, seed: int) -> optuna.samplers.BaseSampler:
    # group=True lets multivariate TPE model conditional spaces; constant_liar spreads parallel trials.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.samplers.TPESampler(
            seed=seed, multivariate=True, group=True, constant_liar=True, n_startup_trials=min(10, max(2, (spec.budget.n_trials or 20) // 4))
        )


SAMPLERS: dict[str, Callable[[StudySpec, int], optuna.samplers.BaseSampler]] = {
    "random": lambda spec, seed: optuna.samplers.RandomSampler(seed=seed),
    # Grid points are enqueued as fixed-parameter trials; the sampler only fills what is not fixed.
    "grid": lambda spec, seed: optuna.samplers.RandomSampler(seed=seed),
    "tpe": _tpe,
    "gp": lambda spec, seed: optuna.samplers.GPSampler(seed=seed, independent_sampler=optuna.samplers.RandomSampler(seed=seed)),
    "nsga2": lambda spec, seed: optuna.samplers.NSGAIISampler(seed=seed),
}

PRUNERS: dict[str, Callable[[StudySpec], optuna.pruners.BasePruner]] = {
    "none": lambda spec: optuna.pruners.NopPruner(),
    "median": lambda spec: optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=1),
    "successive_halving": lambda spec: optuna.pruners.SuccessiveHalvingPruner(min_resource=1),
    "hyperband": lambda spec: optuna.pruners.HyperbandPruner(min_resource=1, max_resource=spec.budget.max_epochs, reduction_factor=3),
}


def make_sampler(spec: StudySpec, worker_index: int = 0) -> optuna.samplers.BaseSampler:
    """The spec's sampler; each parallel worker gets its own seed so they don't draw the same points."""
    if spec.sampler not in SAMPLERS:
        raise SegTuneError(f"unknown sampler {spec.sampler!r}; valid: {list(SAMPLERS)}")
    return SAMPLERS[spec.sampler](spec, spec.seed + worker_index)


def make_pruner(spec: StudySpec) -> optuna.pruners.BasePruner:
    if spec.pruner not in PRUNERS:
        raise SegTuneError(f"unknown pruner {spec.pruner!r}; valid: {list(PRUNERS)}")
    return PRUNERS[spec.pruner](spec)


# --- presets (papers P1, P2, P3, P5) ------------------------------------------------------------


def preset_names() -> list[str]:
    return sorted(path.stem for path in PRESETS_DIR.glob("*.json"))


def load_preset(name: str, dataset: str, study_name: str | None = None) -> StudySpec:
    """A paper preset as a validated spec for ``dataset``."""
    path = PRESETS_DIR / f"{name}.json"
    if not path.is_file():
        raise SegTuneError(f"unknown preset {name!r}; valid: {preset_names()}")
    data = json.loads(path.read_text(encoding="utf-8"))
    data["dataset"] = dataset
    data["name"] = study_name or f"{name}-{dataset}"
    return spec_from_dict(data)


def search_space_size(spec: StudySpec) -> int | None:
    """Number of distinct configurations, or None when a continuous range makes it infinite."""
    try:
        return len(grid_points(spec))
    except ValueError:
        return None

