"""What a background job and a worker are: states, typed rows, and when a worker counts as alive.

A job is a row saying "run study S up to N counted trials on these devices"; workers claim jobs.
Job states::

    queued -> running -> finished                  (budget used or timeout reached)
                      -> cancelling -> cancelled   (cancel: trials stop at the next epoch)
                      -> interrupted               (no live worker left: kill -9, reboot)
                      -> failed                    (a job-level error, e.g. the dataset is gone)
    cancelled / interrupted / failed --resume--> queued;  any --extend--> more trials (queued)

"""

from __future__ import annotations

import json
import os
import socket
import time
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from core.errors import SegTuneError
from core.search.spec import StudySpec
from core.search.validation import spec_from_dict


class JobState(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    CANCELLING = "cancelling"
    CANCELLED = "cancelled"
    FINISHED = "finished"
    FAILED = "failed"
    INTERRUPTED = "interrupted"


ACTIVE_STATES = (JobState.QUEUED, JobState.RUNNING, JobState.CANCELLING)
RESUMABLE_STATES = (JobState.CANCELLED, JobState.INTERRUPTED, JobState.FAILED)
ENDED_STATES = (JobState.CANCELLED, JobState.FINISHED, JobState.FAILED, JobState.INTERRUPTED)


class JobError(SegTuneError):
    """A job operation that cannot be done (unknown id, wrong state, bad arguments)."""


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
        return self.status in ACTIVE_STATES

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
    stale_after_s: float  # Heartbeats.worker_stale_s of the reading process

    @property
    def heartbeat_age_s(self) -> float:
        return max(0.0, time.time() - self.heartbeat_at)

    @property
    def is_alive(self) -> bool:
        if self.host == socket.gethostname() and not pid_alive(self.pid):
            return False  # on this machine a vanished pid is certain, no need to wait for the grace period
        return self.heartbeat_age_s <= self.stale_after_s


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
