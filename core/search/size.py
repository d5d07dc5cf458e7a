"""How many configurations a search space holds, by arithmetic: never by listing them.

A grid of ``batch_size`` 1..1024 x ``epochs`` 1..10000 is ten million points; listing them to count
them once took a machine down. The count here is a sum over the condition-setting choices
(:data:`~core.search.space.CONDITION_PARAMS`: architecture, optimizer and loss) of the product of the other
active dimensions' sizes, which is exactly what :func:`core.search.suggest.grid_points` lists
(tests hold the two together), in microseconds whatever the size.
"""

from __future__ import annotations

import itertools
import json
import math
from typing import Any

from core.search.space import CONDITION_PARAMS, hyperparameters
from core.search.spec import StudySpec

MAX_GRID_POINTS = 10_000  # a grid study above this is refused: enumerate it and it does not fit in memory


def search_space_size(spec: StudySpec) -> int | None:
    """Number of distinct configurations ``spec`` can try, or None when a continuous range makes it infinite."""
    catalogue = hyperparameters(spec.task)
    counts = {name: spec.param(name).value_count() for name in catalogue}
    if any(count is None for count in counts.values()):
        return None
    drivers = [_distinct(spec.param(name).candidate_values()) for name in CONDITION_PARAMS]  # short lists of names
    total = 0
    for values in itertools.product(*drivers):
        context = dict(zip(CONDITION_PARAMS, values))
        total += math.prod(
            counts[name] for name, hp in catalogue.items() if name not in CONDITION_PARAMS and hp.active(context)
        )
    return total


def _distinct(values: list[Any]) -> list[Any]:
    return list({json.dumps(value, sort_keys=True, default=str): value for value in values}.values())


def grid_size_problem(spec: StudySpec) -> str | None:
    """Why a grid study is too large to run, or None."""
    size = search_space_size(spec) if spec.sampler == "grid" else None
    return None if size is None or size <= MAX_GRID_POINTS else too_large(size)


def too_large(size: int) -> str:
    return (
        f"the grid has {size:,} points, above the limit of {MAX_GRID_POINTS:,}; use fewer values or larger steps, "
        "or a sampler that does not enumerate (tpe, random)"
    )
