"""torch.compile in the trainer: eager fallback that never fails a trial, static batches for CUDA graphs,
validation at a larger batch, compile time in the trial's time and in the cost probe.

The fast tests stand a stub in for the compiler (``compiled._compile``); one slow test compiles for
real with inductor on the CPU (minutes on a loaded 2-core machine).
"""

from __future__ import annotations

import time

import optuna
import pytest
import torch

import core.training.compiled as compiled
from core.modeling.inference import autocast, to_model_layout
from core.modeling.optimizers import OptimizerConfig
from core.settings import Settings
from core.training.eval_batch import evaluation_batch_size
from core.training.loop import TrainConfig, batches_per_epoch, train_model
from tests.helpers.segmentation import squares, tiny_unet
from tests.helpers.studies import tiny_study

CPU = torch.device("cpu")


class Broken(torch.nn.Module):
    """Stands in for a compiled model whose compiler fails: in every call, or only in eval mode."""

    def __init__(self, model: torch.nn.Module, *, only_eval: bool = False) -> None:
        super().__init__()
        self.model = model
        self.only_eval = only_eval
        self.calls = 0

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        if self.only_eval and self.training:
            return self.model(images)
        raise RuntimeError("inductor: no C++ compiler (simulated)\nmore lines")


def config(mode: str, **extra: object) -> TrainConfig:
    settings: dict = {
        "epochs": 1,
        "batch_size": 4,
        "optimizer": OptimizerConfig(lr=0.01),
        "loss": "dice_bce",
        "patience": 5,
        **extra,
    }
    return TrainConfig(compile_mode=mode, **settings)


def test_compile_off_trains_the_model_itself() -> None:
    model = tiny_unet()
    images, masks = squares(4, seed=0).images.float() / 255, None
    result = compiled.compile_model(model, "off", (images, masks), lambda out, _t: out.mean(), lambda: autocast(CPU))
    assert result.module is model and result.seconds == 0 and result.warning is None


def test_each_model_compiles_from_a_clean_dynamo_cache_with_static_shapes(monkeypatch: pytest.MonkeyPatch) -> None:
    """A worker's trials share one process: each compile starts after a reset (no recompile limit
    reached silently), in the spec's mode, shapes static (CUDA graphs, no dynamic-shape graphs)."""
    calls: list[object] = []
    monkeypatch.setattr(torch.compiler, "reset", lambda: calls.append("reset"))
    monkeypatch.setattr(torch, "compile", lambda model, **options: calls.append(options) or model)
    model = tiny_unet()
    assert compiled._compile(model, compiled.CompileMode.REDUCE_OVERHEAD) is model
    assert calls == ["reset", {"mode": "reduce-overhead", "dynamic": False}]


def test_a_compile_failure_trains_eager_and_says_why(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(compiled, "_compile", lambda model, mode: Broken(model))
    model = tiny_unet()
    before = {name: tensor.clone() for name, tensor in model.state_dict().items()}
    result = train_model(model, squares(8, seed=1), squares(4, seed=2), config("default"), mode="binary", num_classes=2)
    assert (
        result.compile_warning
        == "torch.compile failed, trained eager instead: RuntimeError: inductor: no C++ compiler (simulated)"
    )
    assert len(result.history) == 1 and result.history[0].val["dice"] >= 0
    assert any(
        not torch.equal(before[name], tensor) for name, tensor in model.state_dict().items()
    )  # it trained, eager


def test_a_failure_when_validation_compiles_falls_back_there_and_keeps_training(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    stubs: list[Broken] = []
    monkeypatch.setattr(
        compiled, "_compile", lambda model, mode: stubs.append(Broken(model, only_eval=True)) or stubs[-1]
    )
    result = train_model(
        tiny_unet(), squares(8, seed=1), squares(4, seed=2), config("default", epochs=2), mode="binary", num_classes=2
    )
    assert result.compile_warning is not None and "simulated" in result.compile_warning
    assert len(result.history) == 2
    # the warm-up and epoch 1's two training steps went through the "compiled" model, then the first
    # eval call failed; from there on every call is eager
    assert stubs[0].calls == 1 + 2 + 1


def test_the_warm_up_leaves_batch_norm_statistics_and_gradients_as_they_were(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(compiled, "_compile", lambda model, mode: model)
    model = tiny_unet()
    state = {name: tensor.clone() for name, tensor in model.state_dict().items()}
    images = to_model_layout(squares(4, seed=0).images.float() / 255)
    result = compiled.compile_model(
        model, "default", (images, images), lambda out, _t: out.mean(), lambda: autocast(CPU)
    )
    assert result.warning is None and result.seconds > 0 and result.module is not model
    assert all(torch.equal(state[name], tensor) for name, tensor in model.state_dict().items())
    assert all(parameter.grad is None for parameter in model.parameters())
    assert set(result.module.state_dict()) != set(state)  # the wrapper's keys: the loop saves the model's own
    assert torch.equal(result.module(images), model(images))


def test_cuda_graphs_get_one_batch_shape_the_partial_last_batch_is_dropped(monkeypatch: pytest.MonkeyPatch) -> None:
    assert batches_per_epoch(10, 4) == 3 and batches_per_epoch(9, 4) == 2  # eager: only a last batch of one is dropped
    assert batches_per_epoch(10, 4, drop_partial=True) == 2 and batches_per_epoch(8, 4, drop_partial=True) == 2
    assert batches_per_epoch(3, 4, drop_partial=True) == 1  # a set smaller than one batch still trains
    monkeypatch.setattr(compiled, "_compile", lambda model, mode: model)
    seen: list[tuple[int, int]] = []
    train_model(
        tiny_unet(),
        squares(10, seed=1),
        squares(4, seed=2),
        config("reduce-overhead"),
        mode="binary",
        num_classes=2,
        on_batch=lambda _epoch, batch, batches: seen.append((batch, batches)),
    )
    assert seen == [(1, 2), (2, 2)]


def test_validation_runs_at_a_larger_batch_than_training() -> None:
    data = squares(10, seed=0)
    size = evaluation_batch_size(tiny_unet(), data, 2, lambda: autocast(CPU), to_model_layout)
    assert size == 2 * 4  # on the CPU a fixed multiple of the training batch
    assert (
        evaluation_batch_size(tiny_unet(), data, 4, lambda: autocast(CPU), to_model_layout) == 10
    )  # never more than the set
    assert evaluation_batch_size(tiny_unet(), squares(3, seed=0), 4, lambda: autocast(CPU), to_model_layout) == 4


@pytest.mark.skipif(not torch.cuda.is_available(), reason="the memory probe needs CUDA")
def test_on_a_gpu_validation_batch_fits_a_share_of_the_free_memory() -> None:
    data = squares(64, seed=0).to("cuda")
    model = tiny_unet().cuda()
    size = evaluation_batch_size(model, data, 4, lambda: autocast(data.images.device), to_model_layout)
    assert 4 <= size <= 64


def test_the_objective_records_a_compile_failure_on_the_trial_and_completes(
    workspace: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(compiled, "_compile", lambda model, mode: Broken(model))
    trial = tiny_study(workspace, "compile-fails", compile_mode="default").trials[0]
    assert trial.state == optuna.trial.TrialState.COMPLETE
    assert trial.user_attrs["compile_warning"].startswith("torch.compile failed, trained eager instead: RuntimeError")


def test_the_cost_probe_counts_compile_time_once_per_trial(
    workspace: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    from core.data.demo import create_demo_dataset
    from core.search.validation import spec_from_dict
    from core.training.estimate import estimate_trial_cost

    def slow_compiler(model: torch.nn.Module, mode: str) -> torch.nn.Module:
        time.sleep(0.2)  # a stand-in compiler that takes measurable time
        return model

    monkeypatch.setattr(compiled, "_compile", slow_compiler)
    create_demo_dataset(workspace.datasets_dir, count=10, size=64)
    spec = {
        "name": "s",
        "dataset": "demo-cells",
        "image_size": 64,
        "budget": {"n_trials": 2, "max_epochs": 3},
        "search_space": {
            "architecture": "ClassicUNet",
            "unet_start_filters": 4,
            "unet_depth": 2,
            "batch_size": 4,
            "epochs": 5,
        },
    }
    eager = estimate_trial_cost(spec_from_dict(spec), workspace)
    cost = estimate_trial_cost(spec_from_dict({**spec, "compile": "default"}), workspace)
    assert eager.compile_s == 0 and cost.compile_s >= 0.2
    assert cost.seconds_per_trial == pytest.approx(cost.seconds_per_epoch * 3 + cost.compile_s)


@pytest.mark.slow
def test_inductor_compiles_a_tiny_model_on_the_cpu() -> None:
    """The real compiler (inductor, C++ on the CPU): one epoch at 32 px, no fallback, the model's own keys."""
    model = tiny_unet()
    keys = set(model.state_dict())
    result = train_model(model, squares(8, seed=1), squares(4, seed=2), config("default"), mode="binary", num_classes=2)
    assert result.compile_warning is None
    assert (
        set(result.best_state) == keys and result.history[0].train_loss > 0 and 0 <= result.history[0].val["dice"] <= 1
    )
