"""Watching a job: counted trials, running trials with their epoch, workers, ETA, log tail."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import optuna
from optuna.trial import TrialState

from core.contract import TrialAttr
from core.runtime.budget import TrialCounts, trial_counts
from core.runtime.job_model import Job, JobState, WorkerInfo
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
        epoch=trial.user_attrs.get(TrialAttr.EPOCH),
        epochs_planned=trial.user_attrs.get(TrialAttr.EPOCHS_PLANNED),
        device=worker.device if worker else trial.user_attrs.get(TrialAttr.DEVICE),
        worker=worker.id if worker else trial.user_attrs.get(TrialAttr.WORKER),
        heartbeat_age_s=worker.heartbeat_age_s if worker else None,
        elapsed_s=max(0.0, time.time() - started),
        progress=BatchProgress.from_attr(trial.user_attrs.get(TrialAttr.PROGRESS)),
    )


def _eta_s(job: Job, trials: list[optuna.trial.FrozenTrial], counts: TrialCounts, n_workers: int) -> float | None:
    """Mean trial duration x trials left / workers. The mean is that of the trials finished since the
    job last started (a resume restarts it: new workers, maybe other devices), else of all trials."""
    if job.n_trials is None or job.status not in (JobState.QUEUED, JobState.RUNNING):
        return None
    finished = [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED) and t.datetime_start and t.datetime_complete]
    if job.started_at is not None:
        this_run = [t for t in finished if t.datetime_start and t.datetime_start.timestamp() >= job.started_at]
        finished = this_run or finished
    durations = [(t.datetime_complete - t.datetime_start).total_seconds() for t in finished]  # type: ignore[operator]
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
