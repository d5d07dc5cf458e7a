"""Detached background tasks for long work that is not tuning (compressing a model, for now).

Like tuning workers, a task is a ``python -m core <command> ... --task-id ID`` process in its own
session, so closing the dashboard does not stop it; its stdout and stderr go to
``<logs>/task-<id>.log``. The running command reports through :class:`TaskProgress`, which keeps
``<home>/tasks/<id>.json`` up to date (written atomically, under a file lock, so readers never see
half a file and the launcher and the command never overwrite each other). The launcher records
the task's :class:`TaskSubject` (study, trial, method, options) beside its command line, so the
dashboard finds a trial's tasks by those fields and never parses arguments. No database table: a
task belongs to the machine that runs it, and one JSON file per task is all the dashboard reads.

States: ``starting`` (launched, nothing reported yet), ``running``, ``finished``, ``failed``, and
``interrupted`` — derived, never written: the process is gone without finishing or failing
(killed, machine restarted, crashed before reporting).
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import sys
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.errors import SegTuneError
from core.runtime.job_model import pid_alive
from core.runtime.launcher import worker_env
from core.runtime.processes import spawn_detached, tail_file

if TYPE_CHECKING:
    from core.settings import Settings

TASKS_DIR = "tasks"


class TaskState(StrEnum):
    STARTING = "starting"
    RUNNING = "running"
    FINISHED = "finished"
    FAILED = "failed"
    INTERRUPTED = "interrupted"


ACTIVE_STATES: tuple[TaskState, ...] = (TaskState.STARTING, TaskState.RUNNING)
_ID = re.compile(r"^[a-z0-9][a-z0-9-]{0,63}$")  # ids become file names: no separators, no dots
_KIND = re.compile(r"^[a-z][a-z0-9_]{0,31}$")


class TaskError(SegTuneError):
    """A task that does not exist, or bad arguments to start one."""


@dataclass(frozen=True)
class TaskSubject:
    """What a task works on, recorded by whoever starts it: readers take the study and trial from
    here, never from the command line. Saved as the status file's ``subject`` object; a record
    written before subjects existed reads as the empty subject (it still lists, about no trial)."""

    study: str | None = None
    trial: int | None = None  # a trial number of ``study``
    method: str | None = None  # how the task treats it (a compression method: "ptq", "prune", ...)
    options: Mapping[str, Any] = field(default_factory=dict)  # the method's settings, JSON values

    def is_about(self, study: str, trial: int) -> bool:
        return self.study == study and self.trial == trial

    def to_json(self) -> dict[str, Any]:
        return {"study": self.study, "trial": self.trial, "method": self.method, "options": dict(self.options)}

    @classmethod
    def from_json(cls, data: Any) -> TaskSubject:
        """The subject a status file holds (the empty one for a record without, or with a broken one)."""
        if not isinstance(data, Mapping):
            return cls()
        trial, options = data.get("trial"), data.get("options")
        return cls(
            study=data.get("study"),
            trial=int(trial) if isinstance(trial, int) else None,
            method=data.get("method"),
            options=dict(options) if isinstance(options, Mapping) else {},
        )


@dataclass(frozen=True)
class BackgroundTask:
    """One background task as its status file and its process describe it (not a study's
    :class:`core.contract.Task`, which says segmentation or classification)."""

    id: str
    kind: str  # what it does ("compress"); filters the task lists
    argv: tuple[
        str, ...
    ]  # the ``python -m core`` arguments it was started with: for the log's reader, parsed by no one
    subject: TaskSubject  # the study, trial, method and options it works on
    status: str  # a TaskState value
    fraction: float  # 0..1 of the work done, as the command last reported
    message: str  # what it is doing now (or did last)
    created_at: float
    updated_at: float
    pid: int | None
    log_path: Path
    result: Mapping[str, Any] = field(default_factory=dict)  # what finish() recorded
    error: str | None = None  # why it failed or was interrupted

    @property
    def is_active(self) -> bool:
        return self.status in ACTIVE_STATES

    @property
    def elapsed_s(self) -> float:
        end = self.updated_at if not self.is_active else time.time()
        return max(0.0, end - self.created_at)


# --- files --------------------------------------------------------------------------------------


def tasks_dir(settings: Settings) -> Path:
    return settings.home / TASKS_DIR


def check_task_id(task_id: str) -> str:
    if not isinstance(task_id, str) or not _ID.match(task_id):
        raise TaskError(f"invalid task id {task_id!r}: lower-case letters, digits and '-' only")
    return task_id


def _status_path(settings: Settings, task_id: str) -> Path:
    return tasks_dir(settings) / f"{check_task_id(task_id)}.json"


def log_path(settings: Settings, task_id: str) -> Path:
    return settings.logs_dir / f"task-{check_task_id(task_id)}.log"


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Exclusive lock for a read-modify-write of ``path`` (the launcher and the command both write)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_suffix(".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _read(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}


def _merge(path: Path, changes: Mapping[str, Any]) -> dict[str, Any]:
    """Apply ``changes`` to the status file; readers see the old or the new file, never a part."""
    with _locked(path):
        record = {**_read(path), **changes, "updated_at": time.time()}
        partial = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
        partial.write_text(json.dumps(record, indent=1, default=str), encoding="utf-8")
        os.replace(partial, path)
    return record


def _task(settings: Settings, record: Mapping[str, Any]) -> BackgroundTask:
    status = record.get("status", TaskState.STARTING)
    pid = record.get("pid")
    error = record.get("error")
    if status in ACTIVE_STATES and pid is not None and not pid_alive(int(pid)):
        status, error = (
            TaskState.INTERRUPTED,
            "the process ended without reporting an outcome (killed, crashed or the machine restarted); see the log",
        )
    return BackgroundTask(
        id=record["id"],
        kind=record.get("kind", ""),
        argv=tuple(record.get("argv", ())),
        subject=TaskSubject.from_json(record.get("subject")),
        status=status,
        fraction=float(record.get("fraction", 0.0)),
        message=str(record.get("message", "")),
        created_at=float(record.get("created_at", 0.0)),
        updated_at=float(record.get("updated_at", 0.0)),
        pid=int(pid) if pid is not None else None,
        log_path=log_path(settings, record["id"]),
        result=dict(record.get("result") or {}),
        error=error,
    )


# --- starting and reading -----------------------------------------------------------------------


def new_task_id(kind: str) -> str:
    """Sortable by start time, unique across processes: ``compress-20250101-120000-1a2b3c``."""
    return f"{kind.replace('_', '-')}-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"


def _launch(settings: Settings, command: Sequence[str], log: Path) -> int:
    """Start ``command`` detached (own session: survives the dashboard), output to ``log``; its pid."""
    return spawn_detached(command, worker_env(settings, "cpu"), log).pid


def task_command(argv: Sequence[str], task_id: str) -> list[str]:
    return [sys.executable, "-m", "core", *argv, "--task-id", task_id]


def start_task(
    settings: Settings, kind: str, argv: Sequence[str], subject: TaskSubject | None = None
) -> BackgroundTask:
    """Launch ``python -m core <argv...> --task-id ID`` in the background, recording what it works
    on (``subject``: none for a task about no study); returns it as ``starting``."""
    if not _KIND.match(kind):
        raise TaskError(f"invalid task kind {kind!r}: a lower-case word such as 'compress'")
    if not argv or any(not isinstance(arg, str) for arg in argv):
        raise TaskError(f"a task needs a command and string arguments, got {list(argv)!r}")
    task_id = new_task_id(kind)
    path = _status_path(settings, task_id)
    _merge(
        path,
        {
            "id": task_id,
            "kind": kind,
            "argv": list(argv),
            "subject": (subject or TaskSubject()).to_json(),
            "status": TaskState.STARTING,
            "fraction": 0.0,
            "message": "starting",
            "created_at": time.time(),
            "pid": None,
        },
    )
    pid = _launch(settings, task_command(argv, task_id), log_path(settings, task_id))
    _merge(path, {"pid": pid})  # a merge: whatever the command reported meanwhile is kept
    return get_task(settings, task_id)


def get_task(settings: Settings, task_id: str) -> BackgroundTask:
    record = _read(_status_path(settings, task_id))
    if not record:
        raise TaskError(f"no task {task_id!r} in {tasks_dir(settings)}")
    return _task(settings, record)


def list_tasks(settings: Settings, kind: str | None = None) -> list[BackgroundTask]:
    """Every task (of ``kind``), newest first."""
    folder = tasks_dir(settings)
    records = [_read(path) for path in folder.glob("*.json")] if folder.is_dir() else []
    tasks = [_task(settings, r) for r in records if r.get("id") and (kind is None or r.get("kind") == kind)]
    return sorted(tasks, key=lambda task: (task.created_at, task.id), reverse=True)


def read_log_tail(task: BackgroundTask, lines: int = 50) -> str:
    return tail_file(task.log_path, lines)


# --- reporting from inside the task -------------------------------------------------------------


class TaskProgress:
    """What a running command uses to report: ``update`` as it goes, then ``finish`` or ``fail``."""

    def __init__(self, settings: Settings, task_id: str) -> None:
        self.path = _status_path(settings, task_id)
        self.task_id = task_id

    def _write(self, **changes: Any) -> None:
        _merge(self.path, {"id": self.task_id, "pid": os.getpid(), **changes})

    def update(self, fraction: float, message: str) -> None:
        self._write(status=TaskState.RUNNING, fraction=min(1.0, max(0.0, float(fraction))), message=message)

    def finish(self, result: Mapping[str, Any] | None = None) -> None:
        self._write(status=TaskState.FINISHED, fraction=1.0, message="done", result=dict(result or {}), error=None)

    def fail(self, reason: str) -> None:
        self._write(status=TaskState.FAILED, message="failed", error=reason)

    @contextmanager
    def failing_on_error(self) -> Iterator[None]:
        """Record any exception (a user error's message, or a bug's summary) as the failure, and re-raise."""
        try:
            yield
        except SegTuneError as exc:
            self.fail(str(exc))
            raise
        except BaseException as exc:
            self.fail(f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__)
            raise
