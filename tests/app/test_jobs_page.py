"""Jobs page: empty state, progress of a queued job with a running trial, cancel / resume / extend."""

from __future__ import annotations

import optuna
import pytest
from streamlit.testing.v1 import AppTest

from core.data.demo import create_demo_dataset
from core.runtime.job_table import get_job
from core.runtime.queue import submit_job
from core.runtime.storage import open_storage
from core.search.validation import spec_from_dict
from core.settings import Settings
from tests.helpers.pages import MAIN


def jobs_page() -> AppTest:
    at = AppTest.from_file(MAIN, default_timeout=60).run()
    return at.switch_page("../pages/jobs.py").run()


@pytest.fixture
def job(workspace: Settings, monkeypatch: pytest.MonkeyPatch) -> int:
    import core.runtime.launcher

    monkeypatch.setattr(core.runtime.launcher, "launch_workers", lambda settings, job, slots: [])  # no real workers
    create_demo_dataset(workspace.datasets_dir, count=12, size=64)
    spec = spec_from_dict(
        {
            "name": "watched",
            "dataset": "demo-cells",
            "image_size": 64,
            "budget": {"n_trials": 4, "max_epochs": 5},
            "sampler": "random",
            "pruner": "none",
            "search_space": {"architecture": "ClassicUNet", "epochs": 5},
        }
    )
    job_id = submit_job(workspace, spec, workers=1, devices=["cpu"])
    trial = optuna.load_study(study_name="watched", storage=open_storage(workspace.db_url)).ask()
    trial.set_user_attr("epoch", 2)
    trial.set_user_attr("epochs_planned", 5)
    return job_id


def test_no_jobs_says_where_to_start(workspace: Settings) -> None:
    at = jobs_page()
    assert not at.exception
    assert any("No jobs yet" in info.value for info in at.info)


def test_job_progress_with_the_running_trials_epoch(job: int) -> None:
    at = jobs_page()
    assert not at.exception
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Status"] == "Queued" and metrics["Trials done"] == "0 / 4"
    bars = [p.value for p in at.get("progress")]
    assert len(bars) == 2  # the job, and trial 0 at epoch 2 of 5
    assert at.subheader[0].value == f"Job #{job} · watched"


def test_cancel_resume_extend(job: int, workspace: Settings) -> None:
    """A queued job (no worker has it) is cancelled at once; resume queues it again; extend adds trials."""
    at = jobs_page()
    at.button(key="jobs.cancel").click().run()
    assert get_job(workspace, job).status == "cancelled"
    assert {m.label: m.value for m in at.metric}["Status"] == "Cancelled"
    at.button(key="jobs.resume").click().run()
    assert get_job(workspace, job).status == "queued"
    assert {m.label: m.value for m in at.metric}["Status"] == "Queued"
    at.number_input(key=f"jobs.more.{job}").set_value(3).run()
    at.button(key="jobs.extend").click().run()
    assert not at.exception
    assert get_job(workspace, job).n_trials == 7


def test_cancel_of_a_running_job_waits_for_its_worker(job: int, workspace: Settings) -> None:
    """A job a live worker holds (this process registers as that worker) goes to Cancelling first."""
    from core.runtime.claims import claim_job, register_worker

    register_worker(workspace, "w-live", "cpu")
    assert claim_job(workspace, "w-live", "cpu").id == job
    at = jobs_page()
    at.button(key="jobs.cancel").click().run()
    assert get_job(workspace, job).status == "cancelling"
    assert {m.label: m.value for m in at.metric}["Status"] == "Cancelling"
    assert not at.exception


def test_batch_progress_within_a_long_epoch(job: int, workspace: Settings) -> None:
    study = optuna.load_study(study_name="watched", storage=open_storage(workspace.db_url))
    running = study.get_trials(deepcopy=False)[0]
    study._storage.set_trial_user_attr(
        running._trial_id, "progress", {"epoch": 3, "epochs": 5, "batch": 45, "batches": 120}
    )
    at = jobs_page()
    assert not at.exception
    bars = {p.proto.text: p.value for p in at.get("progress")}
    text = next(t for t in bars if t.startswith("Trial 0"))
    assert "epoch 3/5 · batch 45/120" in text
    assert bars[text] == int(100 * (2 + 45 / 120) / 5)  # streamlit stores the bar as a whole percentage


def test_status_and_eta_follow_the_running_trial(job: int, workspace: Settings) -> None:
    """An ended job row with a trial still on a live worker reads Running, and the ETA covers that
    trial's own time left (the issue: "Finished" beside a trial on epoch 1/3, ETA 3 s beside 47 s left)."""
    from core.runtime.claims import claim_job, register_worker
    from core.runtime.job_model import JobState
    from core.runtime.job_table import set_status, tables_engine

    register_worker(workspace, "w-live", "cpu")
    claim_job(workspace, "w-live", "cpu")
    study = optuna.load_study(study_name="watched", storage=open_storage(workspace.db_url))
    trial = study.get_trials(deepcopy=False)[0]
    study._storage.set_trial_user_attr(trial._trial_id, "worker", "w-live")
    study._storage.set_trial_user_attr(
        trial._trial_id, "progress", {"epoch": 1, "epochs": 3, "batch": 1, "batches": 100}
    )
    with tables_engine(workspace).begin() as connection:
        set_status(connection, job, JobState.FINISHED, when=[JobState.RUNNING])
    at = jobs_page()
    assert not at.exception
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Status"] == "Running"
    trial_bar = next(p.proto.text for p in at.get("progress") if p.proto.text.startswith("Trial 0"))
    assert "left" in trial_bar and metrics["ETA"] != "–"
