"""What one trial of a study will cost, measured before the study starts.

A one-batch probe: build the model of a typical trial (first value of every choice, middle of
every range), time a forward + backward pass on a random batch of the study's size, and scale it
to the batches of one epoch of the study's split (one fold's, with cross-validation: a trial then
trains one model per fold, and :attr:`TrialCost.seconds_per_trial` counts them all). With a
``patch_size`` the batch is of patches (what a training step sees), and validation runs one forward
pass per sliding window. Good to a factor of about two: enough to tell a ten-minute study from a
ten-hour one before pressing Start. :func:`measured_profile` times the planner's reference model the
same way, so ``python -m core plan`` sizes its plan with this machine's speed instead of the table's.
A spec that compiles its models (``compile``) has the probe's model compiled the same way
(core/training/compiled.py): the compile time is measured and added once per trial, and the steps
are timed compiled.
"""

from __future__ import annotations

import math
import time
from contextlib import nullcontext
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from core.data.manifest import load_manifest
from core.data.splits import split_sizes
from core.search.cost import DeviceProfile, StudyEstimate, estimate_spec, profile_for
from core.search.space import ParamSpec, hyperparameters
from core.search.spec import StudySpec

if TYPE_CHECKING:
    from core.settings import Settings

VAL_COST = 1 / 3  # a validation batch is forward-only: about a third of a training step
REFERENCE_BATCH = 4  # images per batch of measured_profile's probe
PROBE_STEPS = 2  # the first step pays one-off costs (allocation, kernel selection); time the last


@dataclass(frozen=True)
class TrialCost:
    """The probe's answer for one typical trial."""

    n_params: int  # trainable parameters of the probed model
    weights_mb: float  # size of its weights file
    seconds_per_epoch: float  # on ``device``: train steps + validation passes of one epoch
    epochs: int = 1  # the typical trial's epochs (capped by the budget's max_epochs)
    device: str = "cpu"  # where the probe ran
    params: tuple[tuple[str, Any], ...] = ()  # the probed hyperparameters, in catalogue order
    memory_bytes: int = 0  # peak memory of one training step: measured on CUDA, estimated elsewhere
    memory_measured: bool = False  # True: torch.cuda.max_memory_allocated; False: params + activations
    compile_s: float = 0.0  # torch.compile's one-off cost per trial (0 when the spec does not compile)
    folds: int = 1  # models per trial: cross-validation trains one per fold

    @property
    def seconds_per_trial(self) -> float:
        return self.seconds_per_epoch * self.epochs * self.folds + self.compile_s


def typical_params(spec: StudySpec) -> dict[str, Any]:
    """Every active hyperparameter at its typical value: first choice, middle of a range."""
    params: dict[str, Any] = {}
    for name, hyperparameter in hyperparameters(spec.task).items():  # catalogue order: conditions come first
        if hyperparameter.active(params):
            params[name] = _typical(spec.param(name))
    return params


def estimate_trial_cost(spec: StudySpec, settings: Settings, device: str = "cpu") -> TrialCost:
    """Probe one batch of a typical trial of ``spec`` on ``device`` (the CPU by default)."""
    import torch

    from core.modeling.architectures import config_from_params
    from core.modeling.build import build_model, count_parameters, weights_size_mb
    from core.modeling.inference import window_count
    from core.training.compiled import compile_model

    manifest = load_manifest(settings.datasets_dir, spec.dataset)
    sizes = model_split_sizes(spec, settings)
    params = typical_params(spec)
    channels = spec.channels or manifest.channels
    model = build_model(config_from_params(params, channels, manifest.num_classes)).to(device)
    batch = max(1, min(int(params["batch_size"]), sizes["train"]))
    side = spec.patch_size or spec.image_size
    images = torch.rand(batch, channels, side, side, device=device)
    measured = torch.device(device).type == "cuda"
    if measured:
        torch.cuda.reset_peak_memory_stats(device)
    compiled = compile_model(model, spec.compile, (images, images), _probe_loss, nullcontext)
    step_s = _time_train_step(compiled.module, images)
    memory = torch.cuda.max_memory_allocated(device) if measured else analytic_memory_bytes(model, images)
    val_windows = sizes["val"] * window_count(spec.image_size, side)
    batches = math.ceil(sizes["train"] / batch) + VAL_COST * math.ceil(val_windows / batch)
    return TrialCost(
        n_params=count_parameters(model),
        weights_mb=weights_size_mb(model),
        seconds_per_epoch=step_s * batches,
        epochs=min(int(params["epochs"]), spec.budget.max_epochs),
        device=device,
        params=tuple(params.items()),
        memory_bytes=int(memory),
        memory_measured=measured,
        compile_s=compiled.seconds,
        folds=spec.folds,
    )


def model_split_sizes(spec: StudySpec, settings: Settings) -> dict[str, int]:
    """Train / val / test images of one model of ``spec``: with cross-validation, fold 0's."""
    import dataclasses

    manifest = load_manifest(settings.datasets_dir, spec.dataset)
    split = dataclasses.replace(spec.split, k_folds=spec.cv.folds, fold=0) if spec.cv else spec.split
    return split_sizes(manifest.stems, split, manifest.groups, manifest.labels or None)


def study_cost(spec: StudySpec, settings: Settings, profile: DeviceProfile | None = None) -> StudyEstimate:
    """The planner's estimate of the whole study of ``spec`` (folds and pruning counted), from its split's sizes."""
    sizes = model_split_sizes(spec, settings)
    return estimate_spec(spec, profile or profile_for("cpu"), train=sizes["train"], val=sizes["val"])


def measured_profile(device: str = "cpu", side: int = 128, channels: int = 3) -> DeviceProfile:
    """``device``'s profile with the speed of the reference model (U-Net resnet18) timed here at ``side`` px."""
    import torch

    from core.modeling.build import build_model
    from core.modeling.config import ModelConfig

    model = build_model(ModelConfig("Unet", channels, 2, encoder="resnet18")).to(device)
    images = torch.rand(REFERENCE_BATCH, channels, side, side, device=device)
    seconds = _time_train_step(model, images)
    return profile_for(device, megapixels_per_s=REFERENCE_BATCH * side * side / 1e6 / seconds)


ADAM_STATE_COPIES = 4  # weights, gradients and Adam's two moments
ACTIVATION_FACTOR = 2.0  # saved activations for backward plus their gradients, relative to the forward outputs


def analytic_memory_bytes(model: Any, images: Any, bytes_per_value: int = 4) -> int:
    """Peak training memory estimated without CUDA: parameter state + the activations one step keeps.

    Activations are the outputs of every leaf module in a forward pass of ``images`` (counted with
    hooks), doubled for the backward pass; parameters count four times (weights, gradients, Adam's
    moments). A planning upper bound for fp32, used where no GPU is visible: on an H200 under bf16
    autocast the measured peak was 3.7x lower (bench/RESULTS.md), so a GPU probe measures instead.
    """
    import torch

    total = [0]

    def count(_module: Any, _inputs: Any, output: Any) -> None:
        for tensor in output if isinstance(output, (tuple, list)) else (output,):
            if isinstance(tensor, torch.Tensor):
                total[0] += tensor.numel()

    leaves = [m for m in model.modules() if not list(m.children())]
    handles = [m.register_forward_hook(count) for m in leaves]
    try:
        with torch.no_grad():
            model(images)
    finally:
        for handle in handles:
            handle.remove()
    params = sum(p.numel() for p in model.parameters())
    inputs = images.numel()
    return int((ADAM_STATE_COPIES * params + ACTIVATION_FACTOR * total[0] + inputs) * bytes_per_value)


def _probe_loss(output: Any, _target: Any) -> Any:
    return output.float().mean()  # the loss does not change the cost noticeably


def _time_train_step(model: Any, images: Any) -> float:
    import torch

    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3)
    model.train()
    elapsed = 0.0
    for _ in range(PROBE_STEPS):
        start = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        model(images).float().mean().backward()  # the loss does not change the cost noticeably
        optimizer.step()
        if images.device.type == "cuda":
            torch.cuda.synchronize()
        elapsed = time.perf_counter() - start
    return elapsed


def _typical(dimension: ParamSpec) -> Any:
    if dimension.kind == "fixed":
        return dimension.value
    if dimension.kind == "choice":
        return dimension.choices[0]
    low, high = float(dimension.low), float(dimension.high)
    middle = math.sqrt(low * high) if dimension.log else (low + high) / 2
    if dimension.kind == "float":
        return middle
    step = int(dimension.step or 1)
    return int(low + round((middle - low) / step) * step)
