"""``python -m core worker [--db URL] [--job ID] [--device cpu|cuda:N]``: run queued jobs' trials.

Started detached by ``submit`` for local devices; start it by hand on every GPU machine that shares
a PostgreSQL ``SEGTUNE_DB`` (and an artifact store) to scale out.
"""

from __future__ import annotations

import argparse
import logging
import os

from core.runtime.launcher import pin_device
from core.settings import load_settings


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("worker", help="claim queued jobs and run their trials (one process per device)")
    parser.add_argument("--db", help="database URL shared with the other machines (default: SEGTUNE_DB)")
    parser.add_argument("--job", type=int, help="work on this job first (default: the oldest queued job)")
    parser.add_argument(
        "--device", default="auto", help="auto (a GPU when visible), cpu, or cuda:N (pins CUDA_VISIBLE_DEVICES)"
    )
    parser.add_argument(
        "--wait", action="store_true", help="keep waiting for new jobs instead of exiting when none is left"
    )
    parser.add_argument(
        "--only-job", action="store_true", help="exit after --job instead of taking further queued jobs"
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.db:
        os.environ["SEGTUNE_DB"] = args.db
    torch_device = pin_device(args.device, os.environ)  # before anything initialises CUDA
    logging.basicConfig(level=logging.INFO, format="%(asctime)s pid %(process)d %(levelname)s %(message)s")
    from core.runtime.worker import WorkerOptions, run_worker

    options = WorkerOptions(
        job_id=args.job, device=args.device, torch_device=torch_device, wait=args.wait, only_job=args.only_job
    )
    run_worker(load_settings(), options)
    return 0
