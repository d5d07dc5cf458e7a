"""A trial whose worker stops heart-beating is failed with an ``error`` saying so, and retried once."""

from __future__ import annotations

import time
import warnings
from pathlib import Path

import optuna
from optuna.trial import TrialState

from core.contract import TrialAttr
from core.runtime.storage import open_storage
from core.settings import Heartbeats


def test_a_stale_trial_gets_an_error_and_one_retry(tmp_path: Path) -> None:
    storage = open_storage(f"sqlite:///{tmp_path / 'stale.db'}", Heartbeats(interval_s=1, grace_s=1))
    study = optuna.create_study(storage=storage, study_name="stale")
    trial = study.ask({"lr": optuna.distributions.FloatDistribution(1e-4, 1e-1, log=True)})
    trial.set_user_attr(TrialAttr.WORKER, "w1")
    storage.record_heartbeat(trial._trial_id)
    time.sleep(2.2)  # the worker "died": no beat for longer than the grace period
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        optuna.storages.fail_stale_trials(study)

    reread = optuna.load_study(study_name="stale", storage=open_storage(f"sqlite:///{tmp_path / 'stale.db'}"))
    failed, retry = reread.get_trials(deepcopy=False)
    assert failed.state == TrialState.FAIL
    assert "stopped sending heartbeats" in failed.user_attrs[TrialAttr.ERROR]
    assert failed.user_attrs[TrialAttr.WORKER] == "w1"  # what was there stays
    assert retry.state == TrialState.WAITING and retry.params == failed.params
    assert TrialAttr.ERROR not in retry.user_attrs  # the retry starts clean
    assert retry.system_attrs["failed_trial"] == failed.number
