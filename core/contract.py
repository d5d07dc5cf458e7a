"""The results contract: every name SegTune writes into Optuna storage and the pages read back.

Optuna keeps a trial's and a study's extra data as user attrs keyed by strings; these names are
the contract between the objective (writer), the workers, and the results pages, exports and
``optuna-dashboard`` (readers). Existing workspaces hold these exact strings: never rename a value.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import TYPE_CHECKING, Any, TypedDict

if TYPE_CHECKING:
    import optuna


class Task(StrEnum):
    """What a study's models learn: a mask per image, or one label per image."""

    SEGMENTATION = "segmentation"  # images + masks; the default (specs and manifests written before tasks existed)
    CLASSIFICATION = "classification"  # images + one class label each


class Mode(StrEnum):
    """How a model's output is read: 2 classes (background + foreground) or more."""

    BINARY = "binary"  # 1 logit channel, sigmoid
    MULTICLASS = "multiclass"  # one channel per class, softmax


class TrialAttr(StrEnum):
    """User attrs of a trial."""

    HISTORY = "history"  # list[EpochRow], written every epoch (live learning curves)
    EPOCH = "epoch"  # last finished epoch (live progress)
    PROGRESS = "progress"  # {"epoch", "epochs", "batch", "batches"} within the running epoch, written every few seconds
    EPOCHS_PLANNED = "epochs_planned"
    PARAMS_RESOLVED = "params_resolved"  # every active hyperparameter, fixed ones included
    MODEL_CONFIG = "model_config"  # ModelConfig.to_dict()
    DEVICE = "device"
    WORKER = "worker"
    JOB_ID = "job_id"
    VAL_METRICS = "val_metrics"  # best epoch's validation metrics (metric name -> value)
    TEST_METRICS = "test_metrics"  # shown, never used to select
    BEST_EPOCH = "best_epoch"
    EPOCHS_RUN = "epochs_run"
    STOPPED_EARLY = "stopped_early"
    TRAIN_TIME_S = "train_time_s"
    IMAGES_PER_S = "images_per_s"
    N_PARAMS = "n_params"
    WEIGHTS_MB = "weights_mb"
    ARTIFACTS = "artifacts"  # TrialArtifacts
    ERROR = "error"  # why a failed trial failed
    CANCELLED = "cancelled"  # True when a cancel stopped it
    OOM_RETRY_BATCH_SIZE = "oom_retry_batch_size"
    COMPILE_WARNING = "compile_warning"  # why torch.compile fell back to eager (the trial still ran, eager)
    VAL_FOREGROUND_FRACTION = "val_foreground_fraction"  # share of validation pixels predicted as foreground
    FLAGS = "flags"  # list[TrialFlag]: why this trial should not be trusted (empty when none)
    VAL_IMAGE_COUNTS = "val_image_counts"  # per image [[tp, fp, fn] per foreground class]: bootstrap CIs
    TEST_IMAGE_COUNTS = "test_image_counts"
    # segmentation scored natively: per image {name, height, width, dice, iou, nsd, hd95} (out of fold with CV)
    VAL_CASES = "val_cases"
    TEST_CASES = "test_cases"  # the same on the test split, fold 0's model
    FOLD_METRICS = "fold_metrics"  # cross-validation: one dict of val metrics per fold
    FOLD_TEST_METRICS = "fold_test_metrics"  # cross-validation: each fold model's test metrics
    ENSEMBLE_TEST_METRICS = (
        "ensemble_test_metrics"  # cross-validated segmentation: the fold models' averaged probabilities on test
    )
    VAL_METRICS_STD = "val_metrics_std"  # cross-validation: SD over folds beside val_metrics (the means)
    FOLD_HISTORIES = "fold_histories"  # cross-validation: each fold's list[EpochRow]
    FOLD = "fold"  # cross-validation: the fold being trained now (live progress)
    REUSED_FROM = "reused_from"  # number of the finished trial with the same configuration whose result was reused
    # classification: validation counts, rows = true class, columns = predicted (summed over folds)
    CONFUSION_MATRIX = "confusion_matrix"


class StudyAttr(StrEnum):
    """User attrs of a study."""

    SPEC = "spec"  # StudySpec.to_dict()
    DATASET = "dataset"
    SPLIT_HASH = "split_hash"
    SPLIT_SIZES = "split_sizes"
    PREVIEW_STEMS = "preview_stems"
    PREVIEW_ARTIFACT = "preview_artifact"  # npz of the preview images and their ground truth
    GRID_ENQUEUED = "grid_enqueued"
    FIRST_TRIALS_ENQUEUED = "first_trials_enqueued"  # the spec's first_trials are queued (once, on the first prepare)
    CLASSES = "classes"  # classification: the dataset's class names, index = label
    BASELINES = "baselines"  # constant predictors scored on val and test: name -> BaselineRecord
    PARENT = "parent"  # {"study", "how": "warm_start" | "narrowed", "top_k", ...}: the earlier study this one reuses
    # how finished trials are scored: {"resolution": "native", "nsd_tolerance", ...}; absent: training size
    EVALUATION = "evaluation"


class TrialFlag(StrEnum):
    """Values of a trial's ``flags`` attr: reasons a finished trial's score should not be trusted."""

    CONSTANT_PREDICTION = "constant_prediction"  # (nearly) one class everywhere on validation
    NOT_BETTER_THAN_BASELINE = "not_better_than_baseline"  # does not beat the best constant predictor


class ArtifactKind(StrEnum):
    """Keys of a trial's ``artifacts`` attr."""

    WEIGHTS = "weights"
    CONFIG = "config"
    PREVIEWS = "previews"  # segmentation: the preview images' predicted masks
    # classification: every validation image's label, prediction and probabilities (LabelPredictions npz)
    PREDICTIONS = "predictions"
    FOLD_WEIGHTS = (
        "fold_weights"  # cross-validated segmentation: every fold model's weights, fold 0 first (a list of ids)
    )


class TrialArtifacts(TypedDict, total=False):
    weights: str  # artifact id of model.safetensors
    config: str  # artifact id of config.json
    previews: str  # artifact id of the preview predictions (npz)
    predictions: str  # artifact id of the validation predictions (npz; classification)


EpochRow = dict[str, Any]  # one epoch of "history": epoch, lr, time_s, train_<metric>, val_<metric>


def spec_attr(study: optuna.Study) -> Mapping[str, Any]:
    """The spec a study stores, as raw JSON (empty for a study SegTune did not make). Read it through
    ``core.search.validation.stored_spec``, which validates it into a StudySpec; this raw form is for
    the layers below search (results/), which read a field or two of it."""
    spec = study.user_attrs.get(StudyAttr.SPEC)
    return spec if isinstance(spec, Mapping) else {}


def variants_attr(trial_number: int) -> str:
    """The study user attr holding a trial's compressed variants (a list of VariantRecord dicts)."""
    return f"variants:{trial_number}"


# Folds are numbered from 0 everywhere a user or a stored value sees one: the spec's ``split.fold``,
# the ``fold`` trial attr, curve labels, messages. A cross-validated trial trains fold 0 first and
# keeps fold 0's model: its weights, preview masks, ``history``, size and throughput are fold 0's,
# while its metrics are the fold means.
STORED_FOLD = 0


def fold_name(fold: int) -> str:
    """A fold as users read it, counted as ``split.fold`` and the ``fold`` trial attr count: ``fold 0`` first."""
    return f"fold {fold}"
