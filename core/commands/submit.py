"""``python -m core submit --spec S [--workers N] [--devices cuda:0,cuda:1|cpu] [--per-gpu K|auto]``.

Queues a background job for the spec's study and starts detached local workers; returns at once.
``--warm-start STUDY [--top-k K]`` first queues the K best configurations of an earlier study on
the same dataset; ``--narrow STUDY`` runs a new study narrowed around that study's best trials
(its spec is derived, so ``--spec`` is not needed).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from core.runtime.job_table import get_job
from core.runtime.launcher import AUTO, visible_gpu_ids
from core.runtime.queue import submit_job
from core.runtime.reuse import DEFAULT_TOP_K, link_to_source, narrowed_spec, seed_from_study
from core.search.suggest import trials_beyond_space
from core.search.validation import load_spec
from core.settings import load_settings

if TYPE_CHECKING:
    from core.search.spec import StudySpec
    from core.settings import Settings


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("submit", help="queue a tuning job and start background workers")
    parser.add_argument("--spec", type=Path, help="study spec (.json or .yaml); not needed with --narrow")
    parser.add_argument(
        "--workers", type=int, help="workers to start (default: one per GPU x --per-gpu, or 1 on CPU); 0 = queue only"
    )
    parser.add_argument(
        "--devices", help="comma-separated: cuda:0,cuda:1 or cpu (default: every visible GPU, else cpu)"
    )
    parser.add_argument(
        "--per-gpu",
        default="1",
        help="workers per GPU, for small models (default 1), or 'auto': as many trials as fit in the GPU's memory",
    )
    parser.add_argument(
        "--warm-start",
        metavar="STUDY",
        help="seed the study with the best configurations of this earlier study (same dataset)",
    )
    parser.add_argument(
        "--narrow",
        metavar="STUDY",
        help="run a new study with the search space narrowed around this study's best trials",
    )
    parser.add_argument(
        "--top-k",
        type=int,
        default=DEFAULT_TOP_K,
        help=f"how many of the earlier study's best trials to reuse (default {DEFAULT_TOP_K})",
    )
    parser.add_argument("--name", help="name of the narrowed study (default: <study>-narrow)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    settings = load_settings()
    if args.narrow and args.warm_start:
        raise SystemExit(
            "submit: use --warm-start or --narrow, not both (a narrowed study already starts from the best trials' "
            "region)"
        )
    if args.narrow:
        spec = narrowed_spec(settings, args.narrow, args.top_k, name=args.name)
        link_to_source(settings, spec, args.narrow, args.top_k)
        print(f"study {spec.name} narrows {args.narrow} around its {args.top_k} best trials")
    elif args.spec is None:
        raise SystemExit("submit: --spec is required (or --narrow STUDY to derive one)")
    else:
        spec = load_spec(args.spec)
    if args.warm_start:
        queued = seed_from_study(settings, spec, args.warm_start, args.top_k)
        print(f"queued {queued} configuration(s) from {args.warm_start} as the first trials")
    warning = trials_beyond_space(spec)
    if warning:
        print(f"warning: {warning}", file=sys.stderr)
    per_gpu, trial_bytes = per_gpu_arg(args.per_gpu, spec, settings)
    job_id = submit_job(
        settings, spec, workers=args.workers, devices=args.devices, per_gpu=per_gpu, trial_bytes=trial_bytes
    )
    job = get_job(settings, job_id)
    print(
        f"job {job_id} queued for study {job.study_name} ({job.n_trials or 'timed'} trials, {job.workers} worker "
        "slot(s))"
    )
    print(f"log: {job.log_path}")
    print(f"watch: python -m core jobs show {job_id} --follow")
    return 0


def per_gpu_arg(value: str, spec: StudySpec, settings: Settings) -> tuple[int | str, int | None]:
    """``--per-gpu``: a number, or "auto" with the probe's per-trial peak memory (measured on a GPU)."""
    if value != AUTO:
        try:
            return int(value), None
        except ValueError:
            raise SystemExit(f"submit: --per-gpu must be a whole number or 'auto', got {value!r}") from None
    from core.training.estimate import estimate_trial_cost

    gpus = visible_gpu_ids()
    cost = estimate_trial_cost(spec, settings, device="cuda:0" if gpus else "cpu")
    how = "measured on cuda:0" if cost.memory_measured else "estimated from parameters and activations"
    print(f"--per-gpu auto: one trial needs about {cost.memory_bytes / 2**30:.2f} GiB ({how})")
    return AUTO, cost.memory_bytes
