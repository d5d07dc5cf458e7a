"""The "auto" preset: a starting search space planned from the dataset's fingerprint.

Like nnU-Net's experiment planning (Isensee et al., "nnU-Net: a self-configuring method for deep
learning-based biomedical image segmentation"), a few measured facts of the dataset — image size
and aspect, channels, bit depth, count, foreground fraction, class balance — decide the image and
batch size that fit, the losses (region-based and focal losses when the foreground is small),
augmentation that suits the modality, and a few strong architectures. :func:`plan` is a pure
function (fingerprint in, spec dict and the reasons out), so every rule is unit-tested and the
New study form can say *why* next to each choice.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from core.data.manifest import DatasetManifest

SMALL_FOREGROUND = 0.05  # median share of foreground pixels below which overlap losses matter most
LARGE_FOREGROUND = 0.30
IMBALANCED = 0.1  # rarest / commonest foreground class below this: a class-imbalanced multi-class set
SMALL_SET, LARGE_SET = 200, 2000  # pairs
MAX_SIDE = {"cuda": 512, "cpu": 256}  # largest square side worth training at, per device kind
BATCH_AT_256 = {"cuda": 16, "cpu": 8}  # images per batch at 256 px that fit comfortably; scaled by area
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
    num_classes: int  # background included
    foreground_median: float  # median over images of the share of non-background pixels
    empty_fraction: float  # share of images without any foreground
    class_fractions: tuple[float, ...]  # mean share of pixels of each foreground class

    @property
    def aspect(self) -> float:
        """Width / height of the median image (>= 1 means landscape)."""
        return self.median_width / max(1, self.median_height)

    @property
    def class_balance(self) -> float:
        """Rarest / commonest foreground class by pixel share (1.0 for one foreground class)."""
        present = [f for f in self.class_fractions if f > 0]
        if len(present) < 2:
            return 1.0
        return min(present) / max(present)

    @classmethod
    def from_manifest(cls, manifest: DatasetManifest) -> Fingerprint:
        pairs = manifest.pairs
        totals = [sum(pair.foreground) for pair in pairs]
        n_fg = max(0, manifest.num_classes - 1)
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
        )


@dataclass(frozen=True)
class AutoPlan:
    spec: dict[str, Any]  # a study spec dict (spec_from_dict reads it)
    reasons: tuple[str, ...]  # one line per choice, in the order of the form


def plan(
    fingerprint: Fingerprint, *, dataset: str, name: str | None = None, device: str = "cuda", n_trials: int = 30
) -> AutoPlan:
    """Plan a study for a dataset with ``fingerprint`` on a ``device`` kind ("cuda" or "cpu")."""
    kind = "cuda" if device.startswith("cuda") else "cpu"
    reasons: list[str] = []
    space: dict[str, Any] = {}
    size = _image_size(fingerprint, kind, reasons)
    patches = _native_patches(fingerprint, size, reasons)
    space["batch_size"] = _batch_size(fingerprint, size, kind, reasons)
    space.update(_architectures(fingerprint, kind, reasons))
    space["loss"] = _losses(fingerprint, reasons)
    space.update(_augmentation(fingerprint, reasons))
    space.update(_optimisation(reasons))
    max_epochs = _epochs(fingerprint, reasons)
    space["epochs"] = max_epochs
    reasons.append(
        f"search: TPE with Hyperband pruning over {n_trials} trials — it reached random search's best in less "
        "compute in bench/search_efficiency.py; Hyperband stops weak trials after a few epochs"
    )
    spec = {
        "name": name or f"auto-{dataset}",
        "dataset": dataset,
        "description": "Planned from the dataset's fingerprint (the auto preset).",
        "image_size": size,
        **patches,
        "objectives": [{"metric": "val_dice"}],
        "budget": {"n_trials": n_trials, "max_epochs": max_epochs},
        "sampler": "tpe",
        "pruner": "hyperband",
        "patience": max(3, max_epochs // 4),
        "search_space": space,
    }
    return AutoPlan(spec, tuple(reasons))


def plan_for_manifest(manifest: DatasetManifest, **kwargs: Any) -> AutoPlan:
    return plan(Fingerprint.from_manifest(manifest), dataset=manifest.name, **kwargs)


# --- the rules --------------------------------------------------------------------------------


def _image_size(fp: Fingerprint, kind: str, reasons: list[str]) -> int:
    short = min(fp.median_height, fp.median_width) or 256
    cap = MAX_SIDE[kind]
    size = max(64, min(cap, short) // 32 * 32)
    why = f"image size {size} px: the median image is {fp.median_width}x{fp.median_height}"
    if short > cap:
        why += f"; capped at {cap} px so trials fit a {'GPU' if kind == 'cuda' else 'CPU'} budget"
    if fp.aspect > 1.3 or fp.aspect < 1 / 1.3:
        why += f"; images are not square (aspect {fp.aspect:.2f}) and are resized to a square, so rotations stay small"
    reasons.append(why + " (a multiple of 32 for the encoders)")
    return size


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
    steps = (
        "" if batch == fits else f"; at most a quarter of the ~{train} training images, so an epoch has several steps"
    )
    reasons.append(
        f"batch size {batch // 2} or {batch}: about {fits} images of {size} px fit a "
        f"{'GPU' if kind == 'cuda' else 'CPU'} trial{steps}"
    )
    return {"choices": [batch // 2, batch]}


def _power_of_two(n: int) -> int:
    """The largest power of two <= n (n >= 1)."""
    return 1 << (n.bit_length() - 1)


def _architectures(fp: Fingerprint, kind: str, reasons: list[str]) -> dict[str, Any]:
    encoders = (
        ["resnet18", "resnet34"]
        if fp.count < SMALL_SET or kind == "cpu"
        else ["resnet34", "resnet50", "efficientnet-b2"]
    )
    why = "small" if fp.count < SMALL_SET else ("large" if fp.count >= LARGE_SET else "mid-sized")
    reasons.append(
        f"architectures U-Net, U-Net++ and FPN with {', '.join(encoders)} encoders: strong, well-tested choices; "
        f"a {why} dataset ({fp.count} pairs){' on the CPU' if kind == 'cpu' else ''} favours "
        f"{'light' if encoders[0] == 'resnet18' else 'deeper'} encoders"
    )
    return {"architecture": {"choices": ["Unet", "UnetPlusPlus", "FPN"]}, "encoder": {"choices": encoders}}


def _losses(fp: Fingerprint, reasons: list[str]) -> dict[str, Any]:
    share = f"{100 * fp.foreground_median:.1f} %"
    if fp.num_classes > 2 and fp.class_balance < IMBALANCED:
        losses = ["dice_focal", "dice", "tversky"]
        reasons.append(
            f"losses Dice+focal, Dice, Tversky: classes are imbalanced (rarest/commonest = {fp.class_balance:.2f}); "
            "overlap losses weigh every class alike and focal loss down-weights easy pixels"
        )
    elif fp.foreground_median < SMALL_FOREGROUND:
        losses = ["dice_focal", "tversky", "dice_bce"]
        reasons.append(
            f"losses Dice+focal, Tversky, Dice+BCE: the foreground is small (median {share} of pixels), so a "
            "pixel-wise loss alone would be dominated by background; Tversky trades missed foreground against false "
            "alarms"
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


def _augmentation(fp: Fingerprint, reasons: list[str]) -> dict[str, Any]:
    small = fp.count < SMALL_SET
    if fp.channels != 3:
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
            f"augmentation for grey scans: left-right flips, rotations up to {rotate:.0f}°, 10 % shift/scale, "
            "brightness/contrast changes (scanners differ); no up-down flips, anatomy has an orientation"
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
        "optimizer AdamW or Adam, learning rate 1e-4..3e-3 (log scale), cosine schedule: robust defaults for "
        "encoder-decoder networks, searched where they matter most"
    )
    return {
        "optimizer": {"choices": ["adamw", "adam"]},
        "lr": {"low": 1e-4, "high": 3e-3, "log": True},
        "weight_decay": {"choices": [0.0, 1e-4]},
        "scheduler": "cosine",
    }


def _epochs(fp: Fingerprint, reasons: list[str]) -> int:
    epochs = 50 if fp.count < SMALL_SET else (30 if fp.count < LARGE_SET else 20)
    reasons.append(
        f"up to {epochs} epochs per trial ({'few' if epochs == 50 else 'many'} images per epoch), early stopping after "
        f"{max(3, epochs // 4)} epochs without progress"
    )
    return epochs
