"""``python -m core compress --study S --trial N --method ptq|dynamic|qat|prune``: derive a variant.

The variant is stored with the trial (see core.deploy.compression.variants.list_variants) and the trade-off against
the original is printed. With ``--task-id`` (set by core.runtime.tasks.start_task, the dashboard's way of
running it in the background) progress and the outcome also go to the task's status file.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from contextlib import nullcontext

from core.contract import TrialAttr
from core.deploy.compression.config import FINETUNE_DEFAULTS, METHODS, PRUNE_SCOPES, CompressionConfig
from core.deploy.compression.measure import trade_off_table
from core.deploy.compression.run import compress_trial, study_compression_data
from core.deploy.compression.variants import list_variants
from core.results.trials import get_trial
from core.runtime.storage import open_artifact_store, open_storage
from core.runtime.tasks import TaskProgress
from core.runtime.tuning import load_study
from core.settings import Settings, load_settings

_DEFAULTS = CompressionConfig(method="prune")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "compress", help="quantize or prune a trial's model and compare it with the original"
    )
    parser.add_argument("--study", required=True, help="study name")
    parser.add_argument("--trial", required=True, type=int, help="trial number")
    parser.add_argument(
        "--method", required=True, choices=METHODS, help="ptq (static int8), dynamic (int8 Linear), qat, prune"
    )
    parser.add_argument("--sparsity", type=float, default=_DEFAULTS.sparsity, help="prune: target sparsity 0.5-0.9")
    parser.add_argument(
        "--structured", action="store_true", help="prune: remove whole channels (a smaller, faster model)"
    )
    parser.add_argument("--scope", choices=PRUNE_SCOPES, help="prune: one global threshold or per layer")
    parser.add_argument(
        "--epochs", type=float, help=f"qat/prune: fine-tune epochs over the training split (default: {_epochs_help()})"
    )
    parser.add_argument(
        "--steps", type=int, help="qat/prune: a fixed number of fine-tune steps instead of --epochs (0 = one-shot)"
    )
    parser.add_argument("--lr", type=float, help=f"qat/prune: fine-tune learning rate (default: {_lr_help()})")
    parser.add_argument("--task-id", help="report progress to this background task (set by the dashboard)")
    parser.set_defaults(func=run)


def _epochs_help() -> str:
    return ", ".join(f"{name} {d.epochs:g} (at least {d.min_steps} steps)" for name, d in FINETUNE_DEFAULTS.items())


def _lr_help() -> str:
    return ", ".join(f"{name} {d.lr:g}" for name, d in FINETUNE_DEFAULTS.items())


def run(args: argparse.Namespace) -> int:
    settings = load_settings()
    task = TaskProgress(settings, args.task_id) if args.task_id else None
    with task.failing_on_error() if task else nullcontext():
        return _compress(args, settings, task)


def _reporter(task: TaskProgress | None, start: float = 0.0, span: float = 1.0) -> Callable[[float, str], None]:
    """Progress (mapped into ``start .. start + span``) to the task file, when there is one, and stdout."""

    def report(fraction: float, message: str) -> None:
        fraction = start + span * fraction
        if task is not None:
            task.update(fraction, message)
        print(f"[{fraction:4.0%}] {message}", flush=True)

    return report


def _compress(args: argparse.Namespace, settings: Settings, task: TaskProgress | None) -> int:
    report = _reporter(task)
    report(0.0, "opening the study")
    study, spec = load_study(args.study, open_storage(settings.db_url))
    trial = get_trial(study, args.trial)
    params = trial.user_attrs.get(TrialAttr.PARAMS_RESOLVED) or {}
    config = CompressionConfig(
        method=args.method,
        sparsity=args.sparsity,
        structured=args.structured,
        scope=args.scope,
        finetune_epochs=args.epochs,
        finetune_steps=args.steps,
        lr=args.lr,
        batch_size=int(params.get("batch_size", _DEFAULTS.batch_size)),
        loss=params.get("loss", _DEFAULTS.loss),
        seed=spec.seed,
    )
    print(f"compressing trial #{trial.number} of {study.study_name!r} with {config.label} (CPU) ...")
    report(0.02, "loading data: the study's frozen splits")
    data = study_compression_data(spec, settings)
    # compress_trial's own stages fill the rest of the bar after the data
    reports, record = compress_trial(
        study, trial.number, config, data, open_artifact_store(settings), progress=_reporter(task, 0.1, 0.9)
    )
    table = trade_off_table(reports)
    index = len(list_variants(study, trial.number))
    print(table)
    print(f"stored as variant {index} of trial #{trial.number}: artifacts {record['artifacts']}")
    if task is not None:
        task.finish(
            {
                "study": study.study_name,
                "trial": trial.number,
                "variant": index,
                "label": record["label"],
                "table": table,
            }
        )
    return 0
