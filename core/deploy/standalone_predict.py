"""Segment images with an exported SegTune model: numpy, Pillow and onnxruntime only.

SegTune copies this file into every exported bundle as ``predict.py``, next to ``model.onnx`` and
``segtune.json``. From the unzipped folder::

    pip install numpy pillow onnxruntime
    python predict.py --images images/ --out masks/

Images are fed exactly as in training (``segtune.json``'s ``input``: grey or RGB, 16-bit greys
min-max scaled to 8 bits, bilinear resize to the model's size, pixels / 255); each mask is resized
back to its image (nearest) and written as ``<out>/<stem>.png``: 0/255 for binary models, class
indices otherwise. Unreadable files are reported and skipped. Volume models (NIfTI/DICOM) take
their slices as 2D images here, windowed as ``segtune.json``'s ``preprocessing`` says; SegTune's
own ``predict --volumes`` does that for whole volumes. A fold ensemble (``ensemble.json`` naming
``fold0/`` ... each with its ``model.onnx``) averages its members' probabilities before deciding.
Also importable: ``load_config``, ``read_image``, ``preprocess``, ``probabilities``, ``decide``,
``postprocess``, ``mask_png``.

A ``model.onnx`` that keeps tensors in other files (ONNX "external data") is refused: SegTune never
writes one, and older onnxruntime versions follow such a reference anywhere on the disk
(``../../etc/passwd``). The check reads the protobuf itself (``uses_external_data``), so it needs
no ``onnx`` package, and the checked bytes are what onnxruntime loads.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")
SIXTEEN_BIT = ("I;16", "I;16B", "I;16L", "I;16N")
GREY = ("1", "L", "LA")
HERE = Path(__file__).resolve().parent


def load_config(folder: str | Path = HERE) -> dict[str, Any]:
    """The bundle's metadata (``segtune.json``; ``config.json`` in bundles written before it)."""
    folder = Path(folder)
    for name in ("segtune.json", "config.json"):
        path = folder / name
        if path.is_file():
            config = json.loads(path.read_text(encoding="utf-8"))
            if config.get("format") == "segtune-bundle":
                return config
    raise SystemExit(f"{folder} has no segtune.json: run this script from an unzipped SegTune bundle")


def input_spec(config: dict[str, Any]) -> dict[str, Any]:
    """How images are fed (bundles before version 2 did not spell it out: they were fed the same way)."""
    size, channels = config["image_size"], config["channels"]
    return config.get("input") or {
        "color": "L" if channels == 1 else "RGB",
        "size": [size, size],
        "scale": 1 / 255,
        "mean": [0.0] * channels,
        "std": [1.0] * channels,
    }


def read_image(path: str | Path) -> np.ndarray:
    """HxWxC uint8 (C = 1 grey, 3 RGB) the way SegTune reads images; 16-bit is min-max scaled to 8 bits."""
    with Image.open(path) as image:
        if image.mode in SIXTEEN_BIT:
            values = np.asarray(image).astype(np.float32)
            low, high = float(values.min()), float(values.max())
            scaled = (
                np.zeros(values.shape, np.uint8)
                if high <= low
                else ((values - low) * (255.0 / (high - low)) + 0.5).astype(np.uint8)
            )
            return scaled[..., None]
        if image.mode in GREY:
            return np.array(image.convert("L"))[..., None]
        return np.array(image.convert("RGB"))


def preprocess(pixels: np.ndarray, config: dict[str, Any]) -> np.ndarray:
    """HxWxC uint8 -> the model's (1, C, S, S) float32 input."""
    spec = input_spec(config)
    image = Image.fromarray(pixels[..., 0] if pixels.shape[-1] == 1 else pixels).convert(spec["color"])
    resized = np.asarray(image.resize(tuple(spec["size"]), Image.Resampling.BILINEAR), dtype=np.float32)
    chw = resized[None] if resized.ndim == 2 else resized.transpose(2, 0, 1)
    mean = np.asarray(spec["mean"], np.float32)[:, None, None]
    std = np.asarray(spec["std"], np.float32)[:, None, None]
    return ((chw * np.float32(spec["scale"]) - mean) / std)[None].astype(np.float32)


def probabilities(logits: np.ndarray) -> np.ndarray:
    """(N, K, S, S) logits -> probabilities: the sigmoid of one channel (binary), else the softmax."""
    logits = logits.astype(np.float64)
    if logits.shape[1] == 1:
        return 1.0 / (1.0 + np.exp(-logits))
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


def postprocess(logits: np.ndarray, config: dict[str, Any], size: tuple[int, int]) -> np.ndarray:
    """(N, K, S, S) logits -> (N, H, W) uint8 class indices at ``size`` = (height, width)."""
    return decide(probabilities(logits), config, size)


def decide(probs: np.ndarray, config: dict[str, Any], size: tuple[int, int]) -> np.ndarray:
    """(N, K, S, S) probabilities (e.g. an ensemble's average) -> (N, H, W) uint8 class indices at ``size``."""
    if probs.shape[1] == 1:  # one logit channel: foreground where its probability >= threshold
        masks = (probs[:, 0] >= config.get("threshold", 0.5)).astype(np.uint8)
    else:
        masks = probs.argmax(axis=1).astype(np.uint8)
    height, width = size
    return np.stack([np.asarray(Image.fromarray(m).resize((width, height), Image.Resampling.NEAREST)) for m in masks])


def mask_png(mask: np.ndarray, config: dict[str, Any]) -> Image.Image:
    """What is written: 0/255 for binary models (viewable), class indices otherwise."""
    return Image.fromarray(mask * 255 if len(config["classes"]) == 2 else mask)


def session(folder: str | Path = HERE) -> Any:
    import onnxruntime as ort

    path = Path(folder) / "model.onnx"
    model = path.read_bytes()
    try:
        external = uses_external_data(model)
    except (IndexError, ValueError) as exc:
        raise SystemExit(f"{path} is not a valid ONNX file ({exc})") from None
    if external:
        raise SystemExit(
            f"{path} refers to tensor data in other files (ONNX external data), which SegTune never writes: "
            "the bundle was changed, so it is not loaded (such a reference can read any file on this machine)"
        )
    return ort.InferenceSession(model, providers=["CPUExecutionProvider"])  # the bytes checked, not the file again


# Where an ONNX model can hold tensors: message -> {field number: message} (onnx.proto's numbering).
_ONNX_FIELDS = {
    "model": {7: "graph", 20: "training", 25: "function"},
    "training": {1: "graph", 2: "graph"},
    "graph": {1: "node", 5: "tensor", 15: "sparse"},
    "function": {7: "node", 11: "attribute"},
    "node": {5: "attribute"},
    "attribute": {5: "tensor", 6: "graph", 10: "tensor", 11: "graph", 22: "sparse", 23: "sparse"},
    "sparse": {1: "tensor", 2: "tensor"},
}
_EXTERNAL_DATA, _DATA_LOCATION, _EXTERNAL = (
    13,
    14,
    1,
)  # TensorProto.external_data, .data_location, DataLocation.EXTERNAL


def uses_external_data(model: bytes) -> bool:
    """Whether any tensor of the serialized ONNX ``model`` (initializers, constants, subgraphs,
    functions) keeps its data in another file. Raises ValueError/IndexError on a malformed file."""
    stack = [("model", memoryview(model))]
    while stack:
        kind, data = stack.pop()
        for number, value in _protobuf_fields(data):
            if kind == "tensor":
                if number == _EXTERNAL_DATA or (number == _DATA_LOCATION and value == _EXTERNAL):
                    return True
            elif number in _ONNX_FIELDS[kind] and isinstance(value, memoryview):
                stack.append((_ONNX_FIELDS[kind][number], value))
    return False


def _protobuf_fields(data: memoryview) -> Any:
    """(field number, value) of one protobuf message: an int for a varint, a memoryview for a
    length-delimited field (a sub-message, string or packed data), None for fixed-size numbers."""
    pos = 0
    while pos < len(data):
        key, pos = _varint(data, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(data, pos)
        elif wire == 2:
            size, pos = _varint(data, pos)
            if pos + size > len(data):
                raise ValueError("a field runs past the end of the file")
            value, pos = data[pos : pos + size], pos + size
        elif wire in (1, 5):
            value, pos = None, pos + (8 if wire == 1 else 4)
        else:
            raise ValueError(f"protobuf wire type {wire} is not used by ONNX")
        yield number, value


def _varint(data: memoryview, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        byte = data[pos]
        result |= (byte & 0x7F) << shift
        pos += 1
        if byte < 0x80:
            return result, pos
        shift += 7


def sessions(folder: str | Path = HERE) -> list[Any]:
    """One session, or one per member of a fold ensemble (``ensemble.json``: fold0, fold1, ... sub-folders)."""
    folder = Path(folder)
    path = folder / "ensemble.json"
    if not path.is_file():
        return [session(folder)]
    members = json.loads(path.read_text(encoding="utf-8")).get("members") or []
    if not members or not all(isinstance(m, str) and m.startswith("fold") and m[4:].isdigit() for m in members):
        raise SystemExit(f"{path} must name its members as fold0, fold1, ... (sub-folders of the ensemble)")
    return [session(folder / member) for member in members]


def predict_probabilities(models: list[Any], batch: np.ndarray) -> np.ndarray:
    """The members' probabilities for one input batch, averaged."""
    return np.mean([probabilities(m.run(None, {m.get_inputs()[0].name: batch})[0]) for m in models], axis=0)


def predict_folder(images: Path, out: Path, folder: Path = HERE) -> tuple[int, list[str]]:
    """Write one mask per readable image; returns (masks written, skipped files with why)."""
    config, models = load_config(folder), sessions(folder)
    out.mkdir(parents=True, exist_ok=True)
    written, skipped, seen = 0, [], set()
    for path in sorted(p for p in images.iterdir() if p.is_file() and not p.name.startswith(".")):
        if path.suffix.lower() not in IMAGE_SUFFIXES:
            skipped.append(f"{path.name}: not an image type SegTune reads ({', '.join(IMAGE_SUFFIXES)})")
            continue
        if path.stem in seen:
            skipped.append(f"{path.name}: another image already wrote {path.stem}.png")
            continue
        try:
            pixels = read_image(path)
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
            skipped.append(f"{path.name}: unreadable ({type(exc).__name__}: {exc})")
            continue
        seen.add(path.stem)
        probs = predict_probabilities(models, preprocess(pixels, config))
        mask_png(decide(probs, config, pixels.shape[:2])[0], config).save(out / f"{path.stem}.png")
        written += 1
    return written, skipped


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Segment a folder of images with this SegTune bundle's model.onnx.")
    parser.add_argument("--images", required=True, type=Path, help="folder of images (PNG, JPG, TIFF, BMP)")
    parser.add_argument("--out", required=True, type=Path, help="folder for the masks (<stem>.png)")
    parser.add_argument("--bundle", type=Path, default=HERE, help="the bundle folder (default: this script's)")
    args = parser.parse_args(argv)
    if not args.images.is_dir():
        parser.error(f"image folder {args.images} does not exist")
    written, skipped = predict_folder(args.images, args.out, args.bundle)
    print(f"{written} mask(s) written to {args.out}, {len(skipped)} file(s) skipped")
    for line in skipped:
        print(f"  skipped {line}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
