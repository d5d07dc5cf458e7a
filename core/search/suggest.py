"""From a spec's search space to Optuna trials: the only place that calls ``trial.suggest_*``.

Conditional parameters (an encoder only for architectures that take one, the U-Net shape only for
the classic U-Net) are suggested only when active, so the samplers never see values that were
drawn and then ignored; grids enumerate the same conditional space.
"""

from __future__ import annotations

import json
from typing import Any

import optuna

from core.contract import StudyAttr
from core.errors import SegTuneError
from core.search.size import MAX_GRID_POINTS, search_space_size, too_large
from core.search.space import ParamSpec, hyperparameters
from core.search.spec import StudySpec


def suggest_params(trial: optuna.Trial, spec: StudySpec) -> dict[str, Any]:
    """Every active hyperparameter's value for this trial (fixed ones included, not suggested)."""
    params: dict[str, Any] = {}
    for name, hp in hyperparameters(spec.task).items():
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
    """Every combination of the tuned dimensions, honouring conditions (no inactive duplicates).

    Refuses (SegTuneError) a grid above :data:`~core.search.size.MAX_GRID_POINTS`, counted first
    by arithmetic, so a spec that skipped validation cannot fill the memory.
    """
    size = search_space_size(spec)
    if size is None or size > MAX_GRID_POINTS:
        reason = "a continuous range has no finite grid" if size is None else too_large(size)
        raise SegTuneError(f"cannot list the grid of study {spec.name!r}: {reason}")
    partials: list[dict[str, Any]] = [{}]
    for name, hp in hyperparameters(spec.task).items():
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
    if not study.user_attrs.get(StudyAttr.GRID_ENQUEUED):
        for point in points:
            study.enqueue_trial(point, skip_if_exists=True)
        study.set_user_attr(StudyAttr.GRID_ENQUEUED, True)
    return len(points)


def enqueue_first_trials(study: optuna.Study, spec: StudySpec) -> int:
    """Queue the spec's first trials (the auto plan's plain default) once, before the sampler's own."""
    if spec.first_trials and not study.user_attrs.get(StudyAttr.FIRST_TRIALS_ENQUEUED):
        for params in spec.first_trials:
            study.enqueue_trial(dict(params), skip_if_exists=True)
        study.set_user_attr(StudyAttr.FIRST_TRIALS_ENQUEUED, True)
    return len(spec.first_trials)


def trials_beyond_space(spec: StudySpec) -> str | None:
    """A warning when the budget asks for more trials than the finite space has configurations.

    Such trials repeat a configuration: the objective then reuses the finished trial's result
    instead of training it again (core/training/objective.py), so the extra budget buys nothing.
    """
    size = search_space_size(spec)
    n_trials = spec.budget.n_trials
    if size is None or n_trials is None or n_trials <= size:
        return None
    return (
        f"n_trials is {n_trials} but the search space has only {size} distinct configuration(s): "
        f"{n_trials - size} trial(s) would repeat one and reuse its result; lower n_trials to {size} or widen the space"
    )
