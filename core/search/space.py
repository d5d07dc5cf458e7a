"""The search space: one dimension per hyperparameter, and the catalogue of what can be tuned.

Every hyperparameter is a fixed value, a choice, or an int/float range (:class:`ParamSpec`).
The catalogue of a task (:func:`hyperparameters`) says for each tunable name its type, default,
valid values and when it applies; the model, optimizer and loss conditions come from their
registries (an ``encoder`` only for architectures that take one, momentum only for optimizers
that use it, label smoothing only for cross-entropy). Segmentation and classification share the
optimisation, schedule, batch, epoch and augmentation entries; each has its own architectures,
model shape and losses.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from core.contract import Task
from core.modeling import architectures, classification_losses, optimizers
from core.modeling.classification_losses import CLASSIFICATION_LOSSES, DEFAULT_CLASSIFICATION_LOSS
from core.modeling.custom import ACTIVATIONS
from core.modeling.encoders import encoder_names
from core.modeling.losses import LOSSES
from core.modeling.optimizers import OPTIMIZERS, SCHEDULES


@dataclass(frozen=True)
class ParamSpec:
    """One dimension of the search space.

    JSON forms: a bare value (fixed), ``{"choices": [...]}``, or
    ``{"low": a, "high": b, "step": s?, "log": bool?, "type": "int"|"float"?}``.
    """

    kind: str  # "fixed" | "choice" | "int" | "float"
    value: Any = None  # fixed
    choices: tuple[Any, ...] = ()  # choice
    low: float | None = None  # int / float ranges
    high: float | None = None
    step: float | None = None
    log: bool = False

    @classmethod
    def fixed(cls, value: Any) -> ParamSpec:
        return cls(kind="fixed", value=value)

    @classmethod
    def choice(cls, *choices: Any) -> ParamSpec:
        return cls(kind="choice", choices=tuple(choices))

    @classmethod
    def int_range(cls, low: int, high: int, step: int = 1, log: bool = False) -> ParamSpec:
        return cls(kind="int", low=low, high=high, step=step, log=log)

    @classmethod
    def float_range(cls, low: float, high: float, step: float | None = None, log: bool = False) -> ParamSpec:
        return cls(kind="float", low=low, high=high, step=step, log=log)

    def candidate_values(self) -> list[Any]:
        """Every value this dimension can take; ranges must be stepped (used by grid search)."""
        if self.kind == "fixed":
            return [self.value]
        if self.kind == "choice":
            return list(self.choices)
        if self.kind == "int":
            return list(range(int(self.low), int(self.high) + 1, int(self.step or 1)))
        if self.step is None:
            raise ValueError("a continuous float range has no finite list of values")
        count = int(round((self.high - self.low) / self.step)) + 1
        return [round(self.low + i * self.step, 12) for i in range(count)]

    def to_json(self) -> Any:
        if self.kind == "fixed":
            return self.value
        if self.kind == "choice":
            return {"choices": list(self.choices)}
        data: dict[str, Any] = {"type": self.kind, "low": self.low, "high": self.high}
        if self.step is not None:
            data["step"] = self.step
        if self.log:
            data["log"] = True
        return data

    @classmethod
    def from_json(cls, data: Any) -> ParamSpec:
        if not isinstance(data, dict):
            return cls.fixed(data)
        if "value" in data and len(data) == 1:
            return cls.fixed(data["value"])
        if "choices" in data:
            choices = data["choices"]
            if not isinstance(choices, list) or not choices:
                raise ValueError("'choices' must be a non-empty list")
            if set(data) != {"choices"}:
                raise ValueError("a choice takes only the key 'choices'")
            return cls.choice(*choices)
        if "low" in data and "high" in data:
            return cls._range_from_json(data)
        raise ValueError("expected a value, {'choices': [...]} or {'low': ..., 'high': ...}; got " + json.dumps(data))

    @classmethod
    def _range_from_json(cls, data: dict[str, Any]) -> ParamSpec:
        """A range, refused (ValueError, every reason in one message) unless Optuna can sample it as written."""
        unknown = set(data) - {"low", "high", "step", "log", "type"}
        if unknown:
            raise ValueError(f"unknown range key(s) {sorted(unknown)}; use low, high, step, log, type")
        low, high, step, log = data["low"], data["high"], data.get("step"), data.get("log", False)
        reasons: list[str] = []
        if not all(_is_number(v) for v in (low, high)):
            raise ValueError(f"'low' and 'high' must be numbers, got low={low!r}, high={high!r}")
        if not all(math.isfinite(v) for v in (low, high)):
            reasons.append(f"'low' and 'high' must be finite numbers, got low={low!r}, high={high!r}")
        kind = data.get("type") or ("int" if isinstance(low, int) and isinstance(high, int) else "float")
        if kind not in ("int", "float"):
            raise ValueError(f"range type {kind!r} is not one of ['int', 'float']")
        if kind == "int" and not reasons and not all(float(v).is_integer() for v in (low, high)):
            reasons.append(f"an int range needs whole-number bounds, got low={low!r}, high={high!r}")
        if step is not None:
            reasons.extend(_step_problems(step, kind))
        if not isinstance(log, bool):
            reasons.append(f"'log' must be true or false, got {log!r}")
        if reasons:
            raise ValueError("; ".join(reasons))
        if kind == "int":
            return cls.int_range(int(low), int(high), int(step if step is not None else 1), log)
        return cls.float_range(float(low), float(high), None if step is None else float(step), log)

    def admits(self, value: Any) -> bool:
        """Whether this tuned dimension can take ``value`` (a choice among its choices, a number within its range)."""
        if self.kind == "fixed":
            return value == self.value
        if self.kind == "choice":
            return value in self.choices
        try:
            return float(self.low) <= float(value) <= float(self.high)
        except (TypeError, ValueError):
            return False

    def value_count(self) -> int | None:
        """How many values :meth:`candidate_values` would list, computed without listing them (None: continuous)."""
        if self.kind == "fixed":
            return 1
        if self.kind == "choice":
            return len({json.dumps(c, sort_keys=True, default=str) for c in self.choices})
        if self.kind == "float" and self.step is None:
            return None
        if self.high < self.low:
            return 0
        if self.kind == "int":
            return (int(self.high) - int(self.low)) // int(self.step or 1) + 1
        return round((self.high - self.low) / self.step) + 1


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _step_problems(step: Any, kind: str) -> list[str]:
    if not _is_number(step):
        return [f"'step' must be a number, got {step!r}"]
    if not math.isfinite(step) or step <= 0:
        return [f"'step' must be a positive number, got {step!r} (leave it out for a continuous range)"]
    if kind == "int" and not float(step).is_integer():
        return [f"an int range needs a whole-number 'step', got {step!r}"]
    return []


Params = dict[str, Any]


def _always(_: Params) -> bool:
    return True


def _architecture_takes(name: str) -> Callable[[Params], bool]:
    return lambda params: architectures.takes(params.get("architecture"), name)


def _optimizer_takes(name: str) -> Callable[[Params], bool]:
    return lambda params: optimizers.takes(params.get("optimizer"), name)


def _loss_takes(name: str) -> Callable[[Params], bool]:
    return lambda params: classification_losses.takes(params.get("loss"), name)


@dataclass(frozen=True)
class HyperParam:
    """What one tunable name means: its type, default, valid values and when it applies."""

    kind: type  # str, int, float or bool
    default: Any
    help: str
    options: Callable[[], Sequence[Any]] | None = None  # valid values for str parameters
    bounds: tuple[float, float] | None = None  # inclusive bounds for numbers
    active: Callable[[Params], bool] = _always  # conditional parameters
    allow_none: bool = False


# Shared by both tasks, in catalogue order (a condition's driver comes before what it conditions).
_OPTIMISATION: dict[str, HyperParam] = {
    "optimizer": HyperParam(str, "adam", "optimizer", lambda: OPTIMIZERS.names),
    "lr": HyperParam(float, 1e-3, "learning rate", bounds=(1e-8, 10.0)),
    "weight_decay": HyperParam(float, 0.0, "weight decay", bounds=(0.0, 1.0)),
    "momentum": HyperParam(
        float, 0.9, "momentum (SGD, RMSprop)", bounds=(0.0, 0.999), active=_optimizer_takes("momentum")
    ),
    "nesterov": HyperParam(bool, False, "Nesterov momentum (SGD)", active=_optimizer_takes("nesterov")),
    "scheduler": HyperParam(str, "none", "learning-rate schedule", lambda: SCHEDULES.names),
    "batch_size": HyperParam(int, 8, "images per batch", bounds=(1, 1024)),
    "epochs": HyperParam(int, 10, "training epochs (capped by budget.max_epochs)", bounds=(1, 10_000)),
}
_AUGMENTATION: dict[
    str, HyperParam
] = {  # geometry moves a mask with its image; photometric changes touch the image only
    "aug_hflip": HyperParam(bool, False, "random horizontal flips"),
    "aug_vflip": HyperParam(bool, False, "random vertical flips"),
    "aug_rotate": HyperParam(float, 0.0, "max rotation in degrees, 0 = off", bounds=(0.0, 180.0)),
    "aug_shift_scale": HyperParam(float, 0.0, "max shift / scale change as a fraction, 0 = off", bounds=(0.0, 0.5)),
    "aug_brightness_contrast": HyperParam(float, 0.0, "max brightness/contrast change, 0 = off", bounds=(0.0, 1.0)),
}
_WEIGHTS = HyperParam(
    str,
    None,
    "pretrained ImageNet weights (classifiers: only from the local torch cache)",
    lambda: ["imagenet"],
    active=_architecture_takes("encoder_weights"),
    allow_none=True,
)

HYPERPARAMETERS: dict[str, HyperParam] = {  # segmentation's catalogue (the default task)
    # model
    "architecture": HyperParam(
        str,
        architectures.DEFAULT_ARCHITECTURE,
        "segmentation architecture",
        lambda: architectures.names(task=Task.SEGMENTATION),
    ),
    "encoder": HyperParam(
        str, "resnet18", "encoder backbone (smp architectures)", encoder_names, active=_architecture_takes("encoder")
    ),
    "encoder_depth": HyperParam(
        int, 5, "encoder stages (smp architectures)", bounds=(3, 5), active=_architecture_takes("encoder_depth")
    ),
    "encoder_weights": _WEIGHTS,
    "unet_start_filters": HyperParam(
        int,
        64,
        "filters of the first level (classic U-Net, the Keras Tuner study's start_neurons)",
        bounds=(4, 256),
        active=_architecture_takes("unet_start_filters"),
    ),
    "unet_depth": HyperParam(
        int,
        4,
        "down-sampling levels (classic U-Net, the Keras Tuner study's net_depth)",
        bounds=(2, 8),
        active=_architecture_takes("unet_depth"),
    ),
    "unet_activation": HyperParam(
        str,
        "relu",
        "activation (classic U-Net)",
        lambda: tuple(ACTIVATIONS),
        active=_architecture_takes("unet_activation"),
    ),
    "unet_dropout": HyperParam(
        float,
        0.0,
        "dropout rate, 0 = off (classic U-Net)",
        bounds=(0.0, 0.9),
        active=_architecture_takes("unet_dropout"),
    ),
    "unet_bn_after_act": HyperParam(
        bool, False, "batch norm after the activation (classic U-Net)", active=_architecture_takes("unet_bn_after_act")
    ),
    **_OPTIMISATION,
    "loss": HyperParam(str, "dice_bce", "loss function", lambda: LOSSES.names),
    **_AUGMENTATION,
}

CLASSIFICATION_HYPERPARAMETERS: dict[str, HyperParam] = {
    # model: a torchvision backbone under the CNN random-search study's head (core.modeling.classifiers)
    "architecture": HyperParam(
        str,
        architectures.DEFAULT_CLASSIFIER,
        "classification backbone",
        lambda: architectures.names(task=Task.CLASSIFICATION),
    ),
    "encoder_weights": _WEIGHTS,
    "head_kernel_size": HyperParam(
        int,
        3,
        "kernel size of the head's convolution (the random-search study: 1, 3, 5, 7)",
        bounds=(1, 11),
        active=_architecture_takes("head_kernel_size"),
    ),
    "head_filters": HyperParam(
        int,
        64,
        "filters of the head's convolution (the study: 32, 64, 96, 128)",
        bounds=(1, 2048),
        active=_architecture_takes("head_filters"),
    ),
    "head_dense_units": HyperParam(
        int,
        128,
        "units of the head's dense layer (the study: 16, 32, 64, 128)",
        bounds=(1, 4096),
        active=_architecture_takes("head_dense_units"),
    ),
    "head_dropout": HyperParam(
        float,
        0.5,
        "dropout before the output layer (the study: 0.2, 0.25, 0.3, 0.5)",
        bounds=(0.0, 0.9),
        active=_architecture_takes("head_dropout"),
    ),
    **_OPTIMISATION,
    "loss": HyperParam(str, DEFAULT_CLASSIFICATION_LOSS, "loss function", lambda: CLASSIFICATION_LOSSES.names),
    "label_smoothing": HyperParam(
        float,
        0.0,
        "label smoothing of the cross-entropy targets, 0 = off",
        bounds=(0.0, 0.5),
        active=_loss_takes("label_smoothing"),
    ),
    **_AUGMENTATION,
}

CATALOGUES: dict[Task, dict[str, HyperParam]] = {
    Task.SEGMENTATION: HYPERPARAMETERS,
    Task.CLASSIFICATION: CLASSIFICATION_HYPERPARAMETERS,
}


def hyperparameters(task: Task | str = Task.SEGMENTATION) -> dict[str, HyperParam]:
    """The catalogue of what a study of ``task`` can tune, in catalogue order."""
    return CATALOGUES[Task(task)]


def other_task_with(name: str, task: Task | str) -> Task | None:
    """The other task whose catalogue has ``name`` when ``task``'s has not (for messages that name the fix)."""
    if name in hyperparameters(task):
        return None
    return next((other for other in Task if other != task and name in hyperparameters(other)), None)


# The hyperparameters other ones' ``active`` conditions read (see _architecture_takes, _optimizer_takes,
# _loss_takes). core.search.size counts a space per combination of these; a new condition must name its driver here.
CONDITION_PARAMS = ("architecture", "optimizer", "loss")
