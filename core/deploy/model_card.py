"""What ships with a model: its bundle name, model card, the command and snippet that run it, the zip."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import optuna
from optuna.artifacts.exceptions import ArtifactNotFound
from optuna.trial import FrozenTrial

from core.contract import ArtifactKind, StudyAttr, Task, TrialAttr
from core.metrics.catalogue import METRICS, stored_metrics
from core.modeling.architectures import ARCHITECTURES, Family
from core.modeling.bundle import CONFIG_FILE, WEIGHTS_FILE
from core.results.reliability import study_task
from core.results.trials import best_numbers, objective_names

if TYPE_CHECKING:
    from optuna.artifacts._protocol import ArtifactStore

MODEL_CARD_FILE = "MODEL_CARD.md"
BUNDLE_ARTIFACTS: tuple[str, ...] = (ArtifactKind.WEIGHTS, ArtifactKind.CONFIG)  # what a trial must have stored to be exported


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
        f"{study_task(study).capitalize()} model trained by SegTune in study **{study.study_name}**, trial **#{trial.number}** "
        f"(state: {trial.state.name.lower()}; best trial of the study: {best}).",
        "",
    ]


def _card_model(study: optuna.Study, trial: FrozenTrial) -> list[str]:
    attrs = trial.user_attrs
    model = attrs.get(TrialAttr.MODEL_CONFIG) or {}
    return ["## Model", _table({
        "Architecture": model.get("architecture"),
        # Only smp architectures have an encoder; the config carries the default for the others.
        "Encoder": model.get("encoder") if _is_smp(model.get("architecture")) else "—",
        "Input channels": model.get("in_channels"),
        "Output classes": model.get("num_classes"),
        "Parameters": _fmt(attrs.get(TrialAttr.N_PARAMS)),
        "Weights size (MB)": _fmt(attrs.get(TrialAttr.WEIGHTS_MB)),
    })]


def _card_data(study: optuna.Study, trial: FrozenTrial) -> list[str]:
    spec = study.user_attrs.get(StudyAttr.SPEC) or {}
    return ["## Data", _table({
        "Dataset": study.user_attrs.get(StudyAttr.DATASET) or spec.get("dataset"),
        "Split hash": study.user_attrs.get(StudyAttr.SPLIT_HASH),
        "Split": _split_text(spec.get("split") or {}),
        "Image size (px)": spec.get("image_size"),
    })]


def _card_training(study: optuna.Study, trial: FrozenTrial) -> list[str]:
    attrs = trial.user_attrs
    objectives = ", ".join(f"{name} ({direction.name.lower()})" for name, direction in zip(objective_names(study), study.directions))
    params = attrs.get(TrialAttr.PARAMS_RESOLVED) or trial.params
    return [
        "## Training",
        f"Selected on the validation split by {objectives}. Test metrics were computed after "
        "training and never used to choose a model.",
        "",
        _table({name: _fmt(value) for name, value in sorted(params.items())}),
        _table({
            "Epochs run": attrs.get(TrialAttr.EPOCHS_RUN),
            "Best epoch": attrs.get(TrialAttr.BEST_EPOCH),
            "Stopped early": attrs.get(TrialAttr.STOPPED_EARLY),
            "Training time (s)": _fmt(attrs.get(TrialAttr.TRAIN_TIME_S)),
            "Throughput (images/s)": _fmt(attrs.get(TrialAttr.IMAGES_PER_S)),
            "Device": attrs.get(TrialAttr.DEVICE),
        }),
    ]


def _card_metrics(study: optuna.Study, trial: FrozenTrial) -> list[str]:
    attrs = trial.user_attrs
    return ["## Metrics", _metrics_table(attrs.get(TrialAttr.VAL_METRICS) or {}, attrs.get(TrialAttr.TEST_METRICS) or {}, study_task(study))]


def _card_use(study: optuna.Study, trial: FrozenTrial) -> list[str]:
    name, task = bundle_name(study, trial), study_task(study)
    verb = "classify" if task == Task.CLASSIFICATION else "segment"
    return [
        "## Use",
        f"Unzip `{name}.zip`, then {verb} a folder of images with `{predict_command(name, task)}`, "
        f"or load it in Python with `core.modeling.bundle.load_bundle(folder)`: `{WEIGHTS_FILE}` holds the weights, "
        f"`{CONFIG_FILE}` how to rebuild and feed the model.",
        "",
    ]


def _is_smp(architecture: Any) -> bool:
    return architecture in ARCHITECTURES and ARCHITECTURES.get(architecture).family == Family.SMP


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


def _metrics_table(val: dict[str, Any], test: dict[str, Any], task: Task = Task.SEGMENTATION) -> str:
    rows = [
        f"| {METRICS.get(m).label} | {_fmt(val.get(m))} | {_fmt(test.get(m))} |"
        for m in stored_metrics(task)
        if m in val or m in test
    ]
    if not rows:
        return "No metrics stored for this trial.\n"
    return "\n".join(["| Metric | Validation | Test |", "|---|---|---|", *rows, ""])


def predict_command(bundle_name: str, task: Task = Task.SEGMENTATION) -> str:
    """The CLI call that segments (``core.deploy.predict``) or classifies (``core.deploy.classify``)
    a folder of images with an unzipped bundle."""
    out = "predictions.csv" if task == Task.CLASSIFICATION else "masks/"
    return f"python -m core predict --model {bundle_name} --images images/ --out {out}"


def inference_snippet(bundle_name: str, task: Task = Task.SEGMENTATION) -> str:
    """Python that runs an unzipped bundle through ``core.deploy.predict`` (or ``core.deploy.classify``):
    the CLI's own preprocessing."""
    if task == Task.CLASSIFICATION:
        return _classifier_snippet(bundle_name)
    return f'''\
from pathlib import Path

from PIL import Image

from core.data.images import read_image
from core.deploy.predict import mask_png, predict_folder, predict_image
from core.modeling.bundle import load_bundle

bundle = Path("{bundle_name}")  # the unzipped bundle folder

# A whole folder: the same as `{predict_command(bundle_name)}`
print(predict_folder(bundle, Path("images"), Path("masks")).summary())

# One image: a class-index mask at the image's own size
model, config = load_bundle(bundle)
mask = predict_image(model, config, read_image(Path("image.png")))
Image.fromarray(mask_png(mask, len(config.classes))).save("mask.png")  # 0/255 when binary
'''


def _classifier_snippet(bundle_name: str) -> str:
    return f'''\
from pathlib import Path

from core.data.images import read_image
from core.deploy.classify import classify_folder, classify_image
from core.modeling.bundle import load_bundle

bundle = Path("{bundle_name}")  # the unzipped bundle folder

# A whole folder: the same as `{predict_command(bundle_name, Task.CLASSIFICATION)}`
print(classify_folder(bundle, Path("images"), Path("predictions.csv")).summary())

# One image: class probabilities, index = class
model, config = load_bundle(bundle)
probabilities = classify_image(model, config, read_image(Path("image.png")))
print(config.classes[int(probabilities.argmax())], probabilities.max())
'''


def bundle_problem(trial: FrozenTrial, artifact_store: ArtifactStore) -> str | None:
    """Why the trial cannot be downloaded as a bundle (no or unreadable weights/config), else None."""
    artifacts = trial.user_attrs.get(TrialAttr.ARTIFACTS) or {}
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



