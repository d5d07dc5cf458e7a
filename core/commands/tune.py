"""``python -m core tune --spec study.json``: run a study in this process and print its leaderboard."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import optuna

from core.results.trials import leaderboard_text
from core.runtime.tuning import run_study
from core.search.suggest import trials_beyond_space
from core.search.validation import load_spec
from core.settings import load_settings
from core.training.progress import TrialBar


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("tune", help="run a study here, with a progress bar and a final leaderboard")
    parser.add_argument("--spec", required=True, type=Path, help="study spec (.json or .yaml)")
    parser.add_argument("--trials", type=int, help="run this many more trials (default: what is left of the budget)")
    parser.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda, cuda:1 ...")
    parser.add_argument("--top", type=int, default=10, help="leaderboard rows to print")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    spec = load_spec(args.spec)
    warning = trials_beyond_space(spec)
    if warning:
        print(f"warning: {warning}", file=sys.stderr)
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # the progress bar and the leaderboard say it all
    bar = TrialBar()  # the running trial's epoch, batch and ETA, under Optuna's trials bar
    try:
        study = run_study(
            spec, load_settings(), n_trials=args.trials, device=args.device, show_progress=True, on_progress=bar
        )
    finally:
        bar.close()
    print(leaderboard_text(study, top=args.top))
    return 0
