"""Does cross-validation rank trials the way the test split does?

The same small grid of configurations is tuned twice on one dataset: once with a single
train/val split, once with k-fold cross-validation per trial (``"cv": {"folds": k}``). For each
study, the Spearman rank correlation between the trials' validation Dice and their test Dice
(test: the held-out split, identical in both studies; with CV the mean over the fold models) says
how well validation ranks trials; the last columns say whether the trial picked on validation is
the one that is really best on test, and what it loses against the test-best trial.

    python bench/cv_ranking.py                       # chest_xray_lung_shenzhen, 96 pairs, 5 folds
    python bench/cv_ranking.py --pairs 60 --folds 3  # quicker

CPU scale (64 px, ClassicUNet); prints a Markdown table for bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import optuna
from scipy.stats import spearmanr

SHARED = REPO.parent / "shared" / "datasets"


def copy_pairs(source: Path, target: Path, count: int) -> Path:
    images = sorted((source / "images").iterdir())
    step = max(1, len(images) // count)
    masks = {p.stem: p for p in (source / "masks").iterdir()}
    (target / "images").mkdir(parents=True)
    (target / "masks").mkdir(parents=True)
    for image in images[::step][:count]:
        shutil.copy(image, target / "images" / image.name)
        shutil.copy(masks[image.stem], target / "masks" / masks[image.stem].name)
    return target


def spec(name: str, dataset: str, epochs: int, folds: int | None) -> dict:
    data = {
        "name": name,
        "dataset": dataset,
        "image_size": 64,
        "sampler": "grid",
        "pruner": "none",
        "seed": 0,
        "budget": {"n_trials": 8, "max_epochs": epochs},
        "preview_count": 2,
        "split": {"train": 0.56, "val": 0.14, "test": 0.30},
        "search_space": {
            "architecture": "ClassicUNet",
            "unet_depth": 3,
            "batch_size": 8,
            "epochs": epochs,
            "unet_start_filters": {"choices": [4, 8]},
            "lr": {"choices": [3e-4, 1e-3, 3e-3, 1e-2]},
        },
    }
    if folds:
        data["cv"] = {"folds": folds}
        data["split"] = {"test": 0.30}
    return data


def summarise(study: optuna.Study) -> dict:
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    val = [t.user_attrs["val_metrics"]["dice"] for t in done]
    test = [t.user_attrs["test_metrics"]["dice"] for t in done]
    picked = max(range(len(done)), key=val.__getitem__)
    best_test = max(test)
    return {
        "trials": len(done),
        "spearman": spearmanr(val, test).statistic,
        "picked_test": test[picked],
        "best_test": best_test,
        "picked_is_best": test[picked] == best_test,
        "regret": best_test - test[picked],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="chest_xray_lung_shenzhen")
    parser.add_argument("--pairs", type=int, default=96)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=4)
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="cv-ranking-"))
    os.environ["SEGTUNE_HOME"] = str(home)
    for key in ("SEGTUNE_DB", "SEGTUNE_ARTIFACTS"):
        os.environ.pop(key, None)
    from core.data.ingest import ingest_dataset
    from core.runtime.tuning import run_study
    from core.search.validation import spec_from_dict
    from core.settings import load_settings

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    settings = load_settings()
    ingest_dataset(copy_pairs(SHARED / args.dataset, home / "src", args.pairs), "bench", settings.datasets_dir)
    rows = []
    for label, folds in (("single split", None), (f"{args.folds}-fold CV", args.folds)):
        start = time.perf_counter()
        study = run_study(
            spec_from_dict(spec(label.replace(" ", "-"), "bench", args.epochs, folds)), settings, device="cpu"
        )
        rows.append((label, summarise(study), time.perf_counter() - start))
    print(
        f"\n{args.dataset}: {args.pairs} pairs, 64 px, {args.epochs} epochs, grid of 8 configurations (ClassicUNet "
        "4/8 filters x 4 learning rates)\n"
    )
    print(
        "| selection | trials | Spearman(val Dice, test Dice) | test Dice of the val-picked trial | best test Dice | "
        "picked = test-best | regret | wall time |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for label, s, seconds in rows:
        print(
            f"| {label} | {s['trials']} | {s['spearman']:.2f} | {s['picked_test']:.3f} | {s['best_test']:.3f} | "
            f"{'yes' if s['picked_is_best'] else 'no'} | {s['regret']:.3f} | {seconds:.0f} s |"
        )
    shutil.rmtree(home, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
