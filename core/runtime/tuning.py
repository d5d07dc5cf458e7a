"""Create, prepare and run studies: the glue between a spec, Optuna storage and the objective.

``prepare_study`` is called once per study (by the CLI or when a job is submitted): it creates the
Optuna study with the spec's directions, sampler and pruner, freezes the split, stores the preview
inputs and queues grid points. ``run_study`` is the single-process loop behind ``python -m core tune``;
workers (core/runtime/worker.py) drive the same objective for background jobs.
"""

from __future__ import annotations

import contextlib
from typing import Any

import optuna
import torch

from core.contract import Mode, StudyAttr, Task
from core.errors import SegTuneError
from core.metrics.baselines import constant_classes, majority_label, score_baselines
from core.metrics.cases import NATIVE_EVALUATION
from core.modeling.config import task_mode
from core.runtime.budget import remaining_budget
from core.runtime.storage import fail_stale_trials, open_artifact_store, open_storage
from core.search.samplers import make_pruner, make_sampler
from core.search.spec import StudySpec
from core.search.study_source import study_source
from core.search.suggest import enqueue_first_trials, enqueue_grid
from core.search.validation import stored_spec
from core.settings import Settings
from core.training.objective import RunContext, TrialError, make_objective, upload_study_previews
from core.training.progress import ProgressHook
from core.training.study_data import preview_stems


def create_or_load_study(spec: StudySpec, storage: optuna.storages.BaseStorage, worker_index: int = 0) -> optuna.Study:
    """The spec's Optuna study; an existing study of that name must have been made from an equal spec."""
    study = optuna.create_study(
        storage=storage,
        study_name=spec.name,
        directions=spec.directions,
        sampler=make_sampler(spec, worker_index),
        pruner=make_pruner(spec),
        load_if_exists=True,
    )
    stored = stored_spec(study)
    if stored is None:
        study.set_user_attr(StudyAttr.SPEC, spec.to_dict())
    elif _comparable(stored.to_dict()) != _comparable(spec.to_dict()):
        raise SegTuneError(
            f"a study named {spec.name!r} already exists with a different spec; pick another name, "
            "or resume it with its own spec"
        )
    return study


def _comparable(spec_dict: dict[str, Any]) -> dict[str, Any]:
    # The budget may grow (extend) and the description may change without making another study.
    return {key: value for key, value in spec_dict.items() if key not in ("budget", "description")}


def load_study(name: str, storage: optuna.storages.BaseStorage) -> tuple[optuna.Study, StudySpec]:
    """Open an existing study and its spec by name (the error lists the studies there are)."""
    names = optuna.get_all_study_names(storage)
    if name not in names:
        raise SegTuneError(f"no study named {name!r}; studies: {sorted(names) or 'none yet'}")
    study = optuna.load_study(study_name=name, storage=storage)
    spec = stored_spec(study)
    if spec is None:
        raise SegTuneError(
            f"study {name!r} was not made by SegTune (it has no spec); open it with optuna-dashboard instead"
        )
    # Loaded without the spec's sampler and pruner: enough to read and export, and run_study re-opens
    # the study through create_or_load_study when it adds trials.
    return study, spec


def prepare_study(
    spec: StudySpec,
    settings: Settings,
    *,
    storage: optuna.storages.BaseStorage | None = None,
    artifact_store: Any = None,
) -> optuna.Study:
    """Create the study (idempotent), freeze its split, store preview inputs, queue grid points.

    The dataset and split are read before a new study is created, and a study this call created is
    deleted again if preparing it fails: a bad submit leaves no half-made study blocking the name.
    """
    storage = storage or open_storage(settings.db_url, settings.heartbeats)
    artifact_store = artifact_store or open_artifact_store(settings)
    existed = spec.name in optuna.get_all_study_names(storage)
    source = None if existed else study_source(spec, settings)  # raises for a missing dataset, a bad split
    study = create_or_load_study(spec, storage)
    try:
        _prepare(study, spec, settings, artifact_store, source)
    except BaseException:
        if not existed:
            with contextlib.suppress(Exception):
                optuna.delete_study(study_name=spec.name, storage=storage)
        raise
    return study


def _prepare(study: optuna.Study, spec: StudySpec, settings: Settings, artifact_store: Any, source: Any) -> None:
    if StudyAttr.PREVIEW_ARTIFACT not in study.user_attrs:
        source = source or study_source(spec, settings)
        split = source.split
        preview = source.tensors(preview_stems(split, spec.preview_count), spec.image_size, torch.device("cpu"))
        context = RunContext(settings=settings, artifact_store=artifact_store, device="cpu")
        study.set_user_attr(StudyAttr.DATASET, spec.dataset)
        study.set_user_attr(StudyAttr.SPLIT_HASH, split.hash)
        study.set_user_attr(
            StudyAttr.SPLIT_SIZES, {"train": len(split.train), "val": len(split.val), "test": len(split.test)}
        )
        study.set_user_attr(StudyAttr.PREVIEW_STEMS, list(preview.stems))
        if not source.manifest.is_classification:  # a new study's trials are scored at the original resolution
            study.set_user_attr(StudyAttr.EVALUATION, NATIVE_EVALUATION)
        if source.manifest.is_classification:
            study.set_user_attr(StudyAttr.CLASSES, list(source.manifest.classes))
        study.set_user_attr(StudyAttr.PREVIEW_ARTIFACT, upload_study_previews(study, preview, context))
    if StudyAttr.BASELINES not in study.user_attrs:  # also added to studies made before baselines existed
        study.set_user_attr(StudyAttr.BASELINES, study_baselines(spec, settings))
    enqueue_first_trials(study, spec)  # before the grid: the plain default runs first
    if spec.sampler == "grid":
        enqueue_grid(study, spec)


def study_baselines(spec: StudySpec, settings: Settings) -> dict[str, Any]:
    """The constant predictors scored on the study's validation images (each fold's, averaged, with
    cross-validation) and test images, at the study's image size (core/metrics/baselines.py).
    A classification study's labels come from the manifest: no image is decoded for them."""
    cpu = torch.device("cpu")
    folds: list[int | None] = list(range(spec.cv.folds)) if spec.cv else [None]
    sources = [study_source(spec, settings, fold) for fold in folds]
    first = sources[0]
    manifest, num_classes = first.manifest, first.manifest.num_classes
    mode = Mode.MULTICLASS if manifest.is_classification else task_mode(num_classes)

    def targets(source: Any, stems: Any) -> torch.Tensor:
        if manifest.is_classification:
            return torch.tensor([manifest.labels[stem] for stem in stems], dtype=torch.long)
        return source.tensors(stems, spec.image_size, cpu).targets

    if manifest.is_classification:
        classes = majority_label(targets(first, first.split.train), num_classes)
    else:
        classes = constant_classes(mode, num_classes, targets(first, first.split.train) if mode != "binary" else None)
    splits = {"val": [targets(source, source.split.val) for source in sources]}
    if first.split.test:
        splits["test"] = [targets(first, first.split.test)]
    return score_baselines(splits, classes, mode, num_classes, Task(manifest.task))


def run_study(
    spec: StudySpec,
    settings: Settings,
    *,
    n_trials: int | None = None,
    timeout_s: float | None = None,
    device: str = "auto",
    show_progress: bool = False,
    storage: optuna.storages.BaseStorage | None = None,
    artifact_store: Any = None,
    on_progress: ProgressHook | None = None,
) -> optuna.Study:
    """Run the study in this process until its budget (or ``n_trials`` more trials) is used up."""
    storage = storage or open_storage(settings.db_url, settings.heartbeats)
    artifact_store = artifact_store or open_artifact_store(settings)
    study = prepare_study(spec, settings, storage=storage, artifact_store=artifact_store)
    remaining = n_trials if n_trials is not None else remaining_budget(study, spec)
    if remaining is not None and remaining <= 0:
        return study
    context = RunContext(settings=settings, artifact_store=artifact_store, device=device, on_progress=on_progress)
    # Stale trials (a killed run's) are failed here, with their error, before Optuna's own check at
    # the start of each trial, which fails them without one.
    fail_stale_trials(study, storage, settings.heartbeats)
    study.optimize(
        make_objective(spec, context),
        n_trials=remaining,
        timeout=timeout_s if timeout_s is not None else spec.budget.timeout_s,
        catch=(TrialError,),
        show_progress_bar=show_progress,
        gc_after_trial=True,
        callbacks=[lambda done, _trial: fail_stale_trials(done, storage, settings.heartbeats)],
    )
    return study
