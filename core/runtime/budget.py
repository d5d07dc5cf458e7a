"""A study's trial budget: what counts, whether another trial may start, and the lock around that.

The budget (``budget.n_trials``) is for the whole study, however many workers share it: a worker
starts a trial only while *done + running < budget*, checked under :func:`trial_lock`.
"""

from __future__ import annotations

import contextlib
import fcntl
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import optuna
import sqlalchemy as sa
from optuna.trial import TrialState

from core.contract import TrialAttr
from core.runtime.job_model import Job, JobError
from core.runtime.storage import engine_for, is_sqlite
from core.search.size import search_space_size
from core.search.spec import StudySpec


@dataclass(frozen=True)
class TrialCounts:
    """Where a study stands against its budget. ``done`` counts trials that used budget."""

    done: int  # COMPLETE + PRUNED + FAIL (not cancelled, not superseded by a retry)
    complete: int
    pruned: int
    failed: int  # counted failures
    cancelled: int  # stopped by a cancel: not counted, a resumed job runs replacements
    running: int
    waiting: int  # queued in Optuna (retries of dead workers' trials, grid points)


def trial_counts(study: optuna.Study) -> TrialCounts:
    """Count trials against the budget; a failure retried by Optuna's stale-trial callback is
    superseded by its retry, so a killed worker's trial does not use budget twice."""
    trials = study.get_trials(deepcopy=False)
    superseded = {number for t in trials for number in t.system_attrs.get("retry_history", [])}
    by_state: dict[TrialState, int] = {}
    cancelled = failed = 0
    for trial in trials:
        by_state[trial.state] = by_state.get(trial.state, 0) + 1
        if trial.state == TrialState.FAIL:
            if trial.user_attrs.get(TrialAttr.CANCELLED):
                cancelled += 1
            elif trial.number not in superseded:
                failed += 1
    complete, pruned = by_state.get(TrialState.COMPLETE, 0), by_state.get(TrialState.PRUNED, 0)
    return TrialCounts(
        done=complete + pruned + failed,
        complete=complete,
        pruned=pruned,
        failed=failed,
        cancelled=cancelled,
        running=by_state.get(TrialState.RUNNING, 0),
        waiting=by_state.get(TrialState.WAITING, 0),
    )


def budget_left(job: Job, counts: TrialCounts, now: float | None = None) -> bool:
    """True while the job may start another trial (counting the ones running now)."""
    if (
        job.timeout_s is not None
        and job.started_at is not None
        and (now or time.time()) - job.started_at >= job.timeout_s
    ):
        return False
    return job.n_trials is None or counts.done + counts.running < job.n_trials


def budget_used(job: Job, counts: TrialCounts, now: float | None = None) -> bool:
    """True once nothing is left to do: the budget is counted or the timeout has passed."""
    if (
        job.timeout_s is not None
        and job.started_at is not None
        and (now or time.time()) - job.started_at >= job.timeout_s
    ):
        return True
    return job.n_trials is not None and counts.done >= job.n_trials


@contextlib.contextmanager
def trial_lock(db_url: str, study_name: str) -> Iterator[None]:
    """Serialise 'count, then start a trial' for one study across processes and machines."""
    if is_sqlite(db_url):
        # SQLite means one machine: a file lock beside the DB is exact and needs no server.
        database = sa.engine.make_url(db_url).database
        if not database or database == ":memory:":
            raise JobError("workers need a file or server database, not an in-memory SQLite DB")
        path = Path(database).with_name(Path(database).name + ".trials.lock")
        with path.open("a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)
        return
    key = zlib.crc32(f"segtune-trials:{study_name}".encode())
    with engine_for(db_url).connect() as connection:
        connection.execute(sa.text("SELECT pg_advisory_lock(:key)"), {"key": key})
        try:
            yield
        finally:
            connection.execute(sa.text("SELECT pg_advisory_unlock(:key)"), {"key": key})


def total_budget(spec: StudySpec) -> int | None:
    """Trials the study should run in all: the spec's budget, and never more than a grid's points."""
    if spec.sampler == "grid":
        points = search_space_size(spec)  # arithmetic, equal to len(grid_points(spec))
        if points is not None:
            return points if spec.budget.n_trials is None else min(points, spec.budget.n_trials)
    return spec.budget.n_trials


def remaining_budget(study: optuna.Study, spec: StudySpec) -> int | None:
    total = total_budget(spec)
    return None if total is None else total - trial_counts(study).done
