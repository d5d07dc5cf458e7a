"""The "auto" preset: a study planned from the dataset's fingerprint and the user's time budget.

Like nnU-Net's experiment planning (Isensee et al., "nnU-Net: a self-configuring method for deep
learning-based biomedical image segmentation"), a few measured facts of the dataset — image size
and aspect, channels, bit depth, count, foreground fraction, class balance — decide the losses,
the augmentation that suits the modality and the batch size. The time budget (2 h on a CPU, 12 h
on a GPU unless the user gives one) then sizes the image side, the epochs, the trials and the
architecture list against :mod:`core.search.cost`'s estimate of the whole study, pruning and
cross-validation folds counted. Short budgets get the plain strong default: its first trial is
U-Net resnet18 (or a ResNet18 classifier), Adam 1e-3, Dice+BCE (cross-entropy), light
augmentation — queued as the study's first trial, so the study never ends below it; heavier
augmentation and architectures join only when the budget buys the epochs they need.
:func:`plan` is a pure function (fingerprint in, spec dict, reasons and estimate out), so every
rule is unit-tested and the New study form and ``python -m core plan`` can say *why*.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from core.contract import Task
from core.data.splits import SplitConfig
from core.metrics.catalogue import default_objective
from core.search.cost import (
    DeviceProfile,
    StudyEstimate,
    format_duration,
    mean_model_cost,
    profile_for,
    sliding_windows,
    study_estimate,
)

if TYPE_CHECKING:
    from core.data.manifest import DatasetManifest

SMALL_FOREGROUND = 0.05  # median share of foreground pixels below which overlap losses matter most
LARGE_FOREGROUND = 0.30
IMBALANCED = 0.1  # rarest / commonest foreground class below this: a class-imbalanced multi-class set
IMBALANCED_LABELS = 0.5  # classification: rarest / commonest class count below this gets focal loss
SMALL_SET, LARGE_SET = 200, 2000  # pairs
MAX_SIDE = {"cuda": 512, "cpu": 256}  # largest square side worth training at, per device kind
MAX_CLASSIFIER_SIDE = {"cuda": 224, "cpu": 128}  # ImageNet classifiers' own side; a CPU study trains smaller
SIDES = (512, 384, 320, 256, 224, 192, 160, 128, 96, 64)  # candidate sides, largest first
BATCH_AT_256 = {"cuda": 16, "cpu": 8}  # images per batch at 256 px that fit comfortably; scaled by area
# The plan is sized a little under the budget: it counts the split's expected sizes, while the spec's
# own estimate (the New study form's) counts the frozen split, a few images either way.
BUDGET_MARGIN = 0.05
MIN_TRIALS = 4  # below this a study is not a search: the side shrinks first
DEFAULT_TRIALS = 30  # the most trials a plan asks for when the user names no count
MIN_EPOCHS = {
    Task.SEGMENTATION: 10,
    Task.CLASSIFICATION: 5,
}  # below this a model is not trained: trials and side shrink first
# Training images a segmentation trial must see before trials can be told apart; where even the
# smallest side cannot give MIN_TRIALS trials that many, the plain default alone gets the budget.
# U-Net resnet18 from scratch reached its validation plateau after ~24 epochs of 396 Shenzhen images
# and ~28 of 436 liver slices (10-12k images seen); at a 30-minute CPU budget four 14-epoch liver
# trials chose a model 0.02 test Dice below the plain default trained for 60 epochs
# (bench/RESULTS.md "Plan vs the plain default").
SEARCH_IMAGES_SEEN = 12_000
MAX_SINGLE_TRIAL_EPOCHS = 200  # the plain default alone, when no search fits, trains for every epoch up to this
PRUNE_TRIALS, PRUNE_EPOCHS = (
    10,
    10,
)  # fewer trials or epochs: no pruning (Hyperband would stop most trials after an epoch or two)
CV_BELOW = 1000  # classification sets smaller than this are cross-validated (one split's score is noisy)
CV_FOLDS = 3
LIGHT_EPOCHS, FULL_EPOCHS = (
    10,
    30,
)  # augmentation: light below, moderate between, the modality's full set from FULL_EPOCHS
AUGMENTATION_OFF = {
    "aug_hflip": False,
    "aug_vflip": False,
    "aug_rotate": 0.0,
    "aug_shift_scale": 0.0,
    "aug_brightness_contrast": 0.0,
}
PLAIN = {"scheduler": "none", **AUGMENTATION_OFF}  # the first trial: constant learning rate, no augmentation

# Architecture lists from light to heavy: (epochs needed, architectures, encoders); the heaviest whose
# epochs the budget allows and that still leaves MIN_TRIALS trials is planned. The first entry of each
# is the plain default (the first trial), so it is in every list.
SEGMENTATION_TIERS: tuple[tuple[int, tuple[str, ...], tuple[str, ...]], ...] = (
    (0, ("Unet",), ("resnet18",)),
    (10, ("Unet", "FPN"), ("resnet18", "resnet34")),
    (20, ("Unet", "UnetPlusPlus", "FPN"), ("resnet18", "resnet34")),
)
GPU_LARGE_TIER = (
    30,
    ("Unet", "UnetPlusPlus", "FPN"),
    ("resnet18", "resnet34", "resnet50", "efficientnet-b2"),
)  # GPU, not a small set
CLASSIFICATION_TIERS: tuple[tuple[int, tuple[str, ...]], ...] = (
    (0, ("ResNet18",)),
    (10, ("ResNet18", "MobileNetV2")),
    (20, ("ResNet18", "MobileNetV2", "EfficientNetB0")),
)
PATCH_RATIO = 2  # images at least this many times the side that fits train on patches at native size
MAX_NATIVE_SIDE = 1024  # native images are still resampled down to this side


@dataclass(frozen=True)
class Fingerprint:
    """What the planner needs to know about a dataset (all from its manifest; no image is decoded)."""

    count: int
    channels: int  # 1 grey, 3 RGB, other counts: multi-sequence scans
    bit_depth: int  # 8 or 16
    median_height: int
    median_width: int
    num_classes: int  # background included (segmentation); the labels (classification)
    foreground_median: float  # median over images of the share of non-background pixels (0 for classification)
    empty_fraction: float  # share of images without any foreground
    class_fractions: tuple[float, ...]  # mean share of pixels of each foreground class
    task: str = Task.SEGMENTATION
    class_counts: tuple[int, ...] = ()  # classification: images per class

    @property
    def aspect(self) -> float:
        """Width / height of the median image (>= 1 means landscape)."""
        return self.median_width / max(1, self.median_height)

    @property
    def class_balance(self) -> float:
        """Rarest / commonest class: by pixel share of foreground classes (segmentation), by image count
        (classification)."""
        present = (
            [c for c in self.class_counts if c > 0]
            if self.task == Task.CLASSIFICATION
            else [f for f in self.class_fractions if f > 0]
        )
        if len(present) < 2:
            return 1.0
        return min(present) / max(present)

    @classmethod
    def from_manifest(cls, manifest: DatasetManifest) -> Fingerprint:
        pairs = manifest.pairs
        totals = [sum(pair.foreground) for pair in pairs] if not manifest.is_classification else []
        n_fg = max(0, manifest.num_classes - 1) if not manifest.is_classification else 0
        means = (
            tuple(
                statistics.fmean(pair.foreground[i] if i < len(pair.foreground) else 0.0 for pair in pairs)
                for i in range(n_fg)
            )
            if pairs
            else ()
        )
        return cls(
            count=len(pairs),
            channels=manifest.channels,
            bit_depth=manifest.bit_depth,
            median_height=int(statistics.median(pair.height for pair in pairs)) if pairs else 0,
            median_width=int(statistics.median(pair.width for pair in pairs)) if pairs else 0,
            num_classes=manifest.num_classes,
            foreground_median=float(statistics.median(totals)) if totals else 0.0,
            empty_fraction=sum(1 for t in totals if t == 0) / len(totals) if totals else 0.0,
            class_fractions=means,
            task=str(manifest.task),
            class_counts=tuple(manifest.class_counts.values()),
        )


@dataclass(frozen=True)
class AutoPlan:
    spec: dict[str, Any]  # a study spec dict (spec_from_dict reads it)
    reasons: tuple[str, ...]  # one line per choice, in the order of the form
    estimate: StudyEstimate  # the planner's estimate of the whole study
    budget_s: float  # the time budget it was sized for

    @property
    def fits(self) -> bool:
        return self.estimate.total_s <= self.budget_s


@dataclass(frozen=True)
class _Sizing:
    side: int
    epochs: int
    n_trials: int
    tier: int  # index into the task's tiers
    estimate: StudyEstimate


def plan(
    fingerprint: Fingerprint,
    *,
    dataset: str,
    name: str | None = None,
    device: str = "cuda",
    n_trials: int | None = None,
    hours: float | None = None,
    profile: DeviceProfile | None = None,
    pretrained: frozenset[str] = frozenset(),
) -> AutoPlan:
    """Plan a study of ``fingerprint`` on ``device`` ("cuda" or "cpu") that fits ``hours``.

    ``n_trials`` fixes the trial count (else as many as fit, up to :data:`DEFAULT_TRIALS`);
    ``profile`` replaces the device's table speed (``core.training.estimate.measured_profile``);
    ``pretrained`` names the encoders / classifiers whose ImageNet weights are cached here.
    """
    profile = profile or profile_for(device)
    budget_s = (hours if hours is not None else profile.default_hours) * 3600
    if fingerprint.task == Task.CLASSIFICATION:
        return _plan_classification(fingerprint, dataset, name, profile, budget_s, n_trials, pretrained)
    return _plan_segmentation(fingerprint, dataset, name, profile, budget_s, n_trials, pretrained)


def plan_for_manifest(manifest: DatasetManifest, **kwargs: Any) -> AutoPlan:
    """:func:`plan` for a stored dataset, with the ImageNet weights this machine has cached."""
    from core.modeling.pretrained import cached

    candidates = [
        *{e for tier in (*SEGMENTATION_TIERS, GPU_LARGE_TIER) for e in tier[2]},
        *{a for _, archs in CLASSIFICATION_TIERS for a in archs},
    ]
    kwargs.setdefault("pretrained", cached(sorted(candidates)))
    return plan(Fingerprint.from_manifest(manifest), dataset=manifest.name, **kwargs)


# --- sizing: side, epochs, trials and the architecture list against the estimate ----------------


def model_images(count: int, folds: int) -> tuple[int, int]:
    """Training and validation images of one model under the default split (or one of ``folds`` folds)."""
    default = SplitConfig()
    if folds > 1:
        rest = count * (1 - default.test)
        return max(1, int(rest * (folds - 1) / folds)), max(1, int(rest / folds))
    return max(1, int(count * default.train)), max(1, int(count * default.val))


def _sides(short: int, cap: int, floor: int = 64) -> list[int]:
    top = max(floor, min(cap, short or cap) // 32 * 32)
    return [top, *(s for s in SIDES if floor <= s < top)]


def _size(
    fp: Fingerprint,
    profile: DeviceProfile,
    budget_s: float,
    n_trials: int | None,
    sides: list[int],
    tiers: list[tuple[int, float]],
    want_epochs: int,
    min_epochs: int,
    folds: int,
) -> _Sizing:
    """The largest side, then the most epochs (up to ``want_epochs``), the heaviest tier and the most
    trials whose estimate fits ``budget_s`` (less :data:`BUDGET_MARGIN`); ``tiers`` are (epochs needed,
    mean relative cost), light first."""
    budget_s *= 1 - BUDGET_MARGIN
    train, val = model_images(fp.count, folds)
    least = n_trials or MIN_TRIALS

    def estimate(side: int, epochs: int, trials: int, cost: float) -> StudyEstimate:
        pruner = "hyperband" if _prunes(trials, epochs) else "none"
        return study_estimate(
            profile,
            side=side,
            train=train,
            val=val,
            cost=cost,
            epochs=epochs,
            n_trials=trials,
            folds=folds,
            pruner=pruner,
        )

    def most_epochs(side: int, trials: int, cost: float, cap: int = want_epochs) -> int:
        fitting = [e for e in range(1, cap + 1) if estimate(side, e, trials, cost).total_s <= budget_s]
        return fitting[-1] if fitting else 0

    base = tiers[0][1]
    side = next((s for s in sides if most_epochs(s, least, base) >= min_epochs), sides[-1])
    epochs = most_epochs(side, least, base)
    if epochs < min_epochs and n_trials is None:  # too short for a search: the plain default alone gets every epoch
        least = 1
        epochs = most_epochs(side, least, base, cap=MAX_SINGLE_TRIAL_EPOCHS)
    epochs = max(1, epochs)  # even one epoch overruns: planned anyway, and the reasons say so
    tier = max(
        (
            i
            for i, (needed, cost) in enumerate(tiers)
            if needed <= epochs and estimate(side, epochs, least, cost).total_s <= budget_s
        ),
        default=0,
    )
    cost = tiers[tier][1]
    fitting = [t for t in range(1, DEFAULT_TRIALS + 1) if estimate(side, epochs, t, cost).total_s <= budget_s]
    trials = n_trials or max(least, fitting[-1] if fitting else 1)
    return _Sizing(side, epochs, trials, tier, estimate(side, epochs, trials, cost))


def _prunes(trials: int, epochs: int) -> bool:
    return trials >= PRUNE_TRIALS and epochs >= PRUNE_EPOCHS


def _time_reasons(
    sizing: _Sizing,
    profile: DeviceProfile,
    budget_s: float,
    native: int,
    reasons: list[str],
    n_trials: int | None,
    min_epochs: int,
) -> None:
    e = sizing.estimate
    origin = "measured on this machine" if profile.measured else f"assumed for a {profile.label}"
    speed = f"{profile.megapixels_per_s:.2g} megapixels/s {origin}"
    reasons.append(
        f"time budget {format_duration(budget_s)} on the {profile.label}: at {speed}, one epoch of the default model "
        f"at {sizing.side} px takes about {format_duration(e.epoch_s)}, so {sizing.n_trials} trial(s) of "
        f"{sizing.epochs} epoch(s) fit"
        + (f" (image side lowered from {native} px to fit)" if sizing.side < native else "")
        + ("" if n_trials is None else f"; {n_trials} trials as asked")
        + (
            f"; too short for {MIN_TRIALS} trials of {min_epochs}+ epochs, so the plain default gets the epochs "
            "instead of a search"
            if n_trials is None and sizing.n_trials < MIN_TRIALS
            else ""
        )
    )
    if e.total_s > budget_s:
        reasons.append(
            f"warning: even this smallest plan ({e.line()}) exceeds the {format_duration(budget_s)} budget; "
            "raise the budget or use a GPU"
        )
    reasons.append(e.line())


# --- segmentation ---------------------------------------------------------------------------------


def _plan_segmentation(
    fp: Fingerprint,
    dataset: str,
    name: str | None,
    profile: DeviceProfile,
    budget_s: float,
    n_trials: int | None,
    pretrained: frozenset[str],
) -> AutoPlan:
    kind = profile.kind
    reasons: list[str] = []
    tiers = list(SEGMENTATION_TIERS) + ([GPU_LARGE_TIER] if kind == "cuda" and fp.count >= SMALL_SET else [])
    costs = [(needed, mean_model_cost(list(archs), list(encoders))) for needed, archs, encoders in tiers]
    native = max(64, min(MAX_SIDE[kind], min(fp.median_height, fp.median_width) or 256) // 32 * 32)
    want = _want_epochs(fp)
    train, _ = model_images(fp.count, 1)
    min_epochs = min(want, max(MIN_EPOCHS[Task.SEGMENTATION], math.ceil(SEARCH_IMAGES_SEEN / train)))
    sides = _sides(min(fp.median_height, fp.median_width), MAX_SIDE[kind])
    sizing = _size(fp, profile, budget_s, n_trials, sides, costs, want, min_epochs, folds=1)
    _image_reason(fp, sizing.side, kind, reasons)
    _time_reasons(sizing, profile, budget_s, native, reasons, n_trials, min_epochs)
    patches, sizing = _patches_within_budget(fp, sizing, costs[sizing.tier][1], profile, budget_s, reasons)
    space: dict[str, Any] = {"batch_size": _batch_size(fp, sizing.side, kind, reasons)}
    _, architectures, encoders = tiers[sizing.tier]
    space.update(_architectures(fp, list(architectures), list(encoders), sizing, reasons))
    space.update(_weights(fp, space, pretrained, reasons))
    space["loss"] = _losses(fp, reasons)
    space.update(_augmentation(fp, sizing.epochs, reasons))
    space.update(_optimisation(reasons))
    space["epochs"] = sizing.epochs
    pruner = _search_reason(sizing, reasons)
    first = _first_trial(
        space,
        {
            "architecture": "Unet",
            "encoder": "resnet18",
            "optimizer": "adam",
            "lr": 1e-3,
            "weight_decay": 0.0,
            "loss": "dice_bce",
            **PLAIN,
        },
        reasons,
        "U-Net resnet18, Adam 1e-3, Dice+BCE",
    )
    spec = {
        "name": name or f"auto-{dataset}",
        "dataset": dataset,
        "description": "Planned from the dataset's fingerprint and the time budget (the auto preset).",
        "image_size": sizing.side,
        **patches,  # large images: native size, cut into patches of the planned side
        "objectives": [{"metric": "val_dice"}],
        "budget": {"n_trials": sizing.n_trials, "max_epochs": sizing.epochs},
        "sampler": "tpe",
        "pruner": pruner,
        "patience": _patience(sizing, reasons),
        "search_space": space,
        "first_trials": [first],
    }
    return AutoPlan(spec, tuple(reasons), sizing.estimate, budget_s)


def _patience(sizing: _Sizing, reasons: list[str]) -> int:
    """Early stopping only where there are epochs to spare: a short trial's validation loss is too noisy to stop
    on (bench/RESULTS.md "Plan vs the plain default": patience 5 of 11 epochs stopped the plain default at test
    Dice 0.65 against 0.83), and a lone trial's spare time would go unused (its best epoch is kept either way)."""
    epochs = sizing.epochs
    if sizing.n_trials == 1:
        reasons.append(
            f"no early stopping: the one trial has the budget to itself, and its best of {epochs} epochs is kept"
        )
        return epochs
    if epochs < FULL_EPOCHS:
        reasons.append(
            f"no early stopping: {epochs} epochs are all a trial gets, and early validation losses are too noisy to "
            "stop on"
        )
        return epochs
    patience = max(5, epochs // 4)
    reasons.append(f"early stopping after {patience} epochs without progress")
    return patience


def _want_epochs(fp: Fingerprint) -> int:
    return 50 if fp.count < SMALL_SET else (30 if fp.count < LARGE_SET else 20)


def _image_reason(fp: Fingerprint, size: int, kind: str, reasons: list[str]) -> None:
    short = min(fp.median_height, fp.median_width) or 256
    cap = MAX_SIDE[kind] if fp.task == Task.SEGMENTATION else MAX_CLASSIFIER_SIDE[kind]
    why = f"image size {size} px: the median image is {fp.median_width}x{fp.median_height}"
    if short > cap:
        why += f"; at most {cap} px on a {'GPU' if kind == 'cuda' else 'CPU'}"
    if fp.aspect > 1.3 or fp.aspect < 1 / 1.3:
        why += f"; images are not square (aspect {fp.aspect:.2f}) and are resized to a square, so rotations stay small"
    reasons.append(why + " (a multiple of 32 for the encoders)")


def _patches_within_budget(
    fp: Fingerprint, sizing: _Sizing, cost: float, profile: DeviceProfile, budget_s: float, reasons: list[str]
) -> tuple[dict[str, int], _Sizing]:
    """Patches at native size where :func:`_native_patches` proposes them and the sliding-window
    validation still fits the budget (the estimate then counts the windows); else the resized plan."""
    proposal: list[str] = []
    patches = _native_patches(fp, sizing.side, proposal)
    if not patches:
        return {}, sizing
    train, val = model_images(fp.count, 1)
    windows = sliding_windows(patches["image_size"], patches["patch_size"])
    estimate = study_estimate(
        profile,
        side=sizing.side,
        train=train,
        val=val,
        cost=cost,
        epochs=sizing.epochs,
        n_trials=sizing.n_trials,
        pruner="hyperband" if _prunes(sizing.n_trials, sizing.epochs) else "none",
        val_windows=windows,
    )
    if estimate.total_s > budget_s:
        reasons.append(
            f"images resized whole, not cut into patches: validating by sliding window ({windows} windows an image) "
            f"would take the study to {format_duration(estimate.total_s)}, past the budget"
        )
        return {}, sizing
    reasons.extend(proposal)
    return patches, replace(sizing, estimate=estimate)


def _native_patches(fp: Fingerprint, size: int, reasons: list[str]) -> dict[str, int]:
    """Images much larger than ``size``: native-size images (capped) cut into ``size`` patches, else nothing."""
    short = min(fp.median_height, fp.median_width)
    if short < PATCH_RATIO * size:
        return {}
    native = min(MAX_NATIVE_SIDE, short // 32 * 32)
    reasons.append(
        f"patches of {size} px from images at {native} px: the images are {short / size:.1f}x the side that fits, and "
        "resizing them would lose thin structures; training takes random crops (a third centred on foreground) "
        "and validation slides a window over the whole image"
    )
    return {"image_size": native, "patch_size": size}


def _batch_size(fp: Fingerprint, size: int, kind: str, reasons: list[str]) -> int | dict[str, Any]:
    fits = _power_of_two(max(2, int(BATCH_AT_256[kind] * (256 / size) ** 2)))
    train = max(2, int(fp.count * 0.7))
    batch = min(fits, 32, _power_of_two(max(2, train // 4)))
    if batch < 4:
        reasons.append(f"batch size {batch}: only ~{train} training images, and several steps per epoch matter more")
        return batch
    device = "GPU" if kind == "cuda" else "CPU"
    capped = (
        "" if batch == fits else f"; at most a quarter of the ~{train} training images, so an epoch has several steps"
    )
    reasons.append(f"batch size {batch // 2} or {batch}: about {fits} images of {size} px fit a {device} trial{capped}")
    return {"choices": [batch // 2, batch]}


def _power_of_two(n: int) -> int:
    """The largest power of two <= n (n >= 1)."""
    return 1 << (n.bit_length() - 1)


def _choice(values: list[Any]) -> Any:
    return values[0] if len(values) == 1 else {"choices": values}


def _architectures(
    fp: Fingerprint, architectures: list[str], encoders: list[str], sizing: _Sizing, reasons: list[str]
) -> dict[str, Any]:
    size = "small" if fp.count < SMALL_SET else ("large" if fp.count >= LARGE_SET else "mid-sized")
    epochs = sizing.epochs
    if len(architectures) == 1:
        why = (
            "the plain default, the one trial the budget has"
            if sizing.n_trials == 1
            else f"{epochs} epochs per trial are too few for larger networks to catch up (U-Net++ and deeper "
            "encoders join the list from 10-20 epochs)"
        )
        reasons.append(f"architecture U-Net with a resnet18 encoder only: {why}")
    else:
        reasons.append(
            f"architectures {', '.join(architectures)} with {', '.join(encoders)} encoders: {epochs} epochs per trial "
            f"train them; a {size} dataset ({fp.count} pairs)"
        )
    return {"architecture": _choice(architectures), "encoder": _choice(encoders)}


def _weights(fp: Fingerprint, space: dict[str, Any], pretrained: frozenset[str], reasons: list[str]) -> dict[str, Any]:
    """ImageNet weights for small RGB sets when they are cached here (the encoder list keeps the cached ones)."""
    if fp.channels != 3 or fp.count >= LARGE_SET:
        return {}
    key = "encoder" if "encoder" in space else "architecture"
    dimension = space[key]
    names = list(dimension["choices"]) if isinstance(dimension, dict) else [dimension]
    available = [n for n in names if n in pretrained]
    if not available or names[0] not in available:  # the default (first) must be pretrained too
        from core.modeling.pretrained import how_to_fetch

        reasons.append(
            f"ImageNet-pretrained {key}s help small RGB datasets most, but their weights are not cached here; "
            f"to use them, {how_to_fetch(names[:1])}, and plan again"
        )
        return {}
    reasons.append(
        f"encoder_weights imagenet: {fp.count} RGB images are few, and ImageNet-pretrained {key}s "
        f"({', '.join(available)}, cached here) learn from them far faster than random ones"
        + ("" if available == names else f"; {', '.join(n for n in names if n not in available)} left out: not cached")
    )
    return {key: _choice(available), "encoder_weights": "imagenet"}


def _losses(fp: Fingerprint, reasons: list[str]) -> dict[str, Any]:
    share = f"{100 * fp.foreground_median:.1f} %"
    if fp.num_classes > 2 and fp.class_balance < IMBALANCED:
        losses = ["dice_focal", "dice", "tversky"]
        reasons.append(
            f"losses Dice+focal, Dice, Tversky: classes are imbalanced (rarest/commonest = {fp.class_balance:.2f}); "
            "overlap losses weigh every class alike and focal loss down-weights easy pixels"
        )
    elif fp.foreground_median < SMALL_FOREGROUND:
        losses = ["dice_bce", "dice_focal", "tversky"]
        reasons.append(
            f"losses Dice+BCE, Dice+focal, Tversky: the foreground is small (median {share} of pixels), so a "
            "pixel-wise "
            "loss alone would be dominated by background; Tversky trades missed foreground against false alarms"
        )
    elif fp.foreground_median > LARGE_FOREGROUND:
        losses = ["dice_bce", "bce", "jaccard_bce"]
        reasons.append(
            f"losses Dice+BCE, BCE, Jaccard+BCE: the foreground is large (median {share} of pixels); pixel-wise "
            "losses are well posed"
        )
    else:
        losses = ["dice_bce", "dice_focal", "dice"]
        reasons.append(f"losses Dice+BCE, Dice+focal, Dice: a moderate foreground (median {share} of pixels)")
    if fp.empty_fraction > 0.2:
        reasons.append(
            f"{100 * fp.empty_fraction:.0f} % of the images have no foreground: combined losses keep a pixel-wise "
            "term, because Dice alone is undefined on empty masks"
        )
    return {"choices": losses}


def _augmentation(fp: Fingerprint, epochs: int, reasons: list[str]) -> dict[str, Any]:
    """Augmentation as strong as the epochs allow (heavy augmentation needs epochs a short budget does not
    have), each kind searched as off or on so the first trial can be the plain default without any."""
    aug = _augmentation_strength(fp, epochs, reasons)
    reasons.append(
        "each augmentation is searched off or on: the first trial trains without any (bench/RESULTS.md "
        '"Plan vs the plain default": augmentation forced on cost 11-epoch trials 0.18 test Dice)'
    )
    return {name: _off_or(name, value) for name, value in aug.items()}


def _off_or(name: str, value: Any) -> Any:
    """``value`` as a choice between off and itself (a choice already: off added first)."""
    off = AUGMENTATION_OFF[name]
    values = list(value["choices"]) if isinstance(value, dict) else [value]
    values = [v for v in values if v != off]
    return {"choices": [off, *values]} if values else off


def _augmentation_strength(fp: Fingerprint, epochs: int, reasons: list[str]) -> dict[str, Any]:
    """The strongest augmentation the epochs allow, for the modality."""
    colour = fp.channels == 3
    if epochs < LIGHT_EPOCHS:
        reasons.append(
            f"light augmentation (flips{' both ways' if colour else ' left-right'}): {epochs} epochs are too few "
            "for a model to learn through rotations and colour changes"
        )
        return {"aug_hflip": True, "aug_vflip": colour}
    if epochs < FULL_EPOCHS:
        aug = {
            "aug_hflip": True,
            "aug_vflip": colour,
            "aug_rotate": 15.0 if colour else 5.0,
            "aug_shift_scale": 0.1,
            "aug_brightness_contrast": 0.1,
        }
        reasons.append(
            f"moderate augmentation (flips, rotations up to {aug['aug_rotate']:.0f}°, 10 % shift/scale, 10 % "
            "brightness/contrast): "
            f"{epochs} epochs; the modality's full set needs {FULL_EPOCHS}+"
        )
        return aug
    small = fp.count < SMALL_SET
    if not colour:
        # Grey scans (X-ray, CT, MRI) and multi-sequence MRI: anatomy has an up and a down;
        # left-right flips and small rotations are safe; contrast varies between scanners and windows.
        rotate = 10.0 if fp.aspect <= 1.3 and fp.aspect >= 1 / 1.3 else 5.0
        aug = {
            "aug_hflip": True,
            "aug_vflip": False,
            "aug_rotate": rotate,
            "aug_shift_scale": 0.1,
            "aug_brightness_contrast": {"choices": [0.1, 0.3]} if fp.bit_depth == 16 or small else 0.2,
        }
        reasons.append(
            f"augmentation for grey images: left-right flips, rotations up to {rotate:.0f}°, 10 % shift/scale, "
            "brightness/contrast changes (scanners differ); no up-down flips, since scans (X-ray, CT, MRI) have an "
            "up and a down: for images without one (microscopy) turn them on in the form"
            + ("; contrast range searched: 16-bit images" if fp.bit_depth == 16 else "")
        )
    else:
        # Colour images (microscopy, endoscopy, photographs): microscopy has no orientation.
        aug = {
            "aug_hflip": True,
            "aug_vflip": True,
            "aug_rotate": 90.0 if small else 45.0,
            "aug_shift_scale": 0.15,
            "aug_brightness_contrast": 0.2,
        }
        reasons.append(
            f"augmentation for colour images: both flips and rotations up to {aug['aug_rotate']:.0f}° (microscopy and "
            "photographs have no fixed orientation), 15 % shift/scale, colour jitter"
        )
    if small:
        reasons.append(f"only {fp.count} pairs: augmentation is always on to fight over-fitting")
    return aug


def _optimisation(reasons: list[str]) -> dict[str, Any]:
    reasons.append(
        "optimizer Adam or AdamW, learning rate 1e-4..3e-3 (log scale), constant or cosine schedule: robust defaults "
        "for "
        "encoder-decoder networks, searched where they matter most"
    )
    return {
        "optimizer": {"choices": ["adam", "adamw"]},
        "lr": {"low": 1e-4, "high": 3e-3, "log": True},
        "weight_decay": {"choices": [0.0, 1e-4]},
        "scheduler": {"choices": ["none", "cosine"]},
    }


def _search_reason(sizing: _Sizing, reasons: list[str]) -> str:
    if sizing.n_trials == 1:
        reasons.append("no search: one trial, the plain default; the space above is what trials added by Extend sample")
        return "none"
    if _prunes(sizing.n_trials, sizing.epochs):
        reasons.append(
            f"search: TPE with Hyperband pruning over {sizing.n_trials} trials — it reached random search's best in "
            "less "
            "compute in bench/search_efficiency.py; Hyperband stops weak trials after a few epochs"
        )
        return "hyperband"
    reasons.append(
        f"search: TPE over {sizing.n_trials} trial(s) without pruning — with {sizing.epochs} epochs and "
        f"{sizing.n_trials} trials Hyperband would stop most trials after an epoch or two, before they can be told "
        "apart"
    )
    return "none"


def _first_trial(space: dict[str, Any], default: dict[str, Any], reasons: list[str], label: str) -> dict[str, Any]:
    """The plain default's values among the tuned dimensions (queued as trial 0, so the study never ends below it)."""
    first = {}
    for key, value in default.items():
        dimension = space.get(key)
        if isinstance(dimension, dict) and (
            "choices" in dimension
            and value in dimension["choices"]
            or "low" in dimension
            and dimension["low"] <= value <= dimension["high"]
        ):
            first[key] = value
    batch = space.get("batch_size")
    if isinstance(batch, dict):
        first["batch_size"] = max(batch["choices"])  # fewer, larger steps: the fastest default
    reasons.append(f"first trial: the plain default ({label}) — queued first, so the study's best is never below it")
    return first


# --- classification --------------------------------------------------------------------------------


def _plan_classification(
    fp: Fingerprint,
    dataset: str,
    name: str | None,
    profile: DeviceProfile,
    budget_s: float,
    n_trials: int | None,
    pretrained: frozenset[str],
) -> AutoPlan:
    kind = profile.kind
    reasons: list[str] = []
    tiers = list(CLASSIFICATION_TIERS)
    costs = [(needed, mean_model_cost(list(archs))) for needed, archs in tiers]
    short = min(fp.median_height, fp.median_width)
    sides = _sides(short, MAX_CLASSIFIER_SIDE[kind])
    want = 30 if fp.count < SMALL_SET else (20 if fp.count < LARGE_SET else 15)
    min_epochs = MIN_EPOCHS[Task.CLASSIFICATION]
    folds = CV_FOLDS if fp.count < CV_BELOW else 1
    sizing = _size(fp, profile, budget_s, n_trials, sides, costs, want, min_epochs, folds)
    if folds > 1 and sizing.epochs < min_epochs:  # cross-validation does not fit: one split, said so below
        folds = 1
        sizing = _size(fp, profile, budget_s, n_trials, sides, costs, want, min_epochs, folds)
    _image_reason(fp, sizing.side, kind, reasons)
    _time_reasons(sizing, profile, budget_s, sides[0], reasons, n_trials, min_epochs)
    if folds > 1:
        reasons.append(
            f"{folds}-fold cross-validation: {fp.count} images make one validation split's score noisy; "
            f"every trial trains {folds} models, counted in the estimate"
        )
    elif fp.count < CV_BELOW:
        reasons.append(
            f"no cross-validation: {CV_FOLDS} folds would not fit the budget with {min_epochs}+ epochs per model"
        )
    _, architectures = tiers[sizing.tier]
    reasons.append(
        f"classifiers {', '.join(architectures)} under the tuned head: {sizing.epochs} epochs per trial"
        + ("; MobileNetV2 and EfficientNet-B0 join from 10-20 epochs" if len(architectures) < 3 else "")
    )
    space: dict[str, Any] = {"architecture": _choice(list(architectures))}
    space.update(_weights(fp, space, pretrained, reasons))
    space.update(
        {
            "head_kernel_size": {"choices": [3, 1]},
            "head_filters": {"choices": [64, 32, 128]},
            "head_dense_units": {"choices": [128, 64, 32]},
            "head_dropout": {"low": 0.2, "high": 0.5},
        }
    )
    reasons.append(
        "head: kernel 1 or 3, 32-128 filters, 32-128 dense units, dropout 0.2-0.5 (the CNN random-search study's "
        "ranges, "
        "its larger kernels dropped: they rarely won and cost most)"
    )
    space["loss"] = _classification_loss(fp, reasons)
    space["batch_size"] = _classification_batch(fp, folds, reasons)
    space.update(_augmentation(fp, sizing.epochs, reasons))
    space.update(_optimisation(reasons))
    space["epochs"] = sizing.epochs
    objective = default_objective(Task.CLASSIFICATION)
    reasons.append(
        f"objective {objective}: the mean of per-class recalls, not fooled by a majority class as accuracy is"
    )
    pruner = _search_reason(sizing, reasons)
    first = _first_trial(
        space,
        {
            "architecture": "ResNet18",
            "optimizer": "adam",
            "lr": 1e-3,
            "weight_decay": 0.0,
            "loss": "cross_entropy",
            **PLAIN,
            "head_kernel_size": 3,
            "head_filters": 64,
            "head_dense_units": 128,
            "head_dropout": 0.5,
        },
        reasons,
        "ResNet18, Adam 1e-3, cross-entropy",
    )
    spec = {
        "name": name or f"auto-{dataset}",
        "dataset": dataset,
        "task": str(Task.CLASSIFICATION),
        "description": "Planned from the dataset's fingerprint and the time budget (the auto preset).",
        "image_size": sizing.side,
        "objectives": [{"metric": objective}],
        "budget": {"n_trials": sizing.n_trials, "max_epochs": sizing.epochs},
        "sampler": "tpe",
        "pruner": pruner,
        "patience": _patience(sizing, reasons),
        "search_space": space,
        "first_trials": [first],
        **({"cv": {"folds": folds}} if folds > 1 else {}),
    }
    return AutoPlan(spec, tuple(reasons), sizing.estimate, budget_s)


def _classification_loss(fp: Fingerprint, reasons: list[str]) -> str | dict[str, Any]:
    balance = fp.class_balance
    if balance < IMBALANCED_LABELS:
        reasons.append(
            f"losses cross-entropy and focal: classes are imbalanced (rarest/commonest = {balance:.2f}); focal loss "
            "down-weights the easy, common images"
        )
        return {"choices": ["cross_entropy", "focal"]}
    reasons.append(f"loss cross-entropy: classes are balanced enough (rarest/commonest = {balance:.2f})")
    return "cross_entropy"


def _classification_batch(fp: Fingerprint, folds: int, reasons: list[str]) -> int | dict[str, Any]:
    train, _ = model_images(fp.count, folds)
    batch = min(32, _power_of_two(max(2, train // 4)))
    if batch < 4:
        reasons.append(f"batch size {batch}: only ~{train} training images per model")
        return batch
    reasons.append(f"batch size {batch // 2} or {batch}: at most a quarter of the ~{train} training images per model")
    return {"choices": [batch // 2, batch]}
