"""The model bundle: a folder that rebuilds and feeds a trained model without the study.

Layout (SEGTUNE_FILE marks it)::

    model.safetensors   the weights (a trial stores exactly this file as its "weights" artifact)
    segtune.json        SegTune's metadata: the model config, classes, input size and channels, how
                        images are normalised, the threshold, volume slicing, provenance
    config.json         smp architectures only: segmentation-models-pytorch's own config, so the
                        folder is a standard smp folder (``smp.from_pretrained(folder)``)
    model.onnx          downloads: the model for onnxruntime (core.deploy.export), every architecture
    predict.py          downloads: runs model.onnx with numpy + Pillow + onnxruntime (standalone_predict)

Bundles written before the smp layout held the metadata in ``config.json`` (``LEGACY_CONFIG``);
they are still read. A trial's "config" artifact is the metadata JSON in either case.

A bundle may come from anywhere (a download, a colleague's zip), so reading one trusts nothing:
every metadata field is checked for its type and range before use (``config_problems``: an image
size of 100000 would allocate 40 GB per image), and the weights file must be safetensors, which
holds only tensors: a pickle (``torch.save``'s format, which runs code when loaded) named
``model.safetensors`` is refused by its first bytes, never unpickled.
"""

from __future__ import annotations

import json
import math
import re
import shutil
import warnings
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.contract import ArtifactKind, Task, TrialAttr
from core.data.images import MAX_CHANNELS
from core.errors import ProblemsError, SegTuneError
from core.modeling.architectures import ARCHITECTURES, task_of

if TYPE_CHECKING:
    import torch
    from optuna.trial import FrozenTrial
    from torch import nn

    from core.data.manifest import DatasetManifest, VolumeSlicing
    from core.modeling.config import ModelConfig

BUNDLE_FORMAT = "segtune-bundle"
BUNDLE_VERSION = 2  # 2: the normalisation is spelled out (``input``) and the file is segtune.json
READABLE_VERSIONS = (1, 2)
WEIGHTS_FILE = "model.safetensors"
SEGTUNE_FILE = "segtune.json"
CONFIG_FILE = "config.json"  # smp's config (new layout), or SegTune's metadata (LEGACY_CONFIG layout)
LEGACY_CONFIG = CONFIG_FILE
ONNX_FILE = "model.onnx"  # downloads: every model, for onnxruntime
PREDICT_SCRIPT = "predict.py"  # downloads: core/deploy/standalone_predict.py, which runs model.onnx
TORCHSCRIPT_FILE = "model.torchscript.pt"  # int8 variants: a TorchScript model instead of safetensors weights
BUNDLE_ARTIFACTS: tuple[str, ...] = (
    ArtifactKind.WEIGHTS,
    ArtifactKind.CONFIG,
)  # what a trial must have stored to be exported
ENSEMBLE_FILE = "ensemble.json"  # an ensemble folder: {"format": ENSEMBLE_FORMAT, "members": ["fold0", ...]}
ENSEMBLE_FORMAT = "segtune-ensemble"
PIXEL_SCALE = 1 / 255  # 8-bit pixels -> [0, 1]: how every SegTune model is fed (core.data.tensors)
MAX_IMAGE_SIDE = 4096  # a bundle's image_size at most: twice what a study may train at (core.search.validation)
MAX_CLASSES = 256  # masks are stored as 8-bit class indices
MAX_CLASS_NAME = 200  # characters of one class name
_SAFETENSORS_HEADER_MAX = 100_000_000  # bytes; the safetensors library's own limit on the JSON header


class BundleError(SegTuneError):
    """A folder is not a readable SegTune bundle."""


class BundleConfigError(ProblemsError, BundleError):
    """A bundle's metadata breaks the format; ``problems`` maps each bad field to what is wrong."""

    title = "Invalid bundle metadata"


def input_spec(image_size: int, channels: int) -> dict[str, Any]:
    """How an image becomes the model's input: what a script without SegTune needs to repeat it."""
    return {
        "color": "L" if channels == 1 else "RGB",  # Pillow mode; 16-bit greys are min-max scaled to 8 bits first
        "size": [image_size, image_size],  # width, height after resizing
        "resize": "bilinear",  # Pillow's, which antialiases when shrinking
        "scale": PIXEL_SCALE,
        "mean": [0.0] * channels,
        "std": [1.0] * channels,
        "layout": "NCHW",
        "dtype": "float32",
    }


@dataclass(frozen=True)
class BundleConfig:
    """How to rebuild and feed the model: architecture, input size/channels, classes, provenance."""

    model: dict[str, Any]  # core.modeling.config.ModelConfig.to_dict()
    image_size: int  # square input side the model was trained at
    channels: int  # 1 (grey), 3 (RGB), or one per MRI sequence (inputs are then .npy arrays / sequences)
    classes: tuple[str, ...]  # segmentation: index = mask value, classes[0] is background; classification: label names
    threshold: float = 0.5  # binary models: sigmoid threshold for foreground
    source: dict[str, Any] = field(default_factory=dict)  # study, trial, dataset, split hash, metrics
    preprocessing: dict[str, Any] = field(
        default_factory=dict
    )  # volume datasets: {"volumes": VolumeSlicing dict}; {} for 2D
    pruned_channels: dict[str, dict[str, Any]] = field(
        default_factory=dict
    )  # channel-pruned variants: core.modeling.pruned record
    format: str = BUNDLE_FORMAT
    version: int = BUNDLE_VERSION

    @property
    def task(self) -> Task:
        """What the model outputs (its architecture's task): masks, or one label per image."""
        return task_of(self.model["architecture"])

    @property
    def volume_slicing(self) -> VolumeSlicing | None:
        """How the training volumes were sliced and scaled (None: a 2D-image model)."""
        from core.data.manifest import VolumeSlicing

        data = self.preprocessing.get("volumes")
        return VolumeSlicing.from_dict(data) if data else None

    @property
    def model_config(self) -> ModelConfig:
        from core.modeling.config import ModelConfig

        return ModelConfig.from_dict(self.model)

    def to_json(self) -> str:
        """Today's format: the fields, plus ``input`` and ``output`` derived from them for readers without SegTune
        (predict.py)."""
        binary = len(self.classes) == 2
        output = {
            "activation": "sigmoid" if binary else "softmax",
            "threshold": self.threshold if binary else None,
            "mask_values": "0/255" if binary else "class index",
        }
        derived = {"version": BUNDLE_VERSION, "input": input_spec(self.image_size, self.channels), "output": output}
        return json.dumps({**asdict(self), **derived}, indent=2)

    @classmethod
    def from_json(cls, text: str) -> BundleConfig:
        data = json.loads(text)
        if not isinstance(data, dict) or data.get("format") != BUNDLE_FORMAT:
            raise BundleError(f"not a SegTune bundle config (expected format {BUNDLE_FORMAT!r})")
        if data.get("version") not in READABLE_VERSIONS:
            raise BundleError(
                f"bundle version {data.get('version')!r} is not supported (readable: {list(READABLE_VERSIONS)})"
            )
        for derived in ("input", "output"):
            data.pop(derived, None)
        problems = config_problems(data)
        if problems:
            raise BundleConfigError(problems)
        data["classes"] = tuple(data["classes"])
        return cls(**data)


def config_problems(data: dict[str, Any]) -> dict[str, str]:
    """Every way the metadata ``data`` (a parsed segtune.json, less its derived keys) breaks the
    format, by field (empty when it is fine)."""
    valid = {f.name for f in fields(BundleConfig)}
    problems: dict[str, str] = {}
    unknown = sorted(set(data) - valid)
    missing = sorted(name for name in ("model", "image_size", "channels", "classes") if name not in data)
    if unknown or missing:
        return {"keys": f"unknown {unknown}, missing {missing}; the fields are {sorted(valid)}"}
    for name, low, high in (("image_size", 1, MAX_IMAGE_SIDE), ("channels", 1, MAX_CHANNELS)):
        if not _is_int(data[name]) or not low <= data[name] <= high:
            problems[name] = f"must be a whole number from {low} to {high}, got {_shown(data[name])}"
    classes = data["classes"]
    if not isinstance(classes, list) or not 2 <= len(classes) <= MAX_CLASSES:
        problems["classes"] = f"must be a list of 2 to {MAX_CLASSES} class names, got {_shown(classes)}"
    elif not all(isinstance(c, str) and 0 < len(c) <= MAX_CLASS_NAME and c.isprintable() for c in classes):
        problems["classes"] = (
            f"each class name must be text of 1 to {MAX_CLASS_NAME} printable characters, got {_shown(classes)}"
        )
    threshold = data.get("threshold", 0.5)
    if not _is_number(threshold) or not 0 <= threshold <= 1:
        problems["threshold"] = f"must be a number from 0 to 1, got {_shown(threshold)}"
    for name in ("model", "source", "preprocessing", "pruned_channels"):
        if not isinstance(data.get(name, {}), dict):
            problems[name] = f"must be a JSON object, got {_shown(data[name])}"
    if "model" not in problems:
        _model_problems(data, problems)
    if "preprocessing" not in problems and data.get("preprocessing", {}).get("volumes") is not None:
        _slicing_problem(data["preprocessing"]["volumes"], problems)
    return problems


def _model_problems(data: dict[str, Any], problems: dict[str, str]) -> None:
    from core.modeling.config import ModelConfig

    try:
        model = ModelConfig.from_dict(data["model"])
    except (SegTuneError, TypeError) as exc:
        problems["model"] = str(exc)
        return
    for spec in fields(model):  # annotations are strings under `from __future__ import annotations`
        value = getattr(model, spec.name)
        if not _TYPE_CHECKS[spec.type](value):
            problems[f"model.{spec.name}"] = f"must be {spec.type.replace(' | None', ' or null')}, got {_shown(value)}"
    if "model.architecture" in problems:
        return
    problem = ARCHITECTURES.problem(model.architecture)
    if problem:
        problems["model.architecture"] = problem
    if model.in_channels != data["channels"] and "channels" not in problems:
        problems["model.in_channels"] = f"is {_shown(model.in_channels)} but channels is {data['channels']}"
    if isinstance(data["classes"], list) and model.num_classes != len(data["classes"]) and "classes" not in problems:
        problems["model.num_classes"] = f"is {_shown(model.num_classes)} but {len(data['classes'])} classes are named"


def _slicing_problem(raw: Any, problems: dict[str, str]) -> None:
    from core.data.intensity import IntensityConfig
    from core.data.manifest import VolumeSlicing

    try:
        slicing = VolumeSlicing.from_dict(raw)
        IntensityConfig.from_dict(slicing.intensity)
    except (SegTuneError, TypeError, KeyError, ValueError, AttributeError) as exc:
        problems["preprocessing.volumes"] = f"is not a volume slicing record: {exc}"
        return
    if slicing.axis not in (0, 1, 2) or not 1 <= slicing.sequences <= MAX_CHANNELS:
        problems["preprocessing.volumes"] = (
            f"axis must be 0, 1 or 2 and sequences 1 to {MAX_CHANNELS}, got {slicing.axis} and {slicing.sequences}"
        )


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


_TYPE_CHECKS = {  # ModelConfig's field annotations -> the JSON values they take
    "int": _is_int,
    "float": _is_number,
    "bool": lambda v: isinstance(v, bool),
    "str": lambda v: isinstance(v, str),
    "str | None": lambda v: v is None or isinstance(v, str),
}


def _shown(value: Any) -> str:
    """A bad value as the message shows it: never more than a line, whatever the file holds."""
    text = repr(value)
    return text if len(text) <= 80 else f"{text[:77]}..."


def volume_preprocessing(manifest: DatasetManifest) -> dict[str, Any]:
    """What a bundle records about its dataset's volume preprocessing ({} for 2D datasets)."""
    return {"volumes": manifest.slicing.to_dict()} if manifest.slicing is not None else {}


def smp_config(config: BundleConfig) -> dict[str, Any] | None:
    """smp's ``config.json`` for this bundle's model, or None when the architecture is not an smp one."""
    from core.modeling.architectures import ARCHITECTURES, Family

    model = config.model_config
    if config.pruned_channels:  # channels removed: smp's constructor would build the unpruned shapes
        return None
    if model.architecture not in ARCHITECTURES or ARCHITECTURES.get(model.architecture).family != Family.SMP:
        return None
    from core.modeling.smp_models import hub_config

    return hub_config(model)


def write_metadata(config: BundleConfig, folder: Path) -> Path:
    """Write ``segtune.json`` (and smp's ``config.json`` for smp architectures) into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / SEGTUNE_FILE).write_text(config.to_json(), encoding="utf-8")
    hub = smp_config(config)
    if hub is not None:
        (folder / CONFIG_FILE).write_text(json.dumps(hub, indent=2), encoding="utf-8")
    return folder


def save_bundle(model: nn.Module, config: BundleConfig, folder: Path) -> Path:
    """Write ``model.safetensors`` and the metadata into ``folder`` (created if needed)."""
    from safetensors.torch import save_model

    write_metadata(config, folder)
    save_model(model, str(folder / WEIGHTS_FILE))  # what smp's save_pretrained writes too
    return folder


def _metadata_file(folder: Path) -> Path:
    """segtune.json, or the config.json of a bundle written before the smp layout."""
    if (folder / SEGTUNE_FILE).is_file():
        return folder / SEGTUNE_FILE
    legacy = folder / LEGACY_CONFIG
    if legacy.is_file():
        try:
            is_ours = json.loads(legacy.read_text(encoding="utf-8")).get("format") == BUNDLE_FORMAT
        except (json.JSONDecodeError, AttributeError) as exc:
            raise BundleError(f"{legacy} is not valid JSON: {exc}") from exc
        if is_ours:
            return legacy
    raise BundleError(f"{folder} has no {SEGTUNE_FILE}: is it a SegTune bundle folder?")


def load_bundle_config(folder: Path) -> BundleConfig:
    path = _metadata_file(Path(folder))
    try:
        return BundleConfig.from_json(path.read_text(encoding="utf-8"))
    except BundleConfigError as exc:
        raise BundleError(f"{path} is not a valid bundle config: {exc}") from exc
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
        raise BundleError(f"{path} is not valid JSON: {str(exc)[:200]}") from exc


def check_weights_file(path: Path) -> None:
    """Refuse ``path`` unless it starts like safetensors (an 8-byte header length, then the JSON
    header, within the file): a pickle or zip (``torch.save``) is named as such and never opened by
    a loader that would run its code."""
    with open(path, "rb") as file:
        head = file.read(9)
    size = path.stat().st_size
    header = int.from_bytes(head[:8], "little") if len(head) == 9 else 0
    if len(head) == 9 and head[8:9] == b"{" and 2 <= header <= min(size - 8, _SAFETENSORS_HEADER_MAX):
        return
    kind = (
        "a Python pickle"
        if head[:1] == b"\x80"
        else "a zip archive (torch.save's format)"
        if head[:2] == b"PK"
        else "not in the safetensors format"
    )
    raise BundleError(
        f"{path} is {kind}: SegTune reads weights only from safetensors files, which hold tensors and no code"
    )


def load_bundle(folder: Path, device: str = "cpu") -> tuple[nn.Module, BundleConfig]:
    """Rebuild the model from a bundle folder (either layout), in eval mode, on ``device``."""
    from safetensors import SafetensorError
    from safetensors.torch import load_model

    from core.modeling.build import build_model

    config = load_bundle_config(folder)
    weights = Path(folder) / WEIGHTS_FILE
    if not weights.is_file():
        raise BundleError(f"{folder} has no {WEIGHTS_FILE}")
    check_weights_file(weights)
    model = build_model(config.model_config)
    if config.pruned_channels:
        try:
            _reshape_to_pruned(model, config.pruned_channels, weights)
        except (AttributeError, KeyError, TypeError, ValueError, IndexError) as exc:
            raise BundleError(
                f"{folder}'s pruned_channels record does not fit its {config.model['architecture']}: {str(exc)[:200]}"
            ) from exc
    try:
        load_model(model, str(weights), device=device)
    except (SafetensorError, RuntimeError) as exc:  # not a safetensors file, or weights of another model
        raise BundleError(
            f"{weights} does not hold the weights of this {config.model['architecture']}: {str(exc)[:300]}"
        ) from exc
    return model.to(device).eval(), config


def _reshape_to_pruned(model: nn.Module, record: dict[str, dict[str, Any]], weights: Path) -> None:
    """Give a freshly built model the channel-pruned shapes the weights file holds."""
    import torch
    from safetensors import safe_open

    from core.modeling.pruned import apply_channel_record

    with safe_open(str(weights), framework="pt") as reader:
        shapes = {key: torch.Size(reader.get_slice(key).get_shape()) for key in reader.keys()}
    apply_channel_record(model, record, shapes)


def load_torchscript(path: Path) -> torch.jit.ScriptModule:
    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        try:
            return torch.jit.load(str(path), map_location="cpu").eval()
        except RuntimeError as exc:  # not a TorchScript archive (a pickle, a plain torch.save file, a damaged zip)
            raise BundleError(f"{path} is not a TorchScript model: {str(exc).split('. ')[0][:200]}") from exc


def load_model(folder: Path) -> tuple[nn.Module, BundleConfig]:
    """A model folder written by SegTune: a bundle (safetensors) or an int8 variant (TorchScript)."""
    folder = Path(folder)
    if (folder / WEIGHTS_FILE).is_file():
        return load_bundle(folder)
    config = load_bundle_config(folder)  # raises a clear error when this is no SegTune folder
    if (folder / TORCHSCRIPT_FILE).is_file():
        return load_torchscript(folder / TORCHSCRIPT_FILE), config
    raise BundleError(f"{folder} has {SEGTUNE_FILE} but neither {WEIGHTS_FILE} nor {TORCHSCRIPT_FILE}")


def is_int8_folder(folder: Path) -> bool:
    """An int8 variant's folder: TorchScript and no safetensors weights."""
    return not (Path(folder) / WEIGHTS_FILE).is_file() and (Path(folder) / TORCHSCRIPT_FILE).is_file()


def trial_bundle(trial: FrozenTrial, artifact_store: Any, folder: Path) -> Path:
    """``trial``'s bundle in ``folder``: its stored weights, byte for byte, and its metadata."""
    artifacts = _bundle_artifacts(trial)
    return _write_bundle(trial, artifact_store, artifacts[ArtifactKind.WEIGHTS], Path(folder))


def ensemble_bundle(trial: FrozenTrial, artifact_store: Any, folder: Path) -> Path:
    """A cross-validated trial's fold models in ``folder``: one bundle per fold (``fold0/`` ...),
    the shared metadata on top and :data:`ENSEMBLE_FILE` naming the members."""
    fold_weights = _bundle_artifacts(trial).get(ArtifactKind.FOLD_WEIGHTS) or []
    if len(fold_weights) < 2:
        raise BundleError(
            f"trial #{trial.number} stored no fold models: only cross-validated segmentation trials "
            '(spec "cv", trained by this version) export as an ensemble'
        )
    folder = Path(folder)
    members = [f"fold{index}" for index in range(len(fold_weights))]
    for member, weights in zip(members, fold_weights):
        config = load_bundle_config(_write_bundle(trial, artifact_store, weights, folder / member))
    (folder / SEGTUNE_FILE).write_text(config.to_json(), encoding="utf-8")
    (folder / ENSEMBLE_FILE).write_text(
        json.dumps({"format": ENSEMBLE_FORMAT, "members": members}, indent=2), encoding="utf-8"
    )
    return folder


def ensemble_members(folder: Path) -> list[Path] | None:
    """The member folders of an ensemble folder, or None when ``folder`` holds one model."""
    path = Path(folder) / ENSEMBLE_FILE
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
        members = record["members"]
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise BundleError(f"{path} is not a SegTune ensemble file: {exc}") from exc
    names = [name for name in members if isinstance(name, str) and re.fullmatch(r"fold\d{1,2}", name)]
    if record.get("format") != ENSEMBLE_FORMAT or not names or len(names) != len(members):
        raise BundleError(f"{path} must name its members as fold0, fold1, ... (sub-folders of the ensemble)")
    return [Path(folder) / name for name in names]


def load_models(folder: Path) -> tuple[list[nn.Module], BundleConfig]:
    """Every model of a model folder: an ensemble's members (their probabilities are averaged), or the one model."""
    members = ensemble_members(folder)
    if members is None:
        model, config = load_model(folder)
        return [model], config
    return [load_model(member)[0] for member in members], load_bundle_config(folder)


def _bundle_artifacts(trial: FrozenTrial) -> dict[str, Any]:
    artifacts = trial.user_attrs.get(TrialAttr.ARTIFACTS) or {}
    missing = [kind for kind in BUNDLE_ARTIFACTS if not artifacts.get(kind)]
    if missing:
        raise BundleError(
            f"trial #{trial.number} stored no {' or '.join(missing)} "
            f"(state {trial.state.name.lower()}): only completed trials can be exported"
        )
    return artifacts


def _write_bundle(trial: FrozenTrial, artifact_store: Any, weights: str, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    with artifact_store.open_reader(weights) as reader, open(folder / WEIGHTS_FILE, "wb") as out:
        shutil.copyfileobj(reader, out)
    with artifact_store.open_reader(_bundle_artifacts(trial)[ArtifactKind.CONFIG]) as reader:
        text = reader.read().decode("utf-8")
    try:
        config = BundleConfig.from_json(text)
    except (ValueError, TypeError, KeyError) as exc:
        raise BundleError(f"trial #{trial.number}'s stored config is not a SegTune bundle config: {exc}") from exc
    write_metadata(config, folder)  # in today's layout, whichever layout the trial was stored in
    return folder
