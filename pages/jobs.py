"""Jobs: every background tuning job, its progress, workers and log; cancel, resume or extend it."""

from __future__ import annotations

import time

import pandas as pd
import streamlit as st

from app import cache, state
from app.nav import page_path
from app.widgets.errors import user_errors
from core.runtime.job_model import ACTIVE_STATES, RESUMABLE_STATES, Job, JobState
from core.runtime.job_table import list_jobs
from core.runtime.job_views import JobStatus, RunningTrial, job_status, read_log_tail
from core.runtime.queue import cancel_job, extend_job, resume_job

REFRESH = "2s"  # live view period; reads below are cached for less than that
STATUS_LABELS = {
    "queued": "Queued",
    "running": "Running",
    "cancelling": "Cancelling",
    "cancelled": "Cancelled",
    "finished": "Finished",
    "failed": "Failed",
    "interrupted": "Interrupted",
}
JOB_PICKER = "jobs.picker"
NOTICE = "jobs.notice"
LOG_LINES = 40


@st.cache_data(ttl=1.5, show_spinner=False)
def jobs_snapshot(db_url: str) -> list[Job]:
    return list_jobs(cache.settings())


@st.cache_data(ttl=1.5, show_spinner=False)
def status_snapshot(db_url: str, job_id: int) -> JobStatus:
    return job_status(cache.settings(), job_id)


def done(message: str) -> None:
    """After an action: fresh reads, and redraw the view with the message shown once."""
    refresh()
    st.session_state[NOTICE] = message
    st.rerun()


def refresh() -> None:
    jobs_snapshot.clear()
    status_snapshot.clear()
    cache.clear_reads()


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


def jobs_table(jobs: list[Job]) -> None:
    now = time.time()
    frame = pd.DataFrame(
        [
            {
                "job": job.id,
                "study": job.study_name,
                "status": STATUS_LABELS.get(job.status, job.status),
                "trials": job.n_trials,
                "devices": ", ".join(job.devices) or "auto",
                "workers": job.workers,
                "submitted": duration(now - job.created_at) + " ago",
                "heartbeat": duration(now - job.heartbeat_at) + " ago" if job.heartbeat_at else "–",
            }
            for job in jobs
        ]
    )
    st.dataframe(
        frame, hide_index=True, width="stretch", column_config={"job": st.column_config.NumberColumn(format="#%d")}
    )


def pick_job(jobs: list[Job]) -> int:
    ids = [job.id for job in jobs]
    by_id = {job.id: job for job in jobs}
    st.session_state[JOB_PICKER] = state.JOB.get() if state.JOB.get() in ids else ids[0]
    chosen = st.selectbox(
        "Job",
        ids,
        key=JOB_PICKER,
        on_change=lambda: state.JOB.set(st.session_state[JOB_PICKER]),
        format_func=lambda i: f"#{i} · {by_id[i].study_name} · {by_id[i].status}",
    )
    state.JOB.set(chosen)
    return chosen


def progress_view(status: JobStatus) -> None:
    job = status.job
    columns = st.columns(4)
    shown = status.state  # from the trial rows too, so it never contradicts the running trials below
    columns[0].metric("Status", STATUS_LABELS.get(shown, shown))
    total = status.trials_total
    columns[1].metric("Trials done", f"{status.trials_done} / {total}" if total else status.trials_done)
    columns[2].metric("Best value", "–" if status.best_value is None else f"{status.best_value:.4f}")
    columns[3].metric(
        "ETA",
        duration(status.eta_s),
        help="Time left for the running trials, then the trials not started yet at the mean trial duration, over the "
        "workers.",
    )
    if total:
        st.progress(
            min(1.0, status.trials_done / total),
            text=f"{status.trials_done} of {total} trials "
            f"({status.counts.complete} complete, {status.counts.pruned} pruned, {status.counts.failed} failed)",
        )
    for trial in status.running:
        st.progress(trial.fraction, text=running_text(trial))
    if job.error:
        st.error(job.error, icon=":material/error:")


def running_text(trial: RunningTrial) -> str:
    """'Trial 3 · epoch 2/10 · batch 45/120 · cuda:0 · 4 min 10 s, about 12 min left'."""
    where = trial.device or "?"
    progress = trial.progress
    if not trial.live:
        return (
            f"Trial {trial.number} · not running: its worker is gone · a worker fails and retries it when the job runs"
        )
    if progress is None and trial.epoch is None:
        return f"Trial {trial.number} · loading data · {where}"
    if progress is not None:
        step = f"epoch {progress.epoch}/{progress.epochs} · batch {progress.batch}/{progress.batches}"
    else:
        step = f"epoch {trial.epoch}/{trial.epochs_planned or '?'}"
    left = f", about {duration(trial.eta_s)} left" if trial.eta_s is not None else ""
    return f"Trial {trial.number} · {step} · {where} · {duration(trial.elapsed_s)}{left}"


def workers_view(status: JobStatus) -> None:
    job = status.job
    devices = ", ".join(job.devices) or "chosen automatically"
    st.caption(
        f"Devices: {devices} · {job.workers} worker(s) planned, {job.per_gpu} per GPU · submitted on `{job.host}`"
    )
    if status.workers:
        st.dataframe(
            pd.DataFrame(
                [
                    {
                        "worker": w.id,
                        "device": w.device,
                        "trial": w.trial_number,
                        "heartbeat": f"{w.heartbeat_age_s:.0f} s ago",
                        "host": w.host,
                    }
                    for w in status.workers
                ]
            ),
            hide_index=True,
            width="stretch",
        )
    elif job.is_active:
        st.caption("No live worker yet: it starts within seconds, or waits for a busy device to free up.")


def actions(job: Job) -> None:
    cancel_col, resume_col, more_col, extend_col = st.columns([1, 1, 1, 1], vertical_alignment="bottom")
    can_cancel = job.status in ACTIVE_STATES and job.status != JobState.CANCELLING
    if cancel_col.button(
        "Cancel",
        key="jobs.cancel",
        icon=":material/stop_circle:",
        disabled=not can_cancel,
        width="stretch",
        help="Running trials stop at their next epoch.",
    ):
        with user_errors("Cancelling the job"):
            cancel_job(cache.settings(), job.id)
            done(f"Job #{job.id} is being cancelled.")
    if resume_col.button(
        "Resume",
        key="jobs.resume",
        icon=":material/play_circle:",
        disabled=job.status not in RESUMABLE_STATES,
        width="stretch",
    ):
        with user_errors("Resuming the job"):
            resume_job(cache.settings(), job.id)
            done(f"Job #{job.id} is queued again.")
    more = more_col.number_input(
        "More trials", min_value=1, max_value=10_000, value=10, step=1, key=f"jobs.more.{job.id}"
    )
    if extend_col.button(
        "Extend",
        key="jobs.extend",
        icon=":material/add_circle:",
        disabled=job.n_trials is None or job.status == JobState.CANCELLING,
        width="stretch",
    ):
        with user_errors("Extending the job"):
            extend_job(cache.settings(), job.id, int(more))
            done(f"Job #{job.id} now runs {job.n_trials + int(more)} trials.")


@st.fragment(run_every=REFRESH)
def live_view() -> None:
    # Errors are caught inside: a fragment's own reruns do not pass through the page's code.
    with user_errors("Reading the jobs"):
        job_view()


def job_view() -> None:
    if NOTICE in st.session_state:
        st.toast(st.session_state.pop(NOTICE), icon=":material/check:")
    db_url = cache.settings().db_url
    jobs = jobs_snapshot(db_url)
    if not jobs:
        st.info("No jobs yet — start one on the New study page.", icon=":material/info:")
        st.page_link(page_path("new_study.py"), label="New study", icon=":material/tune:")
        return
    jobs_table(jobs)
    job_id = pick_job(jobs)
    status = status_snapshot(db_url, job_id)
    with st.container(border=True):
        st.subheader(f"Job #{job_id} · {status.job.study_name}")
        progress_view(status)
        workers_view(status)
        actions(status.job)
    with st.expander("Log (last lines)", expanded=status.job.status in ("failed", "interrupted")):
        tail = read_log_tail(status.job, LOG_LINES)
        if tail:
            st.code(tail, language=None)
        else:
            st.caption("Nothing logged yet.")


st.title("Jobs")
st.caption("Tuning runs in background workers: closing this page does not stop them. This view refreshes every 2 s.")
live_view()
