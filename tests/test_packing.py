"""Per-trial memory before launch, and ``--per-gpu auto``: as many trials per GPU as fit (fake device memory)."""

from __future__ import annotations

import pytest
import torch

from core.data.demo import create_demo_dataset
from core.modeling.build import build_model
from core.modeling.config import ModelConfig
from core.runtime import launcher
from core.search.validation import spec_from_dict
from core.settings import Settings
from core.training.estimate import analytic_memory_bytes, estimate_trial_cost

GiB = 2**30


def test_trials_that_fit_leave_headroom_and_a_cuda_context_each() -> None:
    per_trial = 2 * GiB
    assert launcher.trials_that_fit(per_trial, 80 * GiB) == min(
        launcher.MAX_PER_GPU, int(80 * GiB * 0.85 // (per_trial + launcher.CUDA_CONTEXT_BYTES))
    )
    assert launcher.trials_that_fit(10 * GiB, 24 * GiB) == 1
    assert launcher.trials_that_fit(30 * GiB, 24 * GiB) == 1  # never zero: the OOM retry halves the batch
    assert launcher.trials_that_fit(100 * 2**20, 80 * GiB) == launcher.MAX_PER_GPU
    with pytest.raises(launcher.LaunchError, match="positive"):
        launcher.trials_that_fit(0, GiB)


def test_plan_slots_auto_packs_each_gpu_by_its_free_memory() -> None:
    free = {"cuda:0": 40 * GiB, "cuda:1": 12 * GiB}
    slots = launcher.plan_slots(None, None, "auto", gpu_count=2, trial_bytes=4 * GiB, device_memory=free.__getitem__)
    assert slots.count("cuda:0") == int(40 * GiB * 0.85 // (4 * GiB + launcher.CUDA_CONTEXT_BYTES)) == 7
    assert slots.count("cuda:1") == 2
    assert launcher.plan_slots("cpu", None, "auto", trial_bytes=GiB, device_memory=free.__getitem__) == ["cpu"]
    with pytest.raises(launcher.LaunchError, match="memory estimate"):
        launcher.plan_slots(None, None, "auto", gpu_count=1)
    with pytest.raises(launcher.LaunchError, match="'auto'"):
        launcher.plan_slots(None, None, "many", gpu_count=1)


def test_analytic_memory_grows_with_batch_and_image_size() -> None:
    model = build_model(
        ModelConfig(architecture="ClassicUNet", in_channels=1, num_classes=2, unet_start_filters=4, unet_depth=2)
    )
    params = sum(p.numel() for p in model.parameters())
    small = analytic_memory_bytes(model, torch.rand(2, 1, 32, 32))
    assert small > 4 * params * 4  # parameter state plus activations
    assert analytic_memory_bytes(model, torch.rand(4, 1, 32, 32)) - 4 * params * 4 == pytest.approx(
        2 * (small - 4 * params * 4), rel=0.01
    )
    assert analytic_memory_bytes(model, torch.rand(2, 1, 64, 64)) > 3 * (small - 4 * params * 4)


def test_the_probe_reports_memory_and_submit_auto_uses_it(workspace: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    from core.runtime.job_table import get_job
    from core.runtime.queue import submit_job

    create_demo_dataset(workspace.datasets_dir, count=12, size=64)
    spec = spec_from_dict(
        {
            "name": "packed",
            "dataset": "demo-cells",
            "image_size": 64,
            "search_space": {"architecture": "ClassicUNet", "unet_start_filters": 8, "unet_depth": 2, "batch_size": 4},
        }
    )
    cost = estimate_trial_cost(spec, workspace)
    assert cost.memory_bytes > 0 and not cost.memory_measured
    monkeypatch.setattr(launcher, "launch_workers", lambda settings, job, slots: [])
    monkeypatch.setattr(launcher, "visible_gpu_ids", lambda: ["0"])
    monkeypatch.setattr(launcher, "free_gpu_memory", lambda device: 3 * GiB)
    monkeypatch.setattr(
        launcher.plan_slots,
        "__kwdefaults__",
        {**launcher.plan_slots.__kwdefaults__, "device_memory": launcher.free_gpu_memory},
    )
    job = get_job(workspace, submit_job(workspace, spec, per_gpu="auto", trial_bytes=cost.memory_bytes, launch=False))
    assert job.per_gpu == job.workers == launcher.trials_that_fit(cost.memory_bytes, 3 * GiB) >= 2
