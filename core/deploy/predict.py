"""Segment a folder of images with an exported model (bundle or int8 TorchScript variant).

Images are fed exactly as in training (core.data: grey/RGB, or ``.npy`` arrays with one channel per sequence for
multi-sequence models; bilinear resize to the model's size, [0, 1] floats); each predicted mask is resized back to its
image (nearest) and written as a PNG: 0/255 for binary models, class indices otherwise. A file that cannot be read is
reported and skipped — one bad scan must not cost the rest of the folder.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.nn import functional as F
from tqdm.auto import tqdm

from core.contract import Task
from core.data.images import ARRAY_EXTENSION, IMAGE_EXTENSIONS, UNREADABLE_IMAGE_ERRORS, channel_problem, read_image
from core.data.tensors import prepare_image, resize_mask
from core.data.visual import overlay_mask
from core.errors import SegTuneError
from core.modeling.bundle import BundleConfig, load_models
from core.modeling.inference import Models, class_indices, class_probabilities, predict_probabilities

IMAGE_SUFFIXES: tuple[str, ...] = (*IMAGE_EXTENSIONS, ARRAY_EXTENSION)
OVERLAY_DIR = "overlays"


class PredictError(SegTuneError):
    """The model or the image folder cannot be used at all (single bad images are only skipped)."""


@dataclass
class PredictReport:
    written: list[Path] = field(default_factory=list)  # mask files, one per readable image
    skipped: list[tuple[Path, str]] = field(default_factory=list)  # (file, why)

    def summary(self) -> str:
        lines = [f"{len(self.written)} mask(s) written, {len(self.skipped)} file(s) skipped"]
        lines += [f"  skipped {path.name}: {reason}" for path, reason in self.skipped]
        return "\n".join(lines)


def image_files(folder: Path) -> list[Path]:
    """Every visible file in ``folder`` (sorted); non-image files are reported later, not hidden."""
    folder = Path(folder)
    if not folder.is_dir():
        raise PredictError(f"image folder {folder} does not exist or is not a folder")
    return sorted(path for path in folder.iterdir() if path.is_file() and not path.name.startswith("."))


def model_input(config: BundleConfig, pixels: np.ndarray) -> torch.Tensor:
    """The model's input for one image (HxWxC uint8 from read_image): (1, C, S, S) floats in [0, 1]."""
    prepared = prepare_image(pixels, config.image_size, config.channels)
    return torch.from_numpy(np.array(prepared))[None].float().div_(255.0)  # a writable copy


def predict_image(model: Models, config: BundleConfig, pixels: np.ndarray, *, tta: bool = False) -> np.ndarray:
    """Class-index mask (H, W) uint8 at the size of ``pixels``. ``model`` may be a fold ensemble;
    ``tta`` adds mirror TTA (core.modeling.inference)."""
    return image_mask(predict_probabilities(model, model_input(config, pixels), tta=tta), config, pixels.shape[:2])


def image_mask(probs: torch.Tensor, config: BundleConfig, size: tuple[int, int]) -> np.ndarray:
    """The mask of one image's probabilities (1, C, S, S): decided at the model's size, then resized
    (nearest) to ``size`` (height, width): the rule scores at the original resolution follow too."""
    return resize_mask(class_indices(probs, config.threshold)[0].to(torch.uint8).numpy(), *size)


def image_probabilities(probs: torch.Tensor, size: tuple[int, int]) -> np.ndarray:
    """Every class's probability (K, H, W) float32, background first, resized (bilinear) to ``size``."""
    return F.interpolate(class_probabilities(probs), size=size, mode="bilinear", align_corners=False)[0].numpy()


def mask_png(mask: np.ndarray, num_classes: int) -> np.ndarray:
    """What is written: 0/255 for binary (viewable), class indices for multi-class."""
    return mask * 255 if num_classes == 2 else mask


def predict_folder(
    model_folder: Path,
    images: Path,
    out: Path,
    *,
    overlay: bool = False,
    progress: bool = True,
    tta: bool = False,
    save_probabilities: bool = False,
) -> PredictReport:
    """Write ``out/<stem>.png`` for every readable image (and ``out/overlays/<stem>.png``; with
    ``save_probabilities`` ``out/<stem>.npz``: ``probabilities`` (K, H, W) float16, background first)."""
    model, config, files = open_run(
        model_folder, images, Task.SEGMENTATION, "it writes labels (core.deploy.classify), not masks"
    )
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if overlay:
        (out / OVERLAY_DIR).mkdir(exist_ok=True)
    report = PredictReport()
    seen: set[str] = set()
    for path in tqdm(files, desc="predict", unit="image", disable=not progress):
        if path.stem in seen and path.suffix.lower() in IMAGE_SUFFIXES:
            report.skipped.append((path, f"another image already wrote {path.stem}.png"))
            continue
        pixels, reason = read_input(path, config.channels)
        if pixels is None:
            report.skipped.append((path, reason))
            continue
        seen.add(path.stem)
        probs = predict_probabilities(model, model_input(config, pixels), tta=tta)
        mask = image_mask(probs, config, pixels.shape[:2])
        target = out / f"{path.stem}.png"
        if save_probabilities:
            averaged = image_probabilities(probs, pixels.shape[:2]).astype(np.float16)
            np.savez_compressed(out / f"{path.stem}.npz", probabilities=averaged, classes=np.array(config.classes))
        Image.fromarray(mask_png(mask, len(config.classes))).save(target)
        if overlay:
            Image.fromarray(overlay_mask(pixels, mask)).save(out / OVERLAY_DIR / f"{path.stem}.png")
        report.written.append(target)
    return report


def open_run(
    model_folder: Path, images: Path, task: Task, other_task: str
) -> tuple[list[torch.nn.Module], BundleConfig, list[Path]]:
    """The models of ``model_folder`` (one, or a fold ensemble's) and the files of ``images``, refused
    when the model is not a ``task`` one (``other_task``: what such a model does instead) or the folder is empty."""
    model, config = load_models(Path(model_folder))
    if config.task != task:
        raise PredictError(f"{model_folder} holds a {config.task} model: {other_task}")
    files = image_files(images)
    if not files:
        raise PredictError(f"image folder {images} is empty")
    return model, config, files


def read_input(path: Path, channels: int) -> tuple[np.ndarray | None, str]:
    """An input image's pixels, or None and why it is skipped: not an image type, unreadable, or
    not the ``channels`` the model takes (predict and classify skip the same files)."""
    if path.suffix.lower() not in IMAGE_SUFFIXES:
        return None, f"not an image type SegTune reads ({', '.join(IMAGE_SUFFIXES)})"
    try:
        pixels = read_image(path)
    except UNREADABLE_IMAGE_ERRORS as exc:
        return None, f"unreadable image ({type(exc).__name__}: {exc})"
    mismatch = channel_problem(pixels.shape[-1], channels)
    return (None, mismatch) if mismatch else (pixels, "")
