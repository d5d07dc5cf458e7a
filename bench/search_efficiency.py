"""Search efficiency: random vs TPE vs TPE + Hyperband (vs GP) at the same compute budget.

Every method searches the same space on the same data with the product's own samplers and
pruners (``core.search.samplers``), the product's trainer, and the same budget counted in
**epoch-seconds** (the measured wall time of training + validating each epoch), not in trials: a
pruner that stops bad trials early buys more trials with the same compute. Each method runs with
several seeds. For each run the script keeps the best-so-far validation Dice as a function of the
compute spent, and prints per method:

- ``best``: the final best val Dice (median over seeds, and min..max);
- ``to random's best``: the compute at which the run first reached random search's final best
  (median over random's seeds), as a fraction of the budget (median over seeds; "-" when a run
  never reached it, counted as 1.0+ in the median) and how many seeds got there.

    nice -n 10 python bench/search_efficiency.py                       # ~10 min on 2 CPU cores
    python bench/search_efficiency.py --budget-s 20 --seeds 1 --images 48   # a smoke run

CPU-sized by design (64 px, a small ClassicUNet space, 64 slices of ``ct_liver_msd``, volumes kept
apart between train and val); its verdict holds for this scale and space, see bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import optuna
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.data.tensors import ImageSet
from core.modeling.architectures import config_from_params
from core.modeling.build import build_model
from core.search.samplers import make_pruner, make_sampler
from core.search.spec import StudySpec
from core.search.suggest import suggest_params
from core.search.validation import spec_from_dict
from core.training.loop import TrainConfig, prepare_model, resolve_device, train_model

DATASET = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "ct_liver_msd"
METHODS = {  # name -> (sampler, pruner), both from the product's registries
    "random": ("random", "none"),
    "tpe": ("tpe", "none"),
    "tpe+hyperband": ("tpe", "hyperband"),
    "gp": ("gp", "none"),
}
SPACE = {  # a realistic small-model space: shape, optimiser, learning rate, loss, batch size
    "architecture": "ClassicUNet",
    "unet_start_filters": {"choices": [4, 8]},
    "unet_depth": {"low": 2, "high": 3},
    "optimizer": {"choices": ["adam", "sgd", "rmsprop"]},
    "lr": {"low": 1e-4, "high": 1e-1, "log": True},
    "loss": {"choices": ["dice_bce", "bce", "focal", "dice"]},
    "batch_size": {"choices": [8, 16]},
}


class BudgetSpent(Exception):
    """The run's epoch-second budget is used up: the running trial stops here."""


@dataclass
class Ledger:
    """Compute spent so far and the best val Dice seen, as (compute, best) steps."""

    budget_s: float
    used_s: float = 0.0
    best: float = 0.0
    trials: int = 0
    steps: list[tuple[float, float]] = field(default_factory=list)

    def add(self, seconds: float, dice: float) -> None:
        self.used_s += seconds
        if dice > self.best:
            self.best = dice
            self.steps.append((self.used_s, dice))

    def compute_to_reach(self, target: float) -> float | None:
        return next((used for used, best in self.steps if best >= target - 1e-9), None)


# --- data ---------------------------------------------------------------------------------------


def load_pairs(folder: Path, stems: list[str], size: int) -> ImageSet:
    images, masks = [], []
    for stem in stems:
        image = Image.open(folder / "images" / f"{stem}.png").convert("L").resize((size, size), Image.BILINEAR)
        mask = Image.open(folder / "masks" / f"{stem}.png").convert("L").resize((size, size), Image.NEAREST)
        images.append(np.asarray(image, dtype=np.uint8)[None])
        masks.append((np.asarray(mask) > 127).astype(np.uint8))
    return ImageSet(torch.from_numpy(np.stack(images)), torch.from_numpy(np.stack(masks)), tuple(stems))


def volume_split(folder: Path, count: int, val_fraction: float = 0.25) -> tuple[list[str], list[str]]:
    """``count`` slices spread over the volumes; whole volumes go to val (no slice leaks)."""
    stems = sorted(path.stem for path in (folder / "images").glob("*.png"))
    stems = stems[:: max(1, len(stems) // count)][:count]
    volumes = sorted({stem.split("_")[1] for stem in stems})
    val_volumes = set(volumes[:: max(2, round(1 / val_fraction))])
    return [s for s in stems if s.split("_")[1] not in val_volumes], [
        s for s in stems if s.split("_")[1] in val_volumes
    ]


# --- one run --------------------------------------------------------------------------------------


def make_spec(method: str, seed: int, max_epochs: int, expected_trials: int) -> StudySpec:
    sampler, pruner = METHODS[method]
    return spec_from_dict(
        {
            "name": f"bench-{method.replace('+', '-')}-{seed}",
            "dataset": "bench",
            "image_size": 64,
            "sampler": sampler,
            "pruner": pruner,
            "seed": seed,
            "budget": {"n_trials": expected_trials, "max_epochs": max_epochs},
            "patience": max_epochs,
            "search_space": {**SPACE, "epochs": max_epochs},
        }
    )


def run_method(method: str, seed: int, train: ImageSet, val: ImageSet, args: argparse.Namespace) -> Ledger:
    spec = make_spec(method, seed, args.max_epochs, args.expected_trials)
    ledger = Ledger(args.budget_s)
    study = optuna.create_study(direction="maximize", sampler=make_sampler(spec), pruner=make_pruner(spec))

    def objective(trial: optuna.Trial) -> float:
        params = suggest_params(trial, spec)
        torch.manual_seed(seed * 1000 + trial.number)
        model = prepare_model(build_model(config_from_params(params, 1, 2)), train.device)
        config = TrainConfig.from_params(
            params, patience=spec.patience, seed=seed * 1000 + trial.number, select_metric="dice", select_maximize=True
        )
        ledger.trials += 1

        def on_epoch(record) -> None:
            ledger.add(record.epoch_time_s, record.val["dice"])
            trial.report(record.val["dice"], record.epoch)
            if ledger.used_s >= ledger.budget_s:
                raise BudgetSpent
            if trial.should_prune():
                raise optuna.TrialPruned

        try:
            result = train_model(model, train, val, config, mode="binary", num_classes=2, on_epoch=on_epoch)
        except BudgetSpent:
            trial.study.stop()
            raise optuna.TrialPruned from None
        return result.val_metrics["dice"]

    study.optimize(objective, n_trials=10_000, catch=(RuntimeError, ValueError))
    return ledger


# --- the table ------------------------------------------------------------------------------------


def summarise(runs: dict[str, list[Ledger]], budget_s: float) -> list[dict[str, object]]:
    target = statistics.median(ledger.best for ledger in runs["random"]) if "random" in runs else None
    rows = []
    for method, ledgers in runs.items():
        bests = [ledger.best for ledger in ledgers]
        reach = [ledger.compute_to_reach(target) if target is not None else None for ledger in ledgers]
        fractions = [r / budget_s if r is not None else math.inf for r in reach]
        median_fraction = statistics.median(fractions)
        rows.append(
            {
                "method": method,
                "best_median": statistics.median(bests),
                "best_min": min(bests),
                "best_max": max(bests),
                "trials_median": statistics.median(ledger.trials for ledger in ledgers),
                "reach_fraction_median": median_fraction if math.isfinite(median_fraction) else None,
                "reached": sum(r is not None for r in reach),
                "seeds": len(ledgers),
                "target": target,
            }
        )
    return rows


def table(rows: list[dict[str, object]], budget_s: float) -> str:
    target = rows[0]["target"] if rows else None
    lines = [
        f"budget {budget_s:.0f} epoch-seconds per run; random search's final best (median) = {target:.3f}"
        if target
        else f"budget {budget_s:.0f} epoch-seconds per run",
        "| method | best val Dice, median (min..max) | trials (median) | compute to reach random's best (fraction of "
        "budget, median) | seeds that reached it |",
        "|---|---|---|---|---|",
    ]
    for row in rows:
        fraction = row["reach_fraction_median"]
        lines.append(
            f"| {row['method']} | {row['best_median']:.3f} ({row['best_min']:.3f}..{row['best_max']:.3f}) | "
            f"{row['trials_median']:.0f} | {'-' if fraction is None else f'{fraction:.2f}'} | "
            f"{row['reached']}/{row['seeds']} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", type=Path, default=DATASET, help="images/ + masks/ folder (default: ct_liver_msd)")
    parser.add_argument("--images", type=int, default=64, help="slices used, train + val")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--methods", default="random,tpe,tpe+hyperband,gp", help=f"comma-separated, of {list(METHODS)}")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--budget-s", type=float, default=45.0, help="epoch-seconds per run")
    parser.add_argument("--max-epochs", type=int, default=5, help="each trial's epochs; Hyperband's max resource")
    parser.add_argument(
        "--expected-trials", type=int, default=16, help="the spec's n_trials (sets TPE's startup trials)"
    )
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda, cuda:1 ...")
    parser.add_argument("--json", type=Path, help="also write the rows and every run's steps here")
    args = parser.parse_args(argv)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        parser.error(f"unknown method(s) {unknown}; valid: {list(METHODS)}")
    if not (args.dataset / "images").is_dir():
        parser.error(f"{args.dataset} has no images/ folder (the shared datasets live in ../shared/datasets)")

    torch.set_num_threads(args.threads)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    train_stems, val_stems = volume_split(args.dataset, args.images)
    device = resolve_device(args.device)  # the trainer runs where the data are, as in the product's objective
    train, val = (load_pairs(args.dataset, stems, args.size).to(device) for stems in (train_stems, val_stems))
    print(
        f"{args.dataset.name}: {len(train)} train / {len(val)} val slices at {args.size} px on {device}; "
        f"{args.threads} thread(s)",
        flush=True,
    )
    started = time.perf_counter()
    runs: dict[str, list[Ledger]] = {}
    for seed in range(args.seeds):  # seeds outermost: machine-load drift hits every method alike
        for method in methods:
            ledger = run_method(method, seed, train, val, args)
            runs.setdefault(method, []).append(ledger)
            print(
                f"  {method:14s} seed {seed}: best {ledger.best:.3f} after {ledger.trials} trials "
                f"({time.perf_counter() - started:.0f} s so far)",
                flush=True,
            )
    rows = summarise(runs, args.budget_s)
    print(table(rows, args.budget_s))
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "rows": rows,
                    "steps": {m: [ledger.steps for ledger in ledgers] for m, ledgers in runs.items()},
                    "args": vars(args),
                },
                default=str,
                indent=1,
            )
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
