"""nnU-Net's side of bench/vs_nnunet.py, run by the interpreter that holds bench/requirements-nnunet.txt.

Given the raw dataset that vs_nnunet.py exported (``WORK/raw/DatasetXXX_NAME``) and SegTune's fold 0
(``WORK/fold0.json``), it:

1. runs nnU-Net's planning and preprocessing for ``2d`` (``nnUNetv2_plan_and_preprocess -d ID -c 2d
   --verify_dataset_integrity``) and writes ``splits_final.json`` so that fold 0 is SegTune's
   train / val;
2. probes the CPU cost of one training iteration (its share of validation included): one epoch of
   :data:`PROBE_ITERATIONS` iterations, the warm ones timed from one step's start to the epoch's
   end (so batch loading and augmentation count), plus a fifth of a validation step;
3. trains fold 0 with ``nnUNetTrainerBudget``, nnU-Net's own trainer with only the epochs and
   iterations changed to what is left of the budget (:func:`fit_schedule`), so its poly learning-rate
   schedule ends where the budget does;
4. predicts ``imagesTs`` with nnU-Net's default inference (sliding window, Gaussian, mirror TTA)
   into ``--pred`` and writes a JSON report (schedule, plan, compute, versions).

Compute is this process's user + sys time with its waited-for children (``os.times``). The budget
bounds what follows planning and preprocessing (the probe, the trainer's set-up, training), as
SegTune's ingest is outside its budget too; preprocessing is reported apart. The module
imports nnunetv2 only inside :func:`main`, so the budget arithmetic can be tested without it.
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
from pathlib import Path
from typing import Any

NNUNET_ITERATIONS = 250  # nnU-Net's iterations per epoch
NNUNET_EPOCHS = 1000  # nnU-Net's epochs
VAL_SHARE = 5  # nnU-Net validates 50 iterations per 250 training ones
MIN_EPOCHS = (
    10  # the poly schedule steps once per epoch: keep at least this many steps before shortening epochs further
)
PROBE_ITERATIONS = 3  # the first step pays one-off costs; the last two are timed


def val_iterations(iterations: int) -> int:
    """Validation iterations per epoch, in nnU-Net's proportion (50 per 250), at least one."""
    return max(1, round(iterations / VAL_SHARE))


def fit_schedule(
    budget_s: float,
    iteration_s: float,
    epoch_s: float = 0.0,
    *,
    max_iterations: int = NNUNET_ITERATIONS,
    max_epochs: int = NNUNET_EPOCHS,
    min_epochs: int = MIN_EPOCHS,
) -> tuple[int, int]:
    """(epochs, iterations per epoch) that fill ``budget_s`` at ``iteration_s`` CPU seconds per training iteration
    and ``epoch_s`` per epoch besides (nnU-Net's end-of-epoch bookkeeping: progress plot, checkpoints).

    nnU-Net's own epoch (250 iterations) is kept while ``min_epochs`` of them fit; below that the
    epochs get shorter so that ``min_epochs`` still fit (the learning rate decays once per epoch);
    at least one epoch of one iteration. Never more than nnU-Net's 1,000 epochs.
    """
    if iteration_s <= 0:
        raise ValueError(f"iteration cost must be positive, got {iteration_s}")
    total = max(1, math.floor(max(0.0, budget_s) / iteration_s))
    iterations = max(1, min(max_iterations, total // min_epochs))
    epochs = max(1, min(max_epochs, math.floor(budget_s / (iterations * iteration_s + epoch_s))))
    return epochs, iterations


def cpu_seconds() -> tuple[float, float]:
    """(user, sys) of this process and its waited-for children."""
    times = os.times()
    return times.user + times.children_user, times.system + times.children_system


def budget_trainer(base: type, epochs: int, iterations: int) -> type:
    """nnU-Net's trainer ``base`` with ``epochs`` x ``iterations`` and per-epoch CPU seconds recorded.

    The schedule is set as class attributes: nnU-Net saves its trainer's ``__init__`` arguments
    from the base class's locals, so the signature must be the base's exactly.
    """
    import torch

    class nnUNetTrainerBudget(base):
        schedule = (epochs, iterations)

        def __init__(
            self,
            plans: dict,
            configuration: str,
            fold: int,
            dataset_json: dict,
            device: torch.device = torch.device("cuda"),
        ) -> None:
            super().__init__(plans, configuration, fold, dataset_json, device)
            self.num_epochs, self.num_iterations_per_epoch = self.schedule
            self.num_val_iterations_per_epoch = val_iterations(self.num_iterations_per_epoch)
            self.step_marks: list[
                float
            ] = []  # CPU seconds at each training step's start, then at the epoch's training end
            self.val_step_s = 0.0  # the last validation step's CPU seconds
            self.val_total_s = 0.0  # this epoch's validation steps
            self.epoch_overhead_s = 0.0  # the last epoch's CPU outside its training and validation steps
            self.first_epoch_cpu_s: float | None = None

        def on_epoch_start(self) -> None:
            if self.first_epoch_cpu_s is None:
                self.first_epoch_cpu_s = sum(cpu_seconds())
            self.step_marks = []
            self.val_total_s = 0.0
            self._epoch_started = sum(cpu_seconds())
            super().on_epoch_start()

        def on_epoch_end(self) -> None:
            super().on_epoch_end()
            steps = self.step_marks[-1] - self.step_marks[0] + self.val_total_s
            self.epoch_overhead_s = sum(cpu_seconds()) - self._epoch_started - steps

        def train_step(self, batch: dict) -> dict:
            self.step_marks.append(sum(cpu_seconds()))
            return super().train_step(batch)

        def on_train_epoch_end(self, train_outputs: list) -> None:
            self.step_marks.append(sum(cpu_seconds()))
            super().on_train_epoch_end(train_outputs)

        def validation_step(self, batch: dict) -> dict:
            started = sum(cpu_seconds())
            result = super().validation_step(batch)
            self.val_step_s = sum(cpu_seconds()) - started
            self.val_total_s += self.val_step_s
            return result

        def iteration_cpu_s(self) -> float:
            """A warm training iteration (loading included) plus its share of validation, from the last epoch."""
            warm = self.step_marks[1:]
            return (warm[-1] - warm[0]) / (len(warm) - 1) + self.val_step_s / VAL_SHARE

    return nnUNetTrainerBudget


def plan_and_preprocess(dataset_id: int, threads: int, log: Any) -> None:
    # nnUNet_n_proc_DA=0 (one thread: augment in the training process) would make the planner's
    # torch.set_num_threads(get_allowed_n_proc_DA()) fail: planning gets the thread count instead.
    env = {**os.environ, "nnUNet_n_proc_DA": str(max(1, threads))}
    command = [
        str(Path(sys.executable).parent / "nnUNetv2_plan_and_preprocess"),
        "-d",
        str(dataset_id),
        "-c",
        "2d",
        "--verify_dataset_integrity",
        "-np",
        "1",
        "-npfp",
        "1",
    ]
    subprocess.run(command, check=True, stdout=log, stderr=subprocess.STDOUT, env=env)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--work",
        type=Path,
        required=True,
        help="holds raw/ (exported) and fold0.json; preprocessed/ and results/ go here",
    )
    parser.add_argument("--dataset-id", type=int, required=True)
    parser.add_argument("--budget-s", type=float, required=True, help="CPU seconds up to the end of training")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--schedule", help="EPOCHS,ITERATIONS: skip the probe and train exactly this")
    parser.add_argument("--pred", type=Path, required=True, help="where the test predictions go")
    parser.add_argument("--report", type=Path, required=True)
    args = parser.parse_args(argv)
    started_wall = time.perf_counter()
    work = args.work.resolve()
    for name in ("raw", "preprocessed", "results"):
        (work / name).mkdir(parents=True, exist_ok=True)
    os.environ.update(
        nnUNet_raw=str(work / "raw"),
        nnUNet_preprocessed=str(work / "preprocessed"),
        nnUNet_results=str(work / "results"),
        nnUNet_compile="false",
    )

    import nnunetv2
    import torch
    from batchgenerators.utilities.file_and_folder_operations import load_json
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
    from nnunetv2.utilities.dataset_name_id_conversion import maybe_convert_to_dataset_name

    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    with open(work / "preprocess.log", "w", encoding="utf-8") as log:
        plan_and_preprocess(args.dataset_id, args.threads, log)
    preprocess_wall_s = time.perf_counter() - started_wall
    name = maybe_convert_to_dataset_name(args.dataset_id)
    preprocessed = work / "preprocessed" / name
    (preprocessed / "splits_final.json").write_text(
        json.dumps([json.loads((work / "fold0.json").read_text(encoding="utf-8"))]), encoding="utf-8"
    )
    plans = load_json(str(preprocessed / "nnUNetPlans.json"))
    dataset_json = load_json(str(preprocessed / "dataset.json"))
    budget_start = sum(cpu_seconds())  # planning and preprocessing are outside the budget (reported apart)

    def trainer(epochs: int, iterations: int) -> Any:
        cls = budget_trainer(nnUNetTrainer, epochs, iterations)
        fresh = {**json.loads(json.dumps(plans)), "continue_training": False}  # nnU-Net 2.8 pops this from the plans
        return cls(plans=fresh, configuration="2d", fold=0, dataset_json=dataset_json, device=device)

    probe: dict[str, float] = {}
    if args.schedule:
        epochs, iterations = (int(part) for part in args.schedule.split(","))
    else:
        probing = trainer(1, PROBE_ITERATIONS)
        probing.run_training()
        iteration_s = probing.iteration_cpu_s()
        setup_s = (
            probing.first_epoch_cpu_s - budget_start
        )  # network, data loaders, unpacking: paid again by the real run
        shutil.rmtree(probing.output_folder)
        left = args.budget_s - (sum(cpu_seconds()) - budget_start) - setup_s
        epochs, iterations = fit_schedule(left, iteration_s, probing.epoch_overhead_s)
        probe = {
            "iteration_cpu_s": round(iteration_s, 3),
            "epoch_overhead_cpu_s": round(probing.epoch_overhead_s, 2),
            "setup_cpu_s": round(setup_s, 1),
            "left_cpu_s": round(left, 1),
        }
    training = trainer(epochs, iterations)
    training.run_training()
    user_s, sys_s = cpu_seconds()
    training_wall_s = time.perf_counter() - started_wall

    training.set_deep_supervision_enabled(False)
    training.network.eval()
    predictor = nnUNetPredictor(
        tile_step_size=0.5,
        use_gaussian=True,
        use_mirroring=True,
        perform_everything_on_device=device.type == "cuda",
        device=device,
        verbose=False,
        verbose_preprocessing=False,
        allow_tqdm=False,
    )
    predictor.manual_initialization(
        training.network,
        training.plans_manager,
        training.configuration_manager,
        [training.network.state_dict()],
        training.dataset_json,
        type(training).__name__,
        training.inference_allowed_mirroring_axes,
    )
    predicted = (
        work / "predicted"
    )  # nnU-Net writes its arguments and plans beside the masks: only the masks go to --pred
    predicted.mkdir(exist_ok=True)
    predictor.predict_from_files_sequential(
        str(work / "raw" / name / "imagesTs"), str(predicted), save_probabilities=False, overwrite=True
    )
    args.pred.mkdir(parents=True, exist_ok=True)
    for mask in predicted.glob("*.png"):
        shutil.copy(mask, args.pred / mask.name)

    configuration = plans["configurations"]["2d"]
    report = {
        "epochs": epochs,
        "iterations": iterations,
        "val_iterations": val_iterations(iterations),
        "batch_size": configuration["batch_size"],
        "patch_size": "x".join(str(side) for side in configuration["patch_size"]),
        "stages": configuration["architecture"]["arch_kwargs"]["n_stages"],
        "network": configuration["architecture"]["network_class_name"].rsplit(".", 1)[-1],
        "tta": "mirror (nnU-Net default)",
        **probe,
        "preprocess_cpu_s": round(budget_start, 1),
        "training_cpu_s": round(user_s + sys_s - budget_start, 1),
        "training_wall_s": round(training_wall_s - preprocess_wall_s, 1),
        "versions": {
            "nnunetv2": getattr(nnunetv2, "__version__", _version("nnunetv2")),
            "torch (nnU-Net)": torch.__version__,
        },
    }
    args.report.write_text(json.dumps(report, indent=1), encoding="utf-8")
    return 0


def _version(package: str) -> str:
    from importlib.metadata import version

    return version(package)


if __name__ == "__main__":
    sys.exit(main())
