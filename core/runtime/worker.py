"""The worker process: claim a job, run its trials until the budget is used, then the next job.

Started detached by core/runtime/launcher.py for local devices, or by hand (``python -m core worker``) on
other machines sharing one PostgreSQL ``SEGTUNE_DB`` and artifact store.

Exact budget across workers: a trial is started only under the study's trial lock
(``core.runtime.budget.trial_lock``), after counting the trials that used
budget plus those running. Optuna's own ``study.ask()`` pops a WAITING trial (a dead worker's
retry, a grid point) or creates one, so counting and asking must be one atomic step: Optuna's
pop is a read-then-write that pysqlite does not make atomic across processes (SELECT ... FOR UPDATE
is a no-op on SQLite) and ``ask`` falls back to a fresh trial when the queue is empty.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
import warnings
import zlib
from collections.abc import Callable
from dataclasses import dataclass

import optuna
from optuna.trial import TrialState

from core.contract import TrialAttr
from core.runtime.budget import budget_left, budget_used, trial_counts, trial_lock
from core.runtime.claims import claim_job, detach_worker, fail_job, heartbeat, register_worker, unregister_worker
from core.runtime.job_model import Job, JobState
from core.runtime.job_table import get_job
from core.runtime.storage import fail_stale_trials, open_artifact_store, open_storage
from core.runtime.tuning import create_or_load_study
from core.settings import Settings
from core.training.objective import RunContext, TrialCancelled, TrialError, make_objective

log = logging.getLogger("segtune.worker")

POLL_S = 1.0  # how often cancel is checked and an idle worker looks for work


@dataclass(frozen=True)
class WorkerOptions:
    job_id: int | None = None  # only this job first (the launcher's workers), then any queued job
    device: str = "auto"  # what the worker table shows: cpu, cuda:N (physical, before pinning) or auto
    torch_device: str = "auto"  # what torch uses after CUDA_VISIBLE_DEVICES pinned the GPU
    wait: bool = False  # keep polling for new jobs instead of exiting when the queue is empty
    only_job: bool = False  # exit after the given job instead of taking the next queued one


def run_worker(settings: Settings, options: WorkerOptions) -> int:
    """Work until no job is left (or forever with ``wait``); returns the number of trials run."""
    worker_id = uuid.uuid4().hex[:12]
    register_worker(settings, worker_id, options.device)
    log.info("worker %s started on %s", worker_id, options.device)
    trials_run = 0
    job_id = options.job_id
    try:
        while True:
            job = claim_job(settings, worker_id, options.device, job_id)
            if job is None and job_id is not None and not options.only_job:
                job_id = None  # the given job is done or taken: help with the rest of the queue
                continue
            if job is None:
                if not options.wait:
                    break
                heartbeat(settings, worker_id, None, None)
                time.sleep(POLL_S * 5)
                continue
            trials_run += _work_on(settings, worker_id, job, options)
            if options.only_job:
                break
            job_id = None
    finally:
        unregister_worker(settings, worker_id)
        log.info("worker %s exits after %d trial(s)", worker_id, trials_run)
    return trials_run


class _Heartbeat(threading.Thread):
    """Beats for the worker, its job and its running trial; notices cancel between beats."""

    def __init__(self, settings: Settings, worker_id: str, job_id: int, storage: optuna.storages.RDBStorage):
        super().__init__(name="segtune-heartbeat", daemon=True)
        self.settings, self.worker_id, self.job_id, self.storage = settings, worker_id, job_id, storage
        self.trial: tuple[int, int] | None = None  # (trial_id, number) running now
        self._stop_requested = threading.Event()
        self._done = threading.Event()

    def stop_requested(self) -> bool:
        return self._stop_requested.is_set()

    def run(self) -> None:
        last_beat = 0.0
        while not self._done.wait(POLL_S):
            try:
                if get_job(self.settings, self.job_id).status != JobState.RUNNING:
                    self._stop_requested.set()  # cancelling, failed elsewhere, or reset
                if time.monotonic() - last_beat >= min(self.settings.heartbeats.interval_s, 5):
                    self.beat()
                    last_beat = time.monotonic()
            except Exception as exc:
                log.warning("heartbeat failed: %s", exc)

    def beat(self) -> None:
        trial = self.trial
        if trial is not None:
            self.storage.record_heartbeat(trial[0])
        heartbeat(self.settings, self.worker_id, self.job_id, trial[1] if trial else None)

    def finish(self) -> None:
        self._done.set()
        self.join(timeout=10)


def _work_on(settings: Settings, worker_id: str, job: Job, options: WorkerOptions) -> int:
    """Run the job's trials until its budget is used, it is cancelled, or it fails."""
    log.info("worker %s joins job %d (study %s)", worker_id, job.id, job.study_name)
    storage = open_storage(settings.db_url, settings.heartbeats)
    beat = _Heartbeat(settings, worker_id, job.id, storage)
    beat.start()
    trials_run, done = 0, False
    try:
        spec = job.spec
        # Each worker's sampler gets its own seed, or parallel workers would propose the same params.
        study = create_or_load_study(spec, storage, worker_index=zlib.crc32(worker_id.encode()) % 10_000)
        context = RunContext(
            settings=settings,
            artifact_store=open_artifact_store(settings),
            device=options.torch_device,
            stop_requested=beat.stop_requested,
        )
        objective = make_objective(spec, context)
        while not beat.stop_requested():
            trial, done = _next_trial(settings, study, job.id, worker_id)
            if done:
                break
            if trial is None:
                time.sleep(POLL_S)  # others' trials are running; one may die and need a retry
                continue
            beat.trial = (trial._trial_id, trial.number)
            try:
                _run_one(study, trial, objective)
            finally:
                beat.trial = None
            trials_run += 1
    except Exception as exc:
        log.exception("job %d failed", job.id)
        fail_job(settings, job.id, f"{type(exc).__name__}: {exc}")
    finally:
        beat.finish()
        detach_worker(settings, worker_id, job.id, done=done)
    log.info("worker %s leaves job %d after %d trial(s)", worker_id, job.id, trials_run)
    return trials_run


def _next_trial(
    settings: Settings, study: optuna.Study, job_id: int, worker_id: str
) -> tuple[optuna.Trial | None, bool]:
    """(trial to run, False), (None, False) to wait for running ones, or (None, True) when done."""
    with trial_lock(settings.db_url, study.study_name):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # ask() warns that heartbeats are meant for study.optimize
            fail_stale_trials(study, open_storage(settings.db_url, settings.heartbeats), settings.heartbeats)
            job = get_job(settings, job_id)
            counts = trial_counts(study)
            if budget_used(job, counts):
                return None, True
            if job.status != JobState.RUNNING or not budget_left(job, counts):
                return None, False
            trial = study.ask()
        # A trial without a heartbeat row is never seen as stale: beat before releasing the lock.
        open_storage(settings.db_url, settings.heartbeats).record_heartbeat(trial._trial_id)
    trial.set_user_attr(TrialAttr.JOB_ID, job_id)
    trial.set_user_attr(TrialAttr.WORKER, worker_id)
    return trial, False


def _run_one(
    study: optuna.Study, trial: optuna.Trial, objective: Callable[[optuna.Trial], float | tuple[float, ...]]
) -> None:
    """Run the objective and record the outcome; a trial error is the trial's, not the worker's."""
    try:
        values = objective(trial)
    except optuna.TrialPruned:
        study.tell(trial, state=TrialState.PRUNED)
    except TrialCancelled as exc:
        trial.set_user_attr(TrialAttr.CANCELLED, True)
        study.tell(trial, state=TrialState.FAIL)
        log.info("%s", exc)
    except TrialError as exc:
        study.tell(trial, state=TrialState.FAIL)
        log.warning("trial %d failed: %s", trial.number, exc)
    except BaseException as exc:
        trial.set_user_attr(TrialAttr.ERROR, f"{type(exc).__name__}: {exc}")
        study.tell(trial, state=TrialState.FAIL)
        raise
    else:
        frozen = study.tell(trial, values)
        log.info("trial %d %s: %s", trial.number, frozen.state.name.lower(), frozen.values)
