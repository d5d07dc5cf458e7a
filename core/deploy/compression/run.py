"""One call that derives, measures and stores a variant of a trial (for the CLI and the dashboard)."""

from __future__ import annotations

import dataclasses
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from core.contract import Task
from core.deploy.compression.config import CompressionConfig, CompressionData, ProgressCallback, StepCallback
from core.deploy.compression.measure import VariantReport, compare_variants
from core.deploy.compression.methods import compress
from core.deploy.compression.variants import store_variant
from core.modeling.bundle import BundleConfig, load_bundle, trial_bundle
from core.modeling.classification_losses import CLASSIFICATION_LOSSES, DEFAULT_CLASSIFICATION_LOSS
from core.results.trials import get_trial
from core.training.study_data import load_study_data

if TYPE_CHECKING:
    import optuna

    from core.search.spec import StudySpec
    from core.settings import Settings


def study_compression_data(spec: StudySpec, settings: Settings) -> CompressionData:
    """The study's frozen splits, decoded on the CPU (int8 kernels and latency figures are CPU ones)."""
    data = load_study_data(spec, settings, torch.device("cpu"))
    return CompressionData(data.train, data.val, data.test, data.mode, data.num_classes)


def _fine_tune_loss(config: CompressionConfig, bundle: BundleConfig) -> CompressionConfig:
    """A classifier fine-tunes on a classification loss: a segmentation loss name (the form's default) becomes
    cross-entropy."""
    if bundle.task == Task.CLASSIFICATION and config.loss not in CLASSIFICATION_LOSSES:
        return dataclasses.replace(config, loss=DEFAULT_CLASSIFICATION_LOSS)
    return config


def _step_reporter(config: CompressionConfig, progress: ProgressCallback, start: float, end: float) -> StepCallback:
    """Fine-tune / calibration steps as progress between ``start`` and ``end``, ~50 reports at most."""
    doing = "calibrating on training batch" if config.method == "ptq" else "fine-tuning step"

    def report(done: int, total: int) -> None:
        if done == total or done % max(1, total // 50) == 0:
            progress(start + (end - start) * done / max(1, total), f"{config.label}: {doing} {done}/{total}")

    return report


def compress_trial(
    study: optuna.Study,
    trial_number: int,
    config: CompressionConfig,
    data: CompressionData,
    artifact_store: Any,
    progress: ProgressCallback | None = None,
) -> tuple[list[VariantReport], dict[str, Any]]:
    """Derive, measure and store one variant of a trial: ([original, variant] reports, stored record).

    ``progress(fraction, message)`` hears each stage (loading, compressing step by step, measuring,
    storing), with fractions rising from 0 to 0.95; the caller says when it is done.
    """
    report = progress or (lambda fraction, message: None)
    report(0.0, f"loading trial #{trial_number}'s model")
    with tempfile.TemporaryDirectory() as tmp:
        model, bundle = load_bundle(trial_bundle(get_trial(study, trial_number), artifact_store, Path(tmp) / "bundle"))
    config = _fine_tune_loss(config, bundle)
    report(0.05, f"{config.label}: compressing")
    variant = compress(config, model, data, _step_reporter(config, report, 0.05, 0.7))
    report(0.7, "measuring the original and the variant: val/test scores, size, CPU speed")
    reports = compare_variants(model, [variant], data, batch_size=config.batch_size)
    report(0.95, "storing the variant with the trial")
    sample = data.val.images[:1].float().div(255.0)
    record = store_variant(
        study, trial_number, variant, reports[1], bundle, artifact_store, sample, original=reports[0]
    )
    return reports, record
