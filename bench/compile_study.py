"""The product end to end, eager vs compiled: the same study's wall time with each ``compile`` mode.

Generates the synthetic cell dataset (``core.data.demo``) in a temporary workspace and runs the
same study once per mode through ``core.runtime.tuning.run_study`` (what ``python -m core tune``
runs): random sampler with a fixed seed and no pruner, so every mode trains the same
configurations. Reports per mode the study's wall time, the trials' summed training time
(compiling included), each epoch's time, the best val Dice, and any trial
that fell back to eager (``compile_warning``).

    python bench/compile_study.py                      # on a GPU: 8 trials, 256 px, off vs default vs reduce-overhead
    # the CPU:
    python bench/compile_study.py --device cpu --size 64 --images 24 --trials 2 --epochs 2 --modes off,default --tiny
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.contract import TrialAttr
from core.data.demo import create_demo_dataset
from core.search.validation import spec_from_dict
from core.settings import load_settings

SMP_SPACE = {
    "architecture": "Unet",
    "encoder": {"choices": ["resnet18", "resnet34"]},
    "optimizer": "adam",
    "lr": {"low": 1e-4, "high": 3e-3, "log": True},
    "loss": "dice_bce",
}
TINY_SPACE = {
    "architecture": "ClassicUNet",
    "unet_start_filters": 4,
    "unet_depth": 2,
    "optimizer": "adam",
    "lr": {"low": 1e-3, "high": 1e-2, "log": True},
    "loss": "dice_bce",
}  # lr varies: every trial trains (a repeated configuration would be reused, not trained)


def spec_for(args: argparse.Namespace, mode: str, run: int) -> dict:
    space = {**(TINY_SPACE if args.tiny else SMP_SPACE), "batch_size": args.batch, "epochs": args.epochs}
    return {
        "name": f"compile-{run}-{mode}",
        "dataset": "demo-cells",
        "image_size": args.size,
        "sampler": "random",
        "pruner": "none",
        "seed": 0,
        "patience": args.epochs,
        "budget": {"n_trials": args.trials, "max_epochs": args.epochs},
        "preview_count": 2,
        "search_space": space,
        "compile": mode,
    }


def run_mode(args: argparse.Namespace, settings, mode: str, run: int) -> dict[str, object]:
    from core.runtime.tuning import run_study

    started = time.perf_counter()
    study = run_study(spec_from_dict(spec_for(args, mode, run)), settings, device=args.device)
    wall = time.perf_counter() - started
    trials = [t for t in study.trials if t.state.is_finished()]
    return {
        "mode": mode,
        "wall_s": wall,
        "train_s": sum(t.user_attrs.get(TrialAttr.TRAIN_TIME_S, 0.0) for t in trials),
        "epoch_s": [round(r["epoch_time_s"], 3) for t in trials for r in t.user_attrs.get(TrialAttr.HISTORY, [])],
        "best_val_dice": max((t.value for t in trials if t.value is not None), default=None),
        "complete": sum(t.state.name == "COMPLETE" for t in trials),
        "warnings": [
            t.user_attrs[TrialAttr.COMPILE_WARNING] for t in trials if t.user_attrs.get(TrialAttr.COMPILE_WARNING)
        ],
    }


def main(argv: list[str] | None = None) -> dict[str, object]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument(
        "--modes", default="off,default,reduce-overhead", help="compile modes to run, in order (each its own study)"
    )
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--images", type=int, default=400, help="synthetic images (70 %% train, 16 %% val, 14 %% test)")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument(
        "--tiny", action="store_true", help="a 4-filter ClassicUNet instead of smp U-Nets (CPU smoke runs)"
    )
    parser.add_argument("--home", type=Path, help="workspace (default: a temporary folder)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    home = args.home or Path(tempfile.mkdtemp(prefix="segtune-compile-"))
    os.environ["SEGTUNE_HOME"] = str(home)
    for name in ("SEGTUNE_DB", "SEGTUNE_ARTIFACTS"):
        os.environ.pop(name, None)
    settings = load_settings()
    create_demo_dataset(settings.datasets_dir, count=args.images, size=args.size)
    device = (
        torch.cuda.get_device_name() if args.device.startswith("cuda") else f"CPU, {torch.get_num_threads()} threads"
    )
    print(
        f"{device}; torch {torch.__version__}; {args.trials} trials x {args.epochs} epochs, {args.images} images at "
        f"{args.size} px, batch {args.batch}",
        flush=True,
    )
    rows = []
    # a mode may repeat (off,default,off brackets a noisy machine's load)
    for run, mode in enumerate(args.modes.split(",")):
        rows.append(run_mode(args, settings, mode, run))
        print(f"  {mode}: {rows[-1]['wall_s']:.1f} s", flush=True)
    eager = next((row["wall_s"] for row in rows if row["mode"] == "off"), None)
    print(
        "| compile | study wall time | vs eager | trials' training time (compiling included) | median epoch "
        "| best val Dice | fell back to eager |"
    )
    print("|---|---|---|---|---|---|---|")
    for row in rows:
        ratio = f"{eager / row['wall_s']:.2f}x" if eager else "-"
        dice = f"{row['best_val_dice']:.3f}" if row["best_val_dice"] is not None else "-"
        print(
            f"| {row['mode']} | {row['wall_s']:.1f} s | {ratio} | {row['train_s']:.1f} s "
            f"| {statistics.median(row['epoch_s']):.2f} s | {dice} | {len(row['warnings'])} |"
        )
    for row in rows:
        for warning in row["warnings"][:1]:
            print(f"  {row['mode']}: {warning}")
    result = {"device": device, "torch": torch.__version__, "rows": rows}
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
