"""The study form: a search-space editor built from the hyperparameter catalogue, and split settings.

Every hyperparameter of the form's task catalogue (``core.search.space.hyperparameters``:
segmentation or classification) gets an editor: a multiselect for names and switches (one pick =
fixed, several = a choice), and for numbers either a list of values or a range (low, high, step,
log). Form values live in session state under ``ns.*`` keys, so presets and imported JSON fill the
form by writing those keys (:func:`fill_form`) before it is drawn, and :func:`form_to_dict` turns
the keys back into a spec dict that ``spec_from_dict`` validates. The task is a form value too
(``ns.task``): it decides which catalogue, sections and objectives the form shows.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, MutableMapping, Sequence
from typing import Any

import streamlit as st

from app.state import Key
from core.contract import Task
from core.data.splits import SplitConfig
from core.metrics.catalogue import objective_metrics
from core.search.samplers import PRUNERS, SAMPLERS
from core.search.space import CONDITION_PARAMS, HyperParam, ParamSpec, hyperparameters
from core.search.spec import StudySpec

PREFIX = "ns."
_TRAINING = ("optimizer", "lr", "weight_decay", "momentum", "nesterov", "scheduler", "batch_size", "epochs", "loss")
_AUGMENTATION = ("aug_hflip", "aug_vflip", "aug_rotate", "aug_shift_scale", "aug_brightness_contrast")
# Per task, every name of its catalogue in one section (a test checks none is left out).
SECTIONS: dict[Task, dict[str, tuple[str, ...]]] = {
    Task.SEGMENTATION: {
        "Model": (
            "architecture",
            "encoder",
            "encoder_depth",
            "encoder_weights",
            "unet_start_filters",
            "unet_depth",
            "unet_activation",
            "unet_dropout",
            "unet_bn_after_act",
        ),
        "Training": _TRAINING,
        "Augmentation": _AUGMENTATION,
    },
    Task.CLASSIFICATION: {
        "Model": (
            "architecture",
            "encoder_weights",
            "head_kernel_size",
            "head_filters",
            "head_dense_units",
            "head_dropout",
        ),
        "Training": (*_TRAINING, "label_smoothing"),
        "Augmentation": _AUGMENTATION,
    },
}
LABELS: dict[str, str] = {
    "architecture": "Architectures",
    "encoder": "Encoders",
    "encoder_depth": "Encoder depth",
    "encoder_weights": "Encoder weights",
    "unet_start_filters": "U-Net start filters",
    "unet_depth": "U-Net depth",
    "unet_activation": "U-Net activations",
    "unet_dropout": "U-Net dropout",
    "unet_bn_after_act": "Batch norm after activation",
    "head_kernel_size": "Head kernel size",
    "head_filters": "Head filters",
    "head_dense_units": "Head dense units",
    "head_dropout": "Head dropout",
    "label_smoothing": "Label smoothing",
    "optimizer": "Optimizers",
    "lr": "Learning rate",
    "weight_decay": "Weight decay",
    "momentum": "Momentum",
    "nesterov": "Nesterov",
    "scheduler": "LR schedules",
    "batch_size": "Batch sizes",
    "epochs": "Epochs",
    "loss": "Losses",
    "aug_hflip": "Horizontal flips",
    "aug_vflip": "Vertical flips",
    "aug_rotate": "Rotation (degrees)",
    "aug_shift_scale": "Shift / scale",
    "aug_brightness_contrast": "Brightness / contrast",
}
TASK_LABELS: dict[Task, str] = {
    Task.SEGMENTATION: "Segmentation (a mask per image)",
    Task.CLASSIFICATION: "Classification (a label per image)",
}
RANGE, VALUES = "range", "values"
AUTO_CHANNELS = 0  # the form's stand-in for "the dataset's own" (None in the spec)
WHOLE_IMAGES = 0  # the form's stand-in for "no patch" (None in the spec)
IMAGE_SIZES = (32, 64, 96, 128, 160, 192, 224, 256, 320, 384, 448, 512, 640, 768, 1024)
FormValues = MutableMapping[str, Any]


def key(name: str) -> str:
    return PREFIX + name


TASK = key("task")  # the task the form describes (a Task value); follows the chosen dataset's
TASK_DATASET = key("_task_dataset")  # the dataset the form's task was last set for: choosing another re-derives it
FORM_DATASET: Key[str | None] = Key(key("dataset"), None)  # the Dataset box (None until the form's first fill)
FORM_TASK_DATASET: Key[str | None] = Key(TASK_DATASET, None)


def form_values() -> FormValues:
    """The form's values as its widgets hold them (session state, keys ``ns.*``)."""
    return st.session_state


def form_task(values: Mapping[str, Any]) -> Task:
    """The task the form describes (segmentation until set)."""
    return Task(values.get(TASK) or Task.SEGMENTATION)


def is_numeric(hp: HyperParam) -> bool:
    return hp.kind in (int, float)


def categorical_options(name: str, task: Task = Task.SEGMENTATION) -> list[Any]:
    hp = hyperparameters(task)[name]
    if hp.kind is bool:
        return [False, True]
    values = list(hp.options()) if hp.options else []
    return [None, *values] if hp.allow_none else values


# --- spec <-> form values -----------------------------------------------------------------------


def spec_to_form(spec: StudySpec) -> dict[str, Any]:
    """Session-state values (``ns.*``) that show ``spec`` in the form."""
    objectives = [o.metric for o in spec.objectives]
    values: dict[str, Any] = {
        TASK: str(Task(spec.task)),
        TASK_DATASET: spec.dataset,
        key("name"): spec.name,
        key("dataset"): spec.dataset,
        key("description"): spec.description,
        key("image_size"): spec.image_size,
        key("patch_size"): spec.patch_size or WHOLE_IMAGES,
        key("channels"): spec.channels or AUTO_CHANNELS,
        key("objectives"): objectives,
        key("sampler"): spec.sampler,
        key("pruner"): spec.pruner,
        key("n_trials"): spec.budget.n_trials or 0,
        key("timeout_min"): (spec.budget.timeout_s or 0) / 60,
        key("max_epochs"): spec.budget.max_epochs,
        key("patience"): spec.patience,
        key("seed"): spec.seed,
        key("preview_count"): spec.preview_count,
        key("first_trials"): [dict(params) for params in spec.first_trials],
    }
    values.update(split_to_form(spec.split, PREFIX + "split.", spec.cv.folds if spec.cv else None))
    for name, hp in hyperparameters(spec.task).items():
        values.update(_param_to_form(name, hp, spec.param(name)))
    return values


def _param_to_form(name: str, hp: HyperParam, dimension: ParamSpec) -> dict[str, Any]:
    base = key(f"sp.{name}")
    if not is_numeric(hp):
        return {base: list(dimension.candidate_values())}
    if dimension.kind in ("fixed", "choice"):
        text = ", ".join(_number_text(v) for v in dimension.candidate_values())
        return {f"{base}.mode": VALUES, f"{base}.values": text}
    return {
        f"{base}.mode": RANGE,
        f"{base}.low": _typed(hp, dimension.low),
        f"{base}.high": _typed(hp, dimension.high),
        f"{base}.step": _typed(hp, dimension.step or 0),
        f"{base}.log": dimension.log,
    }


def form_to_dict(values: Mapping[str, Any]) -> dict[str, Any]:
    """The spec dict the form shows; ``spec_from_dict`` validates it (problems name form fields)."""
    timeout_min = float(values.get(key("timeout_min")) or 0)
    n_trials = int(values.get(key("n_trials")) or 0)
    channels = values.get(key("channels"), AUTO_CHANNELS)
    task = form_task(values)
    space = {name: _form_to_param(values, name, hyperparameters(task)[name]) for name in shown_params(values)}
    first = _first_trials_in(values, space)
    return {
        "task": str(task),
        "name": str(values.get(key("name"), "")).strip(),
        "dataset": values.get(key("dataset")) or "",
        "description": values.get(key("description"), ""),
        "image_size": int(values.get(key("image_size"), 256)),
        "patch_size": (int(values.get(key("patch_size"), WHOLE_IMAGES)) or None)
        if task == Task.SEGMENTATION
        else None,  # hidden for classifiers
        "channels": None if channels == AUTO_CHANNELS else int(channels),
        "objectives": [{"metric": metric} for metric in values.get(key("objectives"), [])],
        "budget": {
            "n_trials": n_trials or None,
            "timeout_s": timeout_min * 60 or None,
            "max_epochs": int(values.get(key("max_epochs"), 20)),
        },
        "sampler": values.get(key("sampler"), "tpe"),
        "pruner": values.get(key("pruner"), StudySpec.pruner),
        "patience": int(values.get(key("patience"), 5)),
        "seed": int(values.get(key("seed"), 0)),
        "preview_count": int(values.get(key("preview_count"), 8)),
        "split": form_to_split(values, PREFIX + "split.").to_dict(),
        **(
            {"cv": {"folds": int(values.get(PREFIX + "split.cv_folds", 5))}}
            if values.get(PREFIX + "split.mode") == CV
            else {}
        ),
        "search_space": space,
        **({"first_trials": first} if first else {}),
    }


def _first_trials_in(values: Mapping[str, Any], space: dict[str, Any]) -> list[dict[str, Any]]:
    """The queued first trials (a plan's plain default) cut to what the edited space still admits, so
    editing a range never turns into a problem about a field the form does not show."""
    dimensions = {}
    for name, raw in space.items():
        try:
            dimensions[name] = ParamSpec.from_json(raw)
        except ValueError:  # the field reports its own problem
            continue
    kept = [
        {
            n: v
            for n, v in params.items()
            if n in dimensions and dimensions[n].kind != "fixed" and dimensions[n].admits(v)
        }
        for params in values.get(key("first_trials"), [])
    ]
    return [params for params in kept if params]


def _form_to_param(values: Mapping[str, Any], name: str, hp: HyperParam) -> Any:
    base = key(f"sp.{name}")
    if not is_numeric(hp):
        picked = list(values.get(base, []))
        return picked[0] if len(picked) == 1 else {"choices": picked}
    if values.get(f"{base}.mode") == RANGE:
        low, high, step = values.get(f"{base}.low"), values.get(f"{base}.high"), values.get(f"{base}.step") or 0
        data: dict[str, Any] = {"type": hp.kind.__name__, "low": _typed(hp, low), "high": _typed(hp, high)}
        if step:
            data["step"] = _typed(hp, step)
        if values.get(f"{base}.log"):
            data["log"] = True
        return data
    parsed = parse_numbers(str(values.get(f"{base}.values", "")), hp.kind)
    if isinstance(parsed, str):
        return {"choices": parsed}  # not a list: spec_from_dict reports it on this field
    return parsed[0] if len(parsed) == 1 else {"choices": parsed}


def parse_numbers(text: str, kind: type) -> list[Any] | str:
    """``"1e-3, 1e-4"`` -> numbers of ``kind``; a non-number comes back as the offending text."""
    numbers: list[Any] = []
    for part in (p.strip() for p in text.replace(";", ",").split(",")):
        if not part:
            continue
        try:
            number = float(part)
        except ValueError:
            return part
        if kind is int and not number.is_integer():
            return part
        numbers.append(int(number) if kind is int else number)
    return numbers


def shown_params(values: Mapping[str, Any]) -> list[str]:
    """The form task's hyperparameters that apply to at least one chosen architecture, optimizer and loss."""
    chosen = [list(values.get(key(f"sp.{name}"), [])) or [None] for name in CONDITION_PARAMS]
    contexts = [dict(zip(CONDITION_PARAMS, combination)) for combination in itertools.product(*chosen)]
    return [
        name
        for name, hp in hyperparameters(form_task(values)).items()
        if any(hp.active(context) for context in contexts)
    ]


def _typed(hp: HyperParam, value: Any) -> Any:
    return int(value) if hp.kind is int else float(value)


def _number_text(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


# --- split settings -----------------------------------------------------------------------------

FRACTIONS, FOLDS, CV = "Fractions", "K folds", "Cross-validation"
CV_HELP = (
    "Each trial trains one model per fold and is scored on the mean of the folds' validation metrics: "
    "a steadier ranking on small datasets, at k times the cost per trial. The test split is held out first."
)


def split_to_form(split: SplitConfig, prefix: str, cv_folds: int | None = None) -> dict[str, Any]:
    return {
        prefix + "mode": CV if cv_folds else FOLDS if split.k_folds else FRACTIONS,
        prefix + "cv_folds": cv_folds or 5,
        prefix + "train": round(split.train * 100),
        prefix + "val": round(split.val * 100),
        prefix + "test": round(split.test * 100),
        prefix + "k_folds": split.k_folds or 5,
        prefix + "fold": split.fold,
        prefix + "seed": split.seed,
        prefix + "group_pattern": split.group_pattern or "",
        prefix + "from_file": split.from_file,
    }


def form_to_split(values: Mapping[str, Any], prefix: str) -> SplitConfig:
    default = SplitConfig()
    folds = values.get(prefix + "mode") == FOLDS
    test = values.get(prefix + "test", round(default.test * 100)) / 100
    train = values.get(prefix + "train", round(default.train * 100)) / 100
    if values.get(prefix + "mode") == CV:  # the folds are cut from what test leaves; train/val fractions go unused
        train = round((1 - test) * 0.8, 6)
    return SplitConfig(
        train=(1 - test) if folds else train,
        val=0.0 if folds else round(1 - train - test, 6),
        test=test,
        k_folds=int(values.get(prefix + "k_folds", 5)) if folds else None,
        fold=int(values.get(prefix + "fold", 0)) if folds else 0,
        seed=int(values.get(prefix + "seed", 0)),
        group_pattern=values.get(prefix + "group_pattern") or None,
        from_file=bool(values.get(prefix + "from_file", False)),
    )


def split_editor(prefix: str, initial: SplitConfig) -> SplitConfig:
    """Fractions (train / test, val is the rest) or k folds, seed, and a group pattern."""
    fill_missing(split_to_form(initial, prefix))
    mode = st.segmented_control(
        "Split by",
        [FRACTIONS, FOLDS, CV],
        key=prefix + "mode",
        required=True,
        persist_state="session",
        help="K folds: one fold validates every trial. Cross-validation: every trial trains on each fold in turn.",
    )
    left, right = st.columns(2)
    if mode == CV:
        left.number_input(
            "Folds per trial",
            min_value=2,
            max_value=10,
            step=1,
            key=prefix + "cv_folds",
            persist_state="session",
            help=CV_HELP,
        )
        right.slider(
            "Test %",
            0,
            50,
            key=prefix + "test",
            persist_state="session",
            help="Held out first; the rest is cut into folds.",
        )
        st.caption(
            f"Each trial trains {st.session_state.get(prefix + 'cv_folds', 5)} models; the budget still counts trials."
        )
    elif mode == FOLDS:
        left.number_input("Folds", min_value=2, max_value=20, step=1, key=prefix + "k_folds", persist_state="session")
        right.number_input(
            "Validation fold", min_value=0, max_value=19, step=1, key=prefix + "fold", persist_state="session"
        )
        st.slider(
            "Test %",
            0,
            50,
            key=prefix + "test",
            persist_state="session",
            help="Held out first; the rest is cut into folds.",
        )
    else:
        left.slider("Train %", 10, 95, key=prefix + "train", persist_state="session")
        right.slider("Test %", 0, 50, key=prefix + "test", persist_state="session", help="Validation gets the rest.")
    left, right = st.columns(2)
    left.number_input("Seed", min_value=0, step=1, key=prefix + "seed", persist_state="session")
    right.text_input(
        "Group pattern (regex)",
        key=prefix + "group_pattern",
        persist_state="session",
        placeholder=r"e.g. ^(TCGA_\w+?_\d+)_",
        help="Files whose stems give the same match (or first group) stay in one split, e.g. one patient.",
    )
    st.toggle(
        "Use the dataset's split.csv",
        key=prefix + "from_file",
        persist_state="session",
        help="The train / val / test lists kept from the dataset's own split.csv (columns split,name[,group]). "
        "With cross-validation its test images stay held out and the folds are cut from its train + val.",
    )
    return form_to_split(st.session_state, prefix)


# --- drawing ------------------------------------------------------------------------------------


def fill_missing(values: Mapping[str, Any]) -> None:
    """Give form keys their starting values without overwriting what the user entered."""
    for name, value in values.items():
        st.session_state.setdefault(name, value)


def fill_form(values: Mapping[str, Any]) -> None:
    """Overwrite the form with ``values`` (a preset or an imported spec). Call before drawing it."""
    for name, value in values.items():
        st.session_state[name] = value


def problem_for(problems: Mapping[str, str], *paths: str) -> None:
    """Show the problems whose field path starts with one of ``paths``, right under the field."""
    for path, message in problems.items():
        if any(path == p or path.startswith(p + ".") or path.startswith(p + "[") for p in paths):
            st.error(f"{message}", icon=":material/error:")


def hyperparameter_editor(name: str, problems: Mapping[str, str], task: Task = Task.SEGMENTATION) -> None:
    hp = hyperparameters(task)[name]
    label = LABELS.get(name, name)
    base = key(f"sp.{name}")
    if not is_numeric(hp):
        st.multiselect(
            label,
            categorical_options(name, task),
            key=base,
            format_func=_option_text,
            help=hp.help,
            persist_state="session",
        )
    else:
        _numeric_editor(name, hp, label, base)
    problem_for(problems, f"search_space.{name}")


def _numeric_editor(name: str, hp: HyperParam, label: str, base: str) -> None:
    number_format = "%d" if hp.kind is int else "%g"
    step = 1 if hp.kind is int else None
    mode_column, *columns = st.columns([1.3, 1, 1, 1, 0.6], vertical_alignment="bottom")
    mode = mode_column.segmented_control(
        label, [VALUES, RANGE], key=f"{base}.mode", required=True, help=hp.help, persist_state="session"
    )
    if mode == RANGE:
        fill_missing(_range_start(hp, base))
        columns[0].number_input("low", key=f"{base}.low", format=number_format, step=step, persist_state="session")
        columns[1].number_input("high", key=f"{base}.high", format=number_format, step=step, persist_state="session")
        columns[2].number_input(
            "step",
            key=f"{base}.step",
            min_value=_typed(hp, 0),
            format=number_format,
            step=step,
            help="0 = continuous",
            persist_state="session",
        )
        columns[3].checkbox("log", key=f"{base}.log", persist_state="session")
    else:
        fill_missing({f"{base}.values": _number_text(hp.default)})
        columns[0].text_input(
            "values",
            key=f"{base}.values",
            help="One value, or several separated by commas",
            persist_state="session",
            label_visibility="collapsed",
        )


def _range_start(hp: HyperParam, base: str) -> dict[str, Any]:
    # A range around the default, inside the catalogue bounds, for a user who switches to "range".
    low = hp.default or (hp.bounds[0] if hp.bounds else 0)
    high = min(low * (2 if hp.kind is int else 10) or 1, hp.bounds[1] if hp.bounds else float("inf"))
    return {
        f"{base}.low": _typed(hp, low),
        f"{base}.high": _typed(hp, high),
        f"{base}.step": _typed(hp, 0),
        f"{base}.log": False,
    }


def _option_text(value: Any) -> str:
    if value is None:
        return "random init"
    if isinstance(value, bool):
        return "on" if value else "off"
    return str(value)


def study_settings_editor(datasets: Sequence[str], problems: Mapping[str, str]) -> None:
    """Name, dataset, task, objectives, sampler, pruner and budget."""
    left, right = st.columns(2)
    left.text_input("Study name", key=key("name"), persist_state="session", help="Letters, digits, '-', '_' or '.'")
    with left:
        problem_for(problems, "name")
    right.selectbox("Dataset", list(datasets), key=key("dataset"), persist_state="session")
    with right:
        problem_for(problems, "dataset")
    left, middle, right = st.columns(3)
    middle.select_slider("Image size (px)", IMAGE_SIZES, key=key("image_size"), persist_state="session")
    chosen = st.session_state.get(key("channels"), AUTO_CHANNELS)  # an imported spec may name a multi-sequence count
    options = [AUTO_CHANNELS, 1, 3] + ([chosen] if chosen not in (AUTO_CHANNELS, 1, 3) else [])
    names = {AUTO_CHANNELS: "as the dataset", 1: "1 (grey)", 3: "3 (RGB)"}
    right.selectbox(
        "Channels",
        options,
        key=key("channels"),
        persist_state="session",
        format_func=lambda c: names.get(c, f"{c} (sequences)"),
    )
    with right:
        problem_for(problems, "channels")
    left.text_input("Description", key=key("description"), persist_state="session")
    with middle:
        problem_for(problems, "image_size")
    if form_task(st.session_state) == Task.SEGMENTATION:  # classifiers see each image whole
        middle.selectbox(
            "Training patch (px)",
            (WHOLE_IMAGES, *IMAGE_SIZES),
            key=key("patch_size"),
            persist_state="session",
            format_func=lambda p: "whole image" if p == WHOLE_IMAGES else f"{p} px crops",
            help="Train on random crops of this side of the images (at the image size above) and predict by a "
            "sliding window.",
        )
        with middle:
            problem_for(problems, "patch_size")


def search_editor(problems: Mapping[str, str], task: Task = Task.SEGMENTATION) -> None:
    """Objectives (the task's), sampler, pruner, budget."""
    objectives = objective_metrics(task)
    st.multiselect(
        "Objectives",
        list(objectives),
        key=key("objectives"),
        persist_state="session",
        format_func=lambda m: f"{m} ({objectives[m]})",
        help="Several objectives give a Pareto front (no pruning).",
    )
    problem_for(problems, "objectives")
    columns = st.columns(3)
    columns[0].selectbox("Sampler", SAMPLERS.names, key=key("sampler"), persist_state="session")
    columns[1].selectbox("Pruner", PRUNERS.names, key=key("pruner"), persist_state="session")
    columns[2].number_input(
        "Early-stopping patience (epochs)", min_value=1, step=1, key=key("patience"), persist_state="session"
    )
    with columns[0]:
        problem_for(problems, "sampler")
    with columns[1]:
        problem_for(problems, "pruner")
    columns = st.columns(4)
    columns[0].number_input(
        "Trials",
        min_value=0,
        step=1,
        key=key("n_trials"),
        persist_state="session",
        help="0 = no limit (then set a time limit)",
    )
    columns[1].number_input(
        "Time limit (min)",
        min_value=0.0,
        step=5.0,
        key=key("timeout_min"),
        persist_state="session",
        help="0 = no limit",
    )
    columns[2].number_input("Max epochs per trial", min_value=1, step=1, key=key("max_epochs"), persist_state="session")
    columns[3].number_input("Seed", min_value=0, step=1, key=key("seed"), persist_state="session")
    problem_for(problems, "budget")
