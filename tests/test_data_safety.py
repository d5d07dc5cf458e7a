"""Data safety of the job system: a dataset in use cannot be deleted, a bad submit leaves no study,
and the database itself allows one active job per study, however many submits race (SQLite and
PostgreSQL)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest
import sqlalchemy as sa

from core.data.demo import create_demo_dataset
from core.data.manifest import dataset_names
from core.runtime.claims import claim_job, detach_worker, register_worker
from core.runtime.dataset_guard import DatasetInUse, delete_dataset_safely
from core.runtime.job_model import JobError, JobState
from core.runtime.job_table import list_jobs, tables_engine
from core.runtime.queue import cancel_job, queue_job, resume_job, submit_job
from core.runtime.storage import open_storage
from core.search.validation import spec_from_dict
from core.settings import Settings, load_settings
from tests.helpers.machine import postgres_database


def spec(name: str = "s1", dataset: str = "demo-cells"):
    return spec_from_dict(
        {
            "name": name,
            "dataset": dataset,
            "image_size": 32,
            "budget": {"n_trials": 2, "max_epochs": 1},
            "sampler": "random",
            "pruner": "none",
            "preview_count": 2,
            "search_space": {"architecture": "ClassicUNet", "unet_start_filters": 4, "unet_depth": 2},
        }
    )


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def settings(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Settings]:
    monkeypatch.setenv("SEGTUNE_HOME", str(tmp_path / "home"))
    for name in ("SEGTUNE_ARTIFACTS", "SEGTUNE_IMPORT_ROOTS"):
        monkeypatch.delenv(name, raising=False)
    if request.param == "sqlite":
        monkeypatch.delenv("SEGTUNE_DB", raising=False)
        yield _with_demo(load_settings())
        return
    for url in postgres_database():
        monkeypatch.setenv("SEGTUNE_DB", url)
        yield _with_demo(load_settings())


def _with_demo(settings: Settings) -> Settings:
    create_demo_dataset(settings.datasets_dir, count=12, size=32)
    return settings


def test_simultaneous_submits_of_one_study_make_one_job(settings: Settings) -> None:
    barrier = threading.Barrier(4)
    outcomes: list[object] = []

    def submit() -> None:
        barrier.wait()
        try:
            outcomes.append(submit_job(settings, spec(), workers=0, launch=False))
        except JobError as error:
            outcomes.append(error)

    threads = [threading.Thread(target=submit) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    job_ids = [o for o in outcomes if isinstance(o, int)]
    errors = [o for o in outcomes if isinstance(o, JobError)]
    assert len(outcomes) == 4 and len(job_ids) == 1, outcomes
    assert all(f"already has job {job_ids[0]}" in str(error) for error in errors)
    assert [job.id for job in list_jobs(settings)] == job_ids


def test_the_database_refuses_a_second_active_job_even_past_every_check(settings: Settings) -> None:
    optuna.create_study(storage=open_storage(settings.db_url), study_name="s1")
    first = queue_job(settings, spec(), 2)
    with pytest.raises(JobError, match=f"already has job {first}"):
        queue_job(settings, spec(), 2)  # the bare insert, no check before it: the index refuses
    cancel_job(settings, first)
    second = queue_job(settings, spec(), 2)  # an ended job does not count
    with pytest.raises(JobError, match=f"already has job {second}"):
        resume_job(settings, first, launch=False)  # nor can an old one come back beside it
    with tables_engine(settings).connect() as connection:
        count = connection.execute(sa.select(sa.func.count()).select_from(sa.table("segtune_jobs"))).scalar()
    assert count == 2


def test_a_dataset_used_by_a_queued_or_running_job_cannot_be_deleted(settings: Settings) -> None:
    job_id = submit_job(settings, spec(), workers=0, launch=False)
    with pytest.raises(DatasetInUse) as info:
        delete_dataset_safely(settings, "demo-cells")
    assert f"job {job_id}" in str(info.value) and "'s1'" in str(info.value) and "queued" in str(info.value)
    register_worker(settings, "w1", "cpu")  # a live worker (this process) takes it: running
    assert claim_job(settings, "w1", "cpu").id == job_id
    assert list_jobs(settings)[0].status == JobState.RUNNING
    with pytest.raises(DatasetInUse, match="running"):
        delete_dataset_safely(settings, "demo-cells")
    assert dataset_names(settings.datasets_dir) == ["demo-cells"]
    detach_worker(settings, "w1", job_id, done=True)
    assert list_jobs(settings)[0].status == JobState.FINISHED
    delete_dataset_safely(settings, "demo-cells")  # once the job has ended
    assert dataset_names(settings.datasets_dir) == []


def test_a_submit_whose_dataset_is_missing_leaves_no_study_behind(settings: Settings) -> None:
    with pytest.raises(Exception, match="no dataset named 'gone'"):
        submit_job(settings, spec("s2", dataset="gone"), workers=0, launch=False)
    assert "s2" not in optuna.get_all_study_names(open_storage(settings.db_url))
    assert list_jobs(settings) == []
    assert submit_job(settings, spec("s2"), workers=0, launch=False)  # the name is free for a good submit


def test_a_dataset_deleted_while_submit_reads_it_gives_a_clear_error_and_no_study(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from core.cli import main
    from core.data.tensors import clear_tensor_cache
    from core.runtime import tuning

    prepare = tuning._prepare

    def deleted_meanwhile(
        study, spec, settings, *args, **kwargs
    ):  # the manifest was read; its images go before they are decoded
        delete_dataset_safely(settings, spec.dataset)
        return prepare(study, spec, settings, *args, **kwargs)

    monkeypatch.setattr(tuning, "_prepare", deleted_meanwhile)
    clear_tensor_cache()  # else an earlier test's decode of the same demo images answers without reading the folder
    spec_file = settings.home / "spec.json"
    spec_file.write_text(spec("raced").to_json())
    assert main(["submit", "--spec", str(spec_file), "--workers", "0"]) == 2
    err = capsys.readouterr().err
    assert (
        "dataset 'demo-cells' was deleted while the study was being prepared; nothing was queued" in err
        and "Traceback" not in err
    )
    assert "raced" not in optuna.get_all_study_names(open_storage(settings.db_url))
    assert list_jobs(settings) == []


def test_a_delete_racing_past_the_job_check_leaves_no_job_queued_on_a_missing_dataset(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    import core.runtime.queue as queue

    insert = queue.queue_job

    def delete_first(
        settings, spec, *args, **kwargs
    ):  # the delete checked for jobs before this insert, and removes the folder after
        delete_dataset_safely(settings, spec.dataset)
        return insert(settings, spec, *args, **kwargs)

    monkeypatch.setattr(queue, "queue_job", delete_first)
    with pytest.raises(JobError, match="dataset 'demo-cells' was deleted while the job was being queued"):
        submit_job(settings, spec("raced"), workers=0, launch=False)
    [job] = list_jobs(settings)
    assert job.status == JobState.FAILED and "was deleted" in (job.error or "")


def test_a_delete_that_finds_a_job_queued_after_its_check_puts_the_dataset_back(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    import core.runtime.dataset_guard as guard

    job_id = submit_job(settings, spec("late"), workers=0, launch=False)
    active = guard.jobs_using
    calls = iter([[], active(settings, "demo-cells")])  # the first look misses the job: it was queued just after
    monkeypatch.setattr(guard, "jobs_using", lambda settings, name: next(calls))
    with pytest.raises(DatasetInUse, match=f"job {job_id}"):
        delete_dataset_safely(settings, "demo-cells")
    assert dataset_names(settings.datasets_dir) == ["demo-cells"]
    assert sorted(p.name for p in settings.datasets_dir.iterdir()) == ["demo-cells"]
