"""``python -m core submit --spec S [--workers N] [--devices cuda:0,cuda:1|cpu] [--per-gpu K]``.

Queues a background job for the spec's study and starts detached local workers; returns at once.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from core.runtime.job_table import get_job
from core.runtime.queue import submit_job
from core.search.suggest import trials_beyond_space
from core.search.validation import load_spec
from core.settings import load_settings


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("submit", help="queue a tuning job and start background workers")
    parser.add_argument("--spec", required=True, type=Path, help="study spec (.json or .yaml)")
    parser.add_argument("--workers", type=int, help="workers to start (default: one per GPU x --per-gpu, or 1 on CPU); 0 = queue only")
    parser.add_argument("--devices", help="comma-separated: cuda:0,cuda:1 or cpu (default: every visible GPU, else cpu)")
    parser.add_argument("--per-gpu", type=int, default=1, help="workers per GPU, for small models (default 1)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    settings = load_settings()
    spec = load_spec(args.spec)
    warning = trials_beyond_space(spec)
    if warning:
        print(f"warning: {warning}", file=sys.stderr)
    job_id = submit_job(settings, spec, workers=args.workers, devices=args.devices, per_gpu=args.per_gpu)
    job = get_job(settings, job_id)
    print(f"job {job_id} queued for study {job.study_name} ({job.n_trials or 'timed'} trials, {job.workers} worker slot(s))")
    print(f"log: {job.log_path}")
    print(f"watch: python -m core jobs show {job_id} --follow")
    return 0
