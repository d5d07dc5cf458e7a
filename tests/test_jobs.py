"""Job table, queue, claiming, budget counting, status views and the launcher's device planning.

No worker processes here (tests/integration/test_workers.py runs real ones); the Optuna study is a
bare study in the temporary workspace DB, with trials written directly.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import threading
import time

import optuna
import pytest
from optuna.trial import TrialState

from core.contract import StudyAttr, TrialAttr
from core.runtime import launcher
from core.runtime.budget import (
    TrialCounts,
    budget_left,
    budget_used,
    remaining_budget,
    total_budget,
    trial_counts,
    trial_lock,
)
from core.runtime.claims import claim_job, detach_worker, heartbeat, register_worker
from core.runtime.job_model import JobError, JobState
from core.runtime.job_table import get_job, job_workers, list_jobs, set_status, tables_engine, workers_table
from core.runtime.job_views import job_status, read_log_tail
from core.runtime.queue import cancel_job, extend_job, queue_job, resume_job
from core.runtime.storage import open_storage
from core.search.validation import spec_from_dict
from core.settings import Settings


def make_spec(name: str = "s1", n_trials: int = 4):
    return spec_from_dict(
        {
            "name": name,
            "dataset": "demo-cells",
            "image_size": 32,
            "budget": {"n_trials": n_trials},
            "sampler": "random",
            "pruner": "none",
        }
    )


def queue(settings: Settings, name: str = "s1", n_trials: int = 4, devices: tuple[str, ...] = ()) -> int:
    spec = make_spec(name, n_trials)
    optuna.create_study(storage=open_storage(settings.db_url), study_name=name, load_if_exists=True)
    return queue_job(settings, spec, n_trials, devices)


def add_trial(settings: Settings, name: str, state: TrialState, **kwargs) -> None:
    study = optuna.load_study(study_name=name, storage=open_storage(settings.db_url))
    value = 0.5 if state == TrialState.COMPLETE else None
    study.add_trial(optuna.create_trial(state=state, value=value, **kwargs))


def dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_jobs_are_claimed_in_submission_order_and_shared_while_work_is_left(workspace: Settings) -> None:
    first, second = queue(workspace, "first", 2), queue(workspace, "second", 2)
    for worker in ("w1", "w2", "w3"):
        register_worker(workspace, worker, "cpu")

    assert claim_job(workspace, "w1", "cpu").id == first
    assert get_job(workspace, first).status == JobState.RUNNING
    assert claim_job(workspace, "w2", "cpu").id == first  # budget left: a second worker joins
    assert claim_job(workspace, "w3", "cpu", job_id=second).id == second

    add_trial(workspace, "first", TrialState.COMPLETE)
    add_trial(workspace, "first", TrialState.RUNNING)
    register_worker(workspace, "w4", "cpu")
    # first: 1 done + 1 running = budget, second: running with budget left -> w4 helps second
    assert claim_job(workspace, "w4", "cpu").id == second
    assert {w.id for w in job_workers(workspace, first)} == {"w1", "w2"}


def test_claim_skips_jobs_pinned_to_other_local_devices_and_ended_jobs(workspace: Settings) -> None:
    pinned = queue(workspace, "gpu-only", 2, devices=("cuda:1",))
    register_worker(workspace, "w1", "cpu")
    assert claim_job(workspace, "w1", "cpu") is None
    cancel_job(workspace, pinned)
    register_worker(workspace, "w2", "cuda:1")
    assert claim_job(workspace, "w2", "cuda:1") is None  # cancelled jobs are never claimed


def test_last_worker_to_leave_settles_the_job(workspace: Settings) -> None:
    job_id = queue(workspace, "s1", 1)
    for worker in ("w1", "w2"):
        register_worker(workspace, worker, "cpu")
        claim_job(workspace, worker, "cpu")
    add_trial(workspace, "s1", TrialState.COMPLETE)
    detach_worker(workspace, "w1", job_id, done=True)
    assert get_job(workspace, job_id).status == JobState.RUNNING  # w2 still works on it
    detach_worker(workspace, "w2", job_id, done=True)
    job = get_job(workspace, job_id)
    assert job.status == JobState.FINISHED and job.finished_at is not None
    with pytest.raises(JobError, match="finished.*extend"):
        resume_job(workspace, job_id, launch=False)


def test_cancel_queued_job_at_once_and_running_job_through_its_workers(workspace: Settings) -> None:
    queued, running = queue(workspace, "a"), queue(workspace, "b")
    assert cancel_job(workspace, queued).status == JobState.CANCELLED
    register_worker(workspace, "w1", "cpu")
    assert claim_job(workspace, "w1", "cpu").id == running
    assert cancel_job(workspace, running).status == JobState.CANCELLING  # w1 is alive: it stops the trial
    detach_worker(workspace, "w1", running, done=False)
    assert get_job(workspace, running).status == JobState.CANCELLED
    with pytest.raises(JobError, match="only .* can be cancelled"):
        cancel_job(workspace, running)


def test_job_whose_workers_died_is_interrupted_and_resumable(workspace: Settings) -> None:
    job_id = queue(workspace)
    register_worker(workspace, "w1", "cpu")
    claim_job(workspace, "w1", "cpu")
    with tables_engine(workspace).begin() as connection:  # the worker was kill -9'ed: its pid is gone
        connection.execute(workers_table.update().values(pid=dead_pid()))
    assert list_jobs(workspace)[0].status == JobState.INTERRUPTED
    assert "resume" in get_job(workspace, job_id).error
    resumed = resume_job(workspace, job_id, launch=False)
    assert resumed.status == JobState.QUEUED and resumed.error is None and resumed.finished_at is None


def test_a_job_whose_budget_was_used_is_finished_however_its_workers_left(workspace: Settings) -> None:
    job_id = queue(workspace, n_trials=2)
    register_worker(workspace, "w1", "cpu")
    claim_job(workspace, "w1", "cpu")
    for _ in range(2):
        add_trial(workspace, "s1", TrialState.COMPLETE)
    with tables_engine(workspace).begin() as connection:  # gone without settling the job
        connection.execute(workers_table.update().values(pid=dead_pid()))
    assert get_job(workspace, job_id).status == JobState.RUNNING
    assert list_jobs(workspace)[0].status == JobState.FINISHED


def test_a_silent_remote_worker_counts_as_dead_after_the_grace_period(workspace: Settings) -> None:
    register_worker(workspace, "far", "cuda:0")
    with tables_engine(workspace).begin() as connection:
        connection.execute(workers_table.update().values(host="other-machine", pid=1))
    assert [w.id for w in job_workers(workspace)] == ["far"]
    with tables_engine(workspace).begin() as connection:
        connection.execute(
            workers_table.update().values(heartbeat_at=time.time() - workspace.heartbeats.worker_stale_s - 1)
        )
    assert job_workers(workspace) == []


def test_extend_adds_trials_requeues_an_ended_job_and_records_the_budget(workspace: Settings) -> None:
    job_id = queue(workspace, "s1", 2)
    with tables_engine(workspace).begin() as connection:
        set_status(connection, job_id, JobState.FINISHED, when=[JobState.QUEUED])
    job = extend_job(workspace, job_id, 3, launch=False)
    assert (job.status, job.n_trials, job.spec.budget.n_trials) == (JobState.QUEUED, 5, 5)
    study = optuna.load_study(study_name="s1", storage=open_storage(workspace.db_url))
    assert study.user_attrs[StudyAttr.SPEC]["budget"]["n_trials"] == 5
    with pytest.raises(JobError, match="positive integer"):
        extend_job(workspace, job_id, 0)


def test_unknown_job_error_lists_the_jobs(workspace: Settings) -> None:
    job_id = queue(workspace)
    with pytest.raises(JobError, match=rf"no job with id 99; jobs: \[{job_id}\]"):
        get_job(workspace, 99)


def test_counts_skip_cancelled_and_retried_failures(workspace: Settings) -> None:
    queue(workspace, "s1", 5)
    add_trial(workspace, "s1", TrialState.COMPLETE)
    add_trial(workspace, "s1", TrialState.PRUNED)
    add_trial(workspace, "s1", TrialState.FAIL, user_attrs={TrialAttr.CANCELLED: True})
    add_trial(workspace, "s1", TrialState.FAIL)  # number 3: a dead worker's trial ...
    add_trial(
        workspace, "s1", TrialState.WAITING, system_attrs={"failed_trial": 3, "retry_history": [3]}
    )  # ... and its retry
    add_trial(workspace, "s1", TrialState.RUNNING)
    study = optuna.load_study(study_name="s1", storage=open_storage(workspace.db_url))
    counts = trial_counts(study)
    assert (
        counts.done,
        counts.complete,
        counts.pruned,
        counts.failed,
        counts.cancelled,
        counts.running,
        counts.waiting,
    ) == (2, 1, 1, 0, 1, 1, 1)

    job = get_job(workspace, 1)
    assert budget_left(job, counts) and not budget_used(job, counts)
    full = TrialCounts(done=4, complete=4, pruned=0, failed=0, cancelled=0, running=1, waiting=0)
    assert not budget_left(job, full) and not budget_used(job, full)
    timed_out = job.__class__(**{**job.__dict__, "timeout_s": 1.0, "started_at": time.time() - 2})
    assert budget_used(timed_out, counts) and not budget_left(timed_out, counts)


def test_counts_add_up_each_state_with_several_of_each(workspace: Settings) -> None:
    """Two or three of most kinds, so that counting a kind as 'seen once', subtracting it or reading
    another kind's count is noticed: 2 complete + 1 pruned + 2 counted failures = 5 done; 2 cancelled
    and 1 superseded failure do not count. A study without trials counts zero of each."""
    queue(workspace, "s1", 9)
    for state, attrs in [
        (TrialState.COMPLETE, {}),
        (TrialState.FAIL, {}),
        (TrialState.FAIL, {"user_attrs": {TrialAttr.CANCELLED: True}}),
        (TrialState.PRUNED, {}),
        (TrialState.FAIL, {}),
        (TrialState.COMPLETE, {}),
        (TrialState.FAIL, {"user_attrs": {TrialAttr.CANCELLED: True}}),
        (TrialState.FAIL, {}),  # number 7: a dead worker's trial, superseded by its retry below
        (TrialState.WAITING, {"system_attrs": {"failed_trial": 7, "retry_history": [7]}}),
        (TrialState.WAITING, {}),
        (TrialState.RUNNING, {}),
        (TrialState.RUNNING, {}),
        (TrialState.RUNNING, {}),
    ]:
        add_trial(workspace, "s1", state, **attrs)
    study = optuna.load_study(study_name="s1", storage=open_storage(workspace.db_url))
    assert trial_counts(study) == TrialCounts(done=5, complete=2, pruned=1, failed=2, cancelled=2, running=3, waiting=2)
    assert trial_counts(optuna.create_study()) == TrialCounts(
        done=0, complete=0, pruned=0, failed=0, cancelled=0, running=0, waiting=0
    )
    spec = make_spec("s1", 9)
    assert total_budget(spec) == 9 and remaining_budget(study, spec) == 4


def test_the_trial_budget_and_the_timeout_end_a_job_at_exactly_their_limits(workspace: Settings) -> None:
    job = dataclasses.replace(get_job(workspace, queue(workspace, "s1", 5)), timeout_s=10.0, started_at=1000.0)

    def counts(done: int, running: int = 0) -> TrialCounts:
        return TrialCounts(done=done, complete=done, pruned=0, failed=0, cancelled=0, running=running, waiting=0)

    assert budget_left(job, counts(3, running=1), now=1001.0) and not budget_left(job, counts(4, running=1), now=1001.0)
    assert not budget_used(job, counts(4, running=1), now=1001.0) and budget_used(job, counts(5), now=1001.0)
    # the timeout counts from the job's start, and its last second is the limit
    assert budget_left(job, counts(0), now=1009.9) and not budget_used(job, counts(0), now=1009.9)
    assert not budget_left(job, counts(0), now=1010.0) and budget_used(job, counts(0), now=1010.0)
    for not_timed in (
        dataclasses.replace(job, started_at=None),
        dataclasses.replace(job, timeout_s=None),
    ):  # queued; no timeout
        assert budget_left(not_timed, counts(0), now=1e12) and not budget_used(not_timed, counts(0), now=1e12)
    unlimited = dataclasses.replace(job, n_trials=None)  # only the timeout ends it
    assert budget_left(unlimited, counts(10**6), now=1005.0) and not budget_used(unlimited, counts(10**6), now=1005.0)


def test_a_grid_study_runs_its_points_at_most(workspace: Settings) -> None:
    """A grid's budget is its point count, or the trial budget when that is smaller."""
    space = {
        "architecture": {"choices": ["Unet", "ClassicUNet"]},
        "encoder": {"choices": ["resnet18", "resnet34", "resnet50"]},
        "unet_depth": {"low": 2, "high": 3},
        "lr": {"choices": [0.01, 0.001]},
    }  # 3 x 2 + 2 x 2 = 10 points

    def grid(n_trials: int | None):
        return spec_from_dict(
            {
                "name": "g",
                "dataset": "d",
                "sampler": "grid",
                "search_space": space,
                "budget": {"n_trials": n_trials, "timeout_s": 60},
            }
        )

    assert [total_budget(grid(n)) for n in (4, 10, 25, None)] == [4, 10, 10, 10]
    assert total_budget(make_spec("r", 25)) == 25
    random_unlimited = spec_from_dict(
        {"name": "r", "dataset": "d", "sampler": "random", "budget": {"n_trials": None, "timeout_s": 60}}
    )
    assert total_budget(random_unlimited) is None
    optuna.create_study(storage=open_storage(workspace.db_url), study_name="g")
    for state in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING):
        add_trial(workspace, "g", state)
    study = optuna.load_study(study_name="g", storage=open_storage(workspace.db_url))
    assert remaining_budget(study, grid(None)) == 8 and remaining_budget(study, random_unlimited) is None


def test_status_shows_running_epochs_workers_and_eta(workspace: Settings) -> None:
    job_id = queue(workspace, "s1", 4)
    register_worker(workspace, "w1", "cpu")
    claim_job(workspace, "w1", "cpu")
    study = optuna.load_study(study_name="s1", storage=open_storage(workspace.db_url))
    for _ in range(2):
        trial = study.ask()
        time.sleep(0.05)
        study.tell(trial, 0.7)
    running = study.ask()
    running.set_user_attr("epoch", 2)
    running.set_user_attr("epochs_planned", 5)
    heartbeat(workspace, "w1", job_id, running.number)

    status = job_status(workspace, job_id)
    assert (status.trials_done, status.trials_total, status.best_value) == (2, 4, 0.7)
    assert [(r.number, r.epoch, r.epochs_planned, r.device) for r in status.running] == [(2, 2, 5, "cpu")]
    assert status.running[0].heartbeat_age_s < 5 and [w.id for w in status.workers] == ["w1"]
    mean = sum((t.datetime_complete - t.datetime_start).total_seconds() for t in study.trials[:2]) / 2
    assert status.eta_s == pytest.approx(
        status.running[0].eta_s + mean
    )  # the running trial's time left, then one more trial


def finished_trials(study: optuna.Study, seconds: float, count: int) -> None:
    import datetime as dt

    from optuna.trial import FrozenTrial

    start = dt.datetime.now() - dt.timedelta(minutes=10)
    for _ in range(count):
        study.add_trial(
            FrozenTrial(
                number=0,
                state=TrialState.COMPLETE,
                value=0.5,
                values=None,
                datetime_start=start,
                datetime_complete=start + dt.timedelta(seconds=seconds),
                params={},
                distributions={},
                user_attrs={},
                system_attrs={},
                intermediate_values={},
                trial_id=0,
            )
        )


def test_eta_is_never_shorter_than_what_a_running_trial_has_left(workspace: Settings) -> None:
    """After Extend the ETA read 3 s (the mean of short pruned trials) while the running trial said 47 s left."""
    job_id = queue(workspace, "s-left", 4)
    register_worker(workspace, "w1", "cpu")
    claim_job(workspace, "w1", "cpu")
    study = optuna.load_study(study_name="s-left", storage=open_storage(workspace.db_url))
    finished_trials(study, 3.0, 3)
    running = study.ask()
    running.set_user_attr(TrialAttr.WORKER, "w1")
    running.set_user_attr(TrialAttr.PROGRESS, {"epoch": 1, "epochs": 3, "batch": 1, "batches": 1000})
    time.sleep(0.05)
    status = job_status(workspace, job_id)
    left = status.running[0].eta_s
    assert left is not None and left > 3
    assert status.eta_s == pytest.approx(left)  # the last trial of the budget is running: its time left is the job's
    extend_job(workspace, job_id, 2, launch=False)
    extended = job_status(workspace, job_id)
    assert extended.eta_s == pytest.approx(extended.running[0].eta_s + 2 * 3.0)  # then two 3 s trials on the one worker


def test_an_ended_job_row_with_a_trial_on_a_live_worker_reads_as_running(workspace: Settings) -> None:
    """Right after Resume the status read "Finished" while a trial was on epoch 1/3: the state shown
    follows the trial rows, and a trial whose worker is gone is not counted as running."""
    job_id = queue(workspace, "s-ended", 2)
    register_worker(workspace, "w1", "cpu")
    claim_job(workspace, "w1", "cpu")
    study = optuna.load_study(study_name="s-ended", storage=open_storage(workspace.db_url))
    finished_trials(study, 5.0, 1)
    trial = study.ask()
    trial.set_user_attr(TrialAttr.WORKER, "w1")
    trial.set_user_attr(TrialAttr.PROGRESS, {"epoch": 1, "epochs": 3, "batch": 5, "batches": 10})
    with tables_engine(workspace).begin() as connection:
        set_status(connection, job_id, JobState.FINISHED, when=[JobState.RUNNING])
    status = job_status(workspace, job_id)
    assert status.job.status == JobState.FINISHED and status.state == JobState.RUNNING
    assert status.running[0].live and status.eta_s == pytest.approx(status.running[0].eta_s)
    with tables_engine(workspace).begin() as connection:
        connection.execute(workers_table.delete().where(workers_table.c.id == "w1"))  # the worker is gone
    gone = job_status(workspace, job_id)
    assert not gone.running[0].live and gone.state == JobState.FINISHED and gone.eta_s is None


def test_log_tail(workspace: Settings) -> None:
    job = get_job(workspace, queue(workspace))
    assert read_log_tail(job) == ""
    with open(job.log_path, "w") as handle:
        handle.write("".join(f"line {i}\n" for i in range(500)))
    assert read_log_tail(job, 3) == "line 497\nline 498\nline 499"


def test_trial_lock_is_exclusive(workspace: Settings) -> None:
    inside: list[int] = []
    overlaps: list[bool] = []

    def hold(index: int) -> None:
        with trial_lock(workspace.db_url, "s1"):
            overlaps.append(bool(inside))
            inside.append(index)
            time.sleep(0.05)
            inside.remove(index)

    threads = [threading.Thread(target=hold, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert overlaps == [False] * 4


def test_the_sqlite_trial_lock_is_a_file_beside_the_database_and_needs_one(tmp_path) -> None:
    """Every worker on the machine (of any version) must lock the same file: ``<db>.trials.lock``."""
    database = tmp_path / "studies.db"
    with trial_lock(f"sqlite:///{database}", "s1"):
        assert (tmp_path / "studies.db.trials.lock").is_file()
    for url in ("sqlite:///:memory:", "sqlite://"):
        with pytest.raises(JobError, match="^workers need a file or server database, not an in-memory SQLite DB$"):
            with trial_lock(url, "s1"):
                pass
    assert sorted(p.name for p in tmp_path.iterdir() if "lock" in p.name) == ["studies.db.trials.lock"]


def test_plan_slots() -> None:
    assert launcher.plan_slots(None, None, gpu_count=2) == ["cuda:0", "cuda:1"]
    assert launcher.plan_slots(None, None, per_gpu=2, gpu_count=2) == ["cuda:0", "cuda:0", "cuda:1", "cuda:1"]
    assert launcher.plan_slots(None, None, gpu_count=0) == ["cpu"]
    assert launcher.plan_slots("cpu", 3) == ["cpu"] * 3
    assert launcher.plan_slots("cuda:0,cuda:1", 3, gpu_count=2) == ["cuda:0", "cuda:1", "cuda:0"]
    assert launcher.plan_slots("cpu", 0) == []
    with pytest.raises(launcher.LaunchError, match=r"'cuda:2' is not visible.*\['cpu', 'cuda:0', 'cuda:1'\]"):
        launcher.plan_slots("cuda:2", None, gpu_count=2)
    with pytest.raises(launcher.LaunchError, match="unknown device 'gpu0'"):
        launcher.plan_slots("gpu0", None, gpu_count=1)
    with pytest.raises(launcher.LaunchError, match="per_gpu"):
        launcher.plan_slots("cpu", None, per_gpu=0)


def test_pin_device_maps_to_the_physical_gpu_once() -> None:
    env = {"CUDA_VISIBLE_DEVICES": "3,5"}
    assert launcher.pin_device("cuda:1", env) == "cuda" and env["CUDA_VISIBLE_DEVICES"] == "5"
    assert launcher.pin_device("cuda:0", env) == "cuda" and env["CUDA_VISIBLE_DEVICES"] == "5"  # already pinned
    cpu_env: dict[str, str] = {}
    assert launcher.pin_device("cpu", cpu_env) == "cpu" and cpu_env["CUDA_VISIBLE_DEVICES"] == ""
    with pytest.raises(launcher.LaunchError, match="not visible"):
        launcher.pin_device("cuda:2", {"CUDA_VISIBLE_DEVICES": "0"})


def test_free_slots_leave_devices_held_by_live_local_workers(workspace: Settings) -> None:
    register_worker(workspace, "busy", "cuda:0")
    assert launcher.free_slots(workspace, ["cuda:0", "cuda:0", "cuda:1"]) == ["cuda:0", "cuda:1"]
    assert os.getpid() == job_workers(workspace)[0].pid


def test_eta_is_recomputed_from_the_trials_of_the_run_after_a_resume(workspace: Settings) -> None:
    import datetime as dt

    from optuna.trial import FrozenTrial, TrialState

    job_id = queue(workspace, "s-eta", 4)
    study = optuna.load_study(study_name="s-eta", storage=open_storage(workspace.db_url))
    long_ago = dt.datetime.now() - dt.timedelta(hours=2)
    study.add_trial(
        FrozenTrial(
            number=0,
            state=TrialState.COMPLETE,
            value=0.5,
            values=None,
            datetime_start=long_ago,
            datetime_complete=long_ago + dt.timedelta(seconds=600),
            params={},
            distributions={},
            user_attrs={},
            system_attrs={},
            intermediate_values={},
            trial_id=0,
        )
    )
    register_worker(workspace, "w1", "cpu")
    claim_job(workspace, "w1", "cpu")  # the job (re)starts now: started_at is set
    assert job_status(workspace, job_id).eta_s == pytest.approx(600 * 3)  # only the old run's trial is known yet
    trial = study.ask()
    time.sleep(0.05)
    study.tell(trial, 0.7)
    status = job_status(workspace, job_id)
    this_run = (study.trials[1].datetime_complete - study.trials[1].datetime_start).total_seconds()
    assert status.eta_s == pytest.approx(this_run * 2) and status.eta_s < 60
