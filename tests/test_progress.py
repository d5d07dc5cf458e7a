"""Progress within a trial: the loop's per-batch hook, the throttled stored attr, the CLI bar, the Jobs view."""

from __future__ import annotations

import io
from datetime import datetime, timedelta

import optuna
import pytest

from core.contract import TrialAttr
from core.data.demo import create_demo_dataset
from core.runtime.job_views import _running_trial
from core.runtime.tuning import run_study
from core.search.validation import spec_from_dict
from core.settings import Settings
from core.training.loop import TrainConfig, batches_per_epoch, train_model
from core.training.progress import BatchProgress, ProgressWriter, TrialBar
from tests.helpers.segmentation import squares, tiny_unet


class FakeTrial:
    def __init__(self, number: int = 0) -> None:
        self.number = number
        self.writes: list[dict] = []

    def set_user_attr(self, key: str, value: object) -> None:
        assert key == TrialAttr.PROGRESS
        self.writes.append(value)


def test_the_loop_reports_every_batch_of_every_epoch() -> None:
    seen: list[tuple[int, int, int]] = []
    config = TrainConfig(epochs=2, batch_size=4, patience=5)
    train_model(
        tiny_unet(),
        squares(9, 1),
        squares(4, 2),
        config,
        mode="binary",
        num_classes=2,
        on_batch=lambda *a: seen.append(a),
    )
    # 9 images at batch 4: the last batch of one image is dropped (batch norm), so 2 batches per epoch
    assert seen == [(1, 1, 2), (1, 2, 2), (2, 1, 2), (2, 2, 2)]
    assert batches_per_epoch(9, 4) == 2 and batches_per_epoch(10, 4) == 3 and batches_per_epoch(3, 8) == 1


def test_writer_throttles_but_always_stores_an_epochs_last_batch() -> None:
    now = [0.0]
    trial, hooked = FakeTrial(7), []
    writer = ProgressWriter(
        trial, epochs=2, interval_s=3.0, hook=lambda n, p: hooked.append((n, p.batch)), clock=lambda: now[0]
    )
    for batch in range(1, 11):  # one batch per second
        writer(1, batch, 10)
        now[0] += 1.0
    assert len(hooked) == 10 and hooked[0] == (7, 1)  # the hook sees every batch
    assert [w["batch"] for w in trial.writes] == [1, 4, 7, 10]  # every 3 s, and the epoch's end
    assert trial.writes[-1] == {"epoch": 1, "epochs": 2, "batch": 10, "batches": 10}


def test_batch_progress_fraction_and_reading_back() -> None:
    assert BatchProgress(2, 4, 5, 10).fraction == pytest.approx(1.5 / 4)
    assert BatchProgress(1, 0, 1, 1).fraction == 0.0
    assert BatchProgress.from_attr({"epoch": 2, "epochs": 4, "batch": 5, "batches": 10}) == BatchProgress(2, 4, 5, 10)
    for bad in (None, "x", {"epoch": 1}, {"epoch": "a", "epochs": 1, "batch": 1, "batches": 1}):
        assert BatchProgress.from_attr(bad) is None


def test_trial_bar_shows_epoch_batch_and_eta() -> None:
    out = io.StringIO()
    bar = TrialBar(position=0, file=out)
    bar(3, BatchProgress(1, 2, 1, 4))
    bar(3, BatchProgress(2, 2, 3, 4))
    assert bar.bar.n == 7 and bar.bar.total == 8
    shown = str(bar.bar)  # what tqdm draws (it redraws at most every 0.1 s)
    assert "trial 3 · epoch 2/2 · batch 3/4" in shown and "7/8" in shown and "<" in shown  # "elapsed<remaining"
    bar(4, BatchProgress(1, 5, 1, 4))  # the next trial gets a fresh bar
    assert bar.trial == 4 and bar.bar.total == 20 and bar.bar.n == 1
    assert "trial 4 · epoch 1/5 · batch 1/4" in str(bar.bar)
    bar.close()
    assert bar.bar is None and out.getvalue()


def test_running_trial_reads_batch_progress_and_estimates_time_left() -> None:
    study = optuna.create_study()
    trial = study.ask()
    study._storage.set_trial_user_attr(trial._trial_id, TrialAttr.EPOCH, 1)
    study._storage.set_trial_user_attr(trial._trial_id, TrialAttr.EPOCHS_PLANNED, 4)
    frozen = study.get_trials(deepcopy=False)[0]
    running = _running_trial(frozen, None, set(), True)
    assert running.progress is None and running.fraction == pytest.approx(0.25)
    study._storage.set_trial_user_attr(
        trial._trial_id, TrialAttr.PROGRESS, {"epoch": 2, "epochs": 4, "batch": 5, "batches": 10}
    )
    frozen = study.get_trials(deepcopy=False)[0]
    frozen.datetime_start = datetime.now() - timedelta(seconds=150)
    running = _running_trial(frozen, None, set(), True)
    assert running.progress == BatchProgress(2, 4, 5, 10)
    assert running.fraction == pytest.approx(0.375)
    assert running.eta_s == pytest.approx(150 * 0.625 / 0.375, rel=0.05)


def test_a_trial_stores_its_batch_progress_and_feeds_the_cli_hook(workspace: Settings) -> None:
    seen: list[tuple[int, BatchProgress]] = []
    create_demo_dataset(workspace.datasets_dir, count=24, size=64)
    spec = spec_from_dict(
        {
            "name": "progress",
            "dataset": "demo-cells",
            "image_size": 64,
            "sampler": "random",
            "pruner": "none",
            "budget": {"n_trials": 1, "max_epochs": 2},
            "preview_count": 2,
            "search_space": {
                "architecture": "ClassicUNet",
                "unet_start_filters": 4,
                "unet_depth": 2,
                "batch_size": 8,
                "epochs": 2,
            },
        }
    )
    trial = run_study(
        spec, workspace, device="cpu", on_progress=lambda number, progress: seen.append((number, progress))
    ).trials[0]
    batches = seen[0][1].batches
    assert batches >= 2 and len(seen) == 2 * batches and {number for number, _ in seen} == {0}
    assert seen[-1][1] == BatchProgress(2, 2, batches, batches)
    assert trial.user_attrs[TrialAttr.PROGRESS] == {"epoch": 2, "epochs": 2, "batch": batches, "batches": batches}


def test_jobs_show_prints_the_batch_within_the_epoch(workspace: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    import core.runtime.launcher
    from core.commands.jobs import status_text
    from core.runtime.job_views import job_status
    from core.runtime.queue import submit_job
    from core.runtime.storage import open_storage

    monkeypatch.setattr(core.runtime.launcher, "launch_workers", lambda settings, job, slots: [])
    create_demo_dataset(workspace.datasets_dir, count=12, size=64)
    spec = spec_from_dict(
        {
            "name": "shown",
            "dataset": "demo-cells",
            "image_size": 64,
            "budget": {"n_trials": 2, "max_epochs": 5},
            "search_space": {"architecture": "ClassicUNet", "epochs": 5},
        }
    )
    job_id = submit_job(workspace, spec, workers=1, devices=["cpu"])
    trial = optuna.load_study(study_name="shown", storage=open_storage(workspace.db_url)).ask()
    trial.set_user_attr(TrialAttr.PROGRESS, {"epoch": 2, "epochs": 5, "batch": 7, "batches": 30})
    assert "epoch 2/5 batch 7/30" in status_text(job_status(workspace, job_id), workspace, 0)
