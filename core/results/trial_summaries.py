"""A study's finished trials as the leaderboard needs them, read from an RDB storage in a few queries.

``storage.get_all_trials`` builds one ORM object per stored row — for 1,000 trials x 30 epochs
some 50,000 (every intermediate value, every attr) — and parses every per-epoch history; that
was 90 % of the Leaderboard's first load (bench/RESULTS.md, "Results pages at scale"). A
leaderboard row needs none of it: :func:`read_summaries` reads only the columns a row uses with
plain SQLAlchemy selects of Optuna's tables (read-only: nothing is written, no private model is
used), one query per table and one for all the attrs, and leaves out the per-epoch lists
(:data:`CURVE_ATTRS`) and the intermediate values. A trial whose row does need its history (no
``val_metrics`` or ``epochs_run``: a pruned trial's row shows its last epoch) gets it in one more
query. Learning curves read the whole trial later, through the storage API
(:meth:`core.results.trial_cache.TrialCache.full_trials`).
"""

from __future__ import annotations

import datetime
import functools
import json
from collections import defaultdict
from typing import TYPE_CHECKING, Any

import optuna
import sqlalchemy as sa
from optuna.distributions import BaseDistribution, json_to_distribution
from optuna.trial import FrozenTrial, TrialState

from core.contract import TrialAttr

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

CURVE_ATTRS = (TrialAttr.HISTORY, TrialAttr.FOLD_HISTORIES)  # per-epoch lists: what a curve draws, not what a row shows
FINISHED_STATES = tuple(state.name for state in TrialState if state.is_finished())
IN_CHUNK = 500  # trial ids per IN (...) list: far below every database's bound on bound parameters

# Optuna's tables (optuna/storages/_rdb/models.py), only the columns read here.
_TRIALS = sa.table(
    "trials",
    sa.column("trial_id"),
    sa.column("number"),
    sa.column("study_id"),
    sa.column("state"),
    sa.column("datetime_start", sa.DateTime),
    sa.column("datetime_complete", sa.DateTime),
)
_VALUES = sa.table(
    "trial_values", sa.column("trial_id"), sa.column("objective"), sa.column("value"), sa.column("value_type")
)
_PARAMS = sa.table(
    "trial_params",
    sa.column("param_id"),
    sa.column("trial_id"),
    sa.column("param_name"),
    sa.column("param_value"),
    sa.column("distribution_json"),
)
_ATTRS = sa.table("trial_user_attributes", sa.column("trial_id"), sa.column("key"), sa.column("value_json"))


def rdb_engine(storage: optuna.storages.BaseStorage) -> Engine | None:
    """The SQLAlchemy engine of an RDB storage; None for any other storage (they are read through the API)."""
    backend = getattr(storage, "_backend", storage)  # a loaded study's RDB storage sits inside Optuna's _CachedStorage
    return backend.engine if isinstance(backend, optuna.storages.RDBStorage) else None


def read_summaries(engine: Engine, study_id: int) -> list[FrozenTrial]:
    """Every finished trial of ``study_id``, by number, without its curves and intermediate values."""
    of_study = sa.select(_TRIALS.c.trial_id).where(_TRIALS.c.study_id == study_id, _TRIALS.c.state.in_(FINISHED_STATES))
    with engine.connect() as connection:
        heads = connection.execute(
            sa.select(_TRIALS).where(_TRIALS.c.trial_id.in_(of_study)).order_by(_TRIALS.c.number)
        ).all()
        values = connection.execute(
            sa.select(_VALUES).where(_VALUES.c.trial_id.in_(of_study)).order_by(_VALUES.c.objective)
        ).all()
        params = connection.execute(
            sa.select(_PARAMS).where(_PARAMS.c.trial_id.in_(of_study)).order_by(_PARAMS.c.param_id)
        ).all()
        attrs = connection.execute(
            sa.select(_ATTRS).where(_ATTRS.c.trial_id.in_(of_study), _ATTRS.c.key.not_in(CURVE_ATTRS))
        ).all()
        user_attrs: dict[int, dict[str, Any]] = defaultdict(dict)
        for trial_id, key, value_json in attrs:
            user_attrs[trial_id][key] = json.loads(value_json)
        _add_histories(
            connection, [head.trial_id for head in heads if _row_needs_history(user_attrs[head.trial_id])], user_attrs
        )
    trial_values: dict[int, list[float]] = defaultdict(list)
    for trial_id, _objective, value, value_type in values:
        trial_values[trial_id].append(_stored_value(value, value_type))
    trial_params: dict[int, list[tuple[str, float, BaseDistribution]]] = defaultdict(list)
    for _param_id, trial_id, name, value, distribution_json in params:
        trial_params[trial_id].append((name, value, _distribution(distribution_json)))
    return [
        _summary(head, trial_values.get(head.trial_id), trial_params[head.trial_id], user_attrs[head.trial_id])
        for head in heads
    ]


def _row_needs_history(attrs: dict[str, Any]) -> bool:
    """What :func:`core.results.trials.trial_row` falls back to the history for: val metrics, epochs run."""
    return not attrs.get(TrialAttr.VAL_METRICS) or attrs.get(TrialAttr.EPOCHS_RUN) is None


def _add_histories(connection: sa.Connection, trial_ids: list[int], user_attrs: dict[int, dict[str, Any]]) -> None:
    for start in range(0, len(trial_ids), IN_CHUNK):
        chunk = trial_ids[start : start + IN_CHUNK]
        query = sa.select(_ATTRS).where(_ATTRS.c.trial_id.in_(chunk), _ATTRS.c.key == TrialAttr.HISTORY)
        for trial_id, key, value_json in connection.execute(query):
            user_attrs[trial_id][key] = json.loads(value_json)


def _summary(
    head: Any, values: list[float] | None, params: list[tuple[str, float, BaseDistribution]], user_attrs: dict[str, Any]
) -> FrozenTrial:
    return FrozenTrial(
        number=head.number,
        state=TrialState[head.state],
        value=None,
        values=values,
        datetime_start=_local(head.datetime_start),
        datetime_complete=_local(head.datetime_complete),
        params={name: distribution.to_external_repr(value) for name, value, distribution in params},
        distributions={name: distribution for name, _value, distribution in params},
        user_attrs=user_attrs,
        system_attrs={},
        intermediate_values={},
        trial_id=head.trial_id,
    )


@functools.lru_cache(maxsize=256)
def _distribution(distribution_json: str) -> BaseDistribution:
    # Every trial of a study repeats the same few distributions: parse each once.
    return json_to_distribution(distribution_json)


def _stored_value(value: float | None, value_type: str) -> float:
    """Optuna keeps infinite objective values as a type beside a NULL value."""
    if value_type == "INF_POS":
        return float("inf")
    if value_type == "INF_NEG":
        return float("-inf")
    return float(value)  # type: ignore[arg-type]  # FINITE rows always hold a value


def _local(stored: datetime.datetime | None) -> datetime.datetime | None:
    """Optuna stores naive UTC and hands out naive local time (as ``TrialModel.datetime_start`` does)."""
    if stored is None:
        return None
    return stored.replace(tzinfo=datetime.UTC).astimezone().replace(tzinfo=None)
