"""Insights: Optuna's visualisations of a study, or why one cannot be drawn yet."""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

import optuna
from optuna.trial import FrozenTrial, TrialState

from core.metrics.catalogue import label
from core.results.trials import ResultsError, objective_names

if TYPE_CHECKING:
    import plotly.graph_objects as go


INSIGHTS: dict[str, str] = {
    "history": "Optimization history",
    "importances": "Parameter importances",
    "parallel": "Parallel coordinates",
    "contour": "Contour",
    "slice": "Slice",
    "pareto": "Pareto front",
}
CONTOUR_MAX_PARAMS = 3  # the most important ones: n params draw n x n panels


@dataclass(frozen=True)
class Insight:
    """One optuna.visualization figure, or why it cannot be drawn for this study (``figure`` None)."""

    title: str
    figure: go.Figure | None = None
    message: str = ""


def insight_figures(study: optuna.Study, objective: int = 0) -> dict[str, Insight]:
    """Every figure of :data:`INSIGHTS`, for objective number ``objective`` where one is needed."""
    names = objective_names(study)
    if not 0 <= objective < len(names):
        raise ResultsError(f"objective {objective} does not exist; this study has {len(names)}: {', '.join(names)}")
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if not complete:
        message = "No completed trials yet — figures appear once the first trial finishes."
        return {key: Insight(title, message=message) for key, title in INSIGHTS.items()}
    varying = _varying_params(complete)
    target = _objective_target(study, objective)
    target_name = label(names[objective])  # "Validation Balanced accuracy", not "val_balanced_accuracy"
    figures = {
        "history": _history(study, target, target_name),
        "importances": _importances(study, complete, varying, objective, target_name),
        "parallel": _needs_params(
            varying,
            1,
            lambda: optuna.visualization.plot_parallel_coordinate(study, target=target, target_name=target_name),
        ),
        "contour": _needs_params(
            varying,
            2,
            lambda: optuna.visualization.plot_contour(
                study, params=_top_params(study, varying, objective), target=target, target_name=target_name
            ),
        ),
        "slice": _needs_params(
            varying,
            1,
            lambda: optuna.visualization.plot_slice(study, params=varying, target=target, target_name=target_name),
        ),
        "pareto": _pareto(study, [label(name) for name in names]),
    }
    return {key: Insight(INSIGHTS[key], *result) for key, result in figures.items()}


Drawn = tuple["go.Figure | None", str]


def _objective_target(study: optuna.Study, objective: int) -> Callable[[FrozenTrial], float] | None:
    # optuna.visualization needs an explicit target for multi-objective studies.
    if len(study.directions) == 1:
        return None
    return lambda trial: trial.values[objective]


def _varying_params(complete: Sequence[FrozenTrial]) -> list[str]:
    """Params that took at least two values: a constant explains nothing and cannot be plotted."""
    seen: dict[str, set[str]] = {}
    for trial in complete:
        for name, value in trial.params.items():
            seen.setdefault(name, set()).add(json.dumps(value, default=str))
    return sorted(name for name, values in seen.items() if len(values) > 1)


def _needs_params(varying: list[str], count: int, draw: Callable[[], go.Figure]) -> Drawn:
    if len(varying) < count:
        return None, (
            f"Needs at least {count} tuned parameter(s) that took different values; "
            f"this study has {len(varying)}. Widen the search space on New study."
        )
    return draw(), ""


def _history(study: optuna.Study, target: Callable[[FrozenTrial], float] | None, target_name: str) -> Drawn:
    return optuna.visualization.plot_optimization_history(study, target=target, target_name=target_name), ""


def _importances(
    study: optuna.Study, complete: Sequence[FrozenTrial], varying: list[str], objective: int, target_name: str
) -> Drawn:
    if len(complete) < 2:
        return None, f"Parameter importances need at least 2 completed trials; this study has {len(complete)}."
    if not varying:
        return None, "No tuned parameter took different values yet, so none can explain the results."
    with _quiet_importances():
        figure = optuna.visualization.plot_param_importances(
            study, params=varying, target=_ranking_target(study, objective), target_name=target_name
        )
    return figure, ""


def _ranking_target(study: optuna.Study, objective: int) -> Callable[[FrozenTrial], float] | None:
    """The objective as the importance evaluator wants it: smaller is better.

    PED-ANOVA ranks params by how they reach *low* targets, so a maximised objective is negated.
    """
    if len(study.directions) == 1:
        return None
    sign = -1.0 if study.directions[objective] == optuna.study.StudyDirection.MAXIMIZE else 1.0
    return lambda trial: sign * trial.values[objective]


@contextmanager
def _quiet_importances() -> Iterator[None]:
    # optuna warns whenever a target is given; _ranking_target already orients it.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="PedAnovaImportanceEvaluator computes")
        yield


def _top_params(study: optuna.Study, varying: list[str], objective: int) -> list[str]:
    if len(varying) <= CONTOUR_MAX_PARAMS:
        return varying
    with _quiet_importances():
        importances = optuna.importance.get_param_importances(
            study, params=varying, target=_ranking_target(study, objective)
        )
    return list(importances)[:CONTOUR_MAX_PARAMS]


def _pareto(study: optuna.Study, names: list[str]) -> Drawn:
    if len(study.directions) < 2:
        return (
            None,
            "This study has one objective; a Pareto front needs two or more (pick several objectives on New study).",
        )
    if len(study.directions) > 3:
        return None, f"A Pareto front is drawn for 2 or 3 objectives; this study has {len(study.directions)}."
    return optuna.visualization.plot_pareto_front(study, target_names=names), ""
