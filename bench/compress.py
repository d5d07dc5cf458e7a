"""The compression trade-off for one real-size model: Unet-resnet34 at 256 px on the lung X-rays.

    python bench/compress.py [--size 256] [--train 48] [--epochs 2] [--steps 6] [--threads 2]

Trains the model briefly on a subset of ../shared/datasets/chest_xray_lung_shenzhen (CPU), then
derives int8 static (PTQ), int8 QAT, 70 % global magnitude pruning and 50 % channel pruning, and
prints val/test Dice, file size, non-zero weights and CPU latency for each, with deltas against
the original. Figures go into bench/RESULTS.md ("Compression"). Keep it under ~10 min on 2 cores.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.data.tensors import TensorSet
from core.deploy.compression.config import CompressionConfig, CompressionData
from core.deploy.compression.measure import compare_variants, trade_off_table
from core.deploy.compression.methods import compress
from core.modeling.build import build_model
from core.modeling.config import ModelConfig
from core.modeling.optimizers import OptimizerConfig
from core.training.loop import TrainConfig, train_model

LUNGS = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "chest_xray_lung_shenzhen"


def load_pairs(size: int, count: int) -> TensorSet:
    files = sorted((LUNGS / "images").iterdir())
    files = files[:: max(1, len(files) // count)][:count]  # spread over the whole set
    images = [np.asarray(Image.open(p).convert("L").resize((size, size), Image.Resampling.BILINEAR))[None] for p in files]
    masks = [np.asarray(Image.open(LUNGS / "masks" / f"{p.stem}.png").convert("L").resize((size, size), Image.Resampling.NEAREST)) > 127
             for p in files]
    return TensorSet(torch.from_numpy(np.stack(images)), torch.from_numpy(np.stack(masks).astype(np.uint8)), tuple(p.stem for p in files))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--train", type=int, default=48, help="training images (val and test get a quarter each)")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--steps", type=int, default=6, help="fine-tune steps of QAT and pruning")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--encoder", default="resnet34")
    args = parser.parse_args()
    if not LUNGS.is_dir():
        print(f"{LUNGS} is not on this machine", file=sys.stderr)
        return 1
    torch.set_num_threads(args.threads)
    held_out = max(4, args.train // 4)
    pairs = load_pairs(args.size, args.train + 2 * held_out)
    n = args.train
    data = CompressionData(pairs.subset(range(n)), pairs.subset(range(n, n + held_out)),
                           pairs.subset(range(n + held_out, n + 2 * held_out)), "binary", 2)

    torch.manual_seed(0)
    model = build_model(ModelConfig("Unet", 1, 2, encoder=args.encoder, encoder_depth=5))
    started = time.perf_counter()
    config = TrainConfig(epochs=args.epochs, batch_size=8, optimizer=OptimizerConfig(lr=1e-3), patience=100, loss="dice_bce")
    result = train_model(model, data.train, data.val, config, mode="binary", num_classes=2)
    model.load_state_dict(result.best_state)
    model.eval()
    print(f"trained Unet-{args.encoder} at {args.size} px on {n} images, {args.epochs} epochs: "
          f"{time.perf_counter() - started:.0f} s, val Dice {result.val_metrics['dice']:.3f}")

    configs = [
        CompressionConfig("ptq", calibration_batches=4),
        CompressionConfig("qat", finetune_steps=args.steps, lr=1e-4),
        CompressionConfig("prune", sparsity=0.7, finetune_steps=args.steps, ramp_every=max(1, args.steps // 6)),
        CompressionConfig("prune", sparsity=0.5, structured=True, finetune_steps=args.steps, ramp_every=max(1, args.steps // 6)),
    ]
    variants = []
    for compression in configs:
        variants.append(compress(compression, model, data))
        print(f"  {compression.label}: {variants[-1].seconds:.0f} s")
    reports = compare_variants(model, variants, data, batch_size=8)
    print(f"\nCPU, {torch.get_num_threads()} threads, {args.size} px, val {held_out} / test {held_out} images:")
    print(trade_off_table(reports))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
