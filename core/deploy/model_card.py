"""What ships with a model: its bundle name, model card, and the commands and snippets that run it.

The usage the card prints and the Export page shows come from the same functions here, and each
runs from the unzipped folder with public packages only: ``predict.py`` / onnxruntime for every
model, ``segmentation_models_pytorch.from_pretrained`` for smp architectures (tests/test_export.py
runs them in a process that cannot import SegTune). Classifiers run through SegTune (``core.deploy.classify``).
"""

from __future__ import annotations

from importlib.metadata import version
from typing import TYPE_CHECKING, Any

import optuna
from optuna.artifacts.exceptions import ArtifactNotFound
from optuna.trial import FrozenTrial

from core.contract import StudyAttr, Task, TrialAttr
from core.metrics.catalogue import METRICS, stored_metrics
from core.modeling.architectures import ARCHITECTURES, Family
from core.modeling.bundle import BUNDLE_ARTIFACTS, CONFIG_FILE, ONNX_FILE, PREDICT_SCRIPT, SEGTUNE_FILE, WEIGHTS_FILE
from core.results.reliability import study_task
from core.results.trials import best_numbers, objective_names
from core.search.validation import stored_spec

if TYPE_CHECKING:
    from optuna.artifacts._protocol import ArtifactStore

    from core.data.splits import SplitConfig

MODEL_CARD_FILE = "MODEL_CARD.md"
# What a downloaded bundle holds (MODEL_CARD.md besides): the card describes these unless told otherwise.
BUNDLE_FILES = frozenset({WEIGHTS_FILE, SEGTUNE_FILE, CONFIG_FILE, ONNX_FILE, PREDICT_SCRIPT})


def bundle_name(study: optuna.Study, trial: FrozenTrial) -> str:
    return f"{study.study_name}-trial{trial.number}"


def model_card(
    study: optuna.Study, trial: FrozenTrial, files: frozenset[str] = BUNDLE_FILES, onnx_problem: str | None = None
) -> str:
    """A markdown card: what the model is, what data and split it saw, its params and metrics, and
    how to run it with the ``files`` it ships with (``onnx_problem``: why model.onnx is missing)."""
    sections = (_card_intro, _card_model, _card_data, _card_training, _card_metrics)
    lines = [line for section in sections for line in section(study, trial)]
    return "\n".join(
        [*lines, *usage(bundle_name(study, trial), smp_loadable(trial), files, onnx_problem, study_task(study))]
    )


def _card_intro(study: optuna.Study, trial: FrozenTrial) -> list[str]:
    best = "yes" if trial.number in best_numbers(study) else "no"
    return [
        f"# Model card — {bundle_name(study, trial)}",
        "",
        f"{study_task(study).capitalize()} model trained by SegTune in study **{study.study_name}**, trial "
        f"**#{trial.number}** (state: {trial.state.name.lower()}; best trial of the study: {best}).",
        "",
    ]


def _card_model(study: optuna.Study, trial: FrozenTrial) -> list[str]:
    attrs = trial.user_attrs
    model = attrs.get(TrialAttr.MODEL_CONFIG) or {}
    return [
        "## Model",
        _table(
            {
                "Architecture": model.get("architecture"),
                # Only smp architectures have an encoder; the config carries the default for the others.
                "Encoder": model.get("encoder") if _is_smp(model.get("architecture")) else "—",
                "Input channels": model.get("in_channels"),
                "Output classes": model.get("num_classes"),
                "Parameters": _fmt(attrs.get(TrialAttr.N_PARAMS)),
                "Weights size (MB)": _fmt(attrs.get(TrialAttr.WEIGHTS_MB)),
            }
        ),
    ]


def _card_data(study: optuna.Study, trial: FrozenTrial) -> list[str]:
    spec = stored_spec(study)
    return [
        "## Data",
        _table(
            {
                "Dataset": study.user_attrs.get(StudyAttr.DATASET) or (spec.dataset if spec else None),
                "Split hash": study.user_attrs.get(StudyAttr.SPLIT_HASH),
                "Split": _split_text(spec.split if spec else None),
                "Image size (px)": spec.image_size if spec else None,
            }
        ),
    ]


def _card_training(study: optuna.Study, trial: FrozenTrial) -> list[str]:
    attrs = trial.user_attrs
    objectives = ", ".join(
        f"{name} ({direction.name.lower()})" for name, direction in zip(objective_names(study), study.directions)
    )
    params = attrs.get(TrialAttr.PARAMS_RESOLVED) or trial.params
    return [
        "## Training",
        f"Selected on the validation split by {objectives}. Test metrics were computed after "
        "training and never used to choose a model.",
        "",
        _table({name: _fmt(value) for name, value in sorted(params.items())}),
        _table(
            {
                "Epochs run": attrs.get(TrialAttr.EPOCHS_RUN),
                "Best epoch": attrs.get(TrialAttr.BEST_EPOCH),
                "Stopped early": attrs.get(TrialAttr.STOPPED_EARLY),
                "Training time (s)": _fmt(attrs.get(TrialAttr.TRAIN_TIME_S)),
                "Throughput (images/s)": _fmt(attrs.get(TrialAttr.IMAGES_PER_S)),
                "Device": attrs.get(TrialAttr.DEVICE),
            }
        ),
    ]


def _card_metrics(study: optuna.Study, trial: FrozenTrial) -> list[str]:
    return [
        "## Metrics",
        _metrics_table(
            trial.user_attrs.get(TrialAttr.VAL_METRICS) or {},
            trial.user_attrs.get(TrialAttr.TEST_METRICS) or {},
            study_task(study),
        ),
    ]


def variant_card(
    study: optuna.Study,
    trial: FrozenTrial,
    name: str,
    record: dict[str, Any],
    files: frozenset[str],
    onnx_problem: str | None = None,
) -> str:
    """The card of a compressed variant (``record`` as core.deploy.compression.variants stores it)."""
    metrics = record.get("metrics") or {}
    intro = [
        f"# Model card — {name}",
        "",
        f"A compressed variant (**{record.get('label')}**) of trial **#{trial.number}** of study "
        f"**{study.study_name}**, derived by SegTune's Compress & deploy. The original trial's card describes its "
        "training.",
        "",
        "## Compression",
        _table(
            {
                "Method": record.get("method"),
                **{k: _fmt(v) for k, v in (record.get("params") or {}).items()},
                "File size (MB)": _fmt(metrics.get("size_mb")),
                "Non-zero weights": _fmt(metrics.get("nonzero_params")),
                "CPU ms / image": _fmt(metrics.get("latency_ms")),
            }
        ),
        "## Metrics",
        _metrics_table(metrics.get("val") or {}, metrics.get("test") or {}, study_task(study)),
    ]
    usage_lines = usage(name, smp_loadable(trial), files, onnx_problem, study_task(study))
    return "\n".join([*intro, *_card_model(study, trial), *_card_data(study, trial), *usage_lines])


def smp_loadable(trial: FrozenTrial) -> bool:
    """Whether the trial's bundle is an smp folder (an smp architecture: ``config.json`` ships with it)."""
    return _is_smp((trial.user_attrs.get(TrialAttr.MODEL_CONFIG) or {}).get("architecture"))


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


def _split_text(split: SplitConfig | None) -> str:
    if split is None:
        return "—"
    if split.k_folds:
        return f"test {split.test}, {split.k_folds} folds (validation fold {split.fold}), seed {split.seed}"
    return f"train {split.train} / val {split.val} / test {split.test}, seed {split.seed}"


def _metrics_table(val: dict[str, Any], test: dict[str, Any], task: Task = Task.SEGMENTATION) -> str:
    rows = [
        f"| {METRICS.get(m).label} | {_fmt(val.get(m))} | {_fmt(test.get(m))} |"
        for m in stored_metrics(task)
        if m in val or m in test
    ]
    if not rows:
        return "No metrics stored for this trial.\n"
    return "\n".join(["| Metric | Validation | Test |", "|---|---|---|", *rows, ""])


def predict_command() -> str:
    """The shell command that segments a folder of images from inside an unzipped bundle (onnxruntime only)."""
    return f"python {PREDICT_SCRIPT} --images images/ --out masks/"


_RUN_AND_SAVE = """\
pixels = predict.read_image("image.png")  # any PNG / JPG / TIFF / BMP
{logits}
mask = predict.postprocess(logits, config, pixels.shape[:2])[0]  # class index per pixel, at the image's size
predict.mask_png(mask, config).save("mask.png")  # 0/255 when binary, class indices otherwise
"""


def onnx_snippet() -> str:
    """Python that runs ``model.onnx`` with the training preprocessing (predict.py's), from the bundle folder."""
    return """\
import onnxruntime as ort

import predict  # predict.py in this folder: SegTune's preprocessing, numpy + Pillow only

config = predict.load_config(".")  # segtune.json: input size, channels, normalisation, classes
session = ort.InferenceSession("model.onnx", providers=["CPUExecutionProvider"])
""" + _RUN_AND_SAVE.format(
        logits='logits = session.run(None, {"image": predict.preprocess(pixels, config)})[0]'
    ).rstrip("\n")


def smp_snippet() -> str:
    """Python that loads the bundle with ``segmentation_models_pytorch.from_pretrained``, from the bundle folder."""
    return """\
import segmentation_models_pytorch as smp
import torch

import predict  # predict.py in this folder: SegTune's preprocessing, numpy + Pillow only

model = smp.from_pretrained(".").eval()  # config.json + model.safetensors: a standard smp folder
config = predict.load_config(".")  # segtune.json: input size, channels, normalisation, classes
""" + _RUN_AND_SAVE.format(
        logits="""\
with torch.no_grad():
    logits = model(torch.from_numpy(predict.preprocess(pixels, config))).numpy()"""
    ).rstrip("\n")


def segtune_command(task: Task = Task.SEGMENTATION) -> str:
    """The same from inside the folder, with SegTune installed (``core.deploy.predict``, volumes too;
    ``core.deploy.classify`` for classifiers: a CSV of labels and probabilities)."""
    out = "predictions.csv" if task == Task.CLASSIFICATION else "masks/"
    return f"segtune predict --model . --images images/ --out {out}"


def classifier_snippet() -> str:
    """Python that classifies with the bundle from inside its folder, SegTune installed (its preprocessing)."""
    return f"""\
from pathlib import Path

from core.data.images import read_image
from core.deploy.classify import classify_folder, classify_image
from core.modeling.bundle import load_bundle

# A whole folder: the same as `{segtune_command(Task.CLASSIFICATION)}`
print(classify_folder(Path("."), Path("images"), Path("predictions.csv")).summary())

# One image: class probabilities, index = class
model, config = load_bundle(Path("."))
probabilities = classify_image(model, config, read_image(Path("image.png")))
print(config.classes[int(probabilities.argmax())], probabilities.max())"""


def usage(
    bundle_name: str,
    smp_model: bool,
    files: frozenset[str] = BUNDLE_FILES,
    onnx_problem: str | None = None,
    task: Task = Task.SEGMENTATION,
) -> list[str]:
    """The card's "Use" section: every route the shipped ``files`` allow, onnxruntime first."""
    lines = [
        "## Use",
        "",
        f"Run these from inside the bundle folder `{bundle_name}/` (unzip `{bundle_name}.zip` first when "
        "downloaded), with an image `image.png` or a folder `images/` next to them.",
        "",
    ]
    if task == Task.CLASSIFICATION:
        return [
            *lines,
            f"**SegTune** (installed): `{segtune_command(task)}` writes one row per image: label and class "
            "probabilities. From Python:",
            "",
            "```python",
            classifier_snippet(),
            "```",
            "",
            f"`{SEGTUNE_FILE}` records the classes, input size and channels and normalisation.",
            "",
        ]
    if ONNX_FILE in files and PREDICT_SCRIPT in files:
        lines += [
            "**onnxruntime** (`pip install numpy pillow onnxruntime`): segment a folder, one PNG mask per image:",
            "",
            "```bash",
            predict_command(),
            "```",
            "",
            "or one image from Python:",
            "",
            "```python",
            onnx_snippet(),
            "```",
            "",
        ]
    elif onnx_problem:
        lines += [f"No `{ONNX_FILE}` in this bundle: {onnx_problem}", ""]
    if smp_model and {WEIGHTS_FILE, CONFIG_FILE} <= files:
        lines += [
            "**segmentation-models-pytorch** (`pip install "
            f"segmentation-models-pytorch=={version('segmentation-models-pytorch')} numpy pillow`): `{CONFIG_FILE}` "
            f"+ `{WEIGHTS_FILE}` are a standard smp folder:",
            "",
            "```python",
            smp_snippet(),
            "```",
            "",
        ]
    lines += [
        f"**SegTune** (installed): `{segtune_command()}` (`--volumes` for NIfTI / DICOM volumes). "
        f"`{SEGTUNE_FILE}` records the classes, input size and channels, normalisation, threshold and "
        "(volume models) how volumes were sliced.",
        "",
    ]
    return lines


def bundle_problem(trial: FrozenTrial, artifact_store: ArtifactStore) -> str | None:
    """Why the trial cannot be downloaded as a bundle (no or unreadable weights/config), else None."""
    artifacts = trial.user_attrs.get(TrialAttr.ARTIFACTS) or {}
    missing = [kind for kind in BUNDLE_ARTIFACTS if not artifacts.get(kind)]
    if missing:
        return (
            f"Trial #{trial.number} stored no {' or '.join(missing)} (state {trial.state.name.lower()}): "
            "only completed trials can be exported."
        )
    for kind in BUNDLE_ARTIFACTS:
        try:
            artifact_store.open_reader(artifacts[kind]).close()
        except (ArtifactNotFound, OSError) as error:
            return (
                f"Trial #{trial.number}'s {kind} file ({artifacts[kind]}) is missing from the artifact store: "
                f"{error}. Was the artifacts folder moved or cleaned? Export another trial or re-run this one."
            )
    return None
