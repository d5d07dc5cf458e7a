"""Reading and validating study specs: every problem at once, each tied to its field.

``spec_from_dict`` turns JSON into a :class:`~core.search.spec.StudySpec` or raises
:class:`SpecError` whose ``problems`` map field paths (``search_space.lr``, ``budget.n_trials``)
to messages that name the valid options; ``stored_spec`` reads the one a study stores.
"""

from __future__ import annotations

import json
import math
from dataclasses import fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.contract import Task, spec_attr
from core.data.images import MAX_CHANNELS
from core.data.splits import SplitConfig, config_problems
from core.errors import ProblemsError, unknown_option
from core.metrics.catalogue import default_objective, epoch_objectives, objective_metrics, objective_task
from core.naming import is_valid_name
from core.search.samplers import PRUNERS, SAMPLERS
from core.search.size import grid_size_problem
from core.search.space import HyperParam, ParamSpec, hyperparameters, other_task_with
from core.search.spec import CV_FOLDS_RANGE, SPEC_VERSION, Budget, CompileMode, CrossValidation, Objective, StudySpec

if TYPE_CHECKING:
    import optuna


class SpecError(ProblemsError):
    """A spec is invalid; ``problems`` maps each bad field path to what is wrong with it."""

    title = "Invalid study spec"


_TOP_LEVEL_KEYS = {f.name for f in fields(StudySpec)}
MAX_IMAGE_SIZE = 2048  # pixels per side: 2048^2 already needs a large GPU for a batch of 8
MAX_TRIALS = 100_000  # budget.n_trials: far beyond any real study, far below what would flood the DB
MAX_EPOCHS = 10_000  # budget.max_epochs, as the catalogue's bound on ``epochs``
SEED_LIMIT = 2**32  # seeds are 0 <= seed < 2**32: what numpy (under Optuna's samplers) accepts
MAX_SPEC_BYTES = 1 << 20  # a spec is a few hundred bytes; anything this large is not one, so it is never parsed


def load_spec(path: str | Path) -> StudySpec:
    """Read a spec from a ``.json`` or ``.yaml``/``.yml`` file and validate it.

    Files over ``MAX_SPEC_BYTES`` are refused unread, YAML aliases are refused (an alias bomb
    expands a kilobyte into gigabytes), and a UTF-8 byte-order mark (as some Windows editors
    write) is skipped."""
    path = Path(path)
    try:
        with path.open("rb") as file:
            raw = file.read(MAX_SPEC_BYTES + 1)
    except OSError as exc:
        raise SpecError({"file": f"cannot read {path}: {exc.strerror or exc}"}) from exc
    if len(raw) > MAX_SPEC_BYTES:
        raise SpecError({"file": f"{path.name} is over {MAX_SPEC_BYTES >> 10} KB: too large to be a study spec"})
    kind = path.suffix.lstrip(".").upper() or "JSON"
    try:
        text = raw.decode("utf-8-sig")
        data = _parse_yaml(text) if path.suffix.lower() in (".yaml", ".yml") else json.loads(text)
    except Exception as exc:
        raise SpecError({"file": f"{path.name} is not valid {kind}: {exc}"}) from exc
    return spec_from_dict(data)


def stored_spec(study: optuna.Study) -> StudySpec | None:
    """The spec ``study`` was created with (its ``spec`` attr), validated; None for a study SegTune
    did not make. Every reader of a study's whole spec goes through here (a reader of one field may
    read the raw attr through :func:`core.contract.spec_attr`)."""
    data = spec_attr(study)
    return spec_from_dict(dict(data)) if data else None


def _parse_yaml(text: str) -> Any:
    """``yaml.safe_load`` without aliases: a spec never needs them, and each alias can repeat a
    node that is itself full of aliases (billion laughs)."""
    import yaml

    class NoAliasLoader(yaml.SafeLoader):
        def compose_node(self, parent: Any, index: Any) -> Any:
            if self.check_event(yaml.AliasEvent):
                event = self.peek_event()
                raise yaml.composer.ComposerError(
                    None, None, f"YAML aliases (*{event.anchor}) are not allowed in a spec", event.start_mark
                )
            return super().compose_node(parent, index)

    return yaml.load(text, Loader=NoAliasLoader)  # a SafeLoader subclass: safe_load, less aliases


def spec_from_dict(data: Any) -> StudySpec:
    """Build and validate a :class:`StudySpec`; raises :class:`SpecError` listing every problem."""
    if not isinstance(data, dict):
        raise SpecError({"spec": "must be a JSON object"})
    problems: dict[str, str] = {}
    unknown = sorted(set(data) - _TOP_LEVEL_KEYS, key=str)  # YAML keys may be numbers too
    if unknown:
        problems["spec"] = f"unknown key(s) {unknown}; valid keys: {sorted(_TOP_LEVEL_KEYS)}"
    version = data.get("version", SPEC_VERSION)
    if version != SPEC_VERSION:
        problems["version"] = f"spec version {version!r} is not supported (this SegTune reads version {SPEC_VERSION})"

    name = _required_text(data, "name", problems)
    dataset = _required_text(data, "dataset", problems)
    task = _parse_task(data.get("task", Task.SEGMENTATION), problems)
    space = _parse_space(data.get("search_space", {}), problems)
    objectives = _parse_objectives(data.get("objectives", [{"metric": default_objective(task)}]), task, problems)
    budget = _parse_budget(data.get("budget", {}), problems)
    split = _parse_split(data.get("split", {}), problems)
    cv = _parse_cv(data.get("cv"), problems)
    first_trials = _parse_first_trials(data.get("first_trials"), problems)

    spec_kwargs: dict[str, Any] = {}
    for key, kind in (
        ("image_size", int),
        ("patch_size", int),
        ("channels", int),
        ("patience", int),
        ("seed", int),
        ("preview_count", int),
        ("sampler", str),
        ("pruner", str),
        ("description", str),
        ("compile", str),
    ):
        if key in data and data[key] is not None:
            if not _is_type(data[key], kind):
                problems[key] = f"must be {kind.__name__}, got {data[key]!r}"
            else:
                spec_kwargs[key] = data[key]
        elif key == "channels" and "channels" in data:
            spec_kwargs["channels"] = None
    spec = StudySpec(
        name=name,
        dataset=dataset,
        search_space=space,
        objectives=objectives or (Objective(default_objective(task)),),
        budget=budget,
        split=split,
        cv=cv,
        task=task,
        first_trials=first_trials,
        **spec_kwargs,
    )
    for path, message in spec_problems(spec).items():
        problems.setdefault(path, message)  # a parse problem is the more precise message
    if problems:
        raise SpecError(problems)
    return spec


def spec_problems(spec: StudySpec) -> dict[str, str]:
    """Every rule a typed spec breaks, as field path -> message (empty when valid)."""
    problems: dict[str, str] = {}
    if spec.task not in list(Task):
        problems["task"] = unknown_option("task", spec.task, list(Task))
        return problems  # every other rule depends on the task's catalogue
    if not is_valid_name(spec.name):
        problems["name"] = f"{spec.name!r} must be 1-64 letters, digits, '-', '_' or '.'"
    if not 32 <= spec.image_size <= MAX_IMAGE_SIZE or spec.image_size % 32:
        problems["image_size"] = f"must be a multiple of 32 from 32 to {MAX_IMAGE_SIZE}, got {spec.image_size}"
    patch = _patch_problem(spec)
    if patch:
        problems["patch_size"] = patch
    if spec.channels is not None and not 1 <= spec.channels <= MAX_CHANNELS:
        problems["channels"] = (
            f"must be 1 (grey), 3 (RGB), a multi-sequence dataset's channel count (up to {MAX_CHANNELS}) "
            f"or null (the dataset's own), got {spec.channels}"
        )
    for key, registry in (("sampler", SAMPLERS), ("pruner", PRUNERS)):
        problem = registry.problem(getattr(spec, key))
        if problem:
            problems[key] = problem
    if spec.patience < 1:
        problems["patience"] = "must be at least 1"
    if spec.compile not in list(CompileMode):
        problems["compile"] = unknown_option("compile mode", spec.compile, list(CompileMode))
    if not 0 <= spec.seed < SEED_LIMIT:
        problems["seed"] = f"must be a whole number from 0 to {SEED_LIMIT - 1:,}, got {spec.seed}"
    if not 1 <= spec.preview_count <= 64:
        problems["preview_count"] = "must be between 1 and 64"
    _check_objectives(spec, problems)
    _check_budget(spec.budget, problems)
    # with cross-validation only the test fraction matters: checked as the folds will use it
    _check_split(spec.split if spec.cv is None or spec.split.k_folds else replace(spec.split, k_folds=2), problems)
    _check_cv(spec, problems)
    _check_first_trials(spec, problems)
    for param_name, param in spec.search_space.items():
        _check_param(param_name, param, spec.task, problems)
    if spec.sampler == "grid":
        for param_name, param in spec.search_space.items():
            if param.kind == "float" and param.step is None:
                problems[f"search_space.{param_name}"] = (
                    "grid search needs a list of choices or a stepped range (add 'step')"
                )
        if not any(path.startswith("search_space") for path in problems):
            problem = grid_size_problem(spec)  # arithmetic: microseconds for any size
            if problem:
                problems.setdefault("sampler", problem)
    return problems


def _patch_problem(spec: StudySpec) -> str | None:
    """Why ``spec.patch_size`` cannot be used with the spec's task and image size, or None."""
    if spec.patch_size is None:
        return None
    if spec.is_classification:
        return f"patches are for segmentation (a {spec.task} study sees each image whole); remove patch_size"
    if not 32 <= spec.patch_size <= spec.image_size or spec.patch_size % 32:
        return (
            f"must be a multiple of 32 from 32 to image_size ({spec.image_size}), or null for whole images; got "
            f"{spec.patch_size}"
        )
    return None


def _check_objectives(spec: StudySpec, problems: dict[str, str]) -> None:
    if not spec.objectives:
        problems["objectives"] = "at least one objective is needed"
    metrics = [objective.metric for objective in spec.objectives]
    if len(set(metrics)) < len(metrics):
        problems["objectives"] = f"each metric may appear once; got {metrics}"
    known = objective_metrics(spec.task)
    for i, objective in enumerate(spec.objectives):
        if objective.metric not in known:
            other = objective_task(objective.metric)
            problems[f"objectives[{i}].metric"] = (
                f"{objective.metric} is a {other} metric; a {spec.task} study optimises one of {list(known)}"
                if other is not None
                else unknown_option("metric", objective.metric, known)
            )
        if objective.direction not in ("maximize", "minimize"):
            problems[f"objectives[{i}].direction"] = "must be 'maximize' or 'minimize'"
    if spec.is_multi_objective:
        if spec.pruner != "none":
            problems["pruner"] = "Optuna cannot prune studies with several objectives; use 'none'"
        if spec.sampler in SAMPLERS and not SAMPLERS.get(spec.sampler).multi_objective:
            valid = [entry.name for entry in SAMPLERS if entry.multi_objective]
            problems["sampler"] = f"sampler {spec.sampler!r} cannot handle several objectives; use one of {valid}"
    elif spec.sampler in SAMPLERS and not SAMPLERS.get(spec.sampler).single_objective:
        problems["sampler"] = (
            f"{spec.sampler!r} is for several objectives; add a second objective or pick another sampler"
        )
    elif (
        spec.objectives
        and spec.objectives[0].metric in known
        and spec.objectives[0].metric not in epoch_objectives(spec.task)
        and spec.pruner != "none"
    ):
        problems["pruner"] = (
            f"{spec.objectives[0].metric} is only known when a trial ends, so it cannot be pruned on; use 'none'"
        )


def _check_budget(budget: Budget, problems: dict[str, str]) -> None:
    if budget.n_trials is not None and not 1 <= budget.n_trials <= MAX_TRIALS:
        problems["budget.n_trials"] = f"must be from 1 to {MAX_TRIALS:,} (or null for no limit), got {budget.n_trials}"
    if budget.timeout_s is not None and not (math.isfinite(budget.timeout_s) and budget.timeout_s > 0):
        problems["budget.timeout_s"] = (
            f"must be a positive number of seconds (or null for no limit), got {budget.timeout_s}"
        )
    if budget.n_trials is None and budget.timeout_s is None:
        problems["budget"] = "set n_trials, timeout_s or both, so the study ends"
    if not 1 <= budget.max_epochs <= MAX_EPOCHS:
        problems["budget.max_epochs"] = f"must be from 1 to {MAX_EPOCHS:,}, got {budget.max_epochs}"


def _check_split(split: SplitConfig, problems: dict[str, str]) -> None:
    for name, message in config_problems(split).items():
        problems["split" if name == "fractions" else f"split.{name}"] = message


def _check_cv(spec: StudySpec, problems: dict[str, str]) -> None:
    if spec.cv is None:
        return
    low, high = CV_FOLDS_RANGE
    if not _is_type(spec.cv.folds, int) or not low <= spec.cv.folds <= high:
        problems["cv.folds"] = f"must be an integer from {low} to {high}, got {spec.cv.folds!r}"
    if spec.split.k_folds is not None:
        problems["cv"] = "cross-validation makes its own folds; remove split.k_folds (or remove cv)"


def _parse_first_trials(raw: Any, problems: dict[str, str]) -> tuple[dict[str, Any], ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list) or not all(isinstance(params, dict) for params in raw):
        problems["first_trials"] = f"must be a list of {{hyperparameter: value}} objects, got {raw!r}"
        return ()
    return tuple(dict(params) for params in raw)


def _check_first_trials(spec: StudySpec, problems: dict[str, str]) -> None:
    """Each queued configuration names tuned dimensions of the spec, with values they can take."""
    for i, params in enumerate(spec.first_trials):
        for name, value in params.items():
            dimension = spec.search_space.get(name)
            if dimension is None or dimension.kind == "fixed":
                tuned = sorted(n for n, d in spec.search_space.items() if d.kind != "fixed")
                problems[f"first_trials[{i}].{name}"] = f"{name} is not a tuned dimension of this spec; tuned: {tuned}"
            elif not dimension.admits(value):
                problems[f"first_trials[{i}].{name}"] = (
                    f"{value!r} is outside search_space.{name} ({json.dumps(dimension.to_json())})"
                )


def _parse_cv(raw: Any, problems: dict[str, str]) -> CrossValidation | None:
    if raw is None:
        return None
    return _parse_dataclass(CrossValidation, raw, "cv", problems)


def _check_param(param_name: str, param: ParamSpec, task: str, problems: dict[str, str]) -> None:
    path = f"search_space.{param_name}"
    catalogue = hyperparameters(task)
    hp = catalogue.get(param_name)
    if hp is None:
        other = other_task_with(param_name, task)
        problems[path] = (
            f"{param_name} is a {other} hyperparameter; a {task} study tunes {list(catalogue)}"
            if other
            else unknown_option("hyperparameter", param_name, catalogue)
        )
        return
    if param.kind in ("int", "float"):
        if hp.kind not in (int, float):
            problems[path] = f"{param_name} takes {hp.kind.__name__} values, not a numeric range"
            return
        if hp.kind is int and param.kind == "float":
            problems[path] = f"{param_name} is an integer; use an int range"
            return
        problem = _range_problem(param)
        if problem:
            problems[path] = problem
        elif param.low > param.high:
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
            problems[path] = _other_task_value(param_name, value, task) or problem
            return


def _other_task_value(param_name: str, value: Any, task: str) -> str | None:
    """For a value only the other task accepts (an architecture, a loss), the message that names the fix."""
    for other in Task:
        hp = hyperparameters(other).get(param_name)
        if other != task and hp is not None and hp.options is not None and value in list(hp.options()):
            valid = list(hyperparameters(task)[param_name].options())
            return (
                f'{value!r} is a {other} {param_name}; a {task} study takes one of {valid} (or set "task": "{other}")'
            )
    return None


def _range_problem(param: ParamSpec) -> str | None:
    """What Optuna could not sample in a typed range (specs built in code skip the JSON checks)."""
    if not all(
        isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in (param.low, param.high)
    ):
        return f"'low' and 'high' must be finite numbers, got low={param.low!r}, high={param.high!r}"
    if param.kind == "int" and not all(float(v).is_integer() for v in (param.low, param.high)):
        return f"an int range needs whole-number bounds, got low={param.low!r}, high={param.high!r}"
    step = param.step
    if step is None:
        return None
    if isinstance(step, bool) or not isinstance(step, (int, float)) or not math.isfinite(step) or step <= 0:
        return f"'step' must be a positive number, got {step!r} (leave it out for a continuous range)"
    if param.kind == "int" and not float(step).is_integer():
        return f"an int range needs a whole-number 'step', got {step!r}"
    return None


def _value_problem(hp: HyperParam, value: Any) -> str | None:
    if value is None:
        return None if hp.allow_none else "a value is required"
    if not _is_type(value, hp.kind):
        return f"{value!r} is not a {hp.kind.__name__}"
    if hp.kind in (int, float) and not math.isfinite(value):
        return f"{value!r} is not a finite number"
    if hp.options is not None:
        valid = list(hp.options())
        if value not in valid:
            return unknown_option("value", value, valid)
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


def _parse_task(raw: Any, problems: dict[str, str]) -> str:
    """The spec's task; an unknown one is reported and segmentation's catalogue checks the rest."""
    if raw in list(Task):
        return str(raw)
    problems["task"] = unknown_option("task", raw, list(Task))
    return Task.SEGMENTATION


def _parse_objectives(raw: Any, task: str, problems: dict[str, str]) -> tuple[Objective, ...]:
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
        metric = str(item.get("metric", default_objective(task)))
        objectives.append(
            Objective(
                metric=metric, direction=str(item.get("direction") or objective_metrics(task).get(metric, "maximize"))
            )
        )
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
    unknown = sorted(set(raw) - set(valid), key=str)
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
