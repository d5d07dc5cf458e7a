"""Submitting, cancelling, resuming and extending jobs: the user's side of the queue."""

from __future__ import annotations

import json
import socket
import time
from collections import Counter
from collections.abc import Sequence
from typing import TYPE_CHECKING

import sqlalchemy as sa

from core.contract import StudyAttr
from core.data.manifest import MANIFEST_FILE, dataset_path
from core.runtime import launcher
from core.runtime.budget import total_budget, trial_counts
from core.runtime.job_model import ACTIVE_STATES, RESUMABLE_STATES, Job, JobError, JobState
from core.runtime.job_table import get_job, jobs_table, list_jobs, load_job_study, reconcile, set_status, tables_engine
from core.runtime.tuning import prepare_study
from core.search.spec import StudySpec
from core.search.validation import stored_spec

if TYPE_CHECKING:
    from core.settings import Settings


def submit_job(
    settings: Settings,
    spec: StudySpec,
    *,
    workers: int | None = None,
    devices: Sequence[str] | None = None,
    per_gpu: int | str = 1,
    launch: bool = True,
    trial_bytes: int | None = None,
) -> int:
    """Create (or reuse) the study, queue a job for it and start local workers; returns the job id.

    ``workers=0`` queues without starting anything (workers on other machines will claim it).
    """
    slots = launcher.plan_slots(devices, workers, per_gpu, trial_bytes=trial_bytes)  # per_gpu "auto": as many as fit
    _refuse_second_job(settings, spec.name)  # words the common case; the database enforces it (queue_job)
    try:
        study = prepare_study(spec, settings)  # checks the dataset before it creates anything
    except FileNotFoundError:
        if _dataset_gone(
            settings, spec.dataset
        ):  # deleted while its images were read (prepare_study removed the new study)
            raise JobError(
                f"dataset {spec.dataset!r} was deleted while the study was being prepared; nothing was queued"
            ) from None
        raise
    target = total_budget(spec)
    if target is not None and trial_counts(study).done >= target:
        raise JobError(
            f"study {spec.name!r} has already run its {target} trials; extend it (`python -m core jobs extend ID "
            "--trials N`) or raise budget.n_trials"
        )
    packed = per_gpu if isinstance(per_gpu, int) else max(Counter(slots).values(), default=1)
    job_id = queue_job(settings, spec, target, launcher.normalise_devices(devices), len(slots), packed)
    if _dataset_gone(settings, spec.dataset):  # a delete raced past its job check (core.runtime.dataset_guard)
        message = (
            f"dataset {spec.dataset!r} was deleted while the job was being queued; add the dataset again, then "
            f"resume job {job_id}"
        )
        with tables_engine(settings).begin() as connection:
            set_status(connection, job_id, JobState.FAILED, when=[JobState.QUEUED], error=message)
        raise JobError(message)
    if launch and slots:
        launcher.launch_workers(settings, get_job(settings, job_id), slots)
    return job_id


def _dataset_gone(settings: Settings, name: str) -> bool:
    return not (dataset_path(settings.datasets_dir, name) / MANIFEST_FILE).is_file()


def queue_job(
    settings: Settings,
    spec: StudySpec,
    n_trials: int | None,
    devices: Sequence[str] = (),
    workers: int = 1,
    per_gpu: int = 1,
) -> int:
    """Insert the job row only (the study must exist); :func:`submit_job` is the full submit.

    The database refuses a second active job of one study (a unique partial index), also when two
    submits race past every check: the loser gets a JobError naming the winner's job.
    """
    try:
        return _insert_job(settings, spec, n_trials, devices, workers, per_gpu)
    except sa.exc.IntegrityError:
        _refuse_second_job(settings, spec.name)
        raise


def _refuse_second_job(settings: Settings, study_name: str) -> None:
    active = [job for job in list_jobs(settings, ACTIVE_STATES) if job.study_name == study_name]
    if active:
        raise JobError(
            f"study {study_name!r} already has job {active[0].id} ({active[0].status}); cancel it or extend it instead"
        )


def _insert_job(
    settings: Settings, spec: StudySpec, n_trials: int | None, devices: Sequence[str], workers: int, per_gpu: int
) -> int:
    with tables_engine(settings).begin() as connection:
        result = connection.execute(
            sa.insert(jobs_table).values(
                study_name=spec.name,
                spec_json=spec.to_json(),
                status=JobState.QUEUED,
                n_trials=n_trials,
                timeout_s=spec.budget.timeout_s,
                devices=",".join(devices),
                workers=workers,
                per_gpu=per_gpu,
                host=socket.gethostname(),
                created_at=time.time(),
                log_path="",
            )
        )
        job_id = int(result.inserted_primary_key[0])
        log_path = settings.logs_dir / f"job-{job_id}.log"
        connection.execute(sa.update(jobs_table).where(jobs_table.c.id == job_id).values(log_path=str(log_path)))
    return job_id


def cancel_job(settings: Settings, job_id: int) -> Job:
    """Queued jobs are cancelled at once; running trials stop at their next epoch boundary."""
    job = get_job(settings, job_id)
    with tables_engine(settings).begin() as connection:
        if job.status in (JobState.QUEUED, JobState.INTERRUPTED):
            set_status(connection, job_id, JobState.CANCELLED, when=[job.status])
        elif job.status == JobState.RUNNING:
            set_status(connection, job_id, JobState.CANCELLING, when=[JobState.RUNNING])
        elif job.status != JobState.CANCELLING:
            raise JobError(
                f"job {job_id} is {job.status}; only {list(ACTIVE_STATES) + [JobState.INTERRUPTED]} jobs can be "
                "cancelled"
            )
    reconcile(settings)  # no live worker left to acknowledge: cancelled now
    return get_job(settings, job_id)


def resume_job(settings: Settings, job_id: int, *, launch: bool = True) -> Job:
    """Queue a cancelled, interrupted or failed job again; cancelled trials get replacements."""
    reconcile(settings)
    job = get_job(settings, job_id)
    if job.status not in RESUMABLE_STATES:
        hint = " (give it more trials with extend)" if job.status == JobState.FINISHED else ""
        raise JobError(f"job {job_id} is {job.status}; only {list(RESUMABLE_STATES)} jobs can be resumed{hint}")
    return _requeue(settings, job, launch=launch)


def extend_job(settings: Settings, job_id: int, more_trials: int, *, launch: bool = True) -> Job:
    """Give a job (running or ended) ``more_trials`` more trials; an ended job is queued again."""
    if not isinstance(more_trials, int) or more_trials < 1:
        raise JobError(f"more_trials must be a positive integer, got {more_trials!r}")
    reconcile(settings)
    job = get_job(settings, job_id)
    if job.n_trials is None:
        raise JobError(f"job {job_id} is limited by time only (budget.n_trials is null); submit a new spec instead")
    if job.status == JobState.CANCELLING:
        raise JobError(f"job {job_id} is being cancelled; wait until it is cancelled, then extend it")
    total = job.n_trials + more_trials
    _store_budget(settings, job, total)
    with tables_engine(settings).begin() as connection:
        connection.execute(sa.update(jobs_table).where(jobs_table.c.id == job_id).values(n_trials=total))
    job = get_job(settings, job_id)
    return job if job.status in (JobState.QUEUED, JobState.RUNNING) else _requeue(settings, job, launch=launch)


def _store_budget(settings: Settings, job: Job, n_trials: int) -> None:
    # The study's own spec records the budget it was given, so `tune` and the dashboard agree.
    spec_dict = json.loads(job.spec_json)
    spec_dict["budget"]["n_trials"] = n_trials
    study = load_job_study(settings, job)
    stored = stored_spec(study)
    study.set_user_attr(StudyAttr.SPEC, {**(stored.to_dict() if stored else spec_dict), "budget": spec_dict["budget"]})
    with tables_engine(settings).begin() as connection:
        connection.execute(
            sa.update(jobs_table).where(jobs_table.c.id == job.id).values(spec_json=json.dumps(spec_dict))
        )


def _requeue(settings: Settings, job: Job, *, launch: bool) -> Job:
    try:
        with tables_engine(settings).begin() as connection:
            if not set_status(
                connection, job.id, JobState.QUEUED, when=[job.status], finished_at=None, error=None, started_at=None
            ):
                raise JobError(f"job {job.id} changed state meanwhile; look again with `python -m core jobs`")
    except sa.exc.IntegrityError:  # another job of the study is active: one at a time
        _refuse_second_job(settings, job.study_name)
        raise
    job = get_job(settings, job.id)
    slots = launcher.plan_slots(job.devices or None, job.workers, job.per_gpu) if job.workers else []
    if launch and slots:
        launcher.launch_workers(settings, job, slots)
    return job
