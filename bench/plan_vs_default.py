"""The auto plan against the plain default at the same time budget, on the shared datasets (CPU).

Issue 24 measured the old auto space's first trial below the plain default on a short CPU budget.
This bench runs, per dataset and for the same budget on this machine's CPU:

- **plan**: ``python -m core plan``'s study (the device's speed timed first), its plain default
  queued as trial 0, stopped at the budget (``timeout_s``);
- **default**: one trial of the plain default (U-Net resnet18, Adam 1e-3, Dice+BCE, no
  augmentation) at the plan's image side, with as many epochs as the planner's estimator fits in
  the budget for one trial.

Both pick by validation Dice; the table shows the chosen trial's *test* Dice (held out, never
used to choose) and the minutes each used. Prints a Markdown table for bench/RESULTS.md.

    python bench/plan_vs_default.py                                   # Shenzhen and liver, 30 min each
    python bench/plan_vs_default.py --datasets liver --count 8 --minutes 0.3 --trials 1 --probe-side 64   # a smoke run
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import optuna

SHARED = REPO.parent / "shared" / "datasets"
DATASETS = {"shenzhen": "chest_xray_lung_shenzhen", "liver": "ct_liver_msd"}
ARMS = ("plan", "default")  # the study the planner proposes, and the plain default given the same budget
DEFAULT = {
    "architecture": "Unet",
    "encoder": "resnet18",
    "optimizer": "adam",
    "lr": 1e-3,
    "loss": "dice_bce",
    "scheduler": "none",
}


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--datasets", default="shenzhen,liver", help=f"comma-separated, of {sorted(DATASETS)}")
    parser.add_argument(
        "--minutes", type=float, default=30.0, help="time budget per dataset and per arm (plan, default)"
    )
    parser.add_argument("--count", type=int, help="pairs to use per dataset (default: all; every n-th pair is kept)")
    parser.add_argument("--trials", type=int, help="cap the plan's trials (default: the planner's choice)")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--probe-side", type=int, default=128, help="px of the speed probe that the plan is sized with")
    parser.add_argument(
        "--speed",
        type=float,
        help="megapixels/s to plan with instead of timing a probe (a re-run that must plan as an earlier one did)",
    )
    parser.add_argument("--arms", default=",".join(ARMS), help=f"comma-separated, of {' and '.join(ARMS)}")
    parser.add_argument("--home", type=Path, help="SEGTUNE_HOME to use (default: a temporary folder)")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    return parser.parse_args(argv)


def ingest(name: str, count: int | None, settings: Any) -> Any:
    from core.data.ingest import ingest_dataset
    from core.data.manifest import dataset_names, load_manifest
    from tests.helpers.studies import copy_pairs

    stored = f"{name}-{count or 'all'}"
    if stored not in dataset_names(settings.datasets_dir):
        source = SHARED / DATASETS[name]
        total = len(list((source / "images").iterdir()))
        with tempfile.TemporaryDirectory() as folder:
            subset = copy_pairs(source, Path(folder) / name, count or total, every=max(1, total // (count or total)))
            ingest_dataset(subset, stored, settings.datasets_dir)
    return load_manifest(settings.datasets_dir, stored)


def default_spec(planned: Any, budget_s: float, profile: Any) -> Any:
    """The plain default at the plan's side (whole images resized to it, where the plan cuts patches), with the
    epochs one trial of it gets in the budget."""
    import dataclasses

    from core.search.cost import study_estimate
    from core.search.space import ParamSpec
    from core.search.spec import Budget
    from core.settings import load_settings
    from core.training.estimate import model_split_sizes

    sizes = model_split_sizes(planned, load_settings())
    fits = [
        e
        for e in range(1, 201)
        if study_estimate(
            profile, side=training_side(planned), train=sizes["train"], val=sizes["val"], cost=1.0, epochs=e, n_trials=1
        ).total_s
        <= budget_s
    ]
    epochs = fits[-1] if fits else 1
    space = {name: ParamSpec.fixed(value) for name, value in {**DEFAULT, "epochs": epochs}.items()}
    batch = planned.search_space.get("batch_size")
    space["batch_size"] = ParamSpec.fixed(max(batch.candidate_values()) if batch else 8)
    return dataclasses.replace(
        planned,
        name=f"default-{planned.dataset}",
        search_space=space,
        first_trials=(),
        pruner="none",
        budget=Budget(n_trials=1, max_epochs=epochs),
        patience=epochs,
        image_size=training_side(planned),
        patch_size=None,
        description="the plain default",
    )


def training_side(spec: Any) -> int:
    """The side a training step sees: the patch, or the whole resized image."""
    return spec.patch_size or spec.image_size


def chosen(study: optuna.Study) -> dict[str, Any]:
    """The trial the study would pick (best validation Dice) with its test Dice."""
    from core.contract import TrialAttr

    complete = study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))
    best = max(complete, key=lambda t: t.value)
    attrs = best.user_attrs
    return {
        "trial": best.number,
        "val_dice": best.value,
        "test_dice": attrs[TrialAttr.TEST_METRICS].get("dice"),
        "config": {
            k: attrs[TrialAttr.PARAMS_RESOLVED].get(k) for k in ("architecture", "encoder", "loss", "lr", "epochs")
        },
        "trials": len(complete),
    }


def run_arm(spec: Any, budget_s: float, settings: Any) -> dict[str, Any]:
    from core.runtime.tuning import run_study

    started = time.perf_counter()
    study = run_study(spec, settings, timeout_s=budget_s, device="cpu")
    return {**chosen(study), "minutes": (time.perf_counter() - started) / 60}


def table(rows: list[dict[str, Any]], minutes: float) -> str:
    lines = [
        f"| dataset | arm | side | trials | chosen (val Dice) | test Dice | minutes (budget {minutes:g}) | estimated |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        for arm in (arm for arm in ARMS if arm in r):
            a = r[arm]
            c = a["config"]
            config = f"{c['architecture']} {c['encoder']} {c['loss']} lr {c['lr']:.1e} {c['epochs']} ep"
            test = "—" if a["test_dice"] is None else f"{a['test_dice']:.3f}"
            estimate = f"{r['estimate_min']:.1f}" if arm == "plan" else ""
            lines.append(
                f"| {r['dataset']} | {arm} | {r['side']} | {a['trials']} | {config} ({a['val_dice']:.3f}) | {test} | "
                f"{a['minutes']:.1f} | {estimate} |"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse(argv)
    home = args.home or Path(tempfile.mkdtemp(prefix="segtune-plan-bench-"))
    os.environ["SEGTUNE_HOME"] = str(home)
    import torch

    torch.set_num_threads(args.threads)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    from core.search.auto import plan_for_manifest
    from core.search.cost import profile_for
    from core.search.validation import spec_from_dict
    from core.settings import load_settings
    from core.training.estimate import measured_profile

    settings = load_settings()
    budget_s = args.minutes * 60
    arms = args.arms.split(",")
    if unknown := set(arms) - set(ARMS):
        raise SystemExit(f"unknown arm(s) {sorted(unknown)}; valid: {list(ARMS)}")
    rows = []
    for name in args.datasets.split(","):
        if name not in DATASETS:
            raise SystemExit(f"unknown dataset {name!r}; valid: {sorted(DATASETS)}")
        manifest = ingest(name, args.count, settings)
        profile = (
            profile_for("cpu", megapixels_per_s=args.speed)
            if args.speed
            else measured_profile("cpu", side=args.probe_side, channels=manifest.channels)
        )
        auto = plan_for_manifest(manifest, device="cpu", hours=args.minutes / 60, profile=profile, n_trials=args.trials)
        planned = spec_from_dict(auto.spec)
        print(f"{name}: " + "\n  ".join(auto.reasons), flush=True)
        row = {"dataset": name, "side": training_side(planned), "estimate_min": auto.estimate.total_min}
        if "plan" in arms:
            row["plan"] = run_arm(planned, budget_s, settings)
        if "default" in arms:
            row["default"] = run_arm(default_spec(planned, budget_s, profile), budget_s, settings)
        rows.append(row)
        print(table(rows[-1:], args.minutes), flush=True)
    result = {"rows": rows, "args": {k: str(v) for k, v in vars(args).items()}}
    print(table(rows, args.minutes))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
