"""The objective's fault handling: CUDA out-of-memory retry and readable failures."""

from __future__ import annotations

import optuna
import pytest
import torch

import core.training.objective
from core.settings import Settings
from tests.conftest import tiny_study


def test_out_of_memory_is_retried_once_with_half_the_batch(workspace: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
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


def test_out_of_memory_twice_fails_the_trial_with_a_reason_not_the_worker(workspace: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    def always_out_of_memory(*args, **kwargs):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)")

    monkeypatch.setattr(core.training.objective, "train_model", always_out_of_memory)
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: None)
    study = tiny_study(workspace, "oom-twice", trials=2)
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.FAIL] * 2
    assert "CUDA out of memory at batch size 4" in study.trials[0].user_attrs["error"]
