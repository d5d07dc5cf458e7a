"""The compression trade-off for one real model: a Unet on the lung X-rays.

    python bench/compress.py [--size 96] [--encoder resnet18] [--train 32] [--epochs 10]
        [--finetune-epochs E] [--control]

Trains the model on a subset of ../shared/datasets/chest_xray_lung_shenzhen (CPU), then derives
int8 static (PTQ), int8 QAT, 70 % global magnitude pruning and 50 % channel pruning with the
product's default fine-tunes (CompressionConfig: epochs over the training split, at least a few
dozen steps) unless ``--finetune-epochs`` says otherwise, and prints val/test Dice, file size,
non-zero weights and CPU latency for each, with deltas against the original. ``--control`` also
fine-tunes the uncompressed original as long as the pruned one, to tell recovery from extra
training. Figures go into bench/RESULTS.md ("Compression"): ~50 min on 2 cores shared with other jobs.
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.data.tensors import ImageSet
from core.deploy.compression.config import CompressedVariant, CompressionConfig, CompressionData
from core.deploy.compression.finetune import finetune
from core.deploy.compression.measure import compare_variants, trade_off_table
from core.deploy.compression.methods import compress
from core.modeling.build import build_model
from core.modeling.config import ModelConfig
from core.modeling.optimizers import OptimizerConfig
from core.training.loop import TrainConfig, train_model

LUNGS = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "chest_xray_lung_shenzhen"


def load_pairs(size: int, count: int) -> ImageSet:
    files = sorted((LUNGS / "images").iterdir())
    files = files[:: max(1, len(files) // count)][:count]  # spread over the whole set
    images = [
        np.asarray(Image.open(p).convert("L").resize((size, size), Image.Resampling.BILINEAR))[None] for p in files
    ]
    masks = [
        np.asarray(
            Image.open(LUNGS / "masks" / f"{p.stem}.png").convert("L").resize((size, size), Image.Resampling.NEAREST)
        )
        > 127
        for p in files
    ]
    return ImageSet(
        torch.from_numpy(np.stack(images)),
        torch.from_numpy(np.stack(masks).astype(np.uint8)),
        tuple(p.stem for p in files),
    )


def fine_tuned_original(model: torch.nn.Module, data: CompressionData, like: CompressionConfig) -> CompressedVariant:
    """The original fine-tuned as long and as fast as ``like``, nothing removed: what extra training alone does."""
    tuned = copy.deepcopy(model)
    started = time.perf_counter()
    steps = like.steps_for(len(data.train))
    finetune(tuned, data, like, steps)
    print(f"  control (original fine-tuned {steps} steps): {time.perf_counter() - started:.0f} s", flush=True)
    return CompressedVariant(like, tuned.eval(), False, time.perf_counter() - started, steps)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=96)
    parser.add_argument("--train", type=int, default=32, help="training images (val and test get a quarter each)")
    parser.add_argument("--epochs", type=int, default=10, help="training epochs of the original")
    parser.add_argument(
        "--finetune-epochs", type=float, help="fine-tune epochs of QAT and pruning (default: the product's)"
    )
    parser.add_argument(
        "--control", action="store_true", help="also fine-tune the uncompressed original (channel pruning's length)"
    )
    parser.add_argument(
        "--methods", default="ptq,qat,prune,channels", help="comma-separated subset of ptq,qat,prune,channels"
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--encoder", default="resnet18")
    args = parser.parse_args()
    if not LUNGS.is_dir():
        print(f"{LUNGS} is not on this machine", file=sys.stderr)
        return 1
    torch.set_num_threads(args.threads)
    held_out = max(4, args.train // 4)
    pairs = load_pairs(args.size, args.train + 2 * held_out)
    n = args.train
    data = CompressionData(
        pairs.subset(range(n)),
        pairs.subset(range(n, n + held_out)),
        pairs.subset(range(n + held_out, n + 2 * held_out)),
        "binary",
        2,
    )

    torch.manual_seed(0)
    model = build_model(ModelConfig("Unet", 1, 2, encoder=args.encoder, encoder_depth=5))
    started = time.perf_counter()
    config = TrainConfig(
        epochs=args.epochs, batch_size=8, optimizer=OptimizerConfig(lr=1e-3), patience=100, loss="dice_bce"
    )
    result = train_model(model, data.train, data.val, config, mode="binary", num_classes=2)
    model.load_state_dict(result.best_state)
    model.eval()
    print(
        f"trained Unet-{args.encoder} at {args.size} px on {n} images, {args.epochs} epochs: "
        f"{time.perf_counter() - started:.0f} s, val Dice {result.val_metrics['dice']:.3f}",
        flush=True,
    )

    available = {
        "ptq": CompressionConfig("ptq"),
        "qat": CompressionConfig("qat", finetune_epochs=args.finetune_epochs),
        "prune": CompressionConfig("prune", sparsity=0.7, finetune_epochs=args.finetune_epochs),
        "channels": CompressionConfig("prune", sparsity=0.5, structured=True, finetune_epochs=args.finetune_epochs),
    }
    variants = []
    for name in args.methods.split(","):
        compression = available[name]
        variants.append(compress(compression, model, data))
        tuned = (
            f", {variants[-1].steps} fine-tune steps at lr {compression.finetune_lr:g}" if variants[-1].steps else ""
        )
        print(f"  {compression.label}: {variants[-1].seconds:.0f} s{tuned}", flush=True)
    if args.control:
        variants.append(fine_tuned_original(model, data, available["channels"]))
    reports = compare_variants(model, variants, data, batch_size=8)
    if args.control:
        reports[-1].name = "original fine-tuned"
    print(f"\nCPU, {torch.get_num_threads()} threads, {args.size} px, val {held_out} / test {held_out} images:")
    print(trade_off_table(reports))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
