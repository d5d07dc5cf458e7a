"""Hand-made studies that follow the engine's contract (user attrs, preview artifacts), so the read
layer behind the results pages can be tested on 1,000-trial studies that cost nothing to build."""

from __future__ import annotations

import io
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import optuna
from optuna.artifacts import FileSystemArtifactStore, upload_artifact
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState, create_trial

from core.contract import ArtifactKind, StudyAttr, TrialAttr
from core.modeling.bundle import SEGTUNE_FILE, WEIGHTS_FILE, BundleConfig
from core.modeling.config import ModelConfig

SIZE = 16  # preview side: the read layer never trains, so tiny arrays suffice
STEMS = ("img_a", "img_b", "img_c", "img_d")
DISTRIBUTIONS = {
    "lr": FloatDistribution(1e-4, 1e-1, log=True),
    "optimizer": CategoricalDistribution(["adam", "sgd", "rmsprop"]),
    "unet_start_filters": IntDistribution(4, 16, step=4),
}


def _upload(study: optuna.Study, store: FileSystemArtifactStore, name: str, data: bytes) -> str:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / name
        path.write_bytes(data)
        return upload_artifact(artifact_store=store, file_path=str(path), study_or_trial=study)


def _npz(**arrays: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    return buffer.getvalue()


def ground_truth() -> np.ndarray:
    """Four masks: a square in each, growing; image d is empty."""
    masks = np.zeros((len(STEMS), SIZE, SIZE), np.uint8)
    for i, side in enumerate((8, 6, 4)):
        masks[i, :side, :side] = 1
    return masks


def metrics(dice: float) -> dict[str, float]:
    return {
        "dice": dice,
        "iou": dice / (2 - dice),
        "miou": dice * 0.9,
        "pixel_accuracy": 0.9,
        "precision": dice,
        "recall": dice,
        "f1": dice,
        "specificity": 0.95,
        "loss": 1 - dice,
    }


def history(epochs: int, final_dice: float) -> list[dict[str, Any]]:
    return [
        {
            "epoch": e,
            "train_loss": 1.0 / e,
            "val_loss": 1.1 / e,
            "val_dice": final_dice * e / epochs,
            "val_iou": final_dice * e / epochs / 2,
            "val_miou": 0.4,
            "val_pixel_accuracy": 0.8 + e / 100,
            "val_precision": 0.5,
            "val_recall": 0.5,
            "val_f1": 0.5,
            "val_specificity": 0.9,
            "lr": 0.01 / e,
            "epoch_time_s": 0.1,
        }
        for e in range(1, epochs + 1)
    ]


def build_study(
    storage: optuna.storages.BaseStorage,
    store: FileSystemArtifactStore,
    name: str = "hand-made",
    n_trials: int = 6,
    *,
    directions: tuple[str, ...] = ("maximize",),
    previews: bool = True,
    folds: int = 0,
) -> optuna.Study:
    """A study shaped like the engine's: complete / pruned / failed trials with all contract attrs.

    Complete trial k predicts the ground truth shifted by k pixels (k = number % 3), so its Dice
    falls with k; the spec, preview inputs, weights and configs are stored as artifacts. With
    ``folds``, complete trials are cross-validated: fold f's curve ends 0.01 * f below the stored one.
    """
    study = optuna.create_study(storage=storage, study_name=name, directions=list(directions))
    spec = {
        "name": name,
        "dataset": "demo-cells",
        "image_size": 32,  # a valid spec, as the engine stores (the smallest size allowed; previews stay SIZE px)
        "objectives": [{"metric": m, "direction": d} for m, d in zip(("val_dice", "n_params"), directions)],
        "split": {
            "train": 0.7,
            "val": 0.16,
            "test": 0.14,
            "k_folds": None,
            "fold": 0,
            "seed": 3,
            "group_pattern": None,
        },
    }
    study.set_user_attr(StudyAttr.SPEC, spec)
    study.set_user_attr(StudyAttr.DATASET, "demo-cells")
    study.set_user_attr(StudyAttr.SPLIT_HASH, "abc123")
    masks = ground_truth()
    if previews:
        images = np.repeat(masks[:, None] * 200, 3, axis=1).astype(np.uint8)
        study.set_user_attr(
            StudyAttr.PREVIEW_ARTIFACT,
            _upload(study, store, "inputs.npz", _npz(stems=np.array(STEMS), images=images, masks=masks)),
        )
    weights = _upload(study, store, WEIGHTS_FILE, b"fake-safetensors")
    model = ModelConfig("ClassicUNet", in_channels=3, num_classes=2).to_dict()
    config = _upload(
        study,
        store,
        SEGTUNE_FILE,
        BundleConfig(model=model, image_size=SIZE, channels=3, classes=("background", "cell")).to_json().encode(),
    )
    trials = [_make_trial(number, study, store, masks, weights, config, previews, folds) for number in range(n_trials)]
    study.add_trials(trials)
    return study


def _make_trial(
    number: int,
    study: optuna.Study,
    store: FileSystemArtifactStore,
    masks: np.ndarray,
    weights: str,
    config: str,
    previews: bool,
    folds: int = 0,
) -> optuna.trial.FrozenTrial:
    params = {
        "lr": 10 ** -(1 + number % 3),
        "optimizer": ["adam", "sgd", "rmsprop"][number % 3],
        "unet_start_filters": 4 + 4 * (number % 4),
    }
    state = [TrialState.COMPLETE, TrialState.COMPLETE, TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL][
        number % 5
    ]
    shift = number % 3
    dice = 0.9 - 0.2 * shift
    attrs: dict[str, Any] = {TrialAttr.HISTORY: history(4 if state == TrialState.COMPLETE else 2, dice)}
    values = None
    if state == TrialState.COMPLETE:
        artifacts = {ArtifactKind.WEIGHTS: weights, ArtifactKind.CONFIG: config}
        if previews:
            # Stored in reverse order: the read layer must align predictions by stem.
            predictions = np.roll(masks, shift, axis=2)[::-1]
            artifacts[ArtifactKind.PREVIEWS] = _upload(
                study, store, "previews.npz", _npz(stems=np.array(STEMS[::-1]), predictions=predictions)
            )
        attrs.update(
            {
                TrialAttr.VAL_METRICS: metrics(dice),
                TrialAttr.TEST_METRICS: metrics(dice - 0.05),
                TrialAttr.EPOCHS_RUN: 4,
                TrialAttr.BEST_EPOCH: 4,
                TrialAttr.STOPPED_EARLY: False,
                TrialAttr.IMAGES_PER_S: 100.0 + number,
                TrialAttr.N_PARAMS: 1000 * (1 + shift),
                TrialAttr.WEIGHTS_MB: 0.5,
                TrialAttr.TRAIN_TIME_S: 3.0,
                TrialAttr.DEVICE: "cpu",
                TrialAttr.PARAMS_RESOLVED: {**params, "epochs": 4},
                TrialAttr.ARTIFACTS: artifacts,
                TrialAttr.MODEL_CONFIG: {"architecture": "ClassicUNet", "in_channels": 3, "num_classes": 1},
            }
        )
        if folds:
            attrs.update(
                {
                    TrialAttr.FOLD_HISTORIES: [history(4, dice - 0.01 * fold) for fold in range(folds)],
                    TrialAttr.FOLD_METRICS: [metrics(dice - 0.01 * fold) for fold in range(folds)],
                    TrialAttr.FOLD_TEST_METRICS: [metrics(dice - 0.05 - 0.01 * fold) for fold in range(folds)],
                }
            )
        values = [dice, float(attrs[TrialAttr.N_PARAMS])][: len(study.directions)]
    elif state == TrialState.FAIL:
        attrs[TrialAttr.ERROR] = "CUDA out of memory twice"
    return create_trial(
        state=state,
        values=values,
        params=params,
        distributions=DISTRIBUTIONS,
        user_attrs=attrs,
        intermediate_values={e: dice * e / 4 for e in range(1, 3)},
    )
