"""The read layer behind the results pages: trials as tables, curves, preview masks, insights, exports.

Everything here only reads a study (Optuna storage + artifact store) and returns plain values —
DataFrames, numpy arrays, Plotly figures, markdown, bytes — so the pages stay render-only and the
same functions serve the CLI and tests. Nothing is written back.
"""

from __future__ import annotations

import io
import json
import tempfile
import warnings
import zipfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import optuna
import pandas as pd
from optuna.artifacts.exceptions import ArtifactNotFound
from optuna.trial import FrozenTrial, TrialState

from core.bundle import CONFIG_FILE, WEIGHTS_FILE
from core.errors import SegTuneError
from core.options import SMP_ARCHITECTURES

if TYPE_CHECKING:
    import plotly.graph_objects as go
    from optuna.artifacts._protocol import ArtifactStore

METRICS: tuple[str, ...] = (
    "dice", "iou", "miou", "pixel_accuracy", "precision", "recall", "f1", "specificity", "loss",
)
METRIC_LABELS: dict[str, str] = {
    "dice": "Dice", "iou": "IoU", "miou": "mIoU", "pixel_accuracy": "Pixel accuracy",
    "precision": "Precision", "recall": "Recall", "f1": "F1", "specificity": "Specificity",
    "loss": "Loss", "lr": "Learning rate",
}
# Per-trial scalars copied from user attrs into the leaderboard, in display order.
TRIAL_ATTRS: tuple[str, ...] = (
    "epochs_run", "best_epoch", "stopped_early", "train_time_s", "images_per_s", "n_params",
    "weights_mb", "device",
)
CURVE_METRICS: tuple[str, ...] = ("loss", "dice", "iou", "miou", "pixel_accuracy", "lr")
MODEL_CARD_FILE = "MODEL_CARD.md"
BUNDLE_ARTIFACTS: tuple[str, ...] = ("weights", "config")  # what a trial must have stored to be exported


class ResultsError(SegTuneError):
    """A requested result does not exist (no such trial, no stored previews or weights)."""


# --- study facts ----------------------------------------------------------------------------


def objective_names(study: optuna.Study) -> list[str]:
    """The objectives' metric names (from the stored spec), else Optuna's metric names."""
    spec = study.user_attrs.get("spec") or {}
    names = [objective.get("metric", "") for objective in spec.get("objectives", [])]
    if len(names) == len(study.directions) and all(names):
        return names
    if study.metric_names:
        return list(study.metric_names)
    if len(study.directions) == 1:
        return ["objective"]
    return [f"objective_{index + 1}" for index in range(len(study.directions))]


def finished(trials: Sequence[FrozenTrial]) -> list[FrozenTrial]:
    return [trial for trial in trials if trial.state.is_finished()]


def best_numbers(study: optuna.Study, trials: Sequence[FrozenTrial] | None = None) -> list[int]:
    """The best complete trial (one objective) or the Pareto front (several), by trial number."""
    complete = [t for t in (study.get_trials(deepcopy=False) if trials is None else trials) if t.state == TrialState.COMPLETE and t.values]
    if not complete:
        return []
    # Flip maximised objectives so "smaller is better" everywhere.
    signs = np.array([-1.0 if d == optuna.study.StudyDirection.MAXIMIZE else 1.0 for d in study.directions])
    values = np.array([t.values for t in complete], dtype=float) * signs
    if values.shape[1] == 1:
        return [complete[int(np.argmin(values[:, 0]))].number]
    no_worse = (values[:, None, :] <= values[None, :, :]).all(axis=2)
    better = (values[:, None, :] < values[None, :, :]).any(axis=2)
    dominated = (no_worse & better).any(axis=0)  # dominated[j]: some i beats j
    return [trial.number for trial, lost in zip(complete, dominated) if not lost]


def get_trial(study: optuna.Study, number: int) -> FrozenTrial:
    trials = study.get_trials(deepcopy=False)
    for trial in trials:
        if trial.number == number:
            return trial
    raise ResultsError(
        f"study {study.study_name!r} has no trial #{number} (it has {len(trials)} trials, numbered 0..{len(trials) - 1})"
    )


def default_trial(study: optuna.Study) -> FrozenTrial:
    """The trial to export when the user picks none: the best (first of the Pareto front)."""
    best = best_numbers(study)
    if not best:
        raise ResultsError(f"study {study.study_name!r} has no completed trial yet: wait for one to finish")
    return get_trial(study, best[0])


# --- leaderboard ------------------------------------------------------------------------------


def trials_frame(study: optuna.Study) -> pd.DataFrame:
    """One row per trial: number, state, best flag, rank, objectives, params, val/test metrics, costs."""
    trials = study.get_trials(deepcopy=False)
    best = set(best_numbers(study, trials))
    names = objective_names(study)
    rows = [_trial_row(trial, names, trial.number in best) for trial in trials]
    frame = pd.DataFrame(rows, columns=_frame_columns(trials, names))
    frame["rank"] = _ranks(study, frame, names[0])
    return frame.reset_index(drop=True)


def _ranks(study: optuna.Study, frame: pd.DataFrame, first_objective: str) -> pd.Series:
    """1 = best complete trial by the first objective; other states get no rank."""
    values = frame[f"objective_{first_objective}"].where(frame["state"] == "complete").astype(float)
    ascending = study.directions[0] == optuna.study.StudyDirection.MINIMIZE
    return values.rank(method="min", ascending=ascending).astype("Int64")


def _frame_columns(trials: Sequence[FrozenTrial], names: list[str]) -> list[str]:
    params = sorted({f"param_{name}" for trial in trials for name in trial.params})
    return [
        "number", "state", "best", "rank", *[f"objective_{name}" for name in names], *params,
        *[f"val_{metric}" for metric in METRICS], *[f"test_{metric}" for metric in METRICS],
        *TRIAL_ATTRS, "duration_s", "error",
    ]


def _trial_row(trial: FrozenTrial, names: list[str], is_best: bool) -> dict[str, Any]:
    attrs = trial.user_attrs
    row: dict[str, Any] = {"number": trial.number, "state": trial.state.name.lower(), "best": is_best}
    for name, value in zip(names, trial.values or [None] * len(names)):
        row[f"objective_{name}"] = value
    row.update({f"param_{name}": value for name, value in trial.params.items()})
    val_metrics = attrs.get("val_metrics") or _last_epoch_metrics(attrs.get("history") or [])
    row.update({f"val_{m}": val_metrics.get(m) for m in METRICS})
    row.update({f"test_{m}": (attrs.get("test_metrics") or {}).get(m) for m in METRICS})
    row.update({attr: attrs.get(attr) for attr in TRIAL_ATTRS})
    if row["epochs_run"] is None:
        # A running (or hand-made) trial has no summary yet: its progress is the current epoch.
        row["epochs_run"] = len(attrs["history"]) if attrs.get("history") else attrs.get("epoch")
    row["duration_s"] = trial.duration.total_seconds() if trial.duration else None
    row["error"] = attrs.get("error")
    return row


def _last_epoch_metrics(history: list[dict[str, Any]]) -> dict[str, Any]:
    # Pruned trials stop before the summary is written; their last epoch is what they reached.
    if not history:
        return {}
    return {key.removeprefix("val_"): value for key, value in history[-1].items() if key.startswith("val_")}


def leaderboard_text(study: optuna.Study, top: int = 10) -> str:
    """The best ``top`` trials as a plain-text table (for the CLI), best first."""
    frame = trials_frame(study)
    if frame.empty:
        return f"study {study.study_name!r} has no trials yet"
    params = [column for column in frame.columns if column.startswith("param_")]
    objectives = [c for c in frame.columns if c.startswith("objective_") and c.removeprefix("objective_") not in ("val_dice", "val_iou")]
    columns = ["rank", "number", "state", *objectives, "val_dice", "val_iou", "test_dice", *params, "epochs_run", "images_per_s"]
    table = frame.sort_values(["rank", "number"], na_position="last").head(top)[columns]
    table = table.rename(columns=lambda column: column.removeprefix("param_").removeprefix("objective_"))
    counts = frame["state"].value_counts().to_dict()
    header = f"study {study.study_name}: " + ", ".join(f"{count} {state}" for state, count in sorted(counts.items()))
    return header + "\n" + table.to_string(index=False, float_format=lambda value: f"{value:.4g}", na_rep="-")


# --- learning curves --------------------------------------------------------------------------


def learning_curves(trials: Sequence[FrozenTrial], metric: str) -> pd.DataFrame:
    """Tidy per-epoch values: columns trial, state, split (train/val/lr/objective), epoch, value.

    ``metric`` is one of :data:`CURVE_METRICS`. Trials without a stored history (still running,
    or written by another tool) fall back to their reported intermediate values.
    """
    if metric not in CURVE_METRICS:
        raise ResultsError(f"unknown curve metric {metric!r}; valid: {', '.join(CURVE_METRICS)}")
    rows: list[dict[str, Any]] = []
    for trial in trials:
        rows.extend(_curve_rows(trial, metric))
    return pd.DataFrame(rows, columns=["trial", "state", "split", "epoch", "value"])


def _curve_rows(trial: FrozenTrial, metric: str) -> list[dict[str, Any]]:
    base = {"trial": trial.number, "state": trial.state.name.lower()}
    history = trial.user_attrs.get("history") or []
    if not history:
        return [
            {**base, "split": "objective", "epoch": int(step), "value": value}
            for step, value in sorted(trial.intermediate_values.items())
        ]
    # The learning rate is one schedule per trial, neither a training nor a validation value.
    keys = {"train": f"train_{metric}", "val": f"val_{metric}"} if metric != "lr" else {"lr": "lr"}
    return [
        {**base, "split": split, "epoch": int(epoch["epoch"]), "value": epoch[key]}
        for split, key in keys.items()
        for epoch in history
        if epoch.get(key) is not None
    ]


# --- preview masks ----------------------------------------------------------------------------

ORDERINGS: dict[str, str] = {
    "worst_dice": "Worst Dice first",
    "disagreement": "Largest disagreement between trials",
    "name": "File name",
}


@dataclass(frozen=True)
class PreviewSet:
    """Validation preview images with ground truth and the selected trials' predicted masks."""

    stems: tuple[str, ...]
    images: np.ndarray  # (N, C, S, S) uint8
    masks: np.ndarray  # (N, S, S) uint8 class indices (ground truth)
    predictions: dict[int, np.ndarray]  # trial number -> (N, S, S) uint8 class indices
    dice: dict[int, np.ndarray]  # trial number -> (N,) per-image Dice
    num_classes: int  # including background
    missing: tuple[int, ...] = ()  # selected trials that stored no previews (failed, pruned, running)

    @property
    def trial_numbers(self) -> list[int]:
        return list(self.predictions)

    def disagreement(self) -> np.ndarray:
        """Per image, the mean fraction of pixels on which two trials' predictions differ."""
        predictions = list(self.predictions.values())
        if len(predictions) < 2:
            return np.zeros(len(self.stems))
        pairs = [(a, b) for i, a in enumerate(predictions) for b in predictions[i + 1:]]
        return np.mean([(a != b).mean(axis=(1, 2)) for a, b in pairs], axis=0)

    def order(self, by: str) -> list[int]:
        """Image indices in the order named by ``by`` (a key of :data:`ORDERINGS`)."""
        if by not in ORDERINGS:
            raise ResultsError(f"unknown image order {by!r}; valid: {', '.join(ORDERINGS)}")
        if by == "name" or not self.predictions:
            return sorted(range(len(self.stems)), key=lambda i: self.stems[i])
        if by == "worst_dice":
            score = np.mean(list(self.dice.values()), axis=0)
        else:
            score = -self.disagreement()
        return [int(i) for i in np.argsort(score, kind="stable")]

    def dice_table(self, order: Sequence[int]) -> pd.DataFrame:
        """One row per image in ``order``: its stem, each trial's Dice, and (several trials) their disagreement."""
        rows = list(order)
        table = pd.DataFrame({"image": [self.stems[i] for i in rows]})
        for number in self.trial_numbers:
            table[f"#{number}"] = self.dice[number][rows].astype(float)
        if len(self.predictions) > 1:
            table["disagreement"] = self.disagreement()[rows].astype(float)  # computed once for all rows
        return table


def load_previews(study: optuna.Study, trial_numbers: Sequence[int], artifact_store: ArtifactStore) -> PreviewSet:
    """The study's preview images + ground truth and each trial's predictions, aligned by stem."""
    artifact_id = study.user_attrs.get("preview_artifact")
    if not artifact_id:
        raise ResultsError(f"study {study.study_name!r} stored no preview images (set preview_count > 0 in its spec)")
    reference = _read_npz(artifact_store, artifact_id)
    stems = tuple(str(stem) for stem in reference["stems"])
    predictions: dict[int, np.ndarray] = {}
    missing: list[int] = []
    for number in trial_numbers:
        trial = get_trial(study, number)
        previews_id = (trial.user_attrs.get("artifacts") or {}).get("previews")
        if previews_id is None:
            missing.append(number)
            continue
        predictions[number] = _aligned(_read_npz(artifact_store, previews_id), stems, number)
    masks = reference["masks"].astype(np.uint8)
    num_classes = int(max([2, int(masks.max()) + 1, *[int(p.max()) + 1 for p in predictions.values()]]))
    dice = {number: _dice_per_image(pred, masks, num_classes) for number, pred in predictions.items()}
    return PreviewSet(stems, reference["images"], masks, predictions, dice, num_classes, tuple(missing))


def _read_npz(artifact_store: ArtifactStore, artifact_id: str) -> dict[str, np.ndarray]:
    with artifact_store.open_reader(artifact_id) as reader:
        with np.load(io.BytesIO(reader.read()), allow_pickle=False) as archive:
            return {key: archive[key] for key in archive.files}


def _aligned(stored: dict[str, np.ndarray], stems: tuple[str, ...], number: int) -> np.ndarray:
    # Trials store predictions in their own order; index them by the study's preview stems.
    index = {str(stem): i for i, stem in enumerate(stored["stems"])}
    absent = [stem for stem in stems if stem not in index]
    if absent:
        raise ResultsError(f"trial #{number}'s previews lack image(s) {absent[:3]}: were they made by another study?")
    return stored["predictions"][[index[stem] for stem in stems]].astype(np.uint8)


def _dice_per_image(predictions: np.ndarray, masks: np.ndarray, num_classes: int) -> np.ndarray:
    # The one rule for an image's Dice is core.metrics'; imported here because it pulls in torch and
    # smp (seconds), which the other result pages never need.
    from core.metrics import per_image_dice

    return np.array([per_image_dice(pred, truth, num_classes) for pred, truth in zip(predictions, masks)], dtype=float)


# --- insights ---------------------------------------------------------------------------------

INSIGHTS: dict[str, str] = {
    "history": "Optimization history",
    "importances": "Parameter importances",
    "parallel": "Parallel coordinates",
    "contour": "Contour",
    "slice": "Slice",
    "pareto": "Pareto front",
}
CONTOUR_MAX_PARAMS = 3  # the most important ones: n params draw n x n panels


@dataclass(frozen=True)
class Insight:
    """One optuna.visualization figure, or why it cannot be drawn for this study (``figure`` None)."""

    title: str
    figure: go.Figure | None = None
    message: str = ""


def insight_figures(study: optuna.Study, objective: int = 0) -> dict[str, Insight]:
    """Every figure of :data:`INSIGHTS`, for objective number ``objective`` where one is needed."""
    names = objective_names(study)
    if not 0 <= objective < len(names):
        raise ResultsError(f"objective {objective} does not exist; this study has {len(names)}: {', '.join(names)}")
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if not complete:
        message = "No completed trials yet — figures appear once the first trial finishes."
        return {key: Insight(title, message=message) for key, title in INSIGHTS.items()}
    varying = _varying_params(complete)
    target = _objective_target(study, objective)
    target_name = names[objective]
    figures = {
        "history": _history(study, target, target_name),
        "importances": _importances(study, complete, varying, objective, target_name),
        "parallel": _needs_params(varying, 1, lambda: optuna.visualization.plot_parallel_coordinate(
            study, target=target, target_name=target_name)),
        "contour": _needs_params(varying, 2, lambda: optuna.visualization.plot_contour(
            study, params=_top_params(study, varying, objective), target=target, target_name=target_name)),
        "slice": _needs_params(varying, 1, lambda: optuna.visualization.plot_slice(
            study, params=varying, target=target, target_name=target_name)),
        "pareto": _pareto(study, names),
    }
    return {key: Insight(INSIGHTS[key], *result) for key, result in figures.items()}


Drawn = tuple["go.Figure | None", str]


def _objective_target(study: optuna.Study, objective: int) -> Callable[[FrozenTrial], float] | None:
    # optuna.visualization needs an explicit target for multi-objective studies.
    if len(study.directions) == 1:
        return None
    return lambda trial: trial.values[objective]


def _varying_params(complete: Sequence[FrozenTrial]) -> list[str]:
    """Params that took at least two values: a constant explains nothing and cannot be plotted."""
    seen: dict[str, set[str]] = {}
    for trial in complete:
        for name, value in trial.params.items():
            seen.setdefault(name, set()).add(json.dumps(value, default=str))
    return sorted(name for name, values in seen.items() if len(values) > 1)


def _needs_params(varying: list[str], count: int, draw: Callable[[], go.Figure]) -> Drawn:
    if len(varying) < count:
        return None, (
            f"Needs at least {count} tuned parameter(s) that took different values; "
            f"this study has {len(varying)}. Widen the search space on New study."
        )
    return draw(), ""


def _history(study: optuna.Study, target: Callable[[FrozenTrial], float] | None, target_name: str) -> Drawn:
    return optuna.visualization.plot_optimization_history(study, target=target, target_name=target_name), ""


def _importances(study: optuna.Study, complete: Sequence[FrozenTrial], varying: list[str], objective: int, target_name: str) -> Drawn:
    if len(complete) < 2:
        return None, f"Parameter importances need at least 2 completed trials; this study has {len(complete)}."
    if not varying:
        return None, "No tuned parameter took different values yet, so none can explain the results."
    with _quiet_importances():
        figure = optuna.visualization.plot_param_importances(
            study, params=varying, target=_ranking_target(study, objective), target_name=target_name
        )
    return figure, ""


def _ranking_target(study: optuna.Study, objective: int) -> Callable[[FrozenTrial], float] | None:
    """The objective as the importance evaluator wants it: smaller is better.

    PED-ANOVA ranks params by how they reach *low* targets, so a maximised objective is negated.
    """
    if len(study.directions) == 1:
        return None
    sign = -1.0 if study.directions[objective] == optuna.study.StudyDirection.MAXIMIZE else 1.0
    return lambda trial: sign * trial.values[objective]


@contextmanager
def _quiet_importances() -> Iterator[None]:
    # optuna warns whenever a target is given; _ranking_target already orients it.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="PedAnovaImportanceEvaluator computes")
        yield


def _top_params(study: optuna.Study, varying: list[str], objective: int) -> list[str]:
    if len(varying) <= CONTOUR_MAX_PARAMS:
        return varying
    with _quiet_importances():
        importances = optuna.importance.get_param_importances(study, params=varying, target=_ranking_target(study, objective))
    return list(importances)[:CONTOUR_MAX_PARAMS]


def _pareto(study: optuna.Study, names: list[str]) -> Drawn:
    if len(study.directions) < 2:
        return None, "This study has one objective; a Pareto front needs two or more (pick several objectives on New study)."
    if len(study.directions) > 3:
        return None, f"A Pareto front is drawn for 2 or 3 objectives; this study has {len(study.directions)}."
    return optuna.visualization.plot_pareto_front(study, target_names=names), ""


# --- export -----------------------------------------------------------------------------------


def bundle_name(study: optuna.Study, trial: FrozenTrial) -> str:
    return f"{study.study_name}-trial{trial.number}"


def model_card(study: optuna.Study, trial: FrozenTrial) -> str:
    """A markdown card: what the model is, what data and split it saw, its params and metrics."""
    sections = (_card_intro, _card_model, _card_data, _card_training, _card_metrics, _card_use)
    return "\n".join(line for section in sections for line in section(study, trial))


def _card_intro(study: optuna.Study, trial: FrozenTrial) -> list[str]:
    best = "yes" if trial.number in best_numbers(study) else "no"
    return [
        f"# Model card — {bundle_name(study, trial)}",
        "",
        f"Segmentation model trained by SegTune in study **{study.study_name}**, trial **#{trial.number}** "
        f"(state: {trial.state.name.lower()}; best trial of the study: {best}).",
        "",
    ]


def _card_model(study: optuna.Study, trial: FrozenTrial) -> list[str]:
    attrs = trial.user_attrs
    model = attrs.get("model_config") or {}
    return ["## Model", _table({
        "Architecture": model.get("architecture"),
        # Only smp architectures have an encoder; the config carries the default for the others.
        "Encoder": model.get("encoder") if model.get("architecture") in SMP_ARCHITECTURES else "—",
        "Input channels": model.get("in_channels"),
        "Output classes": model.get("num_classes"),
        "Parameters": _fmt(attrs.get("n_params")),
        "Weights size (MB)": _fmt(attrs.get("weights_mb")),
    })]


def _card_data(study: optuna.Study, trial: FrozenTrial) -> list[str]:
    spec = study.user_attrs.get("spec") or {}
    return ["## Data", _table({
        "Dataset": study.user_attrs.get("dataset") or spec.get("dataset"),
        "Split hash": study.user_attrs.get("split_hash"),
        "Split": _split_text(spec.get("split") or {}),
        "Image size (px)": spec.get("image_size"),
    })]


def _card_training(study: optuna.Study, trial: FrozenTrial) -> list[str]:
    attrs = trial.user_attrs
    objectives = ", ".join(f"{name} ({direction.name.lower()})" for name, direction in zip(objective_names(study), study.directions))
    params = attrs.get("params_resolved") or trial.params
    return [
        "## Training",
        f"Selected on the validation split by {objectives}. Test metrics were computed after "
        "training and never used to choose a model.",
        "",
        _table({name: _fmt(value) for name, value in sorted(params.items())}),
        _table({
            "Epochs run": attrs.get("epochs_run"),
            "Best epoch": attrs.get("best_epoch"),
            "Stopped early": attrs.get("stopped_early"),
            "Training time (s)": _fmt(attrs.get("train_time_s")),
            "Throughput (images/s)": _fmt(attrs.get("images_per_s")),
            "Device": attrs.get("device"),
        }),
    ]


def _card_metrics(study: optuna.Study, trial: FrozenTrial) -> list[str]:
    return ["## Metrics", _metrics_table(trial.user_attrs.get("val_metrics") or {}, trial.user_attrs.get("test_metrics") or {})]


def _card_use(study: optuna.Study, trial: FrozenTrial) -> list[str]:
    name = bundle_name(study, trial)
    return [
        "## Use",
        f"Unzip `{name}.zip`, then segment a folder of images with `{predict_command(name)}`, "
        f"or load it in Python with `core.bundle.load_bundle(folder)`: `{WEIGHTS_FILE}` holds the weights, "
        f"`{CONFIG_FILE}` how to rebuild and feed the model.",
        "",
    ]


def _fmt(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def _table(values: dict[str, Any]) -> str:
    rows = [f"| {key} | {_fmt(value)} |" for key, value in values.items()]
    return "\n".join(["| | |", "|---|---|", *rows, ""])


def _split_text(split: dict[str, Any]) -> str:
    if not split:
        return "—"
    if split.get("k_folds"):
        return f"test {split.get('test')}, {split['k_folds']} folds (validation fold {split.get('fold')}), seed {split.get('seed')}"
    return f"train {split.get('train')} / val {split.get('val')} / test {split.get('test')}, seed {split.get('seed')}"


def _metrics_table(val: dict[str, Any], test: dict[str, Any]) -> str:
    rows = [
        f"| {METRIC_LABELS[m]} | {_fmt(val.get(m))} | {_fmt(test.get(m))} |"
        for m in METRICS
        if m in val or m in test
    ]
    if not rows:
        return "No metrics stored for this trial.\n"
    return "\n".join(["| Metric | Validation | Test |", "|---|---|---|", *rows, ""])


def predict_command(bundle_name: str) -> str:
    """The CLI call that segments a folder of images with an unzipped bundle (``core.predict``)."""
    return f"python -m core predict --model {bundle_name} --images images/ --out masks/"


def inference_snippet(bundle_name: str) -> str:
    """Python that runs an unzipped bundle through ``core.predict``: the CLI's own preprocessing."""
    return f'''\
from pathlib import Path

from PIL import Image

from core.bundle import load_bundle
from core.datasets import read_image
from core.predict import mask_png, predict_folder, predict_image

bundle = Path("{bundle_name}")  # the unzipped bundle folder

# A whole folder: the same as `{predict_command(bundle_name)}`
print(predict_folder(bundle, Path("images"), Path("masks")).summary())

# One image: a class-index mask at the image's own size
model, config = load_bundle(bundle)
mask = predict_image(model, config, read_image(Path("image.png")))
Image.fromarray(mask_png(mask, len(config.classes))).save("mask.png")  # 0/255 when binary
'''


def bundle_problem(trial: FrozenTrial, artifact_store: ArtifactStore) -> str | None:
    """Why the trial cannot be downloaded as a bundle (no or unreadable weights/config), else None."""
    artifacts = trial.user_attrs.get("artifacts") or {}
    missing = [kind for kind in BUNDLE_ARTIFACTS if not artifacts.get(kind)]
    if missing:
        return (f"Trial #{trial.number} stored no {' or '.join(missing)} (state {trial.state.name.lower()}): "
                "only completed trials can be exported.")
    for kind in BUNDLE_ARTIFACTS:
        try:
            artifact_store.open_reader(artifacts[kind]).close()
        except (ArtifactNotFound, OSError) as error:
            return (f"Trial #{trial.number}'s {kind} file ({artifacts[kind]}) is missing from the artifact store: "
                    f"{error}. Was the artifacts folder moved or cleaned? Export another trial or re-run this one.")
    return None


def bundle_zip(study: optuna.Study, trial: FrozenTrial, artifact_store: ArtifactStore) -> bytes:
    """A zip holding one folder: ``core.export.trial_bundle``'s weights and config, plus the model card."""
    # core.export imports torch (seconds): only a download needs it, not every page that reads results.
    from core.export import trial_bundle

    folder = bundle_name(study, trial)
    buffer = io.BytesIO()
    with tempfile.TemporaryDirectory(prefix="segtune-bundle-") as tmp:
        files = trial_bundle(study, trial.number, artifact_store, Path(tmp) / folder)
        with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            for path in sorted(files.iterdir()):
                archive.write(path, f"{folder}/{path.name}")
            archive.writestr(f"{folder}/{MODEL_CARD_FILE}", model_card(study, trial))
    return buffer.getvalue()
