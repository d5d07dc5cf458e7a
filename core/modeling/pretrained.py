"""ImageNet weights on this machine: which are cached, where they belong, and fetching them once.

Trials never download (core.modeling.smp_models goes offline when the Hub is unreachable;
core.modeling.classifiers reads torch's cache only), so the planner proposes
``encoder_weights: imagenet`` only for weights already here. Segmentation encoders' weights live in
the Hugging Face cache (``$HF_HUB_CACHE``, default ``~/.cache/huggingface/hub``: smp keeps them in
the ``smp-hub/<encoder>.imagenet`` repositories); classifiers' in torch's (``$TORCH_HOME/hub/checkpoints``,
default ``~/.cache/torch/hub/checkpoints``). ``python -m core weights fetch NAME`` downloads them on
a machine that is online; copy that folder to an offline machine.
"""

from __future__ import annotations

from pathlib import Path

from core.errors import SegTuneError, unknown_option
from core.modeling.classifiers import BACKBONES, weights_file


def _smp_settings(encoder: str) -> dict[str, str] | None:
    """smp's ``{"repo_id", "revision"}`` of ``encoder``'s ImageNet weights (None: it has none)."""
    import segmentation_models_pytorch as smp

    encoders = smp.encoders.encoders
    if encoder not in encoders:
        return None
    return encoders[encoder].get("pretrained_settings", {}).get("imagenet")


def cache_folder(name: str) -> Path:
    """The folder where ``name``'s ImageNet weights are looked for (a classifier's or an smp encoder's)."""
    if name in BACKBONES:
        return weights_file(BACKBONES[name]).parent
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


def is_cached(name: str) -> bool:
    """Whether ``name``'s ImageNet weights are on this machine (never touches the network)."""
    if name in BACKBONES:
        return weights_file(BACKBONES[name]).is_file()
    settings = _smp_settings(name)
    if settings is None:
        return False
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(settings["repo_id"], "model.safetensors", revision=settings["revision"])
    return isinstance(found, str)


def cached(names: list[str]) -> frozenset[str]:
    """The subset of ``names`` whose ImageNet weights are cached here."""
    return frozenset(name for name in names if is_cached(name))


def fetch(name: str) -> Path:
    """Download ``name``'s ImageNet weights into the cache (needs network); returns the file."""
    if name in BACKBONES:
        import torchvision.models as models

        backbone = BACKBONES[name]
        getattr(models, backbone.weights).IMAGENET1K_V1.get_state_dict(progress=True)
        return weights_file(backbone)
    settings = _smp_settings(name)
    if settings is None:
        import segmentation_models_pytorch as smp

        known = [n for n, e in smp.encoders.encoders.items() if "imagenet" in e.get("pretrained_settings", {})]
        raise SegTuneError(unknown_option("encoder with ImageNet weights", name, [*BACKBONES, *known]))
    from huggingface_hub import hf_hub_download

    hf_hub_download(settings["repo_id"], filename="config.json", revision=settings["revision"])
    return Path(hf_hub_download(settings["repo_id"], filename="model.safetensors", revision=settings["revision"]))


def how_to_fetch(names: list[str]) -> str:
    """One sentence: the command that fetches ``names`` on an online machine, and where the files go."""
    folders = sorted({str(cache_folder(name)) for name in names})
    commands = " && ".join(f"python -m core weights fetch {name}" for name in names)
    return f"run `{commands}` on a machine that is online, then copy {' and '.join(folders)} to the same place here"
