"""The incremental trial and leaderboard caches return what a fresh read returns, reading only changes."""

from __future__ import annotations

from pathlib import Path

import optuna
import pandas as pd
import pytest
from optuna.trial import TrialState

from core.contract import StudyAttr, TrialAttr
from core.results.trial_cache import FrameCache, TrialCache
from core.results.trials import objective_names, trials_frame


@pytest.fixture(params=["memory", "sqlite"])
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> optuna.storages.BaseStorage:
    if request.param == "memory":
        return optuna.storages.InMemoryStorage()
    return optuna.storages.RDBStorage(f"sqlite:///{tmp_path / 'cache.db'}")


def make_study(storage: optuna.storages.BaseStorage, directions: list[str] | None = None) -> optuna.Study:
    study = optuna.create_study(storage=storage, study_name="cached", directions=directions or ["maximize"])
    study.set_user_attr(
        StudyAttr.SPEC,
        {
            "objectives": [{"metric": "val_dice"}]
            + ([{"metric": "n_params"}] if directions and len(directions) > 1 else [])
        },
    )
    return study


def finished_trial(study: optuna.Study, value: float, lr: float, state: TrialState = TrialState.COMPLETE) -> None:
    epochs = [{"epoch": e, "val_dice": value * e / 3} for e in range(1, 4)]
    values = None
    if state == TrialState.COMPLETE:
        values = [value] if len(study.directions) == 1 else [value, lr * 1e4]
    study.add_trial(
        optuna.trial.create_trial(
            state=state,
            values=values,
            params={"lr": lr},
            distributions={"lr": optuna.distributions.FloatDistribution(1e-5, 1e-1, log=True)},
            user_attrs={
                TrialAttr.HISTORY: epochs,
                TrialAttr.VAL_METRICS: {"dice": value},
                TrialAttr.EPOCHS_RUN: 3,
                TrialAttr.TRAIN_TIME_S: 1.5,
            },
        )
    )


def fresh(study: optuna.Study) -> pd.DataFrame:
    return trials_frame(optuna.load_study(study_name=study.study_name, storage=study._storage))


def cached_frame(study: optuna.Study) -> FrameCache:
    return FrameCache(TrialCache(study._storage, study._study_id), study.directions, objective_names(study))


def test_frame_matches_a_fresh_read_as_trials_are_added_and_change(storage: optuna.storages.BaseStorage) -> None:
    study = make_study(storage)
    for i in range(5):
        finished_trial(study, 0.5 + i / 20, 10 ** -(i % 4 + 1))
    cache = cached_frame(study)
    pd.testing.assert_frame_equal(cache.frame(), fresh(study))
    assert cache.trials.trials_read == 5 and cache.rows_built == 5

    running = study.ask()  # a trial starts: a row with its epoch
    running.set_user_attr(TrialAttr.EPOCH, 1)
    pd.testing.assert_frame_equal(cache.frame(), fresh(study))
    running.set_user_attr(TrialAttr.EPOCH, 2)  # ... and changes
    running.set_user_attr(TrialAttr.HISTORY, [{"epoch": 1, "val_dice": 0.3}, {"epoch": 2, "val_dice": 0.4}])
    pd.testing.assert_frame_equal(cache.frame(), fresh(study))
    study.tell(running, 0.99)  # ... and becomes the best
    finished_trial(study, 0.2, 1e-3, TrialState.PRUNED)  # created and finished between two reads
    finished_trial(study, 0.1, 1e-2, TrialState.FAIL)
    frame = cache.frame()
    pd.testing.assert_frame_equal(frame, fresh(study))
    assert frame.loc[frame["best"], "number"].tolist() == [5] and frame.loc[frame["number"] == 5, "rank"].item() == 1
    assert cache.rows_built == 5 + 1 + 1 + 3  # each finished row once; the running one per change

    reads = cache.trials.trials_read
    unchanged = cache.frame()  # nothing changed: nothing finished is read again, no row rebuilt
    pd.testing.assert_frame_equal(unchanged, frame)
    assert cache.trials.trials_read == reads and cache.rows_built == 10


def test_multi_objective_best_is_the_pareto_front(storage: optuna.storages.BaseStorage) -> None:
    study = make_study(storage, ["maximize", "minimize"])
    for value, lr in [(0.9, 1e-2), (0.8, 1e-3), (0.7, 1e-2), (0.95, 1e-1)]:
        finished_trial(study, value, lr)
    cache = cached_frame(study)
    frame = cache.frame()
    pd.testing.assert_frame_equal(frame, fresh(study))
    assert sorted(frame.loc[frame["best"], "number"]) == [0, 1, 3]


def test_the_frame_is_a_copy_and_refreshes_can_be_throttled(storage: optuna.storages.BaseStorage) -> None:
    study = make_study(storage)
    finished_trial(study, 0.5, 1e-3)
    now = [0.0]
    cache = FrameCache(
        TrialCache(study._storage, study._study_id, clock=lambda: now[0]), study.directions, objective_names(study)
    )
    first = cache.frame(max_age_s=5)
    first.loc[0, "state"] = "changed by a caller"
    finished_trial(study, 0.6, 1e-3)
    assert len(cache.frame(max_age_s=5)) == 1 and cache.frame(max_age_s=5).loc[0, "state"] == "complete"
    now[0] = 6.0
    assert len(cache.frame(max_age_s=5)) == 2


def test_an_empty_study_gives_an_empty_frame(storage: optuna.storages.BaseStorage) -> None:
    study = make_study(storage)
    frame = cached_frame(study).frame()
    assert frame.empty and list(frame.columns) == list(fresh(study).columns)


def test_latest_result_computes_once_per_version_in_the_background() -> None:
    import threading

    from core.results.trial_cache import LatestResult

    calls: list[int] = []
    gate = threading.Event()

    def compute(value: int, block: bool = False):
        def run() -> int:
            calls.append(value)
            if block:
                gate.wait(5)
            return value * 10

        return run

    latest = LatestResult()
    assert latest.get(1, compute(1)) == (10, False)  # the first drawing is waited for
    assert latest.get(1, compute(99)) == (10, False) and calls == [1]  # same version: not recomputed
    assert latest.get(2, compute(2, block=True)) == (10, True)  # a change: the old value meanwhile
    assert latest.get(2, compute(2)) == (10, True)  # still drawing: not started twice (calls checked below)
    gate.set()
    assert latest.get(2, compute(2), wait=True) == (20, False) and calls == [1, 2]

    def broken() -> int:
        raise ValueError("no figure")

    latest.get(3, broken)
    with pytest.raises(ValueError, match="no figure"):
        latest.get(3, broken, wait=True)
    assert latest.get(3, compute(3), wait=True) == (30, False)  # a failure is retried, not cached


def test_the_first_read_leaves_curves_out_until_a_page_asks_for_them(storage: optuna.storages.BaseStorage) -> None:
    """Over an RDB storage finished trials come as summaries (no histories, no intermediate values);
    the frame is still a fresh read's (a pruned trial's row from its last epoch, an infinite value
    kept) and ``full_trials`` reads the whole trial once."""
    study = make_study(storage)
    finished_trial(study, 0.5, 1e-3)
    study.add_trial(
        optuna.trial.create_trial(  # pruned before its summary: the row needs the history
            state=TrialState.PRUNED,
            params={"lr": 1e-2},
            distributions={"lr": optuna.distributions.FloatDistribution(1e-5, 1e-1, log=True)},
            user_attrs={TrialAttr.HISTORY: [{"epoch": 1, "val_dice": 0.25}, {"epoch": 2, "val_dice": 0.3}]},
            intermediate_values={1: 0.25, 2: 0.3},
        )
    )
    study.add_trial(
        optuna.trial.create_trial(
            state=TrialState.COMPLETE,
            value=float("-inf"),
            user_attrs={TrialAttr.EPOCHS_RUN: 1, TrialAttr.VAL_METRICS: {"dice": 0.0}},
        )
    )
    cache = cached_frame(study)
    frame = cache.frame()
    pd.testing.assert_frame_equal(frame, fresh(study))
    assert (
        frame.loc[1, "val_dice"] == 0.3
        and frame.loc[1, "epochs_run"] == 2
        and frame.loc[2, "objective_val_dice"] == float("-inf")
    )
    summaries = isinstance(storage, optuna.storages.RDBStorage)
    first = cache.trials.trials()[0]
    assert (TrialAttr.HISTORY in first.user_attrs) is not summaries and first.params == {"lr": 1e-3}
    reads = cache.trials.trials_read
    whole = cache.trials.full_trials([1, 0, 7])  # in the order asked; an unknown number is skipped
    assert [t.number for t in whole] == [1, 0] and whole[0].intermediate_values == {1: 0.25, 2: 0.3}
    assert whole[1].user_attrs[TrialAttr.HISTORY] == [{"epoch": e, "val_dice": 0.5 * e / 3} for e in range(1, 4)]
    assert whole[1] == study.trials[0]
    cache.trials.full_trials([0, 1])  # read once
    assert cache.trials.trials_read == reads + (2 if summaries else 0)
    pd.testing.assert_frame_equal(cache.frame(), frame)  # whole trials give the same rows
