"""One Optuna trial: params -> model, loss, optimizer -> train -> score -> store results.

``make_objective(spec, context)`` returns the callable that ``study.optimize`` (CLI) or a worker
runs. Everything a dashboard shows about a trial is written here, as user attrs and artifacts
(see the "results contract" in README's architecture section).

Cross-validation (``spec.cv``): the trial trains one model per fold, one after the other, and
returns the fold means (:mod:`core.training.scoring`). Pruning rule: after epoch ``e`` of fold
``f`` the trial reports, at step ``f * max_epochs + e``, the running fold-averaged curve — the
mean of the finished folds' selected values and the current epoch's value — so trials are
compared at the same fold and epoch on the mean over the folds seen so far. The weights and
preview masks stored are fold 0's (``core.contract.STORED_FOLD``; Compare masks shows fold 0's model).

A classification trial stores, instead of preview masks, every validation image's label,
prediction and class probabilities (``predictions``: out of fold with cross-validation, so every
image outside the test split) and the validation confusion matrix.

A configuration that already finished in the study (same parameters) is not trained again: its
result (values and user attrs) is copied onto the new trial, which records ``reused_from``.
"""

from __future__ import annotations

import dataclasses
import functools
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import torch
from optuna.artifacts import upload_artifact
from optuna.trial import TrialState

from core.contract import STORED_FOLD, ArtifactKind, StudyAttr, Task, TrialAttr, fold_name
from core.data.tensors import ImageSet, resize_mask
from core.errors import SegTuneError
from core.metrics.cases import scored_natively
from core.metrics.catalogue import epoch_objectives, volume_metrics
from core.metrics.label_predictions import LabelPredictions
from core.metrics.volumes import dice_per_volume
from core.modeling.architectures import config_from_params, input_size_problem
from core.modeling.build import build_model
from core.modeling.bundle import SEGTUNE_FILE, WEIGHTS_FILE, BundleConfig, save_bundle, volume_preprocessing
from core.modeling.config import ModelConfig
from core.search.spec import StudySpec
from core.search.suggest import suggest_params
from core.settings import Settings
from core.training.ensemble import FoldEnsemble
from core.training.loop import (
    EpochRecord,
    TrainConfig,
    TrainResult,
    predict,
    prepare_model,
    resolve_device,
    train_model,
)
from core.training.progress import ProgressHook, ProgressWriter
from core.training.scoring import FoldScore, score_fold, summary, validation_predictions
from core.training.study_data import StudyData, load_pool, load_study_data


class TrialCancelled(Exception):
    """The job was cancelled; raised at an epoch boundary so the trial ends cleanly as FAIL."""


class TrialError(SegTuneError):
    """A trial could not run (bad combination, out of memory, ...): the study goes on without it."""


def _never() -> bool:
    return False


@dataclass
class RunContext:
    """What a trial needs from its environment; passed in so tests can use temporary ones."""

    settings: Settings
    artifact_store: Any  # optuna.artifacts store
    device: str = "auto"
    stop_requested: Callable[[], bool] = _never
    on_progress: ProgressHook | None = None  # sees every training batch (the CLI's bar); stored progress is throttled


# --- the objective ------------------------------------------------------------------------------


def make_objective(spec: StudySpec, context: RunContext) -> Callable[[optuna.Trial], float | tuple[float, ...]]:
    """The Optuna objective for ``spec``; data is loaded on the first trial and reused after."""
    device = resolve_device(context.device)

    @functools.cache
    def pool() -> ImageSet:
        return load_pool(spec, context.settings, device)

    @functools.cache
    def single_split() -> StudyData:
        return load_study_data(spec, context.settings, device)

    def study_data(fold: int | None) -> StudyData:
        # folds are index subsets of one decoded pool, made per trial and freed after it
        return single_split() if fold is None else load_study_data(spec, context.settings, device, fold, pool())

    def objective(trial: optuna.Trial) -> float | tuple[float, ...]:
        try:
            return _run_trial(trial, spec, study_data, context, device)
        except (optuna.TrialPruned, TrialCancelled):
            raise
        except Exception as exc:
            reason = str(exc) if isinstance(exc, SegTuneError) else f"{type(exc).__name__}: {exc}"
            trial.set_user_attr(TrialAttr.ERROR, reason)
            raise TrialError(reason) from exc

    return objective


def _run_trial(
    trial: optuna.Trial,
    spec: StudySpec,
    study_data: Callable[[int | None], StudyData],
    context: RunContext,
    device: torch.device,
) -> float | tuple[float, ...]:
    params = suggest_params(trial, spec)
    reused = _reuse_finished(trial, spec)
    if reused is not None:
        return reused
    folds: list[int | None] = list(range(spec.cv.folds)) if spec.cv else [None]
    first_data = study_data(folds[STORED_FOLD])
    _check_volume_objectives(spec, first_data)
    model_config = config_from_params(params, first_data.channels, first_data.num_classes)
    size_problem = input_size_problem(model_config, spec.patch_size or spec.image_size)  # the side the model sees
    if size_problem:
        raise TrialError(size_problem)
    trial.set_user_attr(TrialAttr.PARAMS_RESOLVED, params)
    trial.set_user_attr(TrialAttr.MODEL_CONFIG, model_config.to_dict())
    trial.set_user_attr(TrialAttr.DEVICE, str(device))
    trial.set_user_attr(TrialAttr.EPOCHS_PLANNED, params["epochs"] * len(folds))

    train_config = TrainConfig.from_params(
        params,
        patience=spec.patience,
        seed=spec.seed + trial.number,
        compile_mode=spec.compile,
        patch_size=spec.patch_size,
        **_selection(spec),
    )
    scores: list[FoldScore] = []
    first_model: torch.nn.Module | None = None
    native = scored_natively(trial.study.user_attrs)
    ensemble = (
        FoldEnsemble(first_data.test, train_config.batch_size, train_config.patch_size)
        if spec.cv and not spec.is_classification
        else None
    )
    fold_weights: list[str] = []  # the other folds: the stored fold's weights go with the bundle
    for fold in folds:
        data = first_data if fold == folds[STORED_FOLD] else study_data(fold)
        if fold is not None:
            trial.set_user_attr(TrialAttr.FOLD, fold)
        reporter = _epoch_reporter(trial, spec, context, fold, [score.result for score in scores])
        model, result, train_config = _train_with_oom_retry(
            trial, data, model_config, train_config, device, reporter, context.on_progress
        )
        if result.compile_warning:
            trial.set_user_attr(TrialAttr.COMPILE_WARNING, result.compile_warning)
        model.load_state_dict(result.best_state)
        scores.append(score_fold(model, data, result, train_config, native=native))
        if ensemble is not None:
            ensemble.add(model)
            if fold != folds[STORED_FOLD]:
                fold_weights.append(_upload_weights(trial, model, context))
        if fold == folds[STORED_FOLD]:
            first_model = model
    assert first_model is not None
    if ensemble is not None:
        originals = first_data.original_masks(first_data.test) if native and first_data.test is not None else None
        ensemble_metrics = ensemble.metrics(first_data.mode, first_data.num_classes, originals)
        if ensemble_metrics is not None:
            trial.set_user_attr(TrialAttr.ENSEMBLE_TEST_METRICS, ensemble_metrics)
    attrs = summary(
        spec, scores, first_model, first_data, train_config, trial.study.user_attrs.get(StudyAttr.BASELINES)
    )
    _add_volume_metrics(first_model, first_data, train_config, attrs, native=native)
    for key, value in attrs.items():
        trial.set_user_attr(key, value)
    bundle = BundleConfig(
        model=model_config.to_dict(),
        image_size=spec.image_size,
        channels=first_data.channels,
        classes=tuple(first_data.manifest.classes),
        preprocessing=volume_preprocessing(first_data.manifest),
        source={
            "study": spec.name,
            "trial": trial.number,
            "dataset": spec.dataset,
            "split_hash": first_data.split.hash,
            "val_metrics": scores[STORED_FOLD].result.val_metrics,
        },
    )
    predictions = validation_predictions(scores, first_data.manifest.classes) if spec.is_classification else None
    artifacts = _store_artifacts(trial, first_model, bundle, first_data, train_config, context, predictions)
    if ensemble is not None:
        artifacts[ArtifactKind.FOLD_WEIGHTS] = [artifacts[ArtifactKind.WEIGHTS], *fold_weights]
    trial.set_user_attr(TrialAttr.ARTIFACTS, artifacts)
    return _objective_values(spec, attrs)


def _check_volume_objectives(spec: StudySpec, data: StudyData) -> None:
    wanted = [o.metric for o in spec.objectives if o.metric.removeprefix("val_") in volume_metrics()]
    if wanted and not data.manifest.is_volume:
        raise TrialError(
            f"{wanted[0]} needs a volume dataset (ingested with --volumes); {data.manifest.name!r} holds 2D images"
        )
    if wanted and spec.cv:
        raise TrialError(f"{wanted[0]} is not computed per fold yet: drop 'cv' or optimise val_dice")


def _add_volume_metrics(
    model: torch.nn.Module, data: StudyData, config: TrainConfig, attrs: dict[str, Any], *, native: bool = False
) -> None:
    """Volume datasets: Dice per volume on val and test (slices stacked back), beside the per-slice
    metrics; with ``native``, on the stored slices' own pixels (each mask resized as ``predict``
    does). With cross-validation these are fold 0's model's (the stored model)."""
    if not data.manifest.is_volume or data.manifest.is_classification:  # per-volume Dice needs masks
        return
    groups = data.manifest.groups
    for key, split in ((TrialAttr.VAL_METRICS, data.val), (TrialAttr.TEST_METRICS, data.test)):
        if split is not None and len(split):
            predicted, truths = (
                predict(model, split, config.batch_size, patch_size=config.patch_size),
                split.targets.cpu().numpy(),
            )
            originals = data.original_masks(split) if native else None
            if originals is not None:
                predicted, truths = (
                    [resize_mask(mask, *truth.shape) for mask, truth in zip(predicted, originals)],
                    originals,
                )
            score = dice_per_volume(predicted, truths, split.stems, groups, data.num_classes)
            attrs[key] = {**attrs[key], "dice_per_volume": score}


_NOT_COPIED = {TrialAttr.WORKER, TrialAttr.JOB_ID, TrialAttr.CANCELLED, TrialAttr.ERROR, TrialAttr.REUSED_FROM}


def _reuse_finished(trial: optuna.Trial, spec: StudySpec) -> float | tuple[float, ...] | None:
    """The values of a complete trial with the same parameters, copied onto ``trial``; else None."""
    for other in trial.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        if other.number != trial.number and other.params == trial.params and other.values:
            for key, value in other.user_attrs.items():
                if key not in _NOT_COPIED:
                    trial.set_user_attr(key, value)
            trial.set_user_attr(TrialAttr.REUSED_FROM, other.number)
            return other.values[0] if len(other.values) == 1 else tuple(other.values)
    return None


def _selection(spec: StudySpec) -> dict[str, Any]:
    """Keep the epoch that is best for the first objective when it is known per epoch, else val loss."""
    objective = spec.objectives[0]
    if objective.metric in epoch_objectives(spec.task):
        return {
            "select_metric": objective.metric.removeprefix("val_"),
            "select_maximize": objective.direction == "maximize",
        }
    return {"select_metric": "loss", "select_maximize": False}


def _train_with_oom_retry(
    trial: optuna.Trial,
    data: StudyData,
    model_config: ModelConfig,
    config: TrainConfig,
    device: torch.device,
    on_epoch: Callable[[EpochRecord], None],
    on_progress: ProgressHook | None = None,
) -> tuple[torch.nn.Module, TrainResult, TrainConfig]:
    """Train; on CUDA out-of-memory retry once with half the batch, then fail with a clear reason.

    Returns the config that worked, so evaluation after training uses the batch size that fits.
    """
    for attempt in range(2):
        torch.manual_seed(
            config.seed
        )  # the initial weights too: a trial's seed repeats its run, whatever ran before in the process
        model = prepare_model(build_model(model_config), device)
        try:
            progress = ProgressWriter(trial, config.epochs, hook=on_progress)
            result = train_model(
                model,
                data.train,
                data.val,
                config,
                mode=data.mode,
                num_classes=data.num_classes,
                on_epoch=on_epoch,
                on_batch=progress,
            )
            return model, result, config
        except torch.cuda.OutOfMemoryError:
            del model
            torch.cuda.empty_cache()
            if attempt == 1 or config.batch_size == 1:
                raise TrialError(
                    f"CUDA out of memory at batch size {config.batch_size}; try a smaller model, batch or image size"
                ) from None
            config = dataclasses.replace(config, batch_size=config.batch_size // 2)
            trial.set_user_attr(TrialAttr.OOM_RETRY_BATCH_SIZE, config.batch_size)
    raise AssertionError("unreachable")


def _epoch_reporter(
    trial: optuna.Trial, spec: StudySpec, context: RunContext, fold: int | None, finished: list[TrainResult]
) -> Callable[[EpochRecord], None]:
    """Live history, cancellation and pruning after each epoch (the rule for folds: module docstring)."""
    history: list[dict[str, float]] = []
    metric = spec.objectives[0].metric
    reports = not spec.is_multi_objective and metric in epoch_objectives(spec.task)
    done = [result.val_metrics[metric.removeprefix("val_")] for result in finished] if reports else []
    offset = (fold or 0) * spec.budget.max_epochs

    def on_epoch(record: EpochRecord) -> None:
        history.append(record.to_dict())
        if fold in (None, STORED_FOLD):  # the stored fold (or the only split) is the trial's live learning curve
            trial.set_user_attr(TrialAttr.HISTORY, history)
        trial.set_user_attr(TrialAttr.EPOCH, record.epoch)
        if context.stop_requested():
            trial.set_user_attr(TrialAttr.CANCELLED, True)
            raise TrialCancelled(f"trial {trial.number} cancelled after epoch {record.epoch}")
        if reports:
            value = (sum(done) + record.to_dict()[metric]) / (len(done) + 1)
            trial.report(value, offset + record.epoch)
            if trial.should_prune():
                where = f" of {fold_name(fold)}" if fold is not None else ""
                raise optuna.TrialPruned(f"pruned after epoch {record.epoch}{where}")

    return on_epoch


def _objective_values(spec: StudySpec, summary: dict[str, Any]) -> float | tuple[float, ...]:
    values = []
    for objective in spec.objectives:
        if objective.metric.startswith("val_"):
            values.append(float(summary[TrialAttr.VAL_METRICS][objective.metric.removeprefix("val_")]))
        else:
            values.append(float(summary[objective.metric]))
    return values[0] if len(values) == 1 else tuple(values)


def _store_artifacts(
    trial: optuna.Trial,
    model: torch.nn.Module,
    bundle: BundleConfig,
    data: StudyData,
    config: TrainConfig,
    context: RunContext,
    predictions: LabelPredictions | None = None,
) -> dict[str, Any]:
    """Best-epoch weights + config (a loadable bundle), and the preview masks (segmentation) or the
    validation predictions (classification)."""
    with tempfile.TemporaryDirectory() as tmp:
        if predictions is not None:
            kind, path = ArtifactKind.PREDICTIONS, predictions.save(Path(tmp) / "predictions.npz")
        else:
            kind, path = ArtifactKind.PREVIEWS, Path(tmp) / "previews.npz"
            np.savez_compressed(
                path,
                stems=np.array(data.preview.stems),
                predictions=predict(model, data.preview, config.batch_size, patch_size=config.patch_size),
            )
        folder = save_bundle(model.cpu(), bundle, Path(tmp) / "bundle")
        upload = _uploader(trial, context)
        return {
            ArtifactKind.WEIGHTS: upload(folder / WEIGHTS_FILE),
            ArtifactKind.CONFIG: upload(folder / SEGTUNE_FILE),  # smp's config.json is derived from it on export
            kind: upload(path),
        }


def _upload_weights(trial: optuna.Trial, model: torch.nn.Module, context: RunContext) -> str:
    """One fold model's best-epoch weights as an artifact (the bundle's weights file format)."""
    from safetensors.torch import save_model

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / WEIGHTS_FILE
        save_model(model, str(path))
        return _uploader(trial, context)(path)


def _uploader(study_or_trial: Any, context: RunContext) -> Callable[[Path], str]:
    def upload(path: Path) -> str:
        return upload_artifact(
            artifact_store=context.artifact_store, file_path=str(path), study_or_trial=study_or_trial
        )

    return upload


# The preview artifact's name for the ground truth, per task (core.results.previews reads it back).
PREVIEW_TRUTH_KEYS: dict[Task, str] = {Task.SEGMENTATION: "masks", Task.CLASSIFICATION: "labels"}


def upload_study_previews(study: optuna.Study, preview: ImageSet, context: RunContext) -> str:
    """Store the preview images and their ground truth (masks, or labels) once per study (trials store predictions)."""
    truth = {PREVIEW_TRUTH_KEYS[preview.task]: preview.targets.cpu().numpy()}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "preview_inputs.npz"
        np.savez_compressed(path, stems=np.array(preview.stems), images=preview.images.cpu().numpy(), **truth)
        return _uploader(study, context)(path)
