"""A trial whose worker stops heart-beating is failed with an ``error`` saying so, and retried once.

SegTune fails stale trials itself (core.runtime.storage.fail_stale_trials, called by workers and
before and between the trials of run_study), so the ``error`` is written through Optuna's public
storage API while the trial still runs; Optuna refuses a finished trial's attrs.
"""

from __future__ import annotations

import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from core.contract import TrialAttr
from core.runtime.storage import fail_stale_trials, open_storage
from core.settings import Heartbeats, Settings, load_settings

FAST = Heartbeats(interval_s=1, grace_s=1)
LR = {"lr": optuna.distributions.FloatDistribution(1e-4, 1e-1, log=True)}


def _silent_trial(storage: optuna.storages.RDBStorage, study: optuna.Study) -> optuna.Trial:
    """A running trial whose worker "died": one beat, then nothing for longer than the grace period."""
    trial = study.ask(LR)
    trial.set_user_attr(TrialAttr.WORKER, "w1")
    storage.record_heartbeat(trial._trial_id)
    return trial


def test_a_stale_trial_gets_an_error_and_one_retry(tmp_path: Path) -> None:
    storage = open_storage(f"sqlite:///{tmp_path / 'stale.db'}", FAST)
    study = optuna.create_study(storage=storage, study_name="stale")
    _silent_trial(storage, study)
    alive = study.ask(LR)
    time.sleep(2.2)
    storage.record_heartbeat(alive._trial_id)  # this one's worker still beats
    assert fail_stale_trials(study, storage, FAST) == [0]
    assert fail_stale_trials(study, storage, FAST) == []  # failed once, not again

    reread = optuna.load_study(study_name="stale", storage=open_storage(f"sqlite:///{tmp_path / 'stale.db'}"))
    failed, running, retry = reread.get_trials(deepcopy=False)
    assert failed.state == TrialState.FAIL and running.state == TrialState.RUNNING
    assert "stopped sending heartbeats for over 1 s" in failed.user_attrs[TrialAttr.ERROR]
    assert failed.user_attrs[TrialAttr.WORKER] == "w1"  # what was there stays
    assert TrialAttr.ERROR not in running.user_attrs
    assert retry.state == TrialState.WAITING and retry.params == failed.params
    assert (
        TrialAttr.ERROR not in retry.user_attrs and retry.user_attrs[TrialAttr.WORKER] == "w1"
    )  # the retry starts clean
    assert retry.system_attrs["failed_trial"] == failed.number


def test_storages_without_heartbeats_have_no_stale_trials() -> None:
    storage = optuna.storages.InMemoryStorage()
    study = optuna.create_study(storage=storage)
    study.ask(LR)
    assert fail_stale_trials(study, storage, FAST) == []
    assert study.trials[0].state == TrialState.RUNNING


def test_a_run_fails_a_killed_runs_trial_with_its_error_then_reruns_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """run_study calls fail_stale_trials before Optuna's own check, which would fail the trial without an error."""
    from core.data.demo import create_demo_dataset
    from core.runtime.tuning import prepare_study, run_study
    from core.search.validation import spec_from_dict

    monkeypatch.setenv("SEGTUNE_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("SEGTUNE_HEARTBEAT_S", "1")
    monkeypatch.setenv("SEGTUNE_GRACE_S", "1")
    for name in ("SEGTUNE_DB", "SEGTUNE_ARTIFACTS", "SEGTUNE_IMPORT_ROOTS"):
        monkeypatch.delenv(name, raising=False)
    settings: Settings = load_settings()
    create_demo_dataset(settings.datasets_dir, count=12, size=32)
    spec = spec_from_dict(
        {
            "name": "killed",
            "dataset": "demo-cells",
            "image_size": 32,
            "sampler": "random",
            "pruner": "none",
            "budget": {"n_trials": 2, "max_epochs": 1},
            "preview_count": 1,
            "search_space": {
                "architecture": "ClassicUNet",
                "unet_start_filters": 4,
                "unet_depth": 2,
                "epochs": 1,
                "batch_size": 4,
                "lr": {"low": 1e-3, "high": 1e-2, "log": True},
            },
        }
    )
    storage = open_storage(settings.db_url, settings.heartbeats)
    study = prepare_study(spec, settings, storage=storage)
    killed = study.ask()
    storage.record_heartbeat(killed._trial_id)
    time.sleep(2.2)
    run_study(spec, settings, n_trials=1, device="cpu", storage=storage)

    stale, rerun = optuna.load_study(study_name="killed", storage=storage).get_trials(deepcopy=False)
    assert stale.state == TrialState.FAIL and "stopped sending heartbeats" in stale.user_attrs[TrialAttr.ERROR]
    assert rerun.state == TrialState.COMPLETE and rerun.system_attrs["failed_trial"] == stale.number
