"""Reuse an earlier study: seed a new one with its best configurations, or narrow the space around them.

*Warm start*: the top-k complete trials of an earlier study on the same dataset are queued in the
new study (``study.enqueue_trial``) so its first trials are known-good points; the sampler then
goes on from there. Only values that are valid in the new space are kept (a value outside a range
or not among the choices is left to the sampler). *Narrow around the best*: a linked study whose
numeric ranges shrink around the best trial's values and whose choices keep only what the top-k
trials used. Both record their origin in the new study's ``parent`` attr.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import optuna
from optuna.trial import TrialState

from core.contract import StudyAttr
from core.errors import SegTuneError
from core.search.space import ParamSpec
from core.search.spec import Budget, StudySpec
from core.search.validation import stored_spec

NARROW_WIDTH = 0.25  # a narrowed range keeps this share of the old range's width (log width for log ranges)


def top_configurations(study: optuna.Study, k: int) -> list[dict[str, Any]]:
    """The suggested params of the ``k`` best complete trials, best first (by the first objective)."""
    if k < 1:
        raise SegTuneError(f"top-k must be at least 1, got {k}")
    complete = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)) if t.values]
    maximize = study.directions[0] == optuna.study.StudyDirection.MAXIMIZE
    complete.sort(key=lambda t: t.values[0], reverse=maximize)
    return [dict(t.params) for t in complete[:k]]


def fit_to_space(params: dict[str, Any], spec: StudySpec) -> dict[str, Any]:
    """The values of ``params`` that the spec's tuned dimensions can take (the rest is left to the sampler)."""
    fitted = {}
    for name, value in params.items():
        dimension = spec.search_space.get(name)
        if dimension is not None and dimension.kind != "fixed" and dimension.admits(value):
            fitted[name] = value
    return fitted


def check_same_dataset(source: optuna.Study, spec: StudySpec) -> None:
    stored = stored_spec(source)
    dataset = source.user_attrs.get(StudyAttr.DATASET) or (stored.dataset if stored else None)
    if dataset != spec.dataset:
        raise SegTuneError(
            f"study {source.study_name!r} was run on dataset {dataset!r}, not {spec.dataset!r}: "
            "warm starts and narrowing only reuse configurations from the same dataset"
        )


def warm_start(study: optuna.Study, spec: StudySpec, source: optuna.Study, k: int) -> int:
    """Queue the top-``k`` configurations of ``source`` in ``study``; returns how many were queued."""
    check_same_dataset(source, spec)
    configurations = [fit_to_space(params, spec) for params in top_configurations(source, k)]
    configurations = [c for c in configurations if c]
    for params in configurations:
        study.enqueue_trial(params, skip_if_exists=True)
    study.set_user_attr(
        StudyAttr.PARENT, {"study": source.study_name, "how": "warm_start", "top_k": k, "queued": len(configurations)}
    )
    return len(configurations)


def narrow_spec(
    spec: StudySpec, top: list[dict[str, Any]], *, name: str, width: float = NARROW_WIDTH, n_trials: int | None = None
) -> StudySpec:
    """``spec`` with numeric ranges shrunk around ``top[0]`` and choices cut to those ``top`` used."""
    if not top:
        raise SegTuneError(f"study {spec.name!r} has no complete trial yet: there is no best to narrow around")
    space = {}
    for dim_name, dimension in spec.search_space.items():
        values = [params[dim_name] for params in top if dim_name in params]
        if dimension.kind == "fixed" or not values:
            space[dim_name] = dimension
        elif dimension.kind == "choice":
            kept = tuple(dict.fromkeys(v for v in values if v in dimension.choices)) or dimension.choices
            space[dim_name] = (
                ParamSpec.fixed(kept[0]) if len(kept) == 1 else dataclasses.replace(dimension, choices=kept)
            )
        else:
            space[dim_name] = _shrink(dimension, values[0], width)
    budget = Budget(
        n_trials=n_trials or spec.budget.n_trials, timeout_s=spec.budget.timeout_s, max_epochs=spec.budget.max_epochs
    )
    description = f"Narrowed around the best of study {spec.name!r} ({len(top)} best trials)."
    return dataclasses.replace(spec, name=name, search_space=space, budget=budget, description=description)


def _shrink(dimension: ParamSpec, best: Any, width: float) -> ParamSpec:
    low, high = float(dimension.low), float(dimension.high)
    if dimension.log:
        centre, half = math.log(float(best)), width * (math.log(high) - math.log(low)) / 2
        new_low, new_high = max(low, math.exp(centre - half)), min(high, math.exp(centre + half))
    else:
        half = width * (high - low) / 2
        new_low, new_high = max(low, float(best) - half), min(high, float(best) + half)
    if dimension.step:  # stay on the range's grid
        step = float(dimension.step)
        new_low = low + math.floor(round((new_low - low) / step, 9)) * step
        new_high = low + math.ceil(round((new_high - low) / step, 9)) * step
    if dimension.kind == "int":
        new_low, new_high = int(round(new_low)), int(round(new_high))
    if new_low >= new_high:
        return ParamSpec.fixed(best)
    return dataclasses.replace(dimension, low=new_low, high=new_high)


def narrowed_from(source: optuna.Study, spec: StudySpec, k: int, *, name: str | None = None) -> StudySpec:
    """The narrowed spec of ``source`` (whose own spec is ``spec``) around its top-``k`` trials."""
    return narrow_spec(spec, top_configurations(source, k), name=name or f"{spec.name}-narrow")


def link_narrowed(study: optuna.Study, source: optuna.Study, k: int) -> None:
    study.set_user_attr(StudyAttr.PARENT, {"study": source.study_name, "how": "narrowed", "top_k": k})
