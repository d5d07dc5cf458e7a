"""Scores at native resolution, fold ensembles, TTA and patch training, measured with the product.

For each shared dataset (CPU-sized subsets) this runs real SegTune studies (``run_study``) and
scores them with SegTune's own evaluator (``core.deploy.evaluate``), per case at the images'
original size:

1. **training size vs native**: one trial; its best epoch's validation Dice as the learning curve
   records it (masks resized to ``image_size``) against the same model's stored validation Dice at
   the original resolution;
2. **fold mean vs ensemble vs ensemble + TTA**: one 3-fold cross-validated trial; each fold model,
   the averaged ensemble (``export --ensemble``) and the ensemble with mirror TTA, each scored on
   the test images by ``evaluate --model``;
3. **resize vs patch** (EM only): the same training steps either on whole images resized to 128 px
   or on 128 px patches of the native 512 px images (sliding-window validation), scored natively.

Differences are paired per case with a 95 % bootstrap interval, so a gain within noise says so.

    nice -n 10 python bench/native_eval.py                      # the figures in bench/RESULTS.md
    python bench/native_eval.py --datasets em --images 12 --epochs 1 --folds 2   # a smoke run
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from shared_sets import DATASETS, DEFAULT_SPACE, copy_shared

from core.contract import TrialAttr
from core.data.ingest import ingest_dataset
from core.deploy.evaluate import CaseReport, evaluate_model
from core.deploy.export import export_ensemble, export_trial
from core.runtime.storage import open_artifact_store
from core.runtime.tuning import run_study
from core.search.validation import spec_from_dict
from core.settings import load_settings


def study(name: str, dataset: str, image_size: int, epochs: int, *, folds: int | None = None, patch: int | None = None):
    spec: dict = {
        "name": name,
        "dataset": dataset,
        "image_size": image_size,
        "sampler": "random",
        "pruner": "none",
        "budget": {"n_trials": 1, "max_epochs": epochs},
        "preview_count": 2,
        "patience": epochs,
        "search_space": {**DEFAULT_SPACE, "epochs": epochs},
    }
    if folds:
        spec["cv"] = {"folds": folds}
    if patch:
        spec["patch_size"] = patch
    started = time.perf_counter()
    result = run_study(spec_from_dict(spec), load_settings(), device="cpu")
    return result, time.perf_counter() - started


def test_folders(settings, dataset: str, split_test: list[str], out: Path) -> tuple[Path, Path]:
    """The test pairs copied out as evaluate's --images / --masks folders."""
    from core.data.manifest import dataset_path, load_manifest

    manifest = load_manifest(settings.datasets_dir, dataset)
    folder = dataset_path(settings.datasets_dir, dataset)
    images, masks = out / "images", out / "masks"
    images.mkdir(parents=True)
    masks.mkdir()
    for stem in split_test:
        pair = manifest.pair(stem)
        shutil.copy(folder / pair.image, images / Path(pair.image).name)
        shutil.copy(folder / pair.mask, masks / f"{stem}.png")
    return images, masks


def paired(a: CaseReport, b: CaseReport, metric: str = "dice", rounds: int = 2000) -> dict[str, float]:
    """Mean of b - a over the cases both scored, with a 95 % bootstrap interval."""
    names = sorted(
        n
        for n in set(a.cases) & set(b.cases)
        if not math.isnan(a.cases[n][metric]) and not math.isnan(b.cases[n][metric])
    )
    diff = np.array([b.cases[n][metric] - a.cases[n][metric] for n in names])
    if not len(diff):
        return {"mean": math.nan, "low": math.nan, "high": math.nan, "n": 0}
    rng = np.random.default_rng(0)
    means = diff[rng.integers(0, len(diff), (rounds, len(diff)))].mean(axis=1)
    return {
        "mean": float(diff.mean()),
        "low": float(np.percentile(means, 2.5)),
        "high": float(np.percentile(means, 97.5)),
        "n": len(diff),
    }


def mean_case(report: CaseReport, metric: str) -> float:
    values = [case[metric] for case in report.cases.values() if not math.isnan(case[metric])]
    return float(np.mean(values)) if values else math.nan


def measure(key: str, args: argparse.Namespace, work: Path) -> dict:
    settings = load_settings()
    dataset = f"{key}-bench"
    ingest_dataset(copy_shared(key, work / f"{key}-source", args.images), dataset, settings.datasets_dir)
    store = open_artifact_store(settings)
    result: dict = {"dataset": key, "images": args.images, "image_size": args.size}

    single, seconds = study(f"{key}-single", dataset, args.size, args.epochs)
    attrs = single.trials[0].user_attrs
    best = attrs[TrialAttr.HISTORY][attrs[TrialAttr.BEST_EPOCH] - 1]
    result["training_vs_native"] = {
        "val_dice_training_size": best["val_dice"],
        "val_dice_native": attrs[TrialAttr.VAL_METRICS]["dice"],
        "val_nsd": attrs[TrialAttr.VAL_METRICS]["nsd"],
        "val_hd95": attrs[TrialAttr.VAL_METRICS]["hd95"],
        "seconds": seconds,
    }

    cv, seconds = study(f"{key}-cv", dataset, args.size, args.epochs, folds=args.folds)
    from core.search.study_source import study_source
    from core.search.validation import stored_spec

    images, masks = test_folders(
        settings, dataset, study_source(stored_spec(cv), settings).split.test, work / f"{key}-test"
    )
    ensemble = export_ensemble(cv, None, store, work / f"{key}-export", ("bundle",)).folder
    folds = [evaluate_model(ensemble / f"fold{k}", images, masks) for k in range(args.folds)]
    averaged = evaluate_model(ensemble, images, masks)
    with_tta = evaluate_model(ensemble, images, masks, tta=True)
    result["ensemble"] = {
        "fold_dice": [mean_case(r, "dice") for r in folds],
        "ensemble_dice": mean_case(averaged, "dice"),
        "ensemble_tta_dice": mean_case(with_tta, "dice"),
        "ensemble_nsd": mean_case(averaged, "nsd"),
        "ensemble_tta_nsd": mean_case(with_tta, "nsd"),
        "ensemble_minus_fold0": paired(folds[0], averaged),
        "tta_minus_ensemble": paired(averaged, with_tta),
        "test_cases": len(averaged.cases),
        "seconds": seconds,
    }

    if key == "em":  # resize vs patch at equal training steps (the same pixels per step)
        resized, resize_s = study(f"{key}-resize", dataset, args.size, args.epochs)
        patched, patch_s = study(f"{key}-patch", dataset, args.native, args.epochs, patch=args.size)
        scores = {}
        for label, trained in (("resize", resized), ("patch", patched)):
            folder = export_trial(trained, None, store, work / f"{key}-{label}").folder
            scores[label] = evaluate_model(folder, images, masks)
        result["resize_vs_patch"] = {
            "resize_dice": mean_case(scores["resize"], "dice"),
            "patch_dice": mean_case(scores["patch"], "dice"),
            "resize_nsd": mean_case(scores["resize"], "nsd"),
            "patch_nsd": mean_case(scores["patch"], "nsd"),
            "patch_minus_resize": paired(scores["resize"], scores["patch"]),
            "seconds": {"resize": resize_s, "patch": patch_s},
        }
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=list(DATASETS))
    parser.add_argument("--images", type=int, default=60, help="pairs per dataset (the first, sorted by name)")
    parser.add_argument("--size", type=int, default=128, help="training image_size (and EM's patch size)")
    parser.add_argument("--native", type=int, default=512, help="EM's native side, for the patch study")
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--folds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, help="write the figures here as JSON")
    args = parser.parse_args(argv)
    import os

    import torch

    torch.set_num_threads(args.threads)
    results = []
    with tempfile.TemporaryDirectory(prefix="segtune-native-") as tmp:
        os.environ["SEGTUNE_HOME"] = tmp
        for key in args.datasets:
            results.append(measure(key, args, Path(tmp)))
            print(json.dumps(results[-1], indent=1), flush=True)
    if args.out:
        args.out.write_text(json.dumps(results, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
