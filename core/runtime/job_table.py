"""SegTune's ``jobs`` and ``workers`` tables, in the same DB as Optuna's, and their reads.

Everything a user does with jobs (submit, watch, cancel, resume, extend) is a small change to these
rows, so the dashboard and the CLI never train and never hold a worker's state. One ``SEGTUNE_DB``
on PostgreSQL serves many machines. Never imports torch: the dashboard reads jobs through it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import optuna
import sqlalchemy as sa

from core.runtime.budget import budget_used, trial_counts
from core.runtime.job_model import ACTIVE_STATES, ENDED_STATES, Job, JobError, JobState, WorkerInfo
from core.runtime.storage import engine_for, open_storage

if TYPE_CHECKING:
    from core.settings import Settings

log = logging.getLogger("segtune.jobs")
metadata = sa.MetaData()

jobs_table = sa.Table(
    "segtune_jobs",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("study_name", sa.String(128), nullable=False, index=True),
    sa.Column("spec_json", sa.Text, nullable=False),
    sa.Column("status", sa.String(16), nullable=False, index=True),
    sa.Column("n_trials", sa.Integer, nullable=True),  # counted trials the study should reach; NULL = timeout only
    sa.Column("timeout_s", sa.Float, nullable=True),
    sa.Column("devices", sa.String(512), nullable=False, default=""),  # comma-separated; "" = any
    sa.Column("workers", sa.Integer, nullable=False, default=1),
    sa.Column("per_gpu", sa.Integer, nullable=False, default=1),
    sa.Column("host", sa.String(255), nullable=False),  # where it was submitted (device names are local to it)
    sa.Column("created_at", sa.Float, nullable=False),  # Unix seconds everywhere: no time-zone games
    sa.Column("started_at", sa.Float, nullable=True),
    sa.Column("finished_at", sa.Float, nullable=True),
    sa.Column("heartbeat_at", sa.Float, nullable=True),
    sa.Column("error", sa.Text, nullable=True),
    sa.Column("log_path", sa.String(1024), nullable=False),
)

# One active job per study, enforced by the database itself (a partial unique index: SQLite 3.8+ and
# PostgreSQL alike), so simultaneous submits cannot both insert; a check before the insert only words the error.
_ACTIVE = jobs_table.c.status.in_([str(state) for state in ACTIVE_STATES])
one_active_job_per_study = sa.Index(
    "segtune_jobs_one_active_per_study",
    jobs_table.c.study_name,
    unique=True,
    sqlite_where=_ACTIVE,
    postgresql_where=_ACTIVE,
)

workers_table = sa.Table(
    "segtune_workers",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("job_id", sa.Integer, nullable=True, index=True),
    sa.Column("host", sa.String(255), nullable=False),
    sa.Column("pid", sa.Integer, nullable=False),
    sa.Column("device", sa.String(32), nullable=False),
    sa.Column("started_at", sa.Float, nullable=False),
    sa.Column("heartbeat_at", sa.Float, nullable=False),
    sa.Column("trial_number", sa.Integer, nullable=True),
)

_ready_engines: set[int] = set()


def tables_engine(settings: Settings) -> sa.Engine:
    engine = engine_for(settings.db_url)
    if id(engine) not in _ready_engines:
        try:
            metadata.create_all(engine, checkfirst=True)
        except sa.exc.SQLAlchemyError:
            # Two workers starting at once on PostgreSQL may race to create the tables: one wins.
            time.sleep(0.5)
            metadata.create_all(engine, checkfirst=True)
        _ensure_active_index(engine)
        _ready_engines.add(id(engine))
    return engine


def _ensure_active_index(engine: sa.Engine) -> None:
    """Add the one-active-job index to a database made before it existed (create_all skips existing tables)."""
    try:
        one_active_job_per_study.create(engine, checkfirst=True)
    except sa.exc.IntegrityError:
        log.warning(
            "segtune_jobs holds several active jobs of one study (made before the database enforced one); "
            "the rule applies once they end"
        )
    except sa.exc.SQLAlchemyError:
        time.sleep(0.5)  # another process is creating it at the same moment
        one_active_job_per_study.create(engine, checkfirst=True)


def get_job(settings: Settings, job_id: int) -> Job:
    with tables_engine(settings).connect() as connection:
        row = connection.execute(sa.select(jobs_table).where(jobs_table.c.id == job_id)).first()
        if row is None:
            ids = connection.execute(sa.select(jobs_table.c.id).order_by(jobs_table.c.id)).scalars().all()
            raise JobError(f"no job with id {job_id}; jobs: {list(ids) or 'none yet'}")
    return Job.from_row(row)


def list_jobs(settings: Settings, statuses: Sequence[str] | None = None) -> list[Job]:
    """Every job, newest first, after marking those whose workers all died as interrupted."""
    reconcile(settings)
    query = sa.select(jobs_table).order_by(jobs_table.c.id.desc())
    if statuses:
        query = query.where(jobs_table.c.status.in_(list(statuses)))
    with tables_engine(settings).connect() as connection:
        return [Job.from_row(row) for row in connection.execute(query)]


def job_workers(settings: Settings, job_id: int | None = None, *, alive_only: bool = True) -> list[WorkerInfo]:
    query = sa.select(workers_table).order_by(workers_table.c.started_at)
    if job_id is not None:
        query = query.where(workers_table.c.job_id == job_id)
    with tables_engine(settings).connect() as connection:
        stale = settings.heartbeats.worker_stale_s
        workers = [WorkerInfo(**dict(row._mapping), stale_after_s=stale) for row in connection.execute(query)]
    return [w for w in workers if w.is_alive] if alive_only else workers


def set_status(connection: sa.Connection, job_id: int, status: str, *, when: Sequence[str], **values: Any) -> bool:
    """Move a job to ``status`` only from the states in ``when``; False if another process won."""
    if status in ENDED_STATES:
        values.setdefault("finished_at", time.time())
    result = connection.execute(
        sa.update(jobs_table)
        .where(jobs_table.c.id == job_id, jobs_table.c.status.in_(list(when)))
        .values(status=status, **values)
    )
    return result.rowcount == 1


def reconcile(settings: Settings) -> None:
    """Jobs marked running/cancelling whose workers are all gone become cancelled, finished (when
    their budget is used: the trials, not the workers' exit path, decide) or interrupted."""
    db = tables_engine(settings)
    with db.connect() as connection:
        active = connection.execute(
            sa.select(jobs_table.c.id, jobs_table.c.status).where(
                jobs_table.c.status.in_([JobState.RUNNING, JobState.CANCELLING])
            )
        ).all()
    if not active:
        return
    live_jobs = {w.job_id for w in job_workers(settings)}
    for job_id, status in active:
        if job_id in live_jobs:
            continue
        target, error = _orphan_state(settings, job_id, status)
        with db.begin() as connection:
            set_status(connection, job_id, target, when=[status], error=error)


def _orphan_state(settings: Settings, job_id: int, status: str) -> tuple[str, str | None]:
    """The state of a job whose workers are all gone, with the reason to show."""
    if status == JobState.CANCELLING:
        return JobState.CANCELLED, None
    job = get_job(settings, job_id)
    if budget_used(job, trial_counts(load_job_study(settings, job))):
        return JobState.FINISHED, None
    return JobState.INTERRUPTED, "no live worker (killed, crashed or the machine restarted); resume the job to continue"


def load_job_study(settings: Settings, job: Job) -> optuna.Study:
    return optuna.load_study(study_name=job.study_name, storage=open_storage(settings.db_url, settings.heartbeats))
