"""One Optuna trial: params -> model, loss, optimizer -> train -> score -> store results.

``make_objective(spec, context)`` returns the callable that ``study.optimize`` (CLI) or a worker
runs. Everything a dashboard shows about a trial is written here, as user attrs and artifacts
(see the "results contract" in README's architecture section).
"""

from __future__ import annotations

import dataclasses
import functools
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import torch
from optuna.artifacts import upload_artifact

from core.contract import ArtifactKind, Mode, TrialAttr
from core.data.manifest import DatasetManifest, dataset_path, load_manifest
from core.data.splits import Split, frozen_split
from core.data.tensors import TensorSet, load_tensor_set
from core.errors import SegTuneError
from core.metrics.catalogue import epoch_objectives
from core.modeling.architectures import config_from_params, input_size_problem
from core.modeling.build import build_model, count_parameters, weights_size_mb
from core.modeling.bundle import BundleConfig, save_bundle
from core.modeling.config import ModelConfig, task_mode
from core.modeling.losses import build_loss
from core.search.spec import StudySpec
from core.search.suggest import suggest_params
from core.settings import Settings
from core.training.loop import EpochRecord, TrainConfig, TrainResult, evaluate, measure_throughput, predict, prepare_model, resolve_device, train_model
from core.training.progress import ProgressHook, ProgressWriter


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


# --- the study's data, loaded once per process --------------------------------------------------


@dataclass
class StudyData:
    manifest: DatasetManifest
    split: Split
    channels: int
    train: TensorSet
    val: TensorSet
    test: TensorSet | None
    preview: TensorSet

    @property
    def num_classes(self) -> int:
        return self.manifest.num_classes

    @property
    def mode(self) -> Mode:
        return task_mode(self.num_classes)


def preview_stems(split: Split, count: int) -> list[str]:
    """A fixed subset of validation images whose predictions every trial stores."""
    return sorted(split.val)[:count]


@dataclass(frozen=True)
class StudySource:
    """Where a study's images come from: the dataset, its frozen split, the channels to feed."""

    manifest: DatasetManifest
    folder: Path
    split: Split
    channels: int

    def tensors(self, stems: Sequence[str], image_size: int, device: torch.device) -> TensorSet:
        return load_tensor_set(self.folder, self.manifest, list(stems), image_size, self.channels).to(device)


def study_source(spec: StudySpec, settings: Settings) -> StudySource:
    """Read the manifest and freeze (or re-read) the split; decodes no image."""
    manifest = load_manifest(settings.datasets_dir, spec.dataset)
    folder = dataset_path(settings.datasets_dir, spec.dataset)
    split = frozen_split(folder, manifest.stems, spec.split)
    return StudySource(manifest, folder, split, spec.channels or manifest.channels)


def load_study_data(spec: StudySpec, settings: Settings, device: torch.device) -> StudyData:
    """Decode the study's dataset once and put its splits on ``device``."""
    source = study_source(spec, settings)
    split, size = source.split, spec.image_size
    test = source.tensors(split.test, size, device) if split.test else None
    preview = source.tensors(preview_stems(split, spec.preview_count), size, device)
    return StudyData(source.manifest, split, source.channels, source.tensors(split.train, size, device), source.tensors(split.val, size, device), test, preview)


# --- the objective ------------------------------------------------------------------------------


def make_objective(spec: StudySpec, context: RunContext) -> Callable[[optuna.Trial], float | tuple[float, ...]]:
    """The Optuna objective for ``spec``; data is loaded on the first trial and reused after."""
    device = resolve_device(context.device)

    @functools.cache
    def study_data() -> StudyData:
        return load_study_data(spec, context.settings, device)

    def objective(trial: optuna.Trial) -> float | tuple[float, ...]:
        try:
            return _run_trial(trial, spec, study_data(), context, device)
        except (optuna.TrialPruned, TrialCancelled):
            raise
        except Exception as exc:
            reason = str(exc) if isinstance(exc, SegTuneError) else f"{type(exc).__name__}: {exc}"
            trial.set_user_attr(TrialAttr.ERROR, reason)
            raise TrialError(reason) from exc

    return objective


def _run_trial(trial: optuna.Trial, spec: StudySpec, data: StudyData, context: RunContext, device: torch.device) -> float | tuple[float, ...]:
    params = suggest_params(trial, spec)
    model_config = config_from_params(params, data.channels, data.num_classes)
    size_problem = input_size_problem(model_config, spec.image_size)
    if size_problem:
        raise TrialError(size_problem)
    trial.set_user_attr(TrialAttr.PARAMS_RESOLVED, params)
    trial.set_user_attr(TrialAttr.MODEL_CONFIG, model_config.to_dict())
    trial.set_user_attr(TrialAttr.DEVICE, str(device))
    trial.set_user_attr(TrialAttr.EPOCHS_PLANNED, params["epochs"])

    train_config = TrainConfig.from_params(params, patience=spec.patience, seed=spec.seed + trial.number, **_selection(spec))
    model, result, train_config = _train_with_oom_retry(trial, spec, data, context, model_config, train_config, device)
    model.load_state_dict(result.best_state)

    summary = _summarise(model, data, result, train_config)
    for key, value in summary.items():
        trial.set_user_attr(key, value)
    bundle = BundleConfig(
        model=model_config.to_dict(),
        image_size=spec.image_size,
        channels=data.channels,
        classes=tuple(data.manifest.classes),
        source={"study": spec.name, "trial": trial.number, "dataset": spec.dataset, "split_hash": data.split.hash, "val_metrics": result.val_metrics},
    )
    trial.set_user_attr(TrialAttr.ARTIFACTS, _store_artifacts(trial, model, bundle, data, train_config, context))
    return _objective_values(spec, summary)


def _selection(spec: StudySpec) -> dict[str, Any]:
    """Keep the epoch that is best for the first objective when it is known per epoch, else val loss."""
    objective = spec.objectives[0]
    if objective.metric in epoch_objectives():
        return {"select_metric": objective.metric.removeprefix("val_"), "select_maximize": objective.direction == "maximize"}
    return {"select_metric": "loss", "select_maximize": False}


def _train_with_oom_retry(
    trial: optuna.Trial,
    spec: StudySpec,
    data: StudyData,
    context: RunContext,
    model_config: ModelConfig,
    config: TrainConfig,
    device: torch.device,
) -> tuple[torch.nn.Module, TrainResult, TrainConfig]:
    """Train; on CUDA out-of-memory retry once with half the batch, then fail with a clear reason.

    Returns the config that worked, so evaluation after training uses the batch size that fits.
    """
    for attempt in range(2):
        model = prepare_model(build_model(model_config), device)
        try:
            progress = ProgressWriter(trial, config.epochs, hook=context.on_progress)
            result = train_model(model, data.train, data.val, config, mode=data.mode, num_classes=data.num_classes, on_epoch=_epoch_reporter(trial, spec, context), on_batch=progress)
            return model, result, config
        except torch.cuda.OutOfMemoryError:
            del model
            torch.cuda.empty_cache()
            if attempt == 1 or config.batch_size == 1:
                raise TrialError(f"CUDA out of memory at batch size {config.batch_size}; try a smaller model, batch or image size") from None
            config = dataclasses.replace(config, batch_size=config.batch_size // 2)
            trial.set_user_attr(TrialAttr.OOM_RETRY_BATCH_SIZE, config.batch_size)
    raise AssertionError("unreachable")


def _epoch_reporter(trial: optuna.Trial, spec: StudySpec, context: RunContext) -> Callable[[EpochRecord], None]:
    history: list[dict[str, float]] = []
    metric = spec.objectives[0].metric
    reports = not spec.is_multi_objective and metric in epoch_objectives()

    def on_epoch(record: EpochRecord) -> None:
        history.append(record.to_dict())
        trial.set_user_attr(TrialAttr.HISTORY, history)  # written every epoch: live learning curves
        trial.set_user_attr(TrialAttr.EPOCH, record.epoch)
        if context.stop_requested():
            trial.set_user_attr(TrialAttr.CANCELLED, True)
            raise TrialCancelled(f"trial {trial.number} cancelled after epoch {record.epoch}")
        if reports:
            trial.report(record.to_dict()[metric], record.epoch)
            if trial.should_prune():
                raise optuna.TrialPruned(f"pruned after epoch {record.epoch}")

    return on_epoch


def _summarise(model: torch.nn.Module, data: StudyData, result: TrainResult, config: TrainConfig) -> dict[str, Any]:
    loss_fn = build_loss(config.loss, data.mode).to(data.val.images.device)
    test_metrics = {}
    if data.test is not None:
        test_metrics = evaluate(model, data.test, config.batch_size, loss_fn=loss_fn, mode=data.mode, num_classes=data.num_classes)
    return {
        TrialAttr.HISTORY: [record.to_dict() for record in result.history],
        TrialAttr.BEST_EPOCH: result.best_epoch,
        TrialAttr.EPOCHS_RUN: len(result.history),
        TrialAttr.STOPPED_EARLY: result.stopped_early,
        TrialAttr.TRAIN_TIME_S: result.train_time_s,
        TrialAttr.VAL_METRICS: result.val_metrics,
        TrialAttr.TEST_METRICS: test_metrics,  # shown, never used to select
        TrialAttr.IMAGES_PER_S: measure_throughput(model, data.val, config.batch_size),
        TrialAttr.N_PARAMS: count_parameters(model),
        TrialAttr.WEIGHTS_MB: weights_size_mb(model),
    }


def _objective_values(spec: StudySpec, summary: dict[str, Any]) -> float | tuple[float, ...]:
    values = []
    for objective in spec.objectives:
        if objective.metric.startswith("val_"):
            values.append(float(summary[TrialAttr.VAL_METRICS][objective.metric.removeprefix("val_")]))
        else:
            values.append(float(summary[objective.metric]))
    return values[0] if len(values) == 1 else tuple(values)


def _store_artifacts(
    trial: optuna.Trial, model: torch.nn.Module, bundle: BundleConfig, data: StudyData, config: TrainConfig, context: RunContext
) -> dict[str, str]:
    """Best-epoch weights + config (a loadable bundle) and the preview predictions."""
    predictions = predict(model, data.preview, config.batch_size, mode=data.mode)
    with tempfile.TemporaryDirectory() as tmp:
        folder = save_bundle(model.cpu(), bundle, Path(tmp) / "bundle")
        previews = Path(tmp) / "previews.npz"
        np.savez_compressed(previews, stems=np.array(data.preview.stems), predictions=predictions)
        upload = _uploader(trial, context)
        return {
            ArtifactKind.WEIGHTS: upload(folder / "model.safetensors"),
            ArtifactKind.CONFIG: upload(folder / "config.json"),
            ArtifactKind.PREVIEWS: upload(previews),
        }


def _uploader(study_or_trial: Any, context: RunContext) -> Callable[[Path], str]:
    def upload(path: Path) -> str:
        return upload_artifact(artifact_store=context.artifact_store, file_path=str(path), study_or_trial=study_or_trial)

    return upload


def upload_study_previews(study: optuna.Study, preview: TensorSet, context: RunContext) -> str:
    """Store the preview images and their ground truth once per study (trials store predictions)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "preview_inputs.npz"
        np.savez_compressed(path, stems=np.array(preview.stems), images=preview.images.cpu().numpy(), masks=preview.masks.cpu().numpy())
        return _uploader(study, context)(path)
