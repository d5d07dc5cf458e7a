"""The CNN random-search study (P4), shortened to fit a CPU: default configuration vs the best tuned trial.

P4 tuned the head of MobileNetV2 and VGG19 (convolution kernel size, filters, dense units, dropout)
by random search with 3-fold cross-validation and reported the accuracy before and after tuning.
This bench runs SegTune's ``p4-cnn-classification`` preset on a real two-class CT set, the liver /
no-liver quadrant crops of ``../shared/datasets/ct_liver_msd`` grouped by volume
(tests/helpers/classification_sets.py), with fewer trials, epochs, pixels and images than the preset:

- **default**: each backbone with the catalogue's head (kernel 3, 64 filters, 128 dense units,
  dropout 0.5) and the preset's other settings, one trial each;
- **tuned**: the preset's random search over both backbones and the four head dimensions.

Every figure is a 3-fold cross-validation mean ± SD (the folds are stratified and group-aware; the
test split is held out and only shown). Prints a Markdown table for bench/RESULTS.md.

    python bench/classification_p4.py                               # 30 volumes, 32 px, 12 epochs, 6 trials
    python bench/classification_p4.py --volumes 12 --trials 2 --epochs 2   # a smoke run
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

import numpy as np
import optuna

SHARED = REPO.parent / "shared" / "datasets"
ARCHITECTURES = ("MobileNetV2", "VGG19")
HEAD = ("head_kernel_size", "head_filters", "head_dense_units", "head_dropout")


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--volumes", type=int, default=30, help="CT volumes to crop (2 crops per usable slice)")
    parser.add_argument("--size", type=int, default=32, help="image size (px); the preset's is 224")
    parser.add_argument("--epochs", type=int, default=12, help="epochs per fold; the preset's is 20")
    parser.add_argument("--trials", type=int, default=6, help="tuned trials; the preset's is 30")
    parser.add_argument("--batch", type=int, default=16, help="batch size; the preset's is 32")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--home", type=Path, help="SEGTUNE_HOME to use (default: a temporary folder)")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    return parser.parse_args(argv)


def shortened(preset: Any, args: argparse.Namespace, name: str, **space: Any) -> Any:
    """The preset with the CPU-sized budget (and ``space`` overriding its search space)."""
    import dataclasses

    from core.search.space import ParamSpec
    from core.search.spec import Budget

    search = {**preset.search_space, "epochs": ParamSpec.fixed(args.epochs), "batch_size": ParamSpec.fixed(args.batch)}
    for key, value in space.items():
        if value is None:
            search.pop(key, None)
        else:
            search[key] = value
    budget = Budget(n_trials=args.trials, max_epochs=args.epochs)
    # the preset's patience is its epochs (no early stopping, as the paper): kept so at the shorter length
    return dataclasses.replace(
        preset, name=name, image_size=args.size, search_space=search, budget=budget, patience=args.epochs
    )


def fold_figures(trial: optuna.trial.FrozenTrial, metric: str = "balanced_accuracy") -> tuple[float, float]:
    """Mean and SD (ddof 1) over the trial's cross-validation folds."""
    from core.contract import TrialAttr

    values = [fold[metric] for fold in trial.user_attrs[TrialAttr.FOLD_METRICS]]
    return float(np.mean(values)), float(np.std(values, ddof=1))


def row(label: str, trial: optuna.trial.FrozenTrial) -> dict[str, Any]:
    from core.contract import TrialAttr

    attrs = trial.user_attrs
    mean, sd = fold_figures(trial)
    acc_mean, acc_sd = fold_figures(trial, "accuracy")
    return {
        "configuration": label,
        "trial": trial.number,
        "architecture": attrs[TrialAttr.PARAMS_RESOLVED]["architecture"],
        "head": {name: attrs[TrialAttr.PARAMS_RESOLVED][name] for name in HEAD},
        "balanced_accuracy": mean,
        "balanced_accuracy_sd": sd,
        "accuracy": acc_mean,
        "accuracy_sd": acc_sd,
        "roc_auc": attrs[TrialAttr.VAL_METRICS]["roc_auc"],
        "test_balanced_accuracy": attrs[TrialAttr.TEST_METRICS]["balanced_accuracy"],
        "epochs_run": attrs[TrialAttr.EPOCHS_RUN],
        "minutes": attrs[TrialAttr.TRAIN_TIME_S] / 60,
        "flags": attrs.get(TrialAttr.FLAGS) or [],
    }


def best(study: optuna.Study, architecture: str | None = None) -> optuna.trial.FrozenTrial | None:
    from core.contract import TrialAttr

    complete = [
        t
        for t in study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))
        if architecture is None or t.user_attrs[TrialAttr.PARAMS_RESOLVED]["architecture"] == architecture
    ]
    return max(complete, key=lambda t: t.value) if complete else None


def table(rows: list[dict[str, Any]], baseline: float) -> str:
    lines = [
        "| configuration | backbone | head (kernel, filters, dense, dropout) | balanced accuracy (3-fold) | accuracy "
        "(3-fold) | ROC AUC | test bal. acc. | epochs | min |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        head = ", ".join(str(r["head"][name]) for name in HEAD)
        lines.append(
            f"| {r['configuration']} | {r['architecture']} | {head} | {r['balanced_accuracy']:.3f} ± "
            f"{r['balanced_accuracy_sd']:.3f} | {r['accuracy']:.3f} ± {r['accuracy_sd']:.3f} | {r['roc_auc']:.3f} | "
            f"{r['test_balanced_accuracy']:.3f} | {r['epochs_run']} | {r['minutes']:.1f} |"
        )
    lines.append(f"| constant (majority class) | — | — | {baseline:.3f} | | 0.500 | | | |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse(argv)
    home = args.home or Path(tempfile.mkdtemp(prefix="segtune-p4-"))
    os.environ["SEGTUNE_HOME"] = str(home)
    import torch

    torch.set_num_threads(args.threads)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    from core.contract import StudyAttr
    from core.data.manifest import dataset_names
    from core.runtime.tuning import run_study
    from core.search.presets import load_preset
    from core.search.space import ParamSpec
    from core.settings import load_settings
    from tests.helpers.classification_sets import write_liver_crops

    settings = load_settings()
    dataset = f"liver-crops-{args.volumes}"
    if dataset not in dataset_names(settings.datasets_dir):
        write_liver_crops(SHARED / "ct_liver_msd", settings.datasets_dir, dataset, args.volumes)
    preset = load_preset("p4-cnn-classification", dataset)
    started = time.perf_counter()
    rows = []
    for architecture in ARCHITECTURES:
        spec = shortened(
            preset,
            args,
            f"p4-default-{architecture}",
            architecture=ParamSpec.fixed(architecture),
            **dict.fromkeys(HEAD),
        )
        study = run_study(spec, settings, n_trials=1, device="cpu")
        rows.append(row(f"default {architecture}", study.trials[0]))
        print(
            f"default {architecture}: {rows[-1]['balanced_accuracy']:.3f} "
            f"({(time.perf_counter() - started) / 60:.0f} min)",
            flush=True,
        )
    tuned = run_study(shortened(preset, args, "p4-tuned"), settings, device="cpu")
    for architecture in ARCHITECTURES:
        trial = best(tuned, architecture)
        if trial is not None:
            rows.append(row(f"tuned {architecture} (best of its trials)", trial))
    overall = best(tuned)
    baseline = tuned.user_attrs[StudyAttr.BASELINES]["majority_class"]["val"]["balanced_accuracy"]
    result = {
        "rows": rows,
        "best_trial": overall.number if overall else None,
        "baseline": baseline,
        "args": {k: str(v) for k, v in vars(args).items()},
        "trials": len(tuned.trials),
        "minutes": (time.perf_counter() - started) / 60,
        "all_trials": [row("tuned", t) for t in tuned.get_trials(states=(optuna.trial.TrialState.COMPLETE,))],
    }
    print(table(rows, baseline))
    print(f"{result['trials']} tuned trials, {result['minutes']:.0f} min in all")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
