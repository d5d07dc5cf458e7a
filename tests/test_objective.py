"""The objective's fault handling: CUDA out-of-memory retry and readable failures."""

from __future__ import annotations

import optuna
import pytest
import torch

import core.training.objective
from core.settings import Settings
from tests.helpers.studies import tiny_study


def test_out_of_memory_is_retried_once_with_half_the_batch(
    workspace: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_train = core.training.objective.train_model
    batch_sizes: list[int] = []

    def out_of_memory_once(model, train, val, config, **kwargs):
        batch_sizes.append(config.batch_size)
        if len(batch_sizes) == 1:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)")
        return real_train(model, train, val, config, **kwargs)

    monkeypatch.setattr(core.training.objective, "train_model", out_of_memory_once)
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: None)
    trial = tiny_study(workspace, "oom-once").trials[0]
    assert batch_sizes == [8, 4]
    assert trial.state == optuna.trial.TrialState.COMPLETE
    assert trial.user_attrs["oom_retry_batch_size"] == 4


def test_out_of_memory_twice_fails_the_trial_with_a_reason_not_the_worker(
    workspace: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    def always_out_of_memory(*args, **kwargs):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)")

    monkeypatch.setattr(core.training.objective, "train_model", always_out_of_memory)
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: None)
    study = tiny_study(workspace, "oom-twice", trials=2)
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.FAIL] * 2
    assert "CUDA out of memory at batch size 4" in study.trials[0].user_attrs["error"]


def test_the_trial_value_is_the_best_epochs_validation_score_never_test(workspace: Settings) -> None:
    """README: tuning selects on the validation split only; test metrics are shown, never used."""
    trial = tiny_study(workspace, "val-not-test", lr=0.05).trials[0]
    val, test = trial.user_attrs["val_metrics"], trial.user_attrs["test_metrics"]
    assert val["dice"] != pytest.approx(test["dice"], abs=1e-9)  # the two splits really differ here
    assert trial.value == val["dice"]
    best = trial.user_attrs["history"][trial.user_attrs["best_epoch"] - 1]
    assert trial.value == best["val_dice"]


def test_objective_values_read_validation_metrics_and_trial_attributes() -> None:
    from core.search.validation import spec_from_dict

    summary = {
        "val_metrics": {"dice": 0.25, "iou": 0.125},
        "test_metrics": {"dice": 0.75, "iou": 0.5},
        "n_params": 1234,
        "images_per_s": 99.0,
    }
    single = spec_from_dict({"name": "s", "dataset": "d", "objectives": [{"metric": "val_iou"}]})
    assert core.training.objective._objective_values(single, summary) == 0.125
    multi = spec_from_dict(
        {
            "name": "s",
            "dataset": "d",
            "sampler": "nsga2",
            "pruner": "none",
            "objectives": [{"metric": "val_dice"}, {"metric": "n_params"}],
        }
    )
    assert core.training.objective._objective_values(multi, summary) == (0.25, 1234.0)


def test_the_kept_epoch_is_the_best_for_the_first_objective_when_it_is_known_per_epoch() -> None:
    """val_iou (maximize) and val_loss (minimize) are known after each epoch and decide the kept
    epoch; n_params or images_per_s are not, so the best epoch falls back to the val loss."""
    from core.search.validation import spec_from_dict

    def selection(*objectives: str) -> dict[str, object]:
        spec = spec_from_dict(
            {
                "name": "s",
                "dataset": "d",
                "sampler": "nsga2",
                "pruner": "none",
                "objectives": [{"metric": m} for m in objectives],
            }
        )
        return core.training.objective._selection(spec)

    assert selection("val_iou", "n_params") == {"select_metric": "iou", "select_maximize": True}
    assert selection("val_loss", "val_dice") == {"select_metric": "loss", "select_maximize": False}
    assert selection("n_params", "val_dice") == {"select_metric": "loss", "select_maximize": False}
    assert selection("images_per_s", "val_dice") == {"select_metric": "loss", "select_maximize": False}


def test_a_later_fold_reports_the_mean_of_the_finished_folds_and_its_current_epoch(workspace: Settings) -> None:
    """Fold 2's epoch 2 is reported at step 2 * max_epochs + 2 as (fold 0 + fold 1 + this epoch) / 3,
    so trials are pruned on the fold-averaged curve, not on the current fold alone."""
    from core.contract import TrialAttr
    from core.search.validation import spec_from_dict
    from core.training.loop import EpochRecord, TrainResult

    spec = spec_from_dict(
        {"name": "s", "dataset": "d", "pruner": "none", "cv": {"folds": 3}, "budget": {"n_trials": 1, "max_epochs": 4}}
    )
    study = optuna.create_study(direction="maximize")
    trial = study.ask()
    finished = [TrainResult([], 1, {}, False, 0.0, {"dice": dice, "loss": 0.5}) for dice in (0.9, 0.6)]
    context = core.training.objective.RunContext(workspace, artifact_store=None)
    on_epoch = core.training.objective._epoch_reporter(trial, spec, context, 2, finished)
    on_epoch(EpochRecord(2, 0.3, {"dice": 0.3, "loss": 0.4}, 1e-3, 1.0))
    assert study.trials[0].intermediate_values == {2 * 4 + 2: pytest.approx((0.9 + 0.6 + 0.3) / 3)}
    assert (
        trial.user_attrs[TrialAttr.EPOCH] == 2 and TrialAttr.HISTORY not in trial.user_attrs
    )  # only fold 0 is the live curve


def _reporter(
    workspace: Settings,
    spec_extra: dict,
    fold: int | None,
    finished: list,
    *,
    pruner: optuna.pruners.BasePruner | None = None,
    stop: bool = False,
):
    from core.search.validation import spec_from_dict

    spec = spec_from_dict(
        {"name": "s", "dataset": "d", "pruner": "none", "budget": {"n_trials": 1, "max_epochs": 4}, **spec_extra}
    )
    study = optuna.create_study(direction="maximize", pruner=pruner)
    trial = study.ask()
    context = core.training.objective.RunContext(workspace, artifact_store=None, stop_requested=lambda: stop)
    return trial, core.training.objective._epoch_reporter(trial, spec, context, fold, finished)


def _record(epoch: int, dice: float):
    from core.training.loop import EpochRecord

    return EpochRecord(epoch, 0.3, {"dice": dice, "loss": 0.4}, 1e-3, 1.0)


def test_the_first_fold_is_the_live_curve_and_a_stop_request_cancels_with_the_epoch(workspace: Settings) -> None:
    from core.contract import TrialAttr

    trial, on_epoch = _reporter(workspace, {}, None, [])
    on_epoch(_record(1, 0.5))
    assert trial.user_attrs[TrialAttr.HISTORY] == [_record(1, 0.5).to_dict()]
    trial, on_epoch = _reporter(workspace, {}, None, [], stop=True)
    with pytest.raises(core.training.objective.TrialCancelled, match=r"^trial 0 cancelled after epoch 2$"):
        on_epoch(_record(2, 0.5))
    assert trial.user_attrs[TrialAttr.CANCELLED] is True


def test_a_pruned_fold_names_itself_and_a_non_epoch_objective_reports_nothing(workspace: Settings) -> None:
    from core.training.loop import TrainResult

    always = optuna.pruners.ThresholdPruner(lower=1.0)  # any value below 1.0 prunes
    _trial, on_epoch = _reporter(workspace, {"cv": {"folds": 3}}, 2, [], pruner=always)
    with pytest.raises(optuna.TrialPruned, match=r"^pruned after epoch 2 of fold 2$"):
        on_epoch(_record(2, 0.5))
    _trial, on_epoch = _reporter(workspace, {}, None, [], pruner=always)
    with pytest.raises(optuna.TrialPruned, match=r"^pruned after epoch 2$"):
        on_epoch(_record(2, 0.5))
    # n_params is not known per epoch: nothing is reported (finished folds hold no such metric), so nothing prunes
    finished = [TrainResult([], 1, {}, False, 0.0, {"dice": 0.9, "loss": 0.1})]
    trial, on_epoch = _reporter(
        workspace,
        {"cv": {"folds": 2}, "objectives": [{"metric": "n_params", "direction": "minimize"}]},
        1,
        finished,
        pruner=always,
    )
    on_epoch(_record(1, 0.5))
    assert trial.study.trials[0].intermediate_values == {}
