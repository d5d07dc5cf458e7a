"""Watching a job: counted trials, running trials with their epoch, workers, ETA, log tail.

The job row and the trial rows are written by different processes at different moments (a worker
settles the job when it leaves; a trial is told when it ends), so a reader can catch them
disagreeing. The shown state and the ETA are therefore derived from the trial rows, the same facts
the running-trial lines show: an ended job with a trial still running on a live worker reads as
running, and the ETA is never shorter than what a running trial itself has left.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import optuna
from optuna.trial import TrialState

from core.contract import TrialAttr
from core.runtime.budget import TrialCounts, trial_counts
from core.runtime.job_model import ENDED_STATES, Job, JobState, WorkerInfo
from core.runtime.job_table import get_job, job_workers, load_job_study, reconcile
from core.runtime.processes import tail_file
from core.training.progress import BatchProgress

if TYPE_CHECKING:
    from core.settings import Settings


@dataclass(frozen=True)
class RunningTrial:
    number: int
    epoch: int | None  # current epoch (1-based); None while the data loads
    epochs_planned: int | None
    device: str | None
    worker: str | None
    heartbeat_age_s: float | None
    elapsed_s: float
    progress: BatchProgress | None = None  # batch within the running epoch (stored every few seconds)
    live: bool = True  # False: the worker that ran it is gone; the trial is failed and retried, not running

    @property
    def fraction(self) -> float:
        """Share of the trial's planned epochs done, batches of the running epoch included (0..1)."""
        if self.progress is not None:
            return self.progress.fraction
        if self.epochs_planned:
            return min(1.0, (self.epoch or 0) / self.epochs_planned)
        return 0.0

    @property
    def eta_s(self) -> float | None:
        """Time left for this trial at its pace so far (None before any batch is done)."""
        fraction = self.fraction
        if fraction <= 0 or fraction >= 1:
            return None
        return self.elapsed_s * (1 - fraction) / fraction

    @property
    def projected_s(self) -> float | None:
        """The trial's whole duration at its pace so far (None before any batch is done)."""
        fraction = self.fraction
        return self.elapsed_s / fraction if fraction > 0 else None


@dataclass(frozen=True)
class JobStatus:
    job: Job
    trials_done: int
    trials_total: int | None
    counts: TrialCounts
    running: tuple[RunningTrial, ...]
    workers: tuple[WorkerInfo, ...]  # live workers attached to the job
    eta_s: float | None  # None until one trial has finished or made progress (or without a trial budget)
    best_value: float | None

    @property
    def state(self) -> str:
        """The job's state as its trial rows show it: a job row already ended (a worker settled it,
        or a stale heartbeat made it look orphaned) while a live worker still runs one of its trials
        reads as running, or as cancelling when it was cancelled."""
        if self.job.status in ENDED_STATES and any(trial.live for trial in self.running):
            return JobState.CANCELLING if self.job.status == JobState.CANCELLED else JobState.RUNNING
        return self.job.status

    @property
    def live_running(self) -> tuple[RunningTrial, ...]:
        return tuple(trial for trial in self.running if trial.live)


def job_status(settings: Settings, job_id: int) -> JobStatus:
    """Progress of one job: counted trials, running trials with their epoch, workers, ETA."""
    reconcile(settings)
    job = get_job(settings, job_id)
    alive = job_workers(settings)
    workers = tuple(w for w in alive if w.job_id == job_id)
    try:
        study = load_job_study(settings, job)
    except KeyError:  # the study was deleted behind the job's back
        study = None
    trials = study.get_trials(deepcopy=False) if study else []
    counts = trial_counts(study) if study else TrialCounts(0, 0, 0, 0, 0, 0, 0)
    by_number = {w.trial_number: w for w in workers if w.trial_number is not None}
    alive_ids = {w.id for w in alive}
    running = tuple(
        _running_trial(t, by_number.get(t.number), alive_ids, job.is_active)
        for t in trials
        if t.state == TrialState.RUNNING
    )
    status = JobStatus(
        job=job,
        trials_done=counts.done,
        trials_total=job.n_trials,
        counts=counts,
        running=running,
        workers=workers,
        eta_s=None,
        best_value=_best_value(study) if study else None,
    )
    return replace(status, eta_s=_eta_s(status, trials))


def _running_trial(
    trial: optuna.trial.FrozenTrial, worker: WorkerInfo | None, alive_ids: set[str], job_active: bool
) -> RunningTrial:
    started = trial.datetime_start.timestamp() if trial.datetime_start else time.time()
    # A trial asked outside a worker (`tune`, older studies) names none: the job row is all we know.
    runner = trial.user_attrs.get(TrialAttr.WORKER)
    return RunningTrial(
        number=trial.number,
        epoch=trial.user_attrs.get(TrialAttr.EPOCH),
        epochs_planned=trial.user_attrs.get(TrialAttr.EPOCHS_PLANNED),
        device=worker.device if worker else trial.user_attrs.get(TrialAttr.DEVICE),
        worker=worker.id if worker else trial.user_attrs.get(TrialAttr.WORKER),
        heartbeat_age_s=worker.heartbeat_age_s if worker else None,
        elapsed_s=max(0.0, time.time() - started),
        progress=BatchProgress.from_attr(trial.user_attrs.get(TrialAttr.PROGRESS)),
        live=worker is not None or (job_active if runner is None else runner in alive_ids),
    )


def _eta_s(status: JobStatus, trials: list[optuna.trial.FrozenTrial]) -> float | None:
    """Time until the budget is used: each live running trial's own time left, then the trials not
    started yet at the mean trial duration, spread over the workers; never less than the longest
    running trial's time left. The mean is that of the trials finished since the job last started
    (a resume restarts it: new workers, maybe other devices), else of all finished trials, else the
    running trials' projected durations."""
    job = status.job
    if job.n_trials is None or status.state not in (JobState.QUEUED, JobState.RUNNING):
        return None
    mean = _mean_duration(job, trials, status.live_running)
    lefts = [
        trial.eta_s if trial.eta_s is not None else (None if mean is None else max(0.0, mean - trial.elapsed_s))
        for trial in status.live_running
    ]
    not_started = max(0, job.n_trials - status.trials_done - len(lefts))
    known = [left for left in lefts if left is not None]
    if len(known) < len(lefts) or (not_started and mean is None):
        return None
    spread = (sum(known) + not_started * (mean or 0.0)) / max(1, len(status.workers), len(known))
    return max([spread, *known])


def _mean_duration(job: Job, trials: list[optuna.trial.FrozenTrial], running: tuple[RunningTrial, ...]) -> float | None:
    finished = [
        t
        for t in trials
        if t.state in (TrialState.COMPLETE, TrialState.PRUNED) and t.datetime_start and t.datetime_complete
    ]
    if job.started_at is not None:
        this_run = [t for t in finished if t.datetime_start and t.datetime_start.timestamp() >= job.started_at]
        finished = this_run or finished
    durations = [(t.datetime_complete - t.datetime_start).total_seconds() for t in finished]  # type: ignore[operator]
    if not durations:
        durations = [d for d in (trial.projected_s for trial in running) if d is not None]
    return sum(durations) / len(durations) if durations else None


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
