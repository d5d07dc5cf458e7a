"""Background tasks: real detached processes reporting through TaskProgress, and a real compression task.

Most tests swap the command for a short ``python -c`` script through ``core.runtime.tasks.task_command``
(the process is still started, detached and logged by start_task); the last one runs
``python -m core compress --task-id`` on a tiny tuned study.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Callable, Sequence

import pytest

import core.runtime.tasks as tasks
from core.runtime.tasks import (
    BackgroundTask,
    TaskError,
    TaskProgress,
    TaskState,
    TaskSubject,
    get_task,
    list_tasks,
    start_task,
)
from core.settings import Settings
from tests.helpers.studies import tiny_study

REPORTER = """
import sys, time
from core.settings import load_settings
from core.runtime.tasks import TaskProgress
progress = TaskProgress(load_settings(), sys.argv[-1])
with progress.failing_on_error():
    print("hello from the task", flush=True)
    progress.update(0.5, "half way")
    {body}
"""


def script(monkeypatch: pytest.MonkeyPatch, body: str) -> None:
    """Make start_task run REPORTER with ``body`` instead of ``python -m core ...``."""
    code = REPORTER.format(body=body)

    def command(argv: Sequence[str], task_id: str) -> list[str]:
        return [sys.executable, "-c", code, *argv, task_id]

    monkeypatch.setattr(tasks, "task_command", command)


def wait_for(
    settings: Settings, task_id: str, done: Callable[[BackgroundTask], bool], timeout: float = 60.0
) -> BackgroundTask:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        task = get_task(settings, task_id)
        if done(task):
            return task
        time.sleep(0.1)
    raise AssertionError(f"task {task_id} is still {get_task(settings, task_id)}")


def test_a_finished_task_reports_its_result_and_log(workspace: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    script(monkeypatch, 'progress.finish({"answer": 42})')
    task = start_task(workspace, "demo", ["demo", "--x", "1"])
    assert task.kind == "demo" and task.argv == ("demo", "--x", "1") and task.pid is not None
    finished = wait_for(workspace, task.id, lambda t: not t.is_active)
    assert (finished.status, finished.fraction, dict(finished.result), finished.error) == (
        TaskState.FINISHED,
        1.0,
        {"answer": 42},
        None,
    )
    assert finished.argv == ("demo", "--x", "1")  # the command's reports kept what the launcher wrote
    assert "hello from the task" in tasks.read_log_tail(finished)
    assert finished.log_path == workspace.logs_dir / f"task-{task.id}.log"


def test_a_failing_command_records_why(workspace: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    script(monkeypatch, 'from core.errors import SegTuneError; raise SegTuneError("no such trial #7")')
    task = start_task(workspace, "demo", ["demo"])
    failed = wait_for(workspace, task.id, lambda t: not t.is_active)
    assert failed.status == TaskState.FAILED and failed.error == "no such trial #7"
    assert failed.fraction == 0.5  # where it got to


def test_a_killed_task_shows_as_interrupted(workspace: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    script(monkeypatch, "time.sleep(60)")
    task = start_task(workspace, "demo", ["demo"])
    running = wait_for(workspace, task.id, lambda t: t.status == TaskState.RUNNING)
    assert running.message == "half way" and running.is_active
    os.kill(running.pid, signal.SIGKILL)
    interrupted = wait_for(workspace, task.id, lambda t: t.status != TaskState.RUNNING, timeout=10)
    assert interrupted.status == TaskState.INTERRUPTED and "ended without reporting" in interrupted.error
    assert not interrupted.is_active


def test_a_task_that_never_reported_and_died_is_interrupted(
    workspace: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tasks, "task_command", lambda argv, task_id: [sys.executable, "-c", "raise SystemExit(3)"])
    task = start_task(workspace, "demo", ["demo"])
    assert wait_for(workspace, task.id, lambda t: not t.is_active).status == TaskState.INTERRUPTED


def test_tasks_are_listed_newest_first_and_by_kind(workspace: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tasks, "_launch", lambda settings, command, log: os.getpid())  # no process needed here
    first = start_task(workspace, "compress", ["compress"])
    time.sleep(0.01)
    second = start_task(workspace, "other", ["other"])
    third = start_task(workspace, "compress", ["compress"])
    assert [t.id for t in list_tasks(workspace)] == [third.id, second.id, first.id]
    assert [t.id for t in list_tasks(workspace, "compress")] == [third.id, first.id]
    assert list_tasks(workspace, "nothing") == []


def test_progress_is_clamped_and_merged_into_the_status_file(
    workspace: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tasks, "_launch", lambda settings, command, log: os.getpid())
    task = start_task(workspace, "demo", ["demo"])
    progress = TaskProgress(workspace, task.id)
    progress.update(1.7, "overshoot")
    assert (get_task(workspace, task.id).fraction, get_task(workspace, task.id).kind) == (1.0, "demo")
    progress.update(-1, "back")
    assert get_task(workspace, task.id).fraction == 0.0
    assert not list(tasks.tasks_dir(workspace).glob(".*.tmp"))  # atomic writes leave no partial files


def test_a_task_record_round_trips_its_subject(workspace: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tasks, "_launch", lambda settings, command, log: os.getpid())
    subject = TaskSubject(
        study="cells", trial=3, method="prune", options={"sparsity": 0.7, "structured": False, "lr": None}
    )
    task = start_task(workspace, "compress", ["compress", "--whatever"], subject)
    TaskProgress(workspace, task.id).update(0.5, "half way")  # the command's reports keep what the launcher recorded
    read = get_task(workspace, task.id)
    assert read.subject == subject and read.subject.is_about("cells", 3) and not read.subject.is_about("cells", 30)
    assert (
        get_task(workspace, start_task(workspace, "demo", ["demo"]).id).subject == TaskSubject()
    )  # a task about nothing


def test_a_record_written_before_subjects_existed_still_reads(workspace: Settings) -> None:
    legacy = {
        "id": "compress-legacy",
        "kind": "compress",
        "argv": ["compress", "--study", "cells", "--trial", "3"],
        "status": "finished",
        "fraction": 1.0,
        "message": "done",
        "created_at": 1.0,
        "pid": None,
        "result": {"variant": 1},
    }
    tasks._merge(tasks._status_path(workspace, "compress-legacy"), legacy)
    [task] = list_tasks(workspace, "compress")
    assert (task.id, task.status, task.argv[0], task.result["variant"]) == (
        "compress-legacy",
        TaskState.FINISHED,
        "compress",
        1,
    )
    assert task.subject == TaskSubject() and not task.subject.is_about("cells", 3)  # its arguments are not parsed back
    broken = {**legacy, "id": "compress-broken", "subject": {"study": "cells", "trial": "3", "options": ["x"]}}
    tasks._merge(tasks._status_path(workspace, "compress-broken"), broken)
    assert get_task(workspace, "compress-broken").subject == TaskSubject(study="cells")


def test_bad_ids_kinds_and_commands_are_refused(workspace: Settings) -> None:
    with pytest.raises(TaskError, match="no task 'compress-missing'"):
        get_task(workspace, "compress-missing")
    with pytest.raises(TaskError, match="invalid task id '../escape'"):
        get_task(workspace, "../escape")
    with pytest.raises(TaskError, match="invalid task kind 'Bad Kind'"):
        start_task(workspace, "Bad Kind", ["x"])
    with pytest.raises(TaskError, match="needs a command"):
        start_task(workspace, "demo", [])


@pytest.mark.slow
def test_compress_runs_as_a_background_task_and_stores_its_variant(workspace: Settings) -> None:
    from core.deploy.compression.variants import list_variants
    from core.runtime.storage import open_storage
    from core.runtime.tuning import load_study

    tiny_study(workspace, "bg")
    task = start_task(
        workspace,
        "compress",
        ["compress", "--study", "bg", "--trial", "0", "--method", "prune", "--sparsity", "0.5", "--steps", "2"],
    )
    finished = wait_for(workspace, task.id, lambda t: not t.is_active, timeout=120)
    assert finished.status == TaskState.FINISHED, tasks.read_log_tail(finished)
    assert finished.result["variant"] == 1 and finished.result["label"] == "pruned 50% global"
    assert "pruned 50% global" in finished.result["table"]
    study, _ = load_study("bg", open_storage(workspace.db_url))
    assert [record["label"] for record in list_variants(study, 0)] == ["pruned 50% global"]
    assert "fine-tuning step 2/2" in tasks.read_log_tail(finished, 200)  # every stage reached the log
