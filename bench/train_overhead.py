"""SegTune's trainer vs a minimal plain PyTorch loop: same model, data, epochs. Target ratio <= 1.05.

    python bench/train_overhead.py [--size 128] [--epochs 3] [--device auto]

Uses the lung X-ray set from ../shared/datasets when present, else the generated demo dataset.
Both loops train and validate every epoch; the plain loop computes Dice by hand.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.data.demo import create_demo_dataset
from core.data.ingest import ingest_dataset
from core.data.manifest import dataset_path, load_manifest
from core.data.tensors import ImageSet, iterate_batches, load_tensor_set
from core.modeling.build import build_model
from core.modeling.config import ModelConfig
from core.modeling.inference import autocast
from core.modeling.losses import build_loss
from core.modeling.optimizers import OptimizerConfig
from core.training.loop import TrainConfig, prepare_model, resolve_device, train_model

LUNGS = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "chest_xray_lung_shenzhen"


def load_data(workdir: Path, size: int, count: int, device: torch.device) -> tuple[ImageSet, ImageSet, str]:
    datasets = workdir / "datasets"
    if LUNGS.is_dir():
        ingest_dataset(LUNGS, "lungs", datasets)
        name = "lungs"
    else:
        name = create_demo_dataset(datasets).name
    manifest = load_manifest(datasets, name)
    stems = list(manifest.stems)[:count]
    data = load_tensor_set(dataset_path(datasets, name), manifest, stems, size, 1).to(device)
    cut = int(len(data) * 0.8)
    return data.subset(list(range(cut))), data.subset(list(range(cut, len(data)))), name


def plain_loop(model: torch.nn.Module, train: ImageSet, val: ImageSet, epochs: int, batch_size: int, lr: float) -> None:
    device = train.images.device
    loss_fn = build_loss("dice_bce", "binary").to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    for _ in range(epochs):
        model.train()
        order = torch.randperm(len(train), device=device)
        for start in range(0, len(train), batch_size):
            index = order[start : start + batch_size]
            images, masks = train.images[index].float() / 255, train.targets[index].long()
            optimizer.zero_grad(set_to_none=True)
            with autocast(device):
                loss = loss_fn(model(images), masks)
            loss.backward()
            optimizer.step()
        model.eval()
        inter = union = torch.zeros((), device=device)
        with torch.no_grad():
            for images, masks in iterate_batches(val, batch_size, shuffle=False, generator=None, augment=None):
                with autocast(device):
                    predicted = model(images).float().squeeze(1) > 0
                inter = inter + (predicted & (masks == 1)).sum()
                union = union + predicted.sum() + (masks == 1).sum()
        float(2 * inter / union.clamp(min=1))  # one host sync per epoch, like SegTune


def timed(fn, *args) -> float:
    start = time.perf_counter()
    fn(*args)
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--count", type=int, default=160)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    device = resolve_device(args.device)
    with tempfile.TemporaryDirectory() as tmp:
        train, val, name = load_data(Path(tmp), args.size, args.count, device)
        config = ModelConfig(architecture="Unet", in_channels=1, num_classes=2, encoder="resnet18")
        train_config = TrainConfig(
            epochs=args.epochs,
            batch_size=args.batch_size,
            optimizer=OptimizerConfig(lr=1e-3),
            loss="dice_bce",
            patience=args.epochs + 1,
        )

        def segtune() -> None:
            torch.manual_seed(0)
            train_model(
                prepare_model(build_model(config), device), train, val, train_config, mode="binary", num_classes=2
            )

        def plain() -> None:
            torch.manual_seed(0)
            plain_loop(prepare_model(build_model(config), device), train, val, args.epochs, args.batch_size, 1e-3)

        segtune()  # warm-up (allocators, cudnn autotune)
        # Interleaved, best of each: a load change on the machine hits both loops alike.
        segtune_times, plain_times = [], []
        for _ in range(args.repeats):
            segtune_times.append(timed(segtune))
            plain_times.append(timed(plain))
        segtune_s, plain_s = min(segtune_times), min(plain_times)
    print(
        f"dataset={name} images={len(train)}+{len(val)} size={args.size} epochs={args.epochs} device={device} "
        f"threads={torch.get_num_threads()}"
    )
    print(
        f"segtune trainer: {segtune_s:.2f} s   plain loop: {plain_s:.2f} s   ratio: {segtune_s / plain_s:.3f} "
        "(target <= 1.05)"
    )


if __name__ == "__main__":
    main()
