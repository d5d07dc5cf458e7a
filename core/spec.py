"""Study specifications: the typed, validated, versioned description of one tuning study.

A spec is plain JSON (or YAML) on disk and a :class:`StudySpec` in code. Every hyperparameter in
the search space is a fixed value, a choice, or an int/float range; :data:`HYPERPARAMETERS` is the
catalogue of what can be tuned, with defaults, allowed values and the condition under which a
parameter is active (e.g. ``encoder`` only for segmentation-models-pytorch architectures).
Validation collects every problem at once and names the field and the valid options.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from core import options
from core.errors import SegTuneError
from core.splits import SplitConfig, config_problems

SPEC_VERSION = 1


class SpecError(SegTuneError):
    """A spec is invalid; ``problems`` maps each bad field path to what is wrong with it."""

    def __init__(self, problems: dict[str, str]):
        self.problems = problems
        lines = "\n".join(f"  - {path}: {message}" for path, message in problems.items())
        super().__init__(f"Invalid study spec ({len(problems)} problem(s)):\n{lines}")


# --- search-space values ------------------------------------------------------------------------


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
    def float_range(
        cls, low: float, high: float, step: float | None = None, log: bool = False
    ) -> ParamSpec:
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
            unknown = set(data) - {"low", "high", "step", "log", "type"}
            if unknown:
                raise ValueError(f"unknown range key(s) {sorted(unknown)}; use low, high, step, log, type")
            low, high = data["low"], data["high"]
            if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (low, high)):
                raise ValueError("'low' and 'high' must be numbers")
            kind = data.get("type") or ("int" if isinstance(low, int) and isinstance(high, int) else "float")
            if kind not in ("int", "float"):
                raise ValueError(f"range type {kind!r} is not one of ['int', 'float']")
            step = data.get("step")
            if kind == "int":
                return cls.int_range(int(low), int(high), int(step or 1), bool(data.get("log", False)))
            return cls.float_range(float(low), float(high), step, bool(data.get("log", False)))
        raise ValueError(
            "expected a value, {'choices': [...]} or {'low': ..., 'high': ...}; got " + json.dumps(data)
        )


# --- the catalogue of tunable hyperparameters ---------------------------------------------------

Params = dict[str, Any]


def _always(_: Params) -> bool:
    return True


def _is_smp(params: Params) -> bool:
    return params.get("architecture") in options.SMP_ARCHITECTURES


def _is_classic_unet(params: Params) -> bool:
    return params.get("architecture") == options.CLASSIC_UNET


def _has_momentum(params: Params) -> bool:
    return params.get("optimizer") in ("sgd", "rmsprop")


def _is_sgd(params: Params) -> bool:
    return params.get("optimizer") == "sgd"


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


HYPERPARAMETERS: dict[str, HyperParam] = {
    # model
    "architecture": HyperParam(str, "Unet", "segmentation architecture", lambda: options.ARCHITECTURES),
    "encoder": HyperParam(str, "resnet18", "encoder backbone (smp architectures)", options.encoder_names, active=_is_smp),
    "encoder_depth": HyperParam(int, 5, "encoder stages (smp architectures)", bounds=(3, 5), active=_is_smp),
    "encoder_weights": HyperParam(str, None, "pretrained encoder weights", lambda: ["imagenet"], active=_is_smp, allow_none=True),
    "unet_start_filters": HyperParam(int, 64, "filters of the first level (classic U-Net, P1 start_neurons)", bounds=(4, 256), active=_is_classic_unet),
    "unet_depth": HyperParam(int, 4, "down-sampling levels (classic U-Net, P1 net_depth)", bounds=(2, 8), active=_is_classic_unet),
    "unet_activation": HyperParam(str, "relu", "activation (classic U-Net)", lambda: options.ACTIVATIONS, active=_is_classic_unet),
    "unet_dropout": HyperParam(float, 0.0, "dropout rate, 0 = off (classic U-Net)", bounds=(0.0, 0.9), active=_is_classic_unet),
    "unet_bn_after_act": HyperParam(bool, False, "batch norm after the activation (classic U-Net)", active=_is_classic_unet),
    # optimisation
    "optimizer": HyperParam(str, "adam", "optimizer", lambda: options.OPTIMIZERS),
    "lr": HyperParam(float, 1e-3, "learning rate", bounds=(1e-8, 10.0)),
    "weight_decay": HyperParam(float, 0.0, "weight decay", bounds=(0.0, 1.0)),
    "momentum": HyperParam(float, 0.9, "momentum (SGD, RMSprop)", bounds=(0.0, 0.999), active=_has_momentum),
    "nesterov": HyperParam(bool, False, "Nesterov momentum (SGD)", active=_is_sgd),
    "scheduler": HyperParam(str, "none", "learning-rate schedule", lambda: options.SCHEDULERS),
    "batch_size": HyperParam(int, 8, "images per batch", bounds=(1, 1024)),
    "epochs": HyperParam(int, 10, "training epochs (capped by budget.max_epochs)", bounds=(1, 10_000)),
    "loss": HyperParam(str, "dice_bce", "loss function", lambda: options.LOSSES),
    # augmentation (applied to image and mask together)
    "aug_hflip": HyperParam(bool, False, "random horizontal flips"),
    "aug_vflip": HyperParam(bool, False, "random vertical flips"),
    "aug_rotate": HyperParam(float, 0.0, "max rotation in degrees, 0 = off", bounds=(0.0, 180.0)),
    "aug_shift_scale": HyperParam(float, 0.0, "max shift / scale change as a fraction, 0 = off", bounds=(0.0, 0.5)),
    "aug_brightness_contrast": HyperParam(float, 0.0, "max brightness/contrast change, 0 = off", bounds=(0.0, 1.0)),
}


def active_hyperparameters(params: Params) -> list[str]:
    """Names that apply given the (partial) params chosen so far, in catalogue order."""
    return [name for name, hp in HYPERPARAMETERS.items() if hp.active(params)]


# --- objectives, budget, study ------------------------------------------------------------------

OBJECTIVE_METRICS: dict[str, str] = {
    # metric -> default direction
    "val_dice": "maximize",
    "val_iou": "maximize",
    "val_miou": "maximize",
    "val_pixel_accuracy": "maximize",
    "val_f1": "maximize",
    "val_precision": "maximize",
    "val_recall": "maximize",
    "val_loss": "minimize",
    "images_per_s": "maximize",
    "n_params": "minimize",
}

# Metrics known after every epoch; the others only when a trial ends (no pruning on them).
EPOCH_METRICS = ("val_dice", "val_iou", "val_miou", "val_pixel_accuracy", "val_f1", "val_precision", "val_recall", "val_loss")


@dataclass(frozen=True)
class Objective:
    metric: str = "val_dice"
    direction: str = "maximize"  # specs may leave it out: the metric's natural direction is used


@dataclass(frozen=True)
class Budget:
    n_trials: int | None = 20  # trials for the whole study, across all workers
    timeout_s: float | None = None  # wall-clock limit for the study
    max_epochs: int = 20  # cap on any trial's epochs; Hyperband's max resource


@dataclass(frozen=True)
class StudySpec:
    """Everything needed to run (and re-run) a study. Defaults give a sensible single-objective study."""

    name: str
    dataset: str
    search_space: dict[str, ParamSpec] = field(default_factory=dict)  # names from HYPERPARAMETERS
    image_size: int = 256  # square side in pixels; a multiple of 32
    channels: int | None = None  # 1 or 3; None = the dataset's own
    objectives: tuple[Objective, ...] = (Objective(),)
    budget: Budget = Budget()
    sampler: str = "tpe"  # see options.SAMPLERS
    pruner: str = "median"  # see options.PRUNERS
    patience: int = 5  # early stopping: epochs without val-loss improvement (P2)
    seed: int = 0
    split: SplitConfig = SplitConfig()
    preview_count: int = 8  # validation images whose predicted masks are stored per trial (1..64)
    description: str = ""
    version: int = SPEC_VERSION

    @property
    def directions(self) -> list[str]:
        return [objective.direction for objective in self.objectives]

    @property
    def is_multi_objective(self) -> bool:
        return len(self.objectives) > 1

    def param(self, name: str) -> ParamSpec:
        """The search dimension for ``name``: the spec's own, else the catalogue default (fixed)."""
        if name in self.search_space:
            return self.search_space[name]
        return ParamSpec.fixed(HYPERPARAMETERS[name].default)

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "name": self.name,
            "dataset": self.dataset,
            "description": self.description,
            "image_size": self.image_size,
            "channels": self.channels,
            "objectives": [{"metric": o.metric, "direction": o.direction} for o in self.objectives],
            "budget": {"n_trials": self.budget.n_trials, "timeout_s": self.budget.timeout_s, "max_epochs": self.budget.max_epochs},
            "sampler": self.sampler,
            "pruner": self.pruner,
            "patience": self.patience,
            "seed": self.seed,
            "split": self.split.to_dict(),
            "preview_count": self.preview_count,
            "search_space": {name: spec.to_json() for name, spec in self.search_space.items()},
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)


# --- reading and validating ---------------------------------------------------------------------

_TOP_LEVEL_KEYS = {f.name for f in fields(StudySpec)}


def load_spec(path: str | Path) -> StudySpec:
    """Read a spec from a ``.json`` or ``.yaml``/``.yml`` file and validate it."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SpecError({"file": f"cannot read {path}: {exc.strerror or exc}"}) from exc
    try:
        if path.suffix.lower() in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(text)
        else:
            data = json.loads(text)
    except Exception as exc:  # noqa: BLE001 - any parser error becomes one clear message
        raise SpecError({"file": f"{path.name} is not valid {path.suffix.lstrip('.').upper() or 'JSON'}: {exc}"}) from exc
    return spec_from_dict(data)


def spec_from_dict(data: Any) -> StudySpec:
    """Build and validate a :class:`StudySpec`; raises :class:`SpecError` listing every problem."""
    if not isinstance(data, dict):
        raise SpecError({"spec": "must be a JSON object"})
    problems: dict[str, str] = {}
    unknown = sorted(set(data) - _TOP_LEVEL_KEYS)
    if unknown:
        problems["spec"] = f"unknown key(s) {unknown}; valid keys: {sorted(_TOP_LEVEL_KEYS)}"
    version = data.get("version", SPEC_VERSION)
    if version != SPEC_VERSION:
        problems["version"] = f"spec version {version!r} is not supported (this SegTune reads version {SPEC_VERSION})"

    name = _required_text(data, "name", problems)
    dataset = _required_text(data, "dataset", problems)
    space = _parse_space(data.get("search_space", {}), problems)
    objectives = _parse_objectives(data.get("objectives", [{"metric": "val_dice"}]), problems)
    budget = _parse_budget(data.get("budget", {}), problems)
    split = _parse_split(data.get("split", {}), problems)

    spec_kwargs: dict[str, Any] = {}
    for key, kind in (("image_size", int), ("channels", int), ("patience", int), ("seed", int), ("preview_count", int), ("sampler", str), ("pruner", str), ("description", str)):
        if key in data and data[key] is not None:
            if not _is_type(data[key], kind):
                problems[key] = f"must be {kind.__name__}, got {data[key]!r}"
            else:
                spec_kwargs[key] = data[key]
        elif key == "channels" and "channels" in data:
            spec_kwargs["channels"] = None
    spec = StudySpec(name=name, dataset=dataset, search_space=space, objectives=objectives or (Objective(),), budget=budget, split=split, **spec_kwargs)
    for path, message in spec_problems(spec).items():
        problems.setdefault(path, message)  # a parse problem is the more precise message
    if problems:
        raise SpecError(problems)
    return spec


def validate_spec(spec: StudySpec) -> None:
    """Raise :class:`SpecError` if an already typed spec breaks any rule."""
    problems = spec_problems(spec)
    if problems:
        raise SpecError(problems)


def spec_problems(spec: StudySpec) -> dict[str, str]:
    """Every rule a typed spec breaks, as field path -> message (empty when valid)."""
    problems: dict[str, str] = {}
    if not options.is_valid_name(spec.name):
        problems["name"] = f"{spec.name!r} must be 1-64 letters, digits, '-', '_' or '.'"
    if spec.image_size < 32 or spec.image_size % 32:
        problems["image_size"] = f"must be a multiple of 32 and at least 32, got {spec.image_size}"
    if spec.channels not in (None, 1, 3):
        problems["channels"] = f"must be 1 (grey), 3 (RGB) or null (the dataset's own), got {spec.channels}"
    if spec.sampler not in options.SAMPLERS:
        problems["sampler"] = f"unknown sampler {spec.sampler!r}; valid: {list(options.SAMPLERS)}"
    if spec.pruner not in options.PRUNERS:
        problems["pruner"] = f"unknown pruner {spec.pruner!r}; valid: {list(options.PRUNERS)}"
    if spec.patience < 1:
        problems["patience"] = "must be at least 1"
    if not 1 <= spec.preview_count <= 64:
        problems["preview_count"] = "must be between 1 and 64"
    _check_objectives(spec, problems)
    _check_budget(spec.budget, problems)
    _check_split(spec.split, problems)
    for param_name, param in spec.search_space.items():
        _check_param(param_name, param, problems)
    if spec.sampler == "grid":
        for param_name, param in spec.search_space.items():
            if param.kind == "float" and param.step is None:
                problems[f"search_space.{param_name}"] = "grid search needs a list of choices or a stepped range (add 'step')"
    return problems


def _check_objectives(spec: StudySpec, problems: dict[str, str]) -> None:
    if not spec.objectives:
        problems["objectives"] = "at least one objective is needed"
    metrics = [objective.metric for objective in spec.objectives]
    if len(set(metrics)) < len(metrics):
        problems["objectives"] = f"each metric may appear once; got {metrics}"
    for i, objective in enumerate(spec.objectives):
        if objective.metric not in OBJECTIVE_METRICS:
            problems[f"objectives[{i}].metric"] = f"unknown metric {objective.metric!r}; valid: {list(OBJECTIVE_METRICS)}"
        if objective.direction not in ("maximize", "minimize"):
            problems[f"objectives[{i}].direction"] = "must be 'maximize' or 'minimize'"
    if spec.is_multi_objective:
        if spec.pruner != "none":
            problems["pruner"] = "Optuna cannot prune studies with several objectives; use 'none'"
        if spec.sampler not in options.MULTI_OBJECTIVE_SAMPLERS:
            problems["sampler"] = f"sampler {spec.sampler!r} cannot handle several objectives; use one of {list(options.MULTI_OBJECTIVE_SAMPLERS)}"
    elif spec.sampler == "nsga2":
        problems["sampler"] = "NSGA-II is for several objectives; add a second objective or pick another sampler"
    elif spec.objectives and spec.objectives[0].metric not in EPOCH_METRICS and spec.pruner != "none":
        problems["pruner"] = f"{spec.objectives[0].metric} is only known when a trial ends, so it cannot be pruned on; use 'none'"


def _check_budget(budget: Budget, problems: dict[str, str]) -> None:
    if budget.n_trials is not None and budget.n_trials < 1:
        problems["budget.n_trials"] = "must be at least 1 (or null for no limit)"
    if budget.timeout_s is not None and budget.timeout_s <= 0:
        problems["budget.timeout_s"] = "must be positive (or null for no limit)"
    if budget.n_trials is None and budget.timeout_s is None:
        problems["budget"] = "set n_trials, timeout_s or both, so the study ends"
    if budget.max_epochs < 1:
        problems["budget.max_epochs"] = "must be at least 1"


def _check_split(split: SplitConfig, problems: dict[str, str]) -> None:
    for name, message in config_problems(split).items():
        problems["split" if name == "fractions" else f"split.{name}"] = message


def _check_param(param_name: str, param: ParamSpec, problems: dict[str, str]) -> None:
    path = f"search_space.{param_name}"
    hp = HYPERPARAMETERS.get(param_name)
    if hp is None:
        problems[path] = f"unknown hyperparameter; valid: {list(HYPERPARAMETERS)}"
        return
    if param.kind in ("int", "float"):
        if hp.kind not in (int, float):
            problems[path] = f"{param_name} takes {hp.kind.__name__} values, not a numeric range"
            return
        if hp.kind is int and param.kind == "float":
            problems[path] = f"{param_name} is an integer; use an int range"
            return
        if param.low > param.high:
            problems[path] = f"low {param.low} is above high {param.high}"
        elif param.log and param.low <= 0:
            problems[path] = "a log range needs low > 0"
        elif param.log and param.step not in (None, 1):
            problems[path] = "a log range cannot have a step"
        elif hp.bounds and (param.low < hp.bounds[0] or param.high > hp.bounds[1]):
            problems[path] = f"range must lie within {hp.bounds[0]}..{hp.bounds[1]}"
        return
    for value in param.candidate_values():
        problem = _value_problem(hp, value)
        if problem:
            problems[path] = problem
            return


def _value_problem(hp: HyperParam, value: Any) -> str | None:
    if value is None:
        return None if hp.allow_none else "a value is required"
    if not _is_type(value, hp.kind):
        return f"{value!r} is not a {hp.kind.__name__}"
    if hp.options is not None:
        options = list(hp.options())
        if value not in options:
            shown = options if len(options) <= 40 else options[:40] + ["..."]
            return f"{value!r} is not valid; valid: {shown}"
    if hp.bounds and not hp.bounds[0] <= value <= hp.bounds[1]:
        return f"{value!r} is outside {hp.bounds[0]}..{hp.bounds[1]}"
    return None


def _is_type(value: Any, kind: type) -> bool:
    if kind is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, kind)


def _required_text(data: dict[str, Any], key: str, problems: dict[str, str]) -> str:
    value = data.get(key)
    if not isinstance(value, str) or not value.strip():
        problems[key] = "is required (a non-empty string)"
        return ""
    return value.strip()


def _parse_space(raw: Any, problems: dict[str, str]) -> dict[str, ParamSpec]:
    if not isinstance(raw, dict):
        problems["search_space"] = "must be an object mapping hyperparameter names to values or ranges"
        return {}
    space: dict[str, ParamSpec] = {}
    for param_name, value in raw.items():
        try:
            space[param_name] = ParamSpec.from_json(value)
        except ValueError as exc:
            problems[f"search_space.{param_name}"] = str(exc)
    return space


def _parse_objectives(raw: Any, problems: dict[str, str]) -> tuple[Objective, ...]:
    if isinstance(raw, (str, dict)):
        raw = [raw]
    if not isinstance(raw, list) or not raw:
        problems["objectives"] = "must be a non-empty list of {'metric': ..., 'direction': ...}"
        return ()
    objectives = []
    for i, item in enumerate(raw):
        item = {"metric": item} if isinstance(item, str) else item
        if not isinstance(item, dict) or set(item) - {"metric", "direction"}:
            problems[f"objectives[{i}]"] = "must be a metric name or {'metric': ..., 'direction': ...}"
            continue
        metric = str(item.get("metric", "val_dice"))
        objectives.append(Objective(metric=metric, direction=str(item.get("direction") or OBJECTIVE_METRICS.get(metric, "maximize"))))
    return tuple(objectives)


def _parse_budget(raw: Any, problems: dict[str, str]) -> Budget:
    return _parse_dataclass(Budget, raw, "budget", problems) or Budget()


def _parse_split(raw: Any, problems: dict[str, str]) -> SplitConfig:
    return _parse_dataclass(SplitConfig, raw, "split", problems) or SplitConfig()


def _parse_dataclass(cls: type, raw: Any, path: str, problems: dict[str, str]) -> Any:
    if not isinstance(raw, dict):
        problems[path] = "must be an object"
        return None
    valid = {f.name: f for f in fields(cls)}
    unknown = sorted(set(raw) - set(valid))
    if unknown:
        problems[path] = f"unknown key(s) {unknown}; valid: {sorted(valid)}"
        return None
    for key, value in raw.items():
        expected = valid[key].type  # annotations are strings under `from __future__ import annotations`
        numeric = "int" in expected or "float" in expected
        if value is None and "None" in expected:
            continue
        if numeric and not _is_type(value, float):
            problems[f"{path}.{key}"] = f"must be a number, got {value!r}"
        elif expected.startswith("int") and not _is_type(value, int):
            problems[f"{path}.{key}"] = f"must be an integer, got {value!r}"
        elif expected.startswith("str") and not isinstance(value, str):
            problems[f"{path}.{key}"] = f"must be a string, got {value!r}"
    if any(key.startswith(path) for key in problems):
        return None
    return cls(**raw)
