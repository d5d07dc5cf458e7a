"""The model bundle: safetensors weights + a JSON config that rebuilds the model without the study.

A finished trial stores exactly these two files as its artifacts, and ``export`` writes them to a
folder, so a bundle is always what was trained — no conversion step in between.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.errors import SegTuneError

if TYPE_CHECKING:
    from torch import nn

    from core.data.manifest import DatasetManifest, VolumeSlicing

BUNDLE_FORMAT = "segtune-bundle"
BUNDLE_VERSION = 1
WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"


class BundleError(SegTuneError):
    """A folder is not a readable SegTune bundle."""


@dataclass(frozen=True)
class BundleConfig:
    """How to rebuild and feed the model: architecture, input size/channels, classes, provenance."""

    model: dict[str, Any]  # core.modeling.config.ModelConfig.to_dict()
    image_size: int  # square input side the model was trained at
    channels: int  # 1 (grey) or 3 (RGB)
    classes: tuple[str, ...]  # index = mask value; classes[0] is background
    threshold: float = 0.5  # binary models: sigmoid threshold for foreground
    source: dict[str, Any] = field(default_factory=dict)  # study, trial, dataset, split hash, metrics
    preprocessing: dict[str, Any] = field(default_factory=dict)  # volume datasets: {"volumes": VolumeSlicing dict}; {} for 2D
    pruned_channels: dict[str, dict[str, Any]] = field(default_factory=dict)  # channel-pruned variants: core.modeling.pruned record
    format: str = BUNDLE_FORMAT
    version: int = BUNDLE_VERSION

    @property
    def volume_slicing(self) -> VolumeSlicing | None:
        """How the training volumes were sliced and scaled (None: a 2D-image model)."""
        from core.data.manifest import VolumeSlicing

        data = self.preprocessing.get("volumes")
        return VolumeSlicing.from_dict(data) if data else None

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    @classmethod
    def from_json(cls, text: str) -> BundleConfig:
        data = json.loads(text)
        if not isinstance(data, dict) or data.get("format") != BUNDLE_FORMAT:
            raise BundleError(f"not a SegTune bundle config (expected format {BUNDLE_FORMAT!r})")
        if data.get("version") != BUNDLE_VERSION:
            raise BundleError(f"bundle version {data.get('version')!r} is not supported (expected {BUNDLE_VERSION})")
        data["classes"] = tuple(data["classes"])
        return cls(**data)


def volume_preprocessing(manifest: DatasetManifest) -> dict[str, Any]:
    """What a bundle records about its dataset's volume preprocessing ({} for 2D datasets)."""
    return {"volumes": manifest.slicing.to_dict()} if manifest.slicing is not None else {}


def save_bundle(model: nn.Module, config: BundleConfig, folder: Path) -> Path:
    """Write ``model.safetensors`` and ``config.json`` into ``folder`` (created if needed)."""
    from safetensors.torch import save_model

    folder.mkdir(parents=True, exist_ok=True)
    save_model(model, str(folder / WEIGHTS_FILE))
    (folder / CONFIG_FILE).write_text(config.to_json(), encoding="utf-8")
    return folder


def load_bundle_config(folder: Path) -> BundleConfig:
    config_path = Path(folder) / CONFIG_FILE
    if not config_path.is_file():
        raise BundleError(f"{folder} has no {CONFIG_FILE}: is it a SegTune bundle folder?")
    try:
        return BundleConfig.from_json(config_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, TypeError, KeyError) as exc:
        raise BundleError(f"{config_path} is not a valid bundle config: {exc}") from exc


def load_bundle(folder: Path, device: str = "cpu") -> tuple[nn.Module, BundleConfig]:
    """Rebuild the model from a bundle folder, in eval mode, on ``device``."""
    from safetensors.torch import load_model

    from core.modeling.build import build_model
    from core.modeling.config import ModelConfig

    config = load_bundle_config(folder)
    weights = Path(folder) / WEIGHTS_FILE
    if not weights.is_file():
        raise BundleError(f"{folder} has no {WEIGHTS_FILE}")
    model = build_model(ModelConfig.from_dict(config.model))
    if config.pruned_channels:
        _reshape_to_pruned(model, config.pruned_channels, weights)
    load_model(model, str(weights), device=device)
    return model.to(device).eval(), config


def _reshape_to_pruned(model: nn.Module, record: dict[str, dict[str, Any]], weights: Path) -> None:
    """Give a freshly built model the channel-pruned shapes the weights file holds."""
    import torch
    from safetensors import safe_open

    from core.modeling.pruned import apply_channel_record

    with safe_open(str(weights), framework="pt") as reader:
        shapes = {key: torch.Size(reader.get_slice(key).get_shape()) for key in reader.keys()}
    apply_channel_record(model, record, shapes)
