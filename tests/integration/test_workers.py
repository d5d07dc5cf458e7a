"""Real worker processes on a temporary SQLite DB and on a real PostgreSQL: budget, cancel, resume,
kill -9 recovery, a submitter that exits, and 4 concurrent SQLite writers.

PostgreSQL comes from SEGTUNE_TEST_POSTGRES_URL (default postgresql://postgres@127.0.0.1:5432/test);
each test creates its own database and drops it. Without a server the PostgreSQL cases skip, unless
CI=true, where they fail.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from core.data.demo import create_demo_dataset
from core.runtime.job_model import Job, JobState, WorkerInfo, pid_alive
from core.runtime.job_table import get_job, job_workers, list_jobs
from core.runtime.job_views import RunningTrial, job_status, read_log_tail
from core.runtime.queue import cancel_job, resume_job, submit_job
from core.search.validation import spec_from_dict
from core.settings import Settings, load_settings
from tests.helpers.machine import REPO, postgres_database

pytestmark = pytest.mark.slow


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'segtune.db'}"
        return
    yield from postgres_database()


@pytest.fixture
def workspace(db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Settings]:
    """A workspace with the demo dataset; workers inherit short heartbeats from this environment."""
    monkeypatch.setenv("SEGTUNE_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("SEGTUNE_DB", db_url)
    monkeypatch.delenv("SEGTUNE_ARTIFACTS", raising=False)
    monkeypatch.setenv("SEGTUNE_HEARTBEAT_S", "1")
    monkeypatch.setenv("SEGTUNE_GRACE_S", "4")
    settings = load_settings()
    create_demo_dataset(settings.datasets_dir, count=12, size=32)
    yield settings
    _kill_our_workers(settings)


def _kill_our_workers(settings: Settings) -> None:
    # Only the workers this test started (their pids are in this test's own DB), never by name.
    for worker in job_workers(settings, alive_only=False):
        if pid_alive(worker.pid):
            os.kill(worker.pid, signal.SIGKILL)


def spec_dict(name: str, n_trials: int, epochs: int) -> dict:
    return {
        "name": name,
        "dataset": "demo-cells",
        "image_size": 32,
        "budget": {"n_trials": n_trials, "max_epochs": epochs},
        "sampler": "random",
        "pruner": "none",
        "patience": epochs,
        "preview_count": 2,
        "search_space": {
            "architecture": "ClassicUNet",
            "unet_start_filters": 4,
            "unet_depth": 2,
            "epochs": epochs,
            "batch_size": 4,
            "lr": {"low": 1e-3, "high": 1e-2, "log": True},
        },
    }


def wait_for(condition: Callable[[], object], timeout_s: float, what: str, settings: Settings, job_id: int) -> object:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        result = condition()
        if result:
            return result
        time.sleep(0.3)
    job = get_job(settings, job_id)
    raise AssertionError(f"timed out waiting for {what}; job is {job.status}; log:\n{read_log_tail(job, 40)}")


def wait_status(settings: Settings, job_id: int, status: str, timeout_s: float = 120) -> Job:
    wait_for(
        lambda: list_jobs(settings) and get_job(settings, job_id).status == status, timeout_s, status, settings, job_id
    )
    return get_job(settings, job_id)


def running_trial(settings: Settings, job_id: int, min_epoch: int = 1) -> RunningTrial | None:
    running = [r for r in job_status(settings, job_id).running if (r.epoch or 0) >= min_epoch]
    return running[0] if running else None


def study_trials(settings: Settings, name: str) -> list[optuna.trial.FrozenTrial]:
    return optuna.load_study(study_name=name, storage=settings.db_url).trials


def test_budget_is_exact_across_workers_after_the_submitter_exits(workspace: Settings, tmp_path: Path) -> None:
    # SQLite runs 4 concurrent writers (no "database is locked"); PostgreSQL 3 workers on one job.
    n_workers = 4 if workspace.db_url.startswith("sqlite") else 3
    n_trials = n_workers + 1
    spec_path = tmp_path / "spec.json"
    spec_path.write_text(json.dumps(spec_dict("shared", n_trials=n_trials, epochs=1)))
    submit = subprocess.run(
        [
            sys.executable,
            "-m",
            "core",
            "submit",
            "--spec",
            str(spec_path),
            "--workers",
            str(n_workers),
            "--devices",
            "cpu",
        ],
        cwd=REPO,
        env=dict(os.environ),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert submit.returncode == 0, submit.stderr
    job_id = int(submit.stdout.split()[1])  # "job N queued ...", and the submitter has exited

    job = wait_status(workspace, job_id, JobState.FINISHED, timeout_s=180)
    trials = study_trials(workspace, "shared")
    assert [t.state for t in trials] == [TrialState.COMPLETE] * n_trials, [(t.number, t.state) for t in trials]
    assert all(t.user_attrs["job_id"] == job_id for t in trials)  # none lost, none run twice
    assert job_status(workspace, job_id).trials_done == n_trials
    log = Path(job.log_path).read_text()
    assert log.count("started on cpu") == n_workers
    assert "database is locked" not in log and "Traceback" not in log
    wait_for(lambda: not job_workers(workspace), 15, "the workers to exit", workspace, job_id)


def test_cancel_stops_running_trials_and_resume_completes_the_budget(workspace: Settings) -> None:
    # Enough epochs that the trial is still running when the cancel arrives, even on a fast machine.
    epochs = 60
    spec = spec_from_dict(spec_dict("cancel", n_trials=1, epochs=epochs))
    job_id = submit_job(workspace, spec, workers=1, devices="cpu")
    trial = wait_for(lambda: running_trial(workspace, job_id), 90, "a trial past its first epoch", workspace, job_id)

    cancelled_at = time.monotonic()
    assert cancel_job(workspace, job_id).status == JobState.CANCELLING
    wait_status(workspace, job_id, JobState.CANCELLED, timeout_s=20)
    assert time.monotonic() - cancelled_at < 20
    stopped = study_trials(workspace, "cancel")[trial.number]
    assert stopped.state == TrialState.FAIL and stopped.user_attrs["cancelled"] is True
    assert stopped.user_attrs["epoch"] < epochs
    wait_for(lambda: not job_workers(workspace), 15, "the worker to exit", workspace, job_id)

    resume_job(workspace, job_id)
    wait_status(workspace, job_id, JobState.FINISHED, timeout_s=150)
    trials = study_trials(workspace, "cancel")
    assert sum(t.state == TrialState.COMPLETE for t in trials) == 1  # the cancelled one was replaced
    assert all(t.state in (TrialState.COMPLETE, TrialState.FAIL) for t in trials)


def test_kill_minus_nine_mid_trial_is_failed_retried_and_the_job_finishes(workspace: Settings) -> None:
    # Long trials, so both workers are mid-trial when one is killed and the other lives to retry it.
    spec = spec_from_dict(spec_dict("killed", n_trials=2, epochs=150))
    job_id = submit_job(workspace, spec, workers=2, devices="cpu")

    def trial_and_worker() -> tuple[RunningTrial, WorkerInfo] | None:
        if len(job_status(workspace, job_id).running) < 2:
            return None
        trial = running_trial(workspace, job_id)
        workers = [w for w in job_workers(workspace, job_id) if trial and w.id == trial.worker]
        return (trial, workers[0]) if workers else None

    trial, victim = wait_for(trial_and_worker, 90, "a trial past its first epoch", workspace, job_id)
    os.kill(victim.pid, signal.SIGKILL)

    wait_status(workspace, job_id, JobState.FINISHED, timeout_s=180)
    trials = study_trials(workspace, "killed")
    assert trials[trial.number].state == TrialState.FAIL  # failed by the heartbeat's grace period
    assert "stopped sending heartbeats" in trials[trial.number].user_attrs["error"]  # and says so
    retries = [t for t in trials if t.system_attrs.get("failed_trial") == trial.number]
    assert len(retries) == 1 and retries[0].state == TrialState.COMPLETE
    assert retries[0].params == trials[trial.number].params
    assert sum(t.state == TrialState.COMPLETE for t in trials) == 2 and not any(
        t.state == TrialState.RUNNING for t in trials
    )
    assert job_status(workspace, job_id).trials_done == 2
