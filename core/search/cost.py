"""What a whole study will cost, by arithmetic: the planner's estimator (no torch, no probe).

A device profile says how many input megapixels per second the reference model (U-Net with a
resnet18 encoder) trains at; every other model costs a multiple of that (:data:`RELATIVE_COST`,
ratios timed on one CPU with bench-style probes, rounded up). One epoch costs its training images
plus a third of its validation images (forward only) at the study's side; a trial costs
``folds`` models (cross-validation trains one per fold) of ``epochs`` epochs plus a fixed
overhead per model (building it, scoring the test split, storing weights and previews). A pruned
study runs fewer epochs: trials after the first few are counted at :data:`PRUNED_SHARE` of their
epochs. The planner sizes its plan against this estimate, the New study form and ``python -m core
plan`` print it, and ``core.training.estimate`` replaces the profile's speed by a measured one.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from core.modeling import architectures as architecture_registry

if TYPE_CHECKING:
    from core.search.spec import StudySpec

VAL_COST = 1 / 3  # a validation image is forward-only: about a third of a training image


@dataclass(frozen=True)
class DeviceProfile:
    """How fast a device trains, for planning (a measured profile replaces the table's speed)."""

    kind: str  # "cpu" or "cuda"
    megapixels_per_s: float  # training throughput of U-Net resnet18, input pixels x images
    default_hours: float  # the time budget when the user names none
    model_overhead_s: float  # per model trained: build, test scoring, previews, weights upload
    study_overhead_s: float  # once per study: decoding the images, baselines, previews
    measured: bool = False  # True: megapixels_per_s was timed on this machine

    @property
    def label(self) -> str:
        return "GPU" if self.kind == "cuda" else "CPU"


# CPU: a 1,000-image 128 px polyp study measured ~0.12 MP/s on a laptop-class CPU (issue 24);
# GPU: U-Net resnet18 under AMP on an H100-class card, with data on the device, rounded down.
PROFILES: dict[str, DeviceProfile] = {
    "cpu": DeviceProfile("cpu", megapixels_per_s=0.12, default_hours=2.0, model_overhead_s=1.5, study_overhead_s=2.0),
    "cuda": DeviceProfile(
        "cuda", megapixels_per_s=40.0, default_hours=12.0, model_overhead_s=6.0, study_overhead_s=10.0
    ),
}


def device_kind(device: str) -> str:
    """ "cuda" for any CUDA device name ("cuda", "cuda:1"), else "cpu"."""
    return "cuda" if device.startswith("cuda") else "cpu"


def profile_for(device: str, megapixels_per_s: float | None = None) -> DeviceProfile:
    """The table's profile of ``device``'s kind, with a measured speed when one is given."""
    profile = PROFILES[device_kind(device)]
    return profile if megapixels_per_s is None else replace(profile, megapixels_per_s=megapixels_per_s, measured=True)


# Training cost relative to U-Net resnet18 at the same side (architecture x encoder; classifiers alone).
RELATIVE_COST: dict[str, float] = {
    "Unet": 1.0,
    "FPN": 0.8,
    "UnetPlusPlus": 2.5,
    "DeepLabV3Plus": 1.0,
    "Linknet": 0.8,
    "PSPNet": 0.6,
    "MAnet": 1.6,
    "DeepLabV3": 2.5,
    "PAN": 0.9,
    "UPerNet": 1.3,
    "Segformer": 1.0,
    "DPT": 3.0,
    "ClassicUNet": 1.5,
    "FCN32": 1.0,
    "resnet18": 1.0,
    "resnet34": 1.5,
    "resnet50": 2.5,
    "efficientnet-b0": 1.4,
    "efficientnet-b2": 2.0,
    "mobilenet_v2": 0.8,
    "MobileNetV2": 0.35,
    "ResNet18": 0.5,
    "EfficientNetB0": 0.6,
    "ResNet50": 1.3,
    "VGG19": 5.0,
}
UNKNOWN_COST = 2.0  # a model missing from the table: counted as a heavy one rather than a cheap one

PRUNED_SHARE = {
    "hyperband": 0.5,
    "successive_halving": 0.5,
    "median": 0.7,
    "none": 1.0,
}  # epochs a pruned study's later trials run, on average
PRUNER_STARTUP = 2  # the first trials always run in full: nothing to compare them with yet


def model_cost(architecture: str, encoder: str | None = None) -> float:
    """Relative training cost of one model (1.0 = U-Net resnet18)."""
    cost = RELATIVE_COST.get(architecture, UNKNOWN_COST)
    return cost * RELATIVE_COST.get(encoder, UNKNOWN_COST) if encoder else cost


def mean_model_cost(architectures: list[str], encoders: list[str] | None = None) -> float:
    """The expected cost of a trial whose sampler draws every architecture x encoder alike."""
    pairs = [(a, e) for a in architectures for e in (encoders or [None])]
    return sum(model_cost(a, e) for a, e in pairs) / len(pairs)


@dataclass(frozen=True)
class StudyEstimate:
    """The estimator's answer for one study."""

    epoch_s: float  # one epoch of one model of the typical trial
    trial_s: float  # one full trial: every fold, every epoch, the overheads
    n_trials: int
    folds: int
    pruned_share: float  # epochs the later trials run, on average (1.0 without pruning)
    total_s: float  # the whole study

    @property
    def total_min(self) -> float:
        return self.total_s / 60

    def line(self) -> str:
        """The one line the CLI and the form print."""
        folds = f" x {self.folds} folds" if self.folds > 1 else ""
        pruning = (
            f", pruning counted (later trials ~{self.pruned_share:.0%} of their epochs)"
            if self.pruned_share < 1
            else ""
        )
        return (
            f"estimated study total: {format_duration(self.total_s)} ({self.n_trials} trial(s) of about "
            f"{format_duration(self.trial_s)}{folds}{pruning})"
        )


def format_duration(seconds: float) -> str:
    minutes = seconds / 60
    if minutes < 1:
        return f"{seconds:.0f} s"
    if minutes < 120:
        return f"{minutes:.0f} min"
    return f"{minutes / 60:.1f} h"


def epoch_seconds(profile: DeviceProfile, side: int, train: int, val: int, cost: float, val_windows: int = 1) -> float:
    """One epoch of one model: its training images plus a third of its validation images, each of
    those ``val_windows`` forward passes of ``side`` px (a sliding window over a larger image)."""
    megapixels = (train + VAL_COST * val * val_windows) * side * side / 1e6
    return megapixels * cost / profile.megapixels_per_s


def study_estimate(
    profile: DeviceProfile,
    *,
    side: int,
    train: int,
    val: int,
    cost: float,
    epochs: int,
    n_trials: int,
    folds: int = 1,
    pruner: str = "none",
    val_windows: int = 1,
) -> StudyEstimate:
    """The whole study: ``n_trials`` trials of ``folds`` models of ``epochs`` epochs, pruning counted
    (``side``: what a training step sees; ``val_windows``: sliding-window passes per validation image)."""
    epoch_s = epoch_seconds(profile, side, train, val, cost, val_windows)
    train_s = folds * epochs * epoch_s
    trial_s = train_s + folds * profile.model_overhead_s
    share = PRUNED_SHARE.get(pruner, 1.0) if n_trials > PRUNER_STARTUP else 1.0
    full = min(n_trials, PRUNER_STARTUP)
    later = n_trials - full
    total = profile.study_overhead_s + full * trial_s + later * (share * train_s + folds * profile.model_overhead_s)
    return StudyEstimate(epoch_s, trial_s, n_trials, folds, share, total)


def spec_model_cost(spec: StudySpec) -> float:
    """The mean relative cost over the spec's architecture (x encoder) choices."""
    architecture, encoder = spec.param("architecture"), spec.param("encoder") if not spec.is_classification else None
    architectures = list(architecture.choices) if architecture.kind == "choice" else [architecture.value]
    encoders = None if encoder is None else (list(encoder.choices) if encoder.kind == "choice" else [encoder.value])
    return mean_model_cost(architectures, encoders if any(_takes_encoder(a) for a in architectures) else None)


def _takes_encoder(architecture: str) -> bool:
    return architecture_registry.takes(architecture, "encoder")


def typical_epochs(spec: StudySpec) -> int:
    """The epochs of a typical trial: the ``epochs`` dimension's largest value, capped by the budget."""
    epochs = spec.param("epochs")
    top = epochs.value if epochs.kind == "fixed" else (max(epochs.choices) if epochs.kind == "choice" else epochs.high)
    return int(min(int(top), spec.budget.max_epochs))


def sliding_windows(image_size: int, patch_size: int | None) -> int:
    """Forward passes per validation image: one, or the sliding window's count over a patch-trained study's images."""
    if patch_size is None:
        return 1
    from core.modeling.inference import window_count  # only patch studies pay for the import (torch)

    return window_count(image_size, patch_size)


def estimate_spec(spec: StudySpec, profile: DeviceProfile, *, train: int, val: int) -> StudyEstimate:
    """The study total of ``spec`` on ``profile``, given one model's train and validation images."""
    return study_estimate(
        profile,
        side=spec.patch_size or spec.image_size,
        val_windows=sliding_windows(spec.image_size, spec.patch_size),
        train=train,
        val=val,
        cost=spec_model_cost(spec),
        epochs=typical_epochs(spec),
        n_trials=spec.budget.n_trials or 1,
        folds=spec.folds,
        pruner=spec.pruner,
    )
