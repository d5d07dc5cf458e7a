"""``python -m core jobs [list|show|cancel|resume|extend] ...``: watch and steer background jobs."""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

from core.runtime.job_model import Job
from core.runtime.job_table import list_jobs
from core.runtime.job_views import JobStatus, job_status, read_log_tail
from core.runtime.queue import cancel_job, extend_job, resume_job
from core.settings import Settings, load_settings


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("jobs", help="list, watch, cancel, resume or extend background jobs")
    parser.add_argument("--follow", action="store_true", help="refresh until interrupted (Ctrl-C)")
    parser.add_argument("--interval", type=float, default=2.0, help="seconds between refreshes with --follow")
    actions = parser.add_subparsers(dest="action", metavar="ACTION")
    listing = actions.add_parser("list", help="every job, newest first (the default)")
    show = actions.add_parser("show", help="one job: trials, running epochs, workers, ETA and its log")
    show.add_argument("job", type=int)
    for sub in (listing, show):  # SUPPRESS: `jobs --follow show 3` keeps the flag given before the action
        sub.add_argument("--follow", action="store_true", default=argparse.SUPPRESS, help="refresh until Ctrl-C")
    show.add_argument("--log", type=int, default=15, help="log lines to print (0: none)")
    for name, text in (
        ("cancel", "stop the job; running trials stop at their next epoch"),
        ("resume", "continue a cancelled, interrupted or failed job"),
    ):
        action = actions.add_parser(name, help=text)
        action.add_argument("job", type=int)
    extend = actions.add_parser("extend", help="give a job more trials (queues it again when it had ended)")
    extend.add_argument("job", type=int)
    extend.add_argument("--trials", type=int, required=True, help="how many more trials")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    settings = load_settings()
    action = args.action or "list"
    if action == "cancel":
        print(describe(cancel_job(settings, args.job)))
    elif action == "resume":
        print(describe(resume_job(settings, args.job)))
    elif action == "extend":
        print(describe(extend_job(settings, args.job, args.trials)))
    else:
        render = (
            (lambda: status_text(job_status(settings, args.job), settings, args.log))
            if action == "show"
            else (lambda: jobs_table_text(settings))
        )
        _print(render, args.follow, args.interval)
    return 0


def _print(render: Callable[[], str], follow: bool, interval: float) -> None:
    while True:
        text = render()
        print(("\033[2J\033[H" if follow else "") + text, flush=True)
        if not follow:
            return
        time.sleep(max(0.2, interval))


def describe(job: Job) -> str:
    return f"job {job.id} ({job.study_name}): {job.status}, {job.n_trials or 'timed'} trials"


def jobs_table_text(settings: Settings) -> str:
    jobs = list_jobs(settings)
    if not jobs:
        return "no jobs yet: `python -m core submit --spec study.json`"
    lines = [f"{'id':>4}  {'study':24s} {'status':12s} {'trials':>9s}  {'workers':>7s}  eta"]
    for job in jobs:
        status = job_status(settings, job.id)
        total = status.trials_total if status.trials_total is not None else "-"
        lines.append(
            f"{job.id:>4}  {job.study_name[:24]:24s} {status.state:12s} {f'{status.trials_done}/{total}':>9s}  "
            f"{len(status.workers):>7d}  {_duration(status.eta_s)}"
        )
    return "\n".join(lines)


def status_text(status: JobStatus, settings: Settings, log_lines: int) -> str:
    job, counts = status.job, status.counts
    lines = [
        f"job {job.id}  study {job.study_name}  {status.state}" + (f"  error: {job.error}" if job.error else ""),
        f"trials {status.trials_done}/{status.trials_total if status.trials_total is not None else '-'}"
        f"  (complete {counts.complete}, pruned {counts.pruned}, failed {counts.failed}, cancelled {counts.cancelled})"
        f"  best {status.best_value if status.best_value is not None else '-'}  eta {_duration(status.eta_s)}",
    ]
    for trial in status.running:
        epoch = f"epoch {trial.epoch or 0}/{trial.epochs_planned or '?'}"
        if trial.progress is not None:  # within a long epoch: the batch too
            epoch = (
                f"epoch {trial.progress.epoch}/{trial.progress.epochs} batch "
                f"{trial.progress.batch}/{trial.progress.batches}"
            )
        beat = (
            f"heartbeat {trial.heartbeat_age_s:.0f}s ago"
            if trial.heartbeat_age_s is not None
            else "no live worker"
            if not trial.live
            else "heartbeat pending"
        )
        lines.append(
            f"  trial {trial.number:>4}  {epoch:14s} on {trial.device or '?':8s} {_duration(trial.elapsed_s)} "
            f"running, {beat}"
        )
    for worker in status.workers:
        lines.append(f"  worker {worker.id} pid {worker.pid} on {worker.host}:{worker.device}")
    if log_lines:
        lines += [f"--- {job.log_path} ---", read_log_tail(job, log_lines)]
    return "\n".join(lines)


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"
