"""New study: describe the search (or start from a paper preset), check its cost, start it.

The form describes a study of the chosen dataset's task: a segmentation dataset gets the
segmentation catalogue (architectures x encoders, segmentation losses, Dice-style objectives), a
classification dataset the classifiers with their tuned head, classification losses and
objectives. Both start from the auto plan, sized for the form's time budget; the cost section
shows the estimated study total and warns when the form's spec exceeds the budget.
"""

from __future__ import annotations

import dataclasses
import json
from collections import Counter
from typing import Any

import streamlit as st

from app import cache, state
from app.nav import page_path
from app.widgets.errors import show_user_error, user_errors
from app.widgets.spec_form import (
    FORM_DATASET,
    FORM_TASK_DATASET,
    PREFIX,
    SECTIONS,
    TASK_LABELS,
    fill_form,
    fill_missing,
    form_task,
    form_to_dict,
    form_values,
    hyperparameter_editor,
    problem_for,
    search_editor,
    shown_params,
    spec_to_form,
    split_editor,
    study_settings_editor,
)
from core.contract import Task
from core.data.manifest import dataset_path
from core.data.splits import file_split, split_sizes
from core.errors import SegTuneError
from core.metrics.catalogue import default_objective
from core.runtime.launcher import plan_slots, visible_gpu_ids
from core.runtime.reuse import link_to_source, narrowed_spec, seed_from_study, studies_on_dataset
from core.search.auto import plan_for_manifest
from core.search.cost import format_duration, profile_for
from core.search.presets import AUTO, load_preset, preset_names
from core.search.size import search_space_size
from core.search.spec import StudySpec
from core.search.suggest import trials_beyond_space
from core.search.task_fit import task_problem
from core.search.validation import SpecError, spec_from_dict

PRESET_LABELS = {
    AUTO: "Auto · planned from this dataset (recommended)",
    "p1-unet-keras-tuner": "Keras Tuner U-Net study · classic U-Net shape search",
    "p2-deeplabv3plus-liver": "Liver CT study · DeepLabV3+ / U-Net, Bayesian",
    "p3-optimizer-loss-cells": "Cell study · optimizers × losses (grid)",
    "p5-resnet-unet-mri": "Brain MRI study · ResNet-UNet encoders (grid)",
    "p4-cnn-classification": "CNN random search · MobileNetV2 / VGG19 with a tuned head, 3-fold CV, accuracy objective",
}
HOURS: state.Key[float | None] = state.Key(
    PREFIX + "_hours", None
)  # the plan's time budget (None: the device's default)
# (kind, message) from a callback, shown on the next run
NOTICE: state.Key[tuple[str, str] | None] = state.Key(PREFIX + "_notice", None)
# (new study, earlier study, k) after "Narrow around its best"
NARROWED: state.Key[tuple[str, str, int] | None] = state.Key(PREFIX + "_narrowed", None)
REASONS: state.Key[list[str] | None] = state.Key(PREFIX + "_plan_reasons", None)  # the auto plan's "why" lines
IMPORTED: state.Key[str | None] = state.Key(
    PREFIX + "_imported", None
)  # the last imported spec's file id: applied once
PRESET: state.Key[str | None] = state.Key(PREFIX + "_preset", None)  # the preset box (its options follow the task)


def starting_spec(dataset: str) -> StudySpec:
    """What the form shows first: the auto preset, planned from the dataset's fingerprint (either task)
    for the form's time budget."""
    try:
        auto = plan_for_manifest(
            cache.manifest(dataset), name=f"{dataset}-study", device=device_kind(), hours=HOURS.get()
        )
    except (SegTuneError, OSError, ValueError):  # an unreadable manifest: a small, quick study instead
        return StudySpec(
            name=f"{dataset}-study",
            dataset=dataset,
            image_size=128,
            split=state.SPLIT.get(),
            task=dataset_task(dataset),
        )
    if FORM_DATASET.get() is None:  # the form's first fill: it shows this plan
        REASONS.set(list(auto.reasons))
    return dataclasses.replace(spec_from_dict(auto.spec), split=state.SPLIT.get())


def dataset_task(dataset: str) -> Task:
    """The task of a stored dataset (segmentation when its manifest cannot be read: the form then says why)."""
    try:
        return Task(cache.manifest(dataset).task)
    except (SegTuneError, OSError, ValueError):
        return Task.SEGMENTATION


def follow_dataset_task() -> None:
    """When the user picks a dataset of the other task, refill the form with that dataset's start.

    Presets, imports and narrowing fill the form with their own dataset and task, so only a new pick
    in the Dataset box re-derives the task (a mismatch from an import is reported at the field)."""
    dataset = FORM_DATASET.get()
    if FORM_TASK_DATASET.get() == dataset:
        return
    FORM_TASK_DATASET.set(dataset)
    task = dataset_task(dataset)
    if task == form_task(form_values()):
        return
    fill_form(spec_to_form(starting_spec(dataset)))
    PRESET.clear()  # the other task's presets
    REASONS.clear()
    NOTICE.set(("success", f"{dataset} is a {task} dataset: the form now describes a {task} study."))


def device_kind() -> str:
    return "cuda" if gpu_devices() else "cpu"


def apply_preset(name: str, dataset: str) -> None:
    try:
        if name == AUTO:
            auto = plan_for_manifest(
                cache.manifest(dataset), name=f"auto-{dataset}", device=device_kind(), hours=HOURS.get()
            )
            spec = spec_from_dict(auto.spec)
            REASONS.set(list(auto.reasons))
        else:
            spec = load_preset(name, dataset, f"{name.split('-')[0]}-{dataset}")
            REASONS.clear()
    except SegTuneError as error:
        NOTICE.set(("error", str(error)))
        return
    fill_form(spec_to_form(spec))
    message = f"Filled the form from {PRESET_LABELS.get(name, name)}."
    if spec.objectives[0].metric != default_objective(spec.task):  # e.g. P4's accuracy: never switched silently
        message += (
            f" Its objective is the paper's {spec.objectives[0].metric}, not {default_objective(spec.task)}: "
            "change it under Search and budget if the classes are imbalanced."
        )
    NOTICE.set(("success", message))


def reuse_section(dataset: str) -> tuple[str | None, int]:
    """An earlier study on the same dataset to warm-start from, or to narrow around; returns (study to seed from, k)."""
    earlier = studies_on(cache.settings().db_url, dataset)
    if not earlier:
        return None, 0
    with st.expander(":material/history: Reuse an earlier study on this dataset"):
        source_col, k_col = st.columns([3, 1])
        source = source_col.selectbox("Earlier study", earlier, key=PREFIX + "_reuse_study")
        top_k = int(k_col.number_input("Best trials", min_value=1, max_value=50, value=5, key=PREFIX + "_reuse_k"))
        seed = st.checkbox(
            "Seed the new study with these configurations (warm start)",
            key=PREFIX + "_warm_start",
            help="Its first trials are the earlier study's best configurations that fit this search space.",
        )
        st.button(
            "Narrow around its best",
            key=PREFIX + "_narrow",
            icon=":material/filter_center_focus:",
            on_click=apply_narrowed,
            args=(source, top_k),
            help="Fills the form with the earlier study's space, numeric ranges shrunk around its best trial and "
            "choices cut to those its best trials used.",
        )
    return (source if seed else None), top_k


@st.cache_data(ttl=cache.READ_TTL_S, show_spinner=False)
def studies_on(db_url: str, dataset: str) -> list[str]:
    return studies_on_dataset(cache.settings(), dataset)


def apply_narrowed(source: str, top_k: int) -> None:
    try:
        spec = narrowed_spec(cache.settings(), source, top_k)
    except SegTuneError as error:
        NOTICE.set(("error", str(error)))
        return
    fill_form(spec_to_form(spec))
    REASONS.clear()
    NARROWED.set((spec.name, source, top_k))
    NOTICE.set(("success", f"Filled the form with {source}'s space narrowed around its {top_k} best trials."))


def plan_reasons() -> None:
    """Why the auto preset chose what the form shows (until another preset or an import replaces it)."""
    reasons = REASONS.get()
    if reasons:
        with st.expander(":material/auto_awesome: Why these settings (planned from the dataset)"):
            st.markdown("\n".join(f"- {reason}" for reason in reasons))


def import_spec(upload: Any) -> None:
    """Fill the form from an uploaded spec JSON, once per file."""
    if upload is None or IMPORTED.get() == upload.file_id:
        return
    IMPORTED.set(upload.file_id)
    try:
        data = json.loads(
            upload.getvalue().decode("utf-8-sig")
        )  # a byte-order mark, as some Windows editors write, is fine
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        NOTICE.set(("error", f"{upload.name} is not valid JSON: {error}"))
        return
    with user_errors("Importing the spec"):
        fill_form(spec_to_form(spec_from_dict(data)))
        REASONS.clear()
        NOTICE.set(("success", f"Imported {upload.name}."))


@st.cache_resource(show_spinner=False)
def gpu_devices() -> list[str]:
    return [f"cuda:{i}" for i in range(len(visible_gpu_ids()))]


@st.cache_data(show_spinner=False, max_entries=16)
def trial_cost(spec_json: str, home: str) -> Any:
    from core.training.estimate import estimate_trial_cost

    return estimate_trial_cost(spec_from_dict(json.loads(spec_json)), cache.settings())


def validate(values: Any) -> tuple[StudySpec | None, dict[str, str]]:
    try:
        spec = spec_from_dict(form_to_dict(values))
    except SpecError as error:
        return None, error.problems
    problem = task_problem(
        spec, dataset_task(spec.dataset)
    )  # e.g. an imported classification spec on a segmentation dataset
    return (None, {"dataset": problem}) if problem else (spec, {})


def show_notice() -> None:
    notice = NOTICE.get()
    NOTICE.clear()
    if notice:
        kind, message = notice
        (st.success if kind == "success" else st.error)(message)


def header_tools(dataset: str, problems: dict[str, str]) -> None:
    presets, importer, exporter = st.columns([2, 2, 1], vertical_alignment="bottom")
    with presets:
        task = form_task(form_values())
        names = [AUTO, *preset_names(task)]  # the auto plan plans either task
        if PRESET.get() not in names:  # e.g. an import switched the task
            PRESET.clear()
        choice = st.selectbox(
            "Start from a preset", names, format_func=lambda n: PRESET_LABELS.get(n, n), key=PRESET.name
        )
        st.number_input(
            "Time budget (hours)",
            min_value=0.05,
            max_value=1000.0,
            value=None,
            step=0.5,
            key=HOURS.name,
            placeholder=f"{profile_for(device_kind()).default_hours:g} ({device_kind().upper()} default)",
            help="The auto plan sizes image side, epochs, trials and architectures so its estimate of the whole study "
            "fits this.",
        )
        st.button(
            "Apply preset",
            on_click=apply_preset,
            args=(choice, dataset),
            icon=":material/auto_fix_high:",
            key=PREFIX + "_apply_preset",
        )
    with importer:
        import_spec(st.file_uploader("Import a spec (JSON)", type=["json"], key=PREFIX + "_import"))
    with exporter:
        data = form_to_dict(form_values())
        st.download_button(
            "Export JSON",
            json.dumps(data, indent=2),
            file_name=f"{data['name'] or 'study'}.json",
            mime="application/json",
            icon=":material/download:",
            disabled=bool(problems),
            width="stretch",
        )


def split_section(spec: StudySpec | None, problems: dict[str, str]) -> None:
    with st.expander("Split (train / validation / test)"):
        split = split_editor(PREFIX + "split.", state.SPLIT.get())
        problem_for(problems, "split", "cv", "cv.folds")
        with user_errors("Previewing the split"):
            dataset = FORM_DATASET.get()
            chosen = cache.manifest(dataset)
            stems, groups, labels = (
                chosen.stems,
                chosen.groups,
                chosen.labels or None,
            )  # labels: stratified (classification)
            if split.from_file:
                folder = dataset_path(cache.settings().datasets_dir, dataset)
                sizes = {
                    part: len(getattr(file_split(folder, stems, split, labels), part))
                    for part in ("train", "val", "test")
                }
                st.caption(
                    f"From the dataset's split.csv: {sizes['train']} train · {sizes['val']} validation · "
                    f"{sizes['test']} test images"
                    + (f" (train + validation cut into {spec.cv.folds} folds)" if spec is not None and spec.cv else "")
                )
            elif spec is not None and spec.cv is not None:
                sizes = split_sizes(stems, dataclasses.replace(split, k_folds=spec.cv.folds, fold=0), groups, labels)
                st.caption(
                    f"{spec.cv.folds} folds of about {sizes['val']} validation images each (each fold's model trains "
                    f"on about {sizes['train']}) · {sizes['test']} test images, held out first"
                )
            else:
                sizes = split_sizes(stems, split, groups, labels)
                st.caption(f"{sizes['train']} train · {sizes['val']} validation · {sizes['test']} test images")


def search_space_sections(problems: dict[str, str]) -> None:
    """The task's sections; only what applies to the chosen architectures, optimizers and losses."""
    task = form_task(form_values())
    visible = set(shown_params(form_values()))
    for title, params in SECTIONS[task].items():
        with st.container(border=True):
            st.subheader(title)
            for name in params:
                if name in visible:
                    hyperparameter_editor(name, problems, task)


def run_section() -> tuple[list[str], int | None, int]:
    """Devices, an explicit worker count (None: ``per_gpu`` on every chosen GPU) and trials per GPU."""
    with st.container(border=True):
        st.subheader("Run on")
        devices_col, workers_col, per_gpu_col = st.columns(3)
        gpus = gpu_devices()
        devices = devices_col.multiselect(
            "Devices", ["cpu", *gpus], key=PREFIX + "_devices", help="Empty = every GPU, or the CPU when there is none."
        )
        workers = workers_col.number_input(
            "Workers",
            min_value=1,
            max_value=64,
            value=None,
            step=1,
            key=PREFIX + "_workers",
            placeholder="Automatic",
            help="Parallel trials on this machine, spread over the devices. Leave empty to run 'Trials per GPU' on "
            "every GPU.",
        )
        per_gpu = per_gpu_col.number_input(
            "Trials per GPU",
            min_value=1,
            max_value=8,
            value=1,
            step=1,
            key=PREFIX + "_per_gpu",
            disabled=not gpus or workers is not None,
            help="Small models can share one GPU. Applies when Workers is empty.",
        )
        workers = None if workers is None else int(workers)
        launch_plan(devices, workers, int(per_gpu), len(gpus))
    return devices, workers, int(per_gpu)


def launch_plan(devices: list[str], workers: int | None, per_gpu: int, gpu_count: int) -> None:
    """Say which workers Start will launch, as ``core.runtime.launcher`` plans them."""
    with user_errors("Planning the workers"):
        slots = Counter(plan_slots(devices, workers, per_gpu, gpu_count=gpu_count))
        on = ", ".join(f"{count} on {device}" for device, count in slots.items())
        st.caption(f":material/memory: Start launches {sum(slots.values())} worker(s): {on}.")
        if not gpu_count:
            st.caption("No GPU visible: trials run on the CPU.")


def cost_section(spec: StudySpec | None) -> None:
    with st.container(border=True):
        st.subheader("Cost of one trial")
        size = search_space_size(spec) if spec else None
        st.caption(
            f"Search space: {size} configuration(s)." if size else "Search space: continuous (ranges without a step).",
        )
        beyond = trials_beyond_space(spec) if spec else None
        if beyond:
            st.warning(beyond[0].upper() + beyond[1:] + ".", icon=":material/repeat:")
        if spec is not None:
            study_total(spec)
        if not st.button(
            "Estimate",
            key=PREFIX + "_estimate",
            disabled=spec is None,
            icon=":material/speed:",
            help="Times one training batch of a typical trial on this machine's CPU.",
        ):
            return
        with st.spinner("Probing one batch…"), user_errors("Estimating the cost"):
            cost = trial_cost(spec.to_json(), str(cache.settings().home))
            cols = st.columns(4)
            cols[0].metric("Parameters", f"{cost.n_params / 1e6:.2f} M")
            cols[1].metric("Weights", f"{cost.weights_mb:.1f} MB")
            cols[2].metric("Seconds / epoch (CPU)", f"{cost.seconds_per_epoch:.1f}")
            cols[3].metric(
                "Minutes / trial",
                f"{cost.seconds_per_trial / 60:.1f}",
                help="Every cross-validation fold counted." if cost.folds > 1 else None,
            )
            with st.expander("Probed configuration"):
                st.dataframe(
                    {"hyperparameter": [k for k, _ in cost.params], "value": [str(v) for _, v in cost.params]},
                    hide_index=True,
                )


def study_total(spec: StudySpec) -> None:
    """The planner's estimate of the whole study (folds and pruning counted), and a warning past the budget."""
    from core.training.estimate import study_cost

    with user_errors("Estimating the study total"):
        profile = profile_for(device_kind())
        estimate = study_cost(spec, cache.settings(), profile)
        budget_h = HOURS.get() or profile.default_hours
        st.caption(
            f":material/schedule: {estimate.line()[0].upper()}{estimate.line()[1:]} on a typical {profile.label}."
        )
        if estimate.total_s > budget_h * 3600:
            st.warning(
                f"This spec's estimated study total ({format_duration(estimate.total_s)}) exceeds the time budget of "
                f"{budget_h:g} h: lower trials, epochs or the image size, or Apply the auto preset to plan for the "
                "budget.",
                icon=":material/timer_off:",
            )


def start(
    spec: StudySpec, devices: list[str], workers: int | None, per_gpu: int, reuse: tuple[str | None, int] = (None, 0)
) -> None:
    from core.runtime.queue import submit_job

    with st.spinner("Creating the study and starting workers…"):
        seed_source, top_k = reuse
        if seed_source:
            seed_from_study(cache.settings(), spec, seed_source, top_k)
        narrowed = NARROWED.get()
        if narrowed and narrowed[0] == spec.name:
            link_to_source(cache.settings(), spec, narrowed[1], narrowed[2])
        job_id = submit_job(cache.settings(), spec, workers=workers, devices=devices or None, per_gpu=per_gpu)
    state.JOB.set(job_id)
    state.STUDY.set(spec.name)
    cache.clear_reads()
    st.switch_page(page_path("jobs.py"))


def form(datasets: list[str]) -> tuple[StudySpec | None, dict[str, str]]:
    """Every section of the study form; returns the validated spec (None while problems remain)."""
    chosen = state.DATASET.get() if state.DATASET.get() in datasets else datasets[0]
    fill_missing(spec_to_form(starting_spec(chosen)))
    if FORM_DATASET.get() not in datasets:
        FORM_DATASET.set(chosen)
    follow_dataset_task()
    spec, problems = validate(form_values())
    header_tools(FORM_DATASET.get(), problems)
    show_notice()
    spec, problems = validate(form_values())  # an import may just have changed the form
    plan_reasons()
    with st.container(border=True):
        st.subheader("Study")
        study_settings_editor(datasets, problems)
        task_caption(FORM_DATASET.get())
    split_section(spec, problems)
    search_space_sections(problems)
    with st.container(border=True):
        st.subheader("Search and budget")
        search_editor(problems, form_task(form_values()))
    return spec, problems


def task_caption(dataset: str) -> None:
    task = form_task(form_values())
    classes = ""
    if task == Task.CLASSIFICATION and dataset_task(dataset) == task:
        counts = cache.manifest(dataset).class_counts
        classes = " · classes " + ", ".join(f"{name} ({count})" for name, count in counts.items())
    st.caption(
        f":material/category: Task: **{TASK_LABELS[task]}**, from the dataset{classes}. Choose a dataset of the "
        "other task to switch."
    )


def unplaced_problems(problems: dict[str, str]) -> None:
    """Problems of fields without an editor next to them (e.g. from an imported spec), listed here."""
    shown = {"name", "dataset", "image_size", "patch_size", "objectives", "sampler", "pruner", "budget", "split"}
    elsewhere = {
        path: message
        for path, message in problems.items()
        if not path.startswith("search_space") and path.split(".")[0].split("[")[0] not in shown
    }
    if elsewhere:
        show_user_error(SpecError(elsewhere))
    if problems:
        st.warning(f"Fix the {len(problems)} problem(s) marked above to start.", icon=":material/warning:")


def start_button(
    spec: StudySpec | None,
    devices: list[str],
    workers: int | None,
    per_gpu: int,
    reuse: tuple[str | None, int] = (None, 0),
) -> None:
    if st.button(
        "Start tuning", type="primary", disabled=spec is None, icon=":material/play_arrow:", key=PREFIX + "_start"
    ):
        with user_errors("Starting the study"):
            start(spec, devices, workers, per_gpu, reuse)


def no_datasets() -> None:
    st.info("No datasets yet — create the demo dataset or upload a zip on the Datasets page.", icon=":material/info:")
    st.page_link(page_path("datasets.py"), label="Go to Datasets", icon=":material/photo_library:")


st.title("New study")
st.caption("Describe what to search, check what one trial costs, and start tuning in the background.")
datasets = cache.datasets()
if not datasets:
    no_datasets()
else:
    spec, problems = form(datasets)
    reuse = reuse_section(FORM_DATASET.get())
    devices, workers, per_gpu = run_section()
    cost_section(spec)
    unplaced_problems(problems)
    start_button(spec, devices, workers, per_gpu, reuse)
