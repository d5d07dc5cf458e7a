"""The study budget is exact however many workers race for it (README: "a worker starts a trial
only while done + running < budget, checked under the study's trial lock").

Several threads call the worker's own ``_next_trial`` at the same moment (behind a barrier). The
window between counting and ``study.ask()`` is widened on purpose (counting sleeps after reading),
so without the lock every thread would see the same count and start a trial: the test is
deterministic, not a matter of luck. Runs on SQLite (file lock) and PostgreSQL (advisory lock).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

import core.runtime.worker as worker
from core.runtime.claims import claim_job, register_worker
from core.runtime.queue import queue_job
from core.runtime.storage import open_storage
from core.search.validation import spec_from_dict
from core.settings import Settings, load_settings
from tests.helpers.machine import postgres_database

RACERS = 6
BUDGET = 2
WINDOW_S = 0.3


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def settings(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Settings]:
    monkeypatch.setenv("SEGTUNE_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("SEGTUNE_ARTIFACTS", raising=False)
    if request.param == "sqlite":
        monkeypatch.delenv("SEGTUNE_DB", raising=False)
        yield load_settings()
        return
    for url in postgres_database():
        monkeypatch.setenv("SEGTUNE_DB", url)
        yield load_settings()


def _running_job(settings: Settings, n_trials: int) -> int:
    spec = spec_from_dict(
        {
            "name": "race",
            "dataset": "demo-cells",
            "image_size": 32,
            "budget": {"n_trials": n_trials},
            "sampler": "random",
            "pruner": "none",
        }
    )
    optuna.create_study(storage=open_storage(settings.db_url), study_name="race")
    job_id = queue_job(settings, spec, n_trials)
    register_worker(settings, "w0", "cpu")
    assert claim_job(settings, "w0", "cpu").id == job_id
    return job_id


def _race(settings: Settings, job_id: int) -> list[object]:
    barrier = threading.Barrier(RACERS)
    outcomes: list[object] = [None] * RACERS

    def racer(index: int) -> None:
        study = optuna.load_study(study_name="race", storage=open_storage(settings.db_url))
        barrier.wait()
        try:
            trial, _done = worker._next_trial(settings, study, job_id, f"w{index}")
            outcomes[index] = trial
        except Exception as exc:
            outcomes[index] = exc

    threads = [threading.Thread(target=racer, args=(i,)) for i in range(RACERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    return outcomes


def test_racing_workers_never_start_more_trials_than_the_budget(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_counts = worker.trial_counts

    def slow_counts(study: optuna.Study):
        counts = real_counts(study)
        time.sleep(WINDOW_S)  # the race window between counting and asking, held open
        return counts

    monkeypatch.setattr(worker, "trial_counts", slow_counts)
    job_id = _running_job(settings, BUDGET)
    outcomes = _race(settings, job_id)

    assert not [o for o in outcomes if isinstance(o, Exception)], outcomes
    started = [o for o in outcomes if o is not None]
    assert len(started) == BUDGET  # exactly the budget: none more, and the lock lost none
    study = optuna.load_study(study_name="race", storage=open_storage(settings.db_url))
    assert [t.state for t in study.get_trials()] == [TrialState.RUNNING] * BUDGET
