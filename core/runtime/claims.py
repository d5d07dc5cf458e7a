"""The worker's side of the queue: register, claim a job, heart-beat, leave.

Claiming is a conditional UPDATE checked by its row count (atomic on SQLite and PostgreSQL alike),
so no job slot is taken twice; the last live worker to leave settles the job's final state.
"""

from __future__ import annotations

import os
import socket
import time
from typing import TYPE_CHECKING

import sqlalchemy as sa

from core.runtime.budget import budget_left, trial_counts
from core.runtime.job_model import Job, JobState
from core.runtime.job_table import (
    get_job,
    job_workers,
    jobs_table,
    list_jobs,
    load_job_study,
    reconcile,
    set_status,
    tables_engine,
    workers_table,
)

if TYPE_CHECKING:
    from core.settings import Settings


def register_worker(settings: Settings, worker_id: str, device: str) -> None:
    now = time.time()
    with tables_engine(settings).begin() as connection:
        connection.execute(
            sa.insert(workers_table).values(
                id=worker_id,
                job_id=None,
                host=socket.gethostname(),
                pid=os.getpid(),
                device=device,
                started_at=now,
                heartbeat_at=now,
            )
        )


def unregister_worker(settings: Settings, worker_id: str) -> None:
    with tables_engine(settings).begin() as connection:
        connection.execute(sa.delete(workers_table).where(workers_table.c.id == worker_id))


def claim_job(settings: Settings, worker_id: str, device: str, job_id: int | None = None) -> Job | None:
    """Attach the worker to the oldest job with work left (``job_id``: that job only), or None.

    The queued -> running move is a conditional UPDATE checked by its row count, which is atomic
    on SQLite and PostgreSQL alike; several workers may then share a running job's trials.
    """
    reconcile(settings)
    host = socket.gethostname()
    for job in sorted(list_jobs(settings, [JobState.QUEUED, JobState.RUNNING]), key=lambda j: j.id):
        if job_id is not None and job.id != job_id:
            continue
        # Device names are those of the submitting machine; other machines bring their own.
        if job_id is None and job.devices and job.host == host and device not in job.devices:
            continue
        if job.status == JobState.RUNNING and not budget_left(job, trial_counts(load_job_study(settings, job))):
            continue
        with tables_engine(settings).begin() as connection:
            started = job.started_at or time.time()
            if set_status(
                connection,
                job.id,
                JobState.RUNNING,
                when=[JobState.QUEUED, JobState.RUNNING],
                started_at=started,
                heartbeat_at=time.time(),
            ):
                connection.execute(
                    sa.update(workers_table)
                    .where(workers_table.c.id == worker_id)
                    .values(job_id=job.id, heartbeat_at=time.time())
                )
                return get_job(settings, job.id)
    return None


def heartbeat(settings: Settings, worker_id: str, job_id: int | None, trial_number: int | None) -> None:
    now = time.time()
    with tables_engine(settings).begin() as connection:
        connection.execute(
            sa.update(workers_table)
            .where(workers_table.c.id == worker_id)
            .values(heartbeat_at=now, trial_number=trial_number)
        )
        if job_id is not None:
            connection.execute(sa.update(jobs_table).where(jobs_table.c.id == job_id).values(heartbeat_at=now))


def fail_job(settings: Settings, job_id: int, reason: str) -> None:
    with tables_engine(settings).begin() as connection:
        set_status(
            connection,
            job_id,
            JobState.FAILED,
            when=[JobState.QUEUED, JobState.RUNNING, JobState.CANCELLING],
            error=reason,
        )


def detach_worker(settings: Settings, worker_id: str, job_id: int, *, done: bool) -> None:
    """The worker leaves the job; the last live worker to leave settles the job's final state."""
    with tables_engine(settings).begin() as connection:
        connection.execute(
            sa.update(workers_table).where(workers_table.c.id == worker_id).values(job_id=None, trial_number=None)
        )
    if job_workers(settings, job_id):
        return
    with tables_engine(settings).begin() as connection:
        set_status(connection, job_id, JobState.CANCELLED, when=[JobState.CANCELLING])
        if done:
            set_status(connection, job_id, JobState.FINISHED, when=[JobState.RUNNING])
    reconcile(settings)
