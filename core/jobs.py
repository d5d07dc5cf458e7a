"""Background tuning jobs: SegTune's ``jobs`` and ``workers`` tables, the queue and its views.

A job is a row saying "run study S up to N counted trials on these devices". Worker processes
(core/worker.py) claim jobs in submission order, run trials and heart-beat; everything a user does
(submit, watch, cancel, resume, extend) is a small change to these rows, so the dashboard and the
CLI never train and never hold a worker's state. Tables live in the same DB as Optuna's
(``engine_for(settings.db_url)``), so one ``SEGTUNE_DB`` on PostgreSQL serves many machines.

Job states::

    queued -> running -> finished                  (budget used or timeout reached)
                      -> cancelling -> cancelled   (cancel: trials stop at the next epoch)
                      -> interrupted               (no live worker left: kill -9, reboot)
                      -> failed                    (a job-level error, e.g. the dataset is gone)
    cancelled / interrupted / failed --resume--> queued;  any --extend--> more trials (queued)

This module never imports torch: the dashboard imports it to show jobs.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import time
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import optuna
import sqlalchemy as sa
from optuna.trial import TrialState

from core.errors import SegTuneError
from core.processes import tail_file
from core.spec import StudySpec, spec_from_dict
from core.storage import GRACE_PERIOD_S, engine_for, is_sqlite, open_storage

if TYPE_CHECKING:
    from core.settings import Settings

QUEUED, RUNNING, CANCELLING = "queued", "running", "cancelling"
CANCELLED, FINISHED, FAILED, INTERRUPTED = "cancelled", "finished", "failed", "interrupted"
JOB_STATUSES = (QUEUED, RUNNING, CANCELLING, CANCELLED, FINISHED, FAILED, INTERRUPTED)
ACTIVE_STATUSES = (QUEUED, RUNNING, CANCELLING)
RESUMABLE_STATUSES = (CANCELLED, INTERRUPTED, FAILED)

# A worker silent this long is taken for dead. Generous: a loaded machine may delay beats by seconds,
# and on the worker's own machine a vanished pid tells at once anyway.
WORKER_STALE_S = float(max(GRACE_PERIOD_S, 60))

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


class JobError(SegTuneError):
    """A job operation that cannot be done (unknown id, wrong state, bad arguments)."""


# --- typed rows and views -----------------------------------------------------------------------


@dataclass(frozen=True)
class Job:
    id: int
    study_name: str
    spec_json: str
    status: str
    n_trials: int | None
    timeout_s: float | None
    devices: tuple[str, ...]
    workers: int
    per_gpu: int
    host: str
    created_at: float
    started_at: float | None
    finished_at: float | None
    heartbeat_at: float | None
    error: str | None
    log_path: str

    @property
    def spec(self) -> StudySpec:
        return spec_from_dict(json.loads(self.spec_json))

    @property
    def is_active(self) -> bool:
        return self.status in ACTIVE_STATUSES

    @classmethod
    def from_row(cls, row: Any) -> Job:
        data = dict(row._mapping)
        data["devices"] = tuple(d for d in (data["devices"] or "").split(",") if d)
        return cls(**data)


@dataclass(frozen=True)
class WorkerInfo:
    id: str
    job_id: int | None
    host: str
    pid: int
    device: str
    started_at: float
    heartbeat_at: float
    trial_number: int | None

    @property
    def heartbeat_age_s(self) -> float:
        return max(0.0, time.time() - self.heartbeat_at)

    @property
    def is_alive(self) -> bool:
        if self.host == socket.gethostname() and not pid_alive(self.pid):
            return False  # on this machine a vanished pid is certain, no need to wait for the grace period
        return self.heartbeat_age_s <= WORKER_STALE_S


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


@dataclass(frozen=True)
class RunningTrial:
    number: int
    epoch: int | None  # current epoch (1-based); None while the data loads
    epochs_planned: int | None
    device: str | None
    worker: str | None
    heartbeat_age_s: float | None
    elapsed_s: float


@dataclass(frozen=True)
class JobStatus:
    job: Job
    trials_done: int
    trials_total: int | None
    counts: TrialCounts
    running: tuple[RunningTrial, ...]
    workers: tuple[WorkerInfo, ...]  # live workers attached to the job
    eta_s: float | None  # None until one trial has finished (or without a trial budget)
    best_value: float | None


# --- tables -------------------------------------------------------------------------------------


def _engine(settings: Settings) -> sa.Engine:
    engine = engine_for(settings.db_url)
    if id(engine) not in _ready_engines:
        try:
            metadata.create_all(engine, checkfirst=True)
        except sa.exc.SQLAlchemyError:
            # Two workers starting at once on PostgreSQL may race to create the tables: one wins.
            time.sleep(0.5)
            metadata.create_all(engine, checkfirst=True)
        _ready_engines.add(id(engine))
    return engine


def pid_alive(pid: int) -> bool:
    """True if ``pid`` runs on this machine and is not a zombie (an exited child nobody reaped)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    stat = Path(f"/proc/{pid}/stat")
    try:
        return stat.read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def get_job(settings: Settings, job_id: int) -> Job:
    with _engine(settings).connect() as connection:
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
    with _engine(settings).connect() as connection:
        return [Job.from_row(row) for row in connection.execute(query)]


def job_workers(settings: Settings, job_id: int | None = None, *, alive_only: bool = True) -> list[WorkerInfo]:
    query = sa.select(workers_table).order_by(workers_table.c.started_at)
    if job_id is not None:
        query = query.where(workers_table.c.job_id == job_id)
    with _engine(settings).connect() as connection:
        workers = [WorkerInfo(**dict(row._mapping)) for row in connection.execute(query)]
    return [w for w in workers if w.is_alive] if alive_only else workers


def _set_status(connection: sa.Connection, job_id: int, status: str, *, when: Sequence[str], **values: Any) -> bool:
    """Move a job to ``status`` only from the states in ``when``; False if another process won."""
    if status in (CANCELLED, FINISHED, FAILED, INTERRUPTED):
        values.setdefault("finished_at", time.time())
    result = connection.execute(
        sa.update(jobs_table).where(jobs_table.c.id == job_id, jobs_table.c.status.in_(list(when))).values(status=status, **values)
    )
    return result.rowcount == 1


def reconcile(settings: Settings) -> None:
    """Jobs marked running/cancelling whose workers are all gone become cancelled, finished (when
    their budget is used: the trials, not the workers' exit path, decide) or interrupted."""
    engine = _engine(settings)
    with engine.connect() as connection:
        active = connection.execute(sa.select(jobs_table.c.id, jobs_table.c.status).where(jobs_table.c.status.in_([RUNNING, CANCELLING]))).all()
    if not active:
        return
    live_jobs = {w.job_id for w in job_workers(settings)}
    for job_id, status in active:
        if job_id in live_jobs:
            continue
        target, error = _orphan_state(settings, job_id, status)
        with engine.begin() as connection:
            _set_status(connection, job_id, target, when=[status], error=error)


def _orphan_state(settings: Settings, job_id: int, status: str) -> tuple[str, str | None]:
    """The state of a job whose workers are all gone, with the reason to show."""
    if status == CANCELLING:
        return CANCELLED, None
    job = get_job(settings, job_id)
    if budget_used(job, trial_counts(load_job_study(settings, job))):
        return FINISHED, None
    return INTERRUPTED, "no live worker (killed, crashed or the machine restarted); resume the job to continue"


# --- budget -------------------------------------------------------------------------------------


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
            if trial.user_attrs.get("cancelled"):
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
    if job.timeout_s is not None and job.started_at is not None and (now or time.time()) - job.started_at >= job.timeout_s:
        return False
    return job.n_trials is None or counts.done + counts.running < job.n_trials


def budget_used(job: Job, counts: TrialCounts, now: float | None = None) -> bool:
    """True once nothing is left to do: the budget is counted or the timeout has passed."""
    if job.timeout_s is not None and job.started_at is not None and (now or time.time()) - job.started_at >= job.timeout_s:
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


def load_job_study(settings: Settings, job: Job) -> optuna.Study:
    return optuna.load_study(study_name=job.study_name, storage=open_storage(settings.db_url))


# --- submit, cancel, resume, extend -------------------------------------------------------------


def submit_job(
    settings: Settings,
    spec: StudySpec,
    *,
    workers: int | None = None,
    devices: Sequence[str] | None = None,
    per_gpu: int = 1,
    launch: bool = True,
) -> int:
    """Create (or reuse) the study, queue a job for it and start local workers; returns the job id.

    ``workers=0`` queues without starting anything (workers on other machines will claim it).
    """
    from core import launcher
    from core.tuning import prepare_study, total_budget

    slots = launcher.plan_slots(devices, workers, per_gpu)
    active = [job for job in list_jobs(settings, ACTIVE_STATUSES) if job.study_name == spec.name]
    if active:
        raise JobError(f"study {spec.name!r} already has job {active[0].id} ({active[0].status}); cancel it or extend it instead")
    study = prepare_study(spec, settings)
    target = total_budget(spec)
    if target is not None and trial_counts(study).done >= target:
        raise JobError(f"study {spec.name!r} has already run its {target} trials; extend it (`python -m core jobs extend ID --trials N`) or raise budget.n_trials")
    job_id = queue_job(settings, spec, target, launcher.normalise_devices(devices), len(slots), per_gpu)
    if launch and slots:
        launcher.launch_workers(settings, get_job(settings, job_id), slots)
    return job_id


def queue_job(settings: Settings, spec: StudySpec, n_trials: int | None, devices: Sequence[str] = (), workers: int = 1, per_gpu: int = 1) -> int:
    """Insert the job row only (the study must exist); :func:`submit_job` is the full submit."""
    with _engine(settings).begin() as connection:
        result = connection.execute(
            sa.insert(jobs_table).values(
                study_name=spec.name,
                spec_json=spec.to_json(),
                status=QUEUED,
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
    with _engine(settings).begin() as connection:
        if job.status in (QUEUED, INTERRUPTED):
            _set_status(connection, job_id, CANCELLED, when=[job.status])
        elif job.status == RUNNING:
            _set_status(connection, job_id, CANCELLING, when=[RUNNING])
        elif job.status != CANCELLING:
            raise JobError(f"job {job_id} is {job.status}; only {list(ACTIVE_STATUSES) + [INTERRUPTED]} jobs can be cancelled")
    reconcile(settings)  # no live worker left to acknowledge: cancelled now
    return get_job(settings, job_id)


def resume_job(settings: Settings, job_id: int, *, launch: bool = True) -> Job:
    """Queue a cancelled, interrupted or failed job again; cancelled trials get replacements."""
    reconcile(settings)
    job = get_job(settings, job_id)
    if job.status not in RESUMABLE_STATUSES:
        hint = " (give it more trials with extend)" if job.status == FINISHED else ""
        raise JobError(f"job {job_id} is {job.status}; only {list(RESUMABLE_STATUSES)} jobs can be resumed{hint}")
    return _requeue(settings, job, launch=launch)


def extend_job(settings: Settings, job_id: int, more_trials: int, *, launch: bool = True) -> Job:
    """Give a job (running or ended) ``more_trials`` more trials; an ended job is queued again."""
    if not isinstance(more_trials, int) or more_trials < 1:
        raise JobError(f"more_trials must be a positive integer, got {more_trials!r}")
    reconcile(settings)
    job = get_job(settings, job_id)
    if job.n_trials is None:
        raise JobError(f"job {job_id} is limited by time only (budget.n_trials is null); submit a new spec instead")
    if job.status == CANCELLING:
        raise JobError(f"job {job_id} is being cancelled; wait until it is cancelled, then extend it")
    total = job.n_trials + more_trials
    _store_budget(settings, job, total)
    with _engine(settings).begin() as connection:
        connection.execute(sa.update(jobs_table).where(jobs_table.c.id == job_id).values(n_trials=total))
    job = get_job(settings, job_id)
    return job if job.status in (QUEUED, RUNNING) else _requeue(settings, job, launch=launch)


def _store_budget(settings: Settings, job: Job, n_trials: int) -> None:
    # The study's own spec records the budget it was given, so `tune` and the dashboard agree.
    spec_dict = json.loads(job.spec_json)
    spec_dict["budget"]["n_trials"] = n_trials
    study = load_job_study(settings, job)
    study.set_user_attr("spec", {**study.user_attrs.get("spec", spec_dict), "budget": spec_dict["budget"]})
    with _engine(settings).begin() as connection:
        connection.execute(sa.update(jobs_table).where(jobs_table.c.id == job.id).values(spec_json=json.dumps(spec_dict)))


def _requeue(settings: Settings, job: Job, *, launch: bool) -> Job:
    from core import launcher

    with _engine(settings).begin() as connection:
        if not _set_status(connection, job.id, QUEUED, when=[job.status], finished_at=None, error=None, started_at=None):
            raise JobError(f"job {job.id} changed state meanwhile; look again with `python -m core jobs`")
    job = get_job(settings, job.id)
    slots = launcher.plan_slots(job.devices or None, job.workers, job.per_gpu) if job.workers else []
    if launch and slots:
        launcher.launch_workers(settings, job, slots)
    return job


# --- worker side: register, claim, heartbeat, detach --------------------------------------------


def register_worker(settings: Settings, worker_id: str, device: str) -> None:
    now = time.time()
    with _engine(settings).begin() as connection:
        connection.execute(
            sa.insert(workers_table).values(
                id=worker_id, job_id=None, host=socket.gethostname(), pid=os.getpid(), device=device, started_at=now, heartbeat_at=now
            )
        )


def unregister_worker(settings: Settings, worker_id: str) -> None:
    with _engine(settings).begin() as connection:
        connection.execute(sa.delete(workers_table).where(workers_table.c.id == worker_id))


def claim_job(settings: Settings, worker_id: str, device: str, job_id: int | None = None) -> Job | None:
    """Attach the worker to the oldest job with work left (``job_id``: that job only), or None.

    The queued -> running move is a conditional UPDATE checked by its row count, which is atomic
    on SQLite and PostgreSQL alike; several workers may then share a running job's trials.
    """
    reconcile(settings)
    host = socket.gethostname()
    for job in sorted(list_jobs(settings, [QUEUED, RUNNING]), key=lambda j: j.id):
        if job_id is not None and job.id != job_id:
            continue
        # Device names are those of the submitting machine; other machines bring their own.
        if job_id is None and job.devices and job.host == host and device not in job.devices:
            continue
        if job.status == RUNNING and not budget_left(job, trial_counts(load_job_study(settings, job))):
            continue
        with _engine(settings).begin() as connection:
            started = job.started_at or time.time()
            if _set_status(connection, job.id, RUNNING, when=[QUEUED, RUNNING], started_at=started, heartbeat_at=time.time()):
                connection.execute(sa.update(workers_table).where(workers_table.c.id == worker_id).values(job_id=job.id, heartbeat_at=time.time()))
                return get_job(settings, job.id)
    return None


def heartbeat(settings: Settings, worker_id: str, job_id: int | None, trial_number: int | None) -> None:
    now = time.time()
    with _engine(settings).begin() as connection:
        connection.execute(sa.update(workers_table).where(workers_table.c.id == worker_id).values(heartbeat_at=now, trial_number=trial_number))
        if job_id is not None:
            connection.execute(sa.update(jobs_table).where(jobs_table.c.id == job_id).values(heartbeat_at=now))


def fail_job(settings: Settings, job_id: int, reason: str) -> None:
    with _engine(settings).begin() as connection:
        _set_status(connection, job_id, FAILED, when=[QUEUED, RUNNING, CANCELLING], error=reason)


def detach_worker(settings: Settings, worker_id: str, job_id: int, *, done: bool) -> None:
    """The worker leaves the job; the last live worker to leave settles the job's final state."""
    with _engine(settings).begin() as connection:
        connection.execute(sa.update(workers_table).where(workers_table.c.id == worker_id).values(job_id=None, trial_number=None))
    if job_workers(settings, job_id):
        return
    with _engine(settings).begin() as connection:
        _set_status(connection, job_id, CANCELLED, when=[CANCELLING])
        if done:
            _set_status(connection, job_id, FINISHED, when=[RUNNING])
    reconcile(settings)


# --- watching -----------------------------------------------------------------------------------


def job_status(settings: Settings, job_id: int) -> JobStatus:
    """Progress of one job: counted trials, running trials with their epoch, workers, ETA."""
    reconcile(settings)
    job = get_job(settings, job_id)
    workers = tuple(job_workers(settings, job_id))
    try:
        study = load_job_study(settings, job)
    except KeyError:  # the study was deleted behind the job's back
        study = None
    trials = study.get_trials(deepcopy=False) if study else []
    counts = trial_counts(study) if study else TrialCounts(0, 0, 0, 0, 0, 0, 0)
    by_number = {w.trial_number: w for w in workers if w.trial_number is not None}
    running = tuple(_running_trial(t, by_number.get(t.number)) for t in trials if t.state == TrialState.RUNNING)
    return JobStatus(
        job=job,
        trials_done=counts.done,
        trials_total=job.n_trials,
        counts=counts,
        running=running,
        workers=workers,
        eta_s=_eta_s(job, trials, counts, len(workers)),
        best_value=_best_value(study) if study else None,
    )


def _running_trial(trial: optuna.trial.FrozenTrial, worker: WorkerInfo | None) -> RunningTrial:
    started = trial.datetime_start.timestamp() if trial.datetime_start else time.time()
    return RunningTrial(
        number=trial.number,
        epoch=trial.user_attrs.get("epoch"),
        epochs_planned=trial.user_attrs.get("epochs_planned"),
        device=worker.device if worker else trial.user_attrs.get("device"),
        worker=worker.id if worker else trial.user_attrs.get("worker"),
        heartbeat_age_s=worker.heartbeat_age_s if worker else None,
        elapsed_s=max(0.0, time.time() - started),
    )


def _eta_s(job: Job, trials: list[optuna.trial.FrozenTrial], counts: TrialCounts, n_workers: int) -> float | None:
    if job.n_trials is None or job.status not in (QUEUED, RUNNING):
        return None
    durations = [
        (t.datetime_complete - t.datetime_start).total_seconds()
        for t in trials
        if t.state in (TrialState.COMPLETE, TrialState.PRUNED) and t.datetime_start and t.datetime_complete
    ]
    if not durations:
        return None
    remaining = max(0, job.n_trials - counts.done)
    return sum(durations) / len(durations) * remaining / max(1, n_workers)


def _best_value(study: optuna.Study) -> float | None:
    if len(study.directions) != 1:
        return None
    try:
        return study.best_value
    except ValueError:  # no completed trial yet
        return None


def read_log_tail(job: Job, lines: int = 50) -> str:
    """The last ``lines`` lines of the job's log (worker stdout/stderr), or "" before it exists."""
    return tail_file(job.log_path, lines)
