"""Deleting a dataset safely: never while a queued or running job trains on it.

``core.data.manifest.delete_dataset`` is the data layer's delete and knows nothing of jobs; the
dashboard and the CLI delete through :func:`delete_dataset_safely`, which refuses (naming the job)
while an active job's spec reads the dataset. Otherwise the job's later trials would fail one by
one, use up the budget and end "finished" with nothing to show.
"""

from __future__ import annotations

import json
import os
import shutil
from typing import TYPE_CHECKING

from core.data.manifest import hide_dataset
from core.runtime.job_model import ACTIVE_STATES, Job, JobError
from core.runtime.job_table import list_jobs

if TYPE_CHECKING:
    from core.settings import Settings


class DatasetInUse(JobError):
    """A dataset cannot be deleted while a queued or running job uses it."""


def jobs_using(settings: Settings, dataset: str) -> list[Job]:
    """Queued, running and cancelling jobs whose spec reads ``dataset``, oldest first."""
    return sorted(
        (job for job in list_jobs(settings, ACTIVE_STATES) if _dataset_of(job) == dataset), key=lambda job: job.id
    )


def delete_dataset_safely(settings: Settings, name: str) -> None:
    """Delete dataset ``name`` unless an active job uses it (then :class:`DatasetInUse` names the job).

    A submit racing the delete queues its job first and then checks that the dataset is still there
    (``core.runtime.queue.submit_job``); the delete hides the dataset first and then looks for jobs
    again, renaming it back if one appeared. Whatever the interleaving, no job stays queued on a
    dataset that is gone.
    """
    _refuse_if_used(settings, name)  # the common case, before anything moves
    hidden = hide_dataset(settings.datasets_dir, name)
    try:
        _refuse_if_used(settings, name)
    except DatasetInUse:
        os.rename(hidden, settings.datasets_dir / name)
        raise
    shutil.rmtree(hidden, ignore_errors=True)  # a killed delete leaves it to remove_stale_work


def _refuse_if_used(settings: Settings, name: str) -> None:
    jobs = jobs_using(settings, name)
    if jobs:
        shown = ", ".join(f"job {job.id} (study {job.study_name!r}, {job.status})" for job in jobs)
        raise DatasetInUse(
            f"dataset {name!r} is used by {shown}; cancel the job or wait until it ends, then delete the dataset"
        )


def _dataset_of(job: Job) -> str | None:
    try:  # the raw JSON, not Job.spec: a spec that a newer SegTune would refuse still names its dataset
        return json.loads(job.spec_json).get("dataset")
    except (ValueError, AttributeError):
        return None
