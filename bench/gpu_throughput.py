"""GPU packing and throughput: images/s and the share of the device's matmul rate a trial achieves.

For Unet-resnet34 (no pretrained weights) at 256 px it measures training images/s with 1, 2 and 4
trials packed on one device (each trial its own process, as SegTune's workers are), the device's
measured matmul rate (bf16 on CUDA, fp32 on the CPU) and the achieved fraction of it (training
FLOPs counted by ``torch.utils.flop_counter``), the per-trial peak memory from the trial-cost
probe's rule, and the projected time of the brain MRI study's 45-run grid (preset
``p5-resnet-unet-mri``: 5 ResNet encoders x 3 optimizers x 3 learning rates, 50 epochs) on one
device, with each encoder's cost scaled from its counted FLOPs.

Each packing is measured per compile mode (``--modes``, the spec's ``compile`` values): eager
(``off``), compiled (``default``) and compiled + CUDA graphs (``reduce-overhead``), through the
trainer's own :func:`core.training.compiled.compile_model` (its warm-up compiles; the time it
took is reported, the timed steps come after it).

    python bench/gpu_throughput.py                         # on a GPU: the figures for bench/RESULTS.md
    python bench/gpu_throughput.py --device cpu --size 64 --batch 2 --steps 3 --packing 1,2   # CPU, small
    python bench/gpu_throughput.py --device cpu --size 64 --batch 4 --steps 10 --packing 1 --modes off,default \
        --encoder resnet18
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch
import torch.multiprocessing as mp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.modeling.build import build_model
from core.modeling.config import ModelConfig
from core.training.compiled import compile_model
from core.training.estimate import analytic_memory_bytes

P5_ENCODERS = ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152")
P5_RUNS_PER_ENCODER = 9  # 3 optimizers x 3 learning rates
P5_EPOCHS = 50
P5_IMAGES = 3929  # LGG kaggle_3m slices (110 patients)
TRAIN_SHARE, VAL_SHARE = 0.7, 0.16  # SegTune's default split
EVAL_COST = 1 / 3  # a validation image costs about a third of a training image
WARM_STEPS = 3  # after compiling: CUDA graphs are recorded on the first calls, not replayed yet
MODE_LABELS = {"off": "eager", "default": "compiled", "reduce-overhead": "compiled + CUDA graphs"}


def unet(encoder: str, channels: int) -> torch.nn.Module:
    return build_model(ModelConfig(architecture="Unet", encoder=encoder, in_channels=channels, num_classes=2))


def autocast(device: torch.device):
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return torch.autocast("cpu", enabled=False)


def matmul_rate(device: torch.device, n: int, repeats: int = 10, rounds: int = 5) -> float:
    """Measured dense matmul FLOP/s (best of ``rounds``): bf16 on CUDA, fp32 on the CPU."""
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
    a @ b  # warm-up
    _sync(device)
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(repeats):
            a @ b
        _sync(device)
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 * repeats / best


def training_flops(encoder: str, size: int, channels: int) -> float:
    """FLOPs of one training image (forward + backward) at ``size`` px."""
    from torch.utils.flop_counter import FlopCounterMode

    model = unet(encoder, channels)
    images = torch.rand(2, channels, size, size)  # two: batch norm needs more than one value per channel
    with FlopCounterMode(display=False) as counter:
        model(images).float().mean().backward()
    return float(counter.get_total_flops()) / 2


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _trial(rank: int, args: argparse.Namespace, start: mp.Event, results: mp.Queue) -> None:
    """One packed trial: compiled as ``args.mode`` says, warm-up steps, then ``steps`` timed training steps."""
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    torch.manual_seed(rank)
    model = unet(args.encoder, args.channels).to(device)
    images = torch.rand(args.batch, args.channels, args.size, args.size, device=device)
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
        images = images.contiguous(memory_format=torch.channels_last)
    masks = (torch.rand(args.batch, 1, args.size, args.size, device=device) > 0.5).float()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)

    def loss_fn(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.binary_cross_entropy_with_logits(logits.float(), target)

    compiled = compile_model(model, args.mode, (images, masks), loss_fn, lambda: autocast(device))
    forward = compiled.module

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        with autocast(device):
            loss = loss_fn(forward(images), masks)
        loss.backward()
        optimizer.step()

    for _ in range(WARM_STEPS):
        step()
    _sync(device)
    start.wait()
    began = time.perf_counter()
    for _ in range(args.steps):
        step()
    _sync(device)
    peak = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else 0
    results.put((args.steps * args.batch, time.perf_counter() - began, peak, compiled.seconds, compiled.warning))


def packed_throughput(args: argparse.Namespace, packed: int, mode: str = "off") -> dict[str, object]:
    context = mp.get_context("spawn")
    start, results = context.Event(), context.Queue()
    threads = max(1, args.threads // packed) if args.device == "cpu" else args.threads
    trial_args = argparse.Namespace(**{**vars(args), "threads": threads, "mode": mode})
    processes = [context.Process(target=_trial, args=(rank, trial_args, start, results)) for rank in range(packed)]
    for process in processes:
        process.start()
    time.sleep(0.5)
    start.set()
    outcomes = [results.get(timeout=args.timeout_s) for _ in processes]
    for process in processes:
        process.join()
    images = sum(o[0] for o in outcomes)
    seconds = max(o[1] for o in outcomes)
    warnings = [o[4] for o in outcomes if o[4]]
    return {
        "mode": mode,
        "packed": packed,
        "images_per_s": images / seconds,
        "peak_gib": max(o[2] for o in outcomes) / 2**30,
        "compile_s": max(o[3] for o in outcomes),
        "warning": warnings[0] if warnings else None,
    }


def project_p5(images_per_s_resnet34: float, flops: dict[str, float]) -> float:
    """Seconds for the 45-run grid at the measured rate, each encoder scaled by its FLOPs."""
    per_epoch_images = P5_IMAGES * (TRAIN_SHARE + EVAL_COST * VAL_SHARE)
    total = 0.0
    for encoder in P5_ENCODERS:
        rate = images_per_s_resnet34 * flops["resnet34"] / flops[encoder]
        total += P5_RUNS_PER_ENCODER * P5_EPOCHS * per_epoch_images / rate
    return total


def main(argv: list[str] | None = None) -> dict[str, object]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--channels", type=int, default=3)
    parser.add_argument("--steps", type=int, default=30, help="timed training steps per trial")
    parser.add_argument("--packing", default="1,2,4", help="trials per device to measure")
    parser.add_argument(
        "--modes", help="compile modes to measure (default off,default,reduce-overhead on CUDA; off on the CPU)"
    )
    parser.add_argument(
        "--encoder", default="resnet34", choices=P5_ENCODERS, help="the U-Net's encoder for the packed trials"
    )
    parser.add_argument(
        "--matmul", type=int, help="matmul side for the peak rate (default 8192 on CUDA, 1024 on the CPU)"
    )
    parser.add_argument(
        "--threads", type=int, default=os.cpu_count() or 1, help="CPU threads, split between packed trials"
    )
    parser.add_argument("--timeout-s", type=float, default=600)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    modes = (args.modes or ("off,default,reduce-overhead" if device.type == "cuda" else "off")).split(",")
    torch.set_num_threads(args.threads)
    peak = matmul_rate(device, args.matmul or (8192 if device.type == "cuda" else 1024))
    flops = {encoder: training_flops(encoder, args.size, args.channels) for encoder in P5_ENCODERS}
    memory = analytic_memory_bytes(
        unet(args.encoder, args.channels), torch.rand(args.batch, args.channels, args.size, args.size)
    )
    kind = "bf16" if device.type == "cuda" else "fp32"
    print(
        f"device {device} "
        f"({torch.cuda.get_device_name(device) if device.type == 'cuda' else f'{args.threads} CPU threads'}); "
        f"torch {torch.__version__}; measured {kind} matmul rate {peak / 1e12:.2f} TFLOP/s; Unet-{args.encoder} at "
        f"{args.size} px, batch {args.batch}: {flops[args.encoder] / 1e9:.2f} GFLOP per training image; probe's "
        f"memory estimate {memory / 2**30:.2f} GiB per trial"
    )
    rows = []
    for mode in modes:
        for packed in [int(p) for p in args.packing.split(",")]:
            row = packed_throughput(args, packed, mode)
            row["achieved"] = row["images_per_s"] * flops[args.encoder] / peak
            row["p5_hours"] = project_p5(row["images_per_s"] * flops[args.encoder] / flops["resnet34"], flops) / 3600
            rows.append(row)
            print(f"  {MODE_LABELS.get(mode, mode)} x {packed}: {row['images_per_s']:.1f} images/s", flush=True)
    eager = {row["packed"]: row["images_per_s"] for row in rows if row["mode"] == "off"}
    print(
        "| compile | trials per device | images/s (all trials) | vs eager | achieved share of matmul rate "
        "| peak memory per trial (GiB) | compile time (s) | p5 grid, projected hours |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for row in rows:
        memory_text = f"{row['peak_gib']:.2f}" if row["peak_gib"] else "- (CPU)"
        ratio = f"{row['images_per_s'] / eager[row['packed']]:.2f}x" if row["packed"] in eager else "-"
        print(
            f"| {MODE_LABELS.get(row['mode'], row['mode'])}{' (fell back to eager)' if row['warning'] else ''} "
            f"| {row['packed']} | {row['images_per_s']:.1f} | {ratio} | {100 * row['achieved']:.1f} % | {memory_text} "
            f"| {row['compile_s']:.1f} | {row['p5_hours']:.1f} |"
        )
    for row in rows:
        if row["warning"]:
            print(f"  {row['mode']} x {row['packed']}: {row['warning']}")
    result = {
        "device": str(device),
        "torch": torch.__version__,
        "peak_flops": peak,
        "flops_per_image": flops,
        "memory_estimate_bytes": memory,
        "rows": rows,
    }
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
