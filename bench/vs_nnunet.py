"""Side by side with nnU-Net (issue 27): the same split, the same compute, one evaluator.

    nice -n 10 python bench/vs_nnunet.py --dataset shenzhen --budget-min 5 --threads 1 --concurrent \
        --out bench/vs_nnunet/shenzhen-5
    # a smoke run:
    python bench/vs_nnunet.py --dataset path/to/folder --budget-min 1 --nnunet-schedule 1,2 --segtune-epochs 1

``--dataset`` is a shared dataset (``shenzhen``, ``em``, ``liver``) or a folder with ``images/`` and
``masks/`` (and optionally ``split.csv``, then used as the frozen split).

1. The dataset is ingested into a private SegTune home and its frozen split read back
   (``study_source(spec).split``). It is exported to nnU-Net's raw format (:func:`export_nnunet`):
   ``imagesTr/<case>_0000.png``, ``labelsTr/<case>.png`` (class indices), ``dataset.json``; the test
   cases go to ``imagesTs/`` and their labels apart (``test/masks``, never seen by nnU-Net), and
   ``splits_final.json`` makes fold 0 SegTune's train / val.
2. **SegTune's side** (this interpreter, subprocesses of ``python -m core``): the spec given with
   ``--segtune-spec``, else ``python -m core plan`` for the budget once it exists (#24, see
   :func:`planned_spec`), else a plain strong default (U-Net resnet18, random init, Adam 1e-3,
   Dice+BCE) whose epochs fill the budget from a measured one-epoch probe. The best trial by
   validation is exported and predicts the test images with mirror TTA.
3. **nnU-Net's side** (``bench/nnunet_side.py`` under ``--nnunet-python``, the venv holding
   ``bench/requirements-nnunet.txt``): planning and preprocessing for ``2d``, a probe of the
   per-iteration cost, fold 0 trained by a trainer whose epochs x iterations fit what is left of the
   budget (so its poly learning rate ends with it), the test cases predicted with its default TTA.
4. **One evaluator**: ``core.deploy.evaluate`` (``python -m core evaluate --pred``) scores both
   folders per case at the exported resolution; the paired per-case difference (SegTune - nnU-Net)
   gets a 95 % bootstrap interval.

The budget is CPU time (user + sys) of each side from its start to the end of its training, its
cost probe included; preparing the data is outside it on both sides (SegTune's ingest, nnU-Net's
planning and preprocessing, the latter reported as ``preprocess_cpu_s``). Each side's whole process
tree is measured (``os.wait4`` of each subprocess), prediction included, and recorded beside its
scores with the wall time, so "equal compute" is checked, not assumed. Output in ``--out``:
``vs_nnunet.json``, ``vs_nnunet.md`` (the score table), the per-case CSVs and the logs.
``bench/budget_curve.py`` plots several runs' JSON as test Dice against budget.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from shared_sets import DATASETS, DEFAULT_SPACE, SHARED, copy_shared

REPO = Path(__file__).resolve().parents[1]
NNUNET_DATASET_ID = 927  # nnU-Net's DatasetXXX number; the raw / preprocessed / results folders are private to a run
METRICS = ("dice", "iou", "nsd", "hd95")


class BenchError(Exception):
    """A step of the bench failed; the message says which and where its log is."""


@dataclass
class Compute:
    """CPU and wall seconds of a process tree (summed over several runs)."""

    user_s: float = 0.0
    sys_s: float = 0.0
    wall_s: float = 0.0

    @property
    def cpu_s(self) -> float:
        return self.user_s + self.sys_s

    def add(self, other: Compute) -> Compute:
        self.user_s += other.user_s
        self.sys_s += other.sys_s
        self.wall_s += other.wall_s
        return self


@dataclass
class Side:
    """One system's run: where its test predictions are, what it cost, how it was set up."""

    system: str
    pred: Path
    compute: Compute = field(default_factory=Compute)  # everything, prediction included
    training: Compute = field(default_factory=Compute)  # up to the end of training: what the budget bounds
    details: dict[str, Any] = field(default_factory=dict)


def measured(command: list[str], env: dict[str, str], log: Path) -> Compute:
    """Run ``command`` and return the user + sys CPU of its whole process tree (``os.wait4``) and its wall time."""
    started = time.perf_counter()
    with open(log, "a", encoding="utf-8") as out:
        out.write(f"$ {' '.join(command)}\n")
        out.flush()
        process = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=REPO)
        _, status, usage = os.wait4(process.pid, 0)  # this child and every descendant it waited for
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise BenchError(f"{' '.join(command[:4])} ... failed (exit {process.returncode}); see {log}")
    return Compute(usage.ru_utime, usage.ru_stime, time.perf_counter() - started)


# -- the dataset, both ways ------------------------------------------------------------------------


def source_folder(dataset: str, work: Path) -> Path:
    """The folder to ingest: a shared dataset (EM's masks inverted so the membranes are the foreground) or a
    given folder."""
    if dataset not in DATASETS:
        folder = Path(dataset)
        if not (folder / "images").is_dir():
            raise BenchError(
                f"--dataset {dataset!r}: not one of {sorted(DATASETS)} and not a folder with images/ and masks/"
            )
        return folder
    name, invert = DATASETS[dataset]
    return copy_shared(dataset, work / f"{dataset}-source") if invert else SHARED / name


def export_nnunet(
    dataset_dir: Path, manifest: Any, split: Any, raw: Path, test: Path, dataset_id: int = NNUNET_DATASET_ID
) -> dict[str, Any]:
    """Write the stored dataset in nnU-Net's raw 2D PNG format and the test cases apart.

    ``raw/imagesTr/<case>_0000.png`` + ``raw/labelsTr/<case>.png`` for train + val, ``raw/imagesTs``
    for test; ``test/images/<case>.png`` (for SegTune's predict) and ``test/masks/<case>.png`` (the
    truth both sides are scored against). Labels are class indices (0/1 for a binary set). Returns
    fold 0 as ``splits_final.json`` holds it: ``{"train": [...], "val": [...]}``.
    """
    mode = "L" if manifest.channels == 1 else "RGB"
    for folder in ("imagesTr", "labelsTr", "imagesTs"):
        (raw / folder).mkdir(parents=True, exist_ok=True)
    for folder in ("images", "masks"):
        (test / folder).mkdir(parents=True, exist_ok=True)
    from core.data.images import read_mask

    for part, stems in (("train", split.train), ("val", split.val), ("test", split.test)):
        for stem in stems:
            pair = manifest.pair(stem)
            with Image.open(dataset_dir / pair.image) as opened:
                image = opened.convert(mode)
            mask = Image.fromarray(read_mask(dataset_dir / pair.mask))
            if part == "test":
                image.save(raw / "imagesTs" / f"{stem}_0000.png")
                image.save(test / "images" / f"{stem}.png")
                mask.save(test / "masks" / f"{stem}.png")
            else:
                image.save(raw / "imagesTr" / f"{stem}_0000.png")
                mask.save(raw / "labelsTr" / f"{stem}.png")
    description = {
        "channel_names": {"0": "grey"} if mode == "L" else {"0": "R", "1": "G", "2": "B"},  # an RGB PNG holds all three
        "labels": {name: index for index, name in enumerate(manifest.classes)},
        "numTraining": len(split.train) + len(split.val),
        "file_ending": ".png",
        "name": manifest.name,
    }
    (raw / "dataset.json").write_text(json.dumps(description, indent=1), encoding="utf-8")
    return {"train": list(split.train), "val": list(split.val)}


# -- SegTune's side --------------------------------------------------------------------------------


def default_spec(name: str, dataset: str, epochs: int, image_size: int, from_file: bool) -> dict[str, Any]:
    """A plain strong default: U-Net resnet18 from scratch, Adam 1e-3, Dice+BCE, ``epochs`` epochs, one trial."""
    spec: dict[str, Any] = {
        "name": name,
        "dataset": dataset,
        "image_size": image_size,
        "sampler": "random",
        "pruner": "none",
        "budget": {"n_trials": 1, "max_epochs": epochs},
        "patience": epochs,
        "preview_count": 1,
        "search_space": {**DEFAULT_SPACE, "epochs": epochs},
    }
    if from_file:
        spec["split"] = {"from_file": True}
    return spec


def segtune_epochs(budget_s: float, probe_s: float) -> int:
    """Epochs that fit what the one-epoch probe left of the budget.

    The probe's CPU (process start, decoding, one epoch) stands for one epoch of the real run: an
    upper bound, since the real run pays the start once, so the study never overruns the budget.
    """
    return max(1, math.floor((budget_s - probe_s) / probe_s))


def planned_spec(
    dataset: str, budget_min: float, work: Path, env: dict[str, str], log: Path
) -> tuple[dict[str, Any] | None, Compute]:
    """HOOK (#24): SegTune's auto plan for the budget, once ``python -m core plan`` exists; None before.

    ``python -m core plan --help`` failing means the command has not landed: the bench then uses
    :func:`default_spec`. When it lands, check the flags below against its ``--help``.
    """
    probe = subprocess.run(
        [sys.executable, "-m", "core", "plan", "--help"], env=env, cwd=REPO, capture_output=True, check=False
    )
    if probe.returncode != 0:
        return None, Compute()
    out = work / "plan-spec.json"
    spent = measured(
        [
            sys.executable,
            "-m",
            "core",
            "plan",
            "--dataset",
            dataset,
            "--hours",
            f"{budget_min / 60:g}",
            "--out",
            str(out),
        ],
        env,
        log,
    )
    return json.loads(out.read_text(encoding="utf-8")), spent


def run_segtune(
    args: argparse.Namespace, work: Path, env: dict[str, str], spec: dict[str, Any] | None, planning: Compute
) -> Side:
    """Tune (probe first when the epochs are sized here), export the best trial, predict the test images with TTA."""
    log = args.out / "segtune.log"
    side = Side("SegTune", work / "segtune-pred")
    side.compute.add(planning)
    side.training.add(planning)
    core = [sys.executable, "-m", "core"]
    if spec is None:
        from_file = args.from_file
        epochs = args.segtune_epochs
        if epochs is None:
            probe_spec = work / "segtune-probe.json"
            probe_spec.write_text(
                json.dumps(default_spec("probe", args.dataset_name, 1, args.image_size, from_file)), encoding="utf-8"
            )
            probe = measured([*core, "tune", "--spec", str(probe_spec), "--device", args.device], env, log)
            side.compute.add(probe)
            side.training.add(probe)
            epochs = segtune_epochs(args.budget_min * 60 - planning.cpu_s, probe.cpu_s)
            side.details["probe_cpu_s"] = round(probe.cpu_s, 1)
        spec = default_spec("segtune", args.dataset_name, epochs, args.image_size, from_file)
        side.details.update(
            spec="default: Unet resnet18, encoder_weights null, adam 1e-3, dice_bce",
            epochs=epochs,
            image_size=args.image_size,
        )
    else:
        budget = spec.get("budget", {})
        side.details.update(
            spec="given (--segtune-spec)" if args.segtune_spec else "auto plan (python -m core plan)",
            image_size=spec.get("image_size"),
            trials=budget.get("n_trials"),
            epochs=budget.get("max_epochs"),
        )
    spec = {**spec, "dataset": args.dataset_name}
    spec_file = work / "segtune-spec.json"
    spec_file.write_text(json.dumps(spec, indent=1), encoding="utf-8")
    trained = measured([*core, "tune", "--spec", str(spec_file), "--device", args.device], env, log)
    side.compute.add(trained)
    side.training.add(trained)
    bundle_dir = work / "segtune-bundle"
    side.compute.add(measured([*core, "export", "--study", spec["name"], "--out", str(bundle_dir)], env, log))
    bundle = next(path for path in sorted(bundle_dir.iterdir()) if path.is_dir())
    side.details["trial"] = bundle.name
    side.compute.add(
        measured(
            [
                *core,
                "predict",
                "--model",
                str(bundle),
                "--images",
                str(work / "test" / "images"),
                "--out",
                str(side.pred),
                "--tta",
            ],
            env,
            log,
        )
    )
    side.details["tta"] = "mirror (predict --tta)"
    return side


# -- nnU-Net's side --------------------------------------------------------------------------------


def default_nnunet_python() -> str:
    """``.venv-nnunet/bin/python`` beside the repository (where the bench requirements live), else this interpreter."""
    candidates = [folder / ".venv-nnunet" / "bin" / "python" for folder in (REPO, REPO.parent)]
    candidate = next((path for path in candidates if path.is_file()), candidates[0])
    return str(candidate) if candidate.is_file() else sys.executable


def run_nnunet(args: argparse.Namespace, work: Path, env: dict[str, str], split: dict[str, Any]) -> Side:
    side = Side("nnU-Net", work / "nnunet-pred")
    report = work / "nnunet-side.json"
    command = [
        args.nnunet_python,
        str(REPO / "bench" / "nnunet_side.py"),
        "--work",
        str(work / "nnunet"),
        "--dataset-id",
        str(NNUNET_DATASET_ID),
        "--budget-s",
        str(args.budget_min * 60),
        "--device",
        args.device,
        "--threads",
        str(args.threads),
        "--pred",
        str(side.pred),
        "--report",
        str(report),
    ]
    if args.nnunet_schedule:
        command += ["--schedule", args.nnunet_schedule]
    (work / "nnunet").mkdir(exist_ok=True)
    (work / "nnunet" / "fold0.json").write_text(json.dumps(split), encoding="utf-8")
    side.compute = measured(command, env, args.out / "nnunet.log")
    details = json.loads(report.read_text(encoding="utf-8"))
    side.training = Compute(details.pop("training_cpu_s"), 0.0, details.pop("training_wall_s"))  # user + sys together
    side.details = details
    return side


# -- scoring ---------------------------------------------------------------------------------------


def mean_of(cases: dict[str, dict[str, float]], metric: str) -> float:
    values = [case[metric] for case in cases.values() if not math.isnan(case[metric])]
    return float(np.mean(values)) if values else math.nan


def paired_difference(
    a: dict[str, dict[str, float]], b: dict[str, dict[str, float]], metric: str, rounds: int = 2000, seed: int = 0
) -> dict[str, float]:
    """Mean of a - b over the cases both scored (NaN cases left out), with a 95 % bootstrap interval over cases."""
    names = sorted(n for n in set(a) & set(b) if not math.isnan(a[n][metric]) and not math.isnan(b[n][metric]))
    diff = np.array([a[n][metric] - b[n][metric] for n in names])
    if not len(diff):
        return {"mean": math.nan, "low": math.nan, "high": math.nan, "n": 0}
    rng = np.random.default_rng(seed)
    means = diff[rng.integers(0, len(diff), (rounds, len(diff)))].mean(axis=1)
    return {
        "mean": float(diff.mean()),
        "low": float(np.percentile(means, 2.5)),
        "high": float(np.percentile(means, 97.5)),
        "n": int(len(diff)),
    }


def score(sides: list[Side], masks: Path, out: Path) -> dict[str, Any]:
    """Score every side with SegTune's evaluator (per case, exported resolution) and pair SegTune against nnU-Net."""
    from core.deploy.evaluate import evaluate_folders

    cases = {}
    rows = {}
    for side in sides:
        report = evaluate_folders(side.pred, masks)
        report.write_csv(out / f"{side.system.lower().replace('-', '')}-cases.csv")
        cases[side.system] = report.cases
        rows[side.system] = {
            **{metric: mean_of(report.cases, metric) for metric in METRICS},
            "cases": len(report.cases),
            "skipped": [list(item) for item in report.skipped],
            "cpu_s": round(side.compute.cpu_s, 1),
            "user_s": round(side.compute.user_s, 1),
            "sys_s": round(side.compute.sys_s, 1),
            "wall_s": round(side.compute.wall_s, 1),
            "training_cpu_s": round(side.training.cpu_s, 1),
            "training_wall_s": round(side.training.wall_s, 1),
            "details": side.details,
        }
    first, second = (side.system for side in sides)
    paired = {metric: paired_difference(cases[first], cases[second], metric) for metric in METRICS}
    return {"systems": rows, "paired": {"minuend": first, "subtrahend": second, **paired}}


def markdown(result: dict[str, Any]) -> str:
    lines = [
        f"**{result['dataset']}**, budget {result['budget_min']:g} CPU-min of training per side, "
        f"device {result['device']}, "
        f"{result['threads']} thread(s), {result['test_cases']} test cases, scored at the exported resolution by "
        "SegTune's evaluator.",
        "",
        "| system | Dice | IoU | NSD | HD95 (px) | training CPU s | total CPU s (user + sys) | wall s | set-up |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for system, row in result["systems"].items():
        lines.append(
            f"| {system} | {row['dice']:.3f} | {row['iou']:.3f} | {row['nsd']:.3f} | {row['hd95']:.1f} | "
            f"{row['training_cpu_s']:.0f} | {row['cpu_s']:.0f} ({row['user_s']:.0f} + {row['sys_s']:.0f}) | "
            f"{row['wall_s']:.0f} | {setup_text(row['details'])} |"
        )
    paired = result["paired"]
    lines.append("")
    for metric in ("dice", "nsd", "hd95"):
        item = paired[metric]
        lines.append(
            f"- {paired['minuend']} - {paired['subtrahend']}, per-case {metric}: {item['mean']:+.3f} "
            f"(95 % bootstrap {item['low']:+.3f} .. {item['high']:+.3f}, n={item['n']})"
        )
    return "\n".join(lines) + "\n"


def setup_text(details: dict[str, Any]) -> str:
    return "; ".join(f"{key} {value}" for key, value in details.items() if not isinstance(value, (dict, list)))


# -- the run ---------------------------------------------------------------------------------------


def prepare(args: argparse.Namespace, work: Path, env: dict[str, str]) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """Ingest, read the frozen split, export both ways; returns nnU-Net's fold 0 and the given / planned spec."""
    os.environ["SEGTUNE_HOME"] = env["SEGTUNE_HOME"]
    from core.data.ingest import ingest_dataset
    from core.data.manifest import dataset_path
    from core.search.study_source import study_source
    from core.search.validation import spec_from_dict
    from core.settings import load_settings

    settings = load_settings()
    source = source_folder(args.dataset, work)
    manifest = ingest_dataset(source, args.dataset_name, settings.datasets_dir)
    from_file = args.from_file = (source / "split.csv").is_file()
    spec = json.loads(args.segtune_spec.read_text(encoding="utf-8")) if args.segtune_spec else None
    planning = Compute()
    if spec is None and args.segtune_epochs is None:  # fixed epochs ask for the plain default, not a plan
        spec, planning = planned_spec(args.dataset_name, args.budget_min, work, env, args.out / "segtune.log")
        if spec is not None and from_file:  # the dataset's own split, as nnU-Net's fold 0 gets it
            spec["split"] = {"from_file": True}
    args.planning = planning
    shape = {
        **(spec or default_spec("segtune", args.dataset_name, 1, args.image_size, from_file)),
        "dataset": args.dataset_name,
    }
    split = study_source(spec_from_dict(shape), settings).split
    if not split.test:
        raise BenchError(f"dataset {args.dataset!r}: its split has no test cases to score")
    fold0 = export_nnunet(
        dataset_path(settings.datasets_dir, args.dataset_name),
        manifest,
        split,
        work / "nnunet" / "raw" / f"Dataset{NNUNET_DATASET_ID:03d}_{args.dataset_name}",
        work / "test",
    )
    return fold0, spec


def versions(nnunet_details: dict[str, Any]) -> dict[str, str]:
    import torch

    import core

    return {
        "segtune": getattr(core, "__version__", "dev"),
        "torch (SegTune)": torch.__version__,
        **{key: value for key, value in nnunet_details.get("versions", {}).items()},
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--dataset", required=True, help=f"{', '.join(DATASETS)} or a folder with images/ and masks/ [split.csv]"
    )
    parser.add_argument("--budget-min", type=float, required=True, help="CPU-minutes (user + sys) of training per side")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--threads", type=int, default=1, help="threads per side (OMP / torch)")
    parser.add_argument(
        "--out", type=Path, default=REPO / "bench" / "vs_nnunet", help="where the table, JSON, CSVs and logs go"
    )
    parser.add_argument("--image-size", type=int, default=128, help="SegTune's training image_size (default spec only)")
    parser.add_argument(
        "--segtune-spec",
        type=Path,
        help="SegTune's study spec (default: the auto plan once it exists, else the plain default)",
    )
    parser.add_argument(
        "--segtune-epochs", type=int, help="fix the default spec's epochs instead of sizing them to the budget"
    )
    parser.add_argument(
        "--nnunet-python", default=default_nnunet_python(), help="interpreter with bench/requirements-nnunet.txt"
    )
    parser.add_argument(
        "--nnunet-schedule", help="fix nnU-Net's EPOCHS,ITERATIONS instead of sizing them to the budget"
    )
    parser.add_argument("--concurrent", action="store_true", help="run the two sides at the same time")
    parser.add_argument("--keep", action="store_true", help="keep the work folder (exports, checkpoints) in OUT/work")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    work = args.out / "work"
    if work.exists():
        shutil.rmtree(work)
    work.mkdir()
    args.dataset_name = "bench" if args.dataset not in DATASETS else args.dataset
    env = {
        **os.environ,
        "SEGTUNE_HOME": str(work / "segtune-home"),
        "OMP_NUM_THREADS": str(args.threads),
        "MKL_NUM_THREADS": str(args.threads),
        "nnUNet_n_proc_DA": "0" if args.threads == 1 else str(args.threads),
    }
    for private in ("SEGTUNE_DB", "SEGTUNE_ARTIFACTS"):  # the bench's studies live in its own home, never the user's
        env.pop(private, None)
    try:
        fold0, spec = prepare(args, work, env)
        with ThreadPoolExecutor(max_workers=2 if args.concurrent else 1) as pool:
            segtune = pool.submit(run_segtune, args, work, env, spec, args.planning)
            nnunet = pool.submit(run_nnunet, args, work, env, fold0)
            sides = [segtune.result(), nnunet.result()]
        result = {
            "dataset": args.dataset,
            "budget_min": args.budget_min,
            "device": args.device,
            "threads": args.threads,
            "concurrent": args.concurrent,
            "test_cases": len(list((work / "test" / "masks").iterdir())),
            **score(sides, work / "test" / "masks", args.out),
        }
        result["versions"] = versions(sides[1].details)
    except BenchError as error:
        raise SystemExit(f"vs_nnunet: {error}") from None
    finally:
        if not args.keep and work.exists():
            shutil.rmtree(work, ignore_errors=True)
    (args.out / "vs_nnunet.json").write_text(json.dumps(result, indent=1, default=str), encoding="utf-8")
    (args.out / "vs_nnunet.md").write_text(markdown(result), encoding="utf-8")
    print(markdown(result))
    return result


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    main()
