"""A study's task against its dataset's: the one refusal when they differ.

The study's spec says segmentation or classification; so does the dataset's manifest. The New
study form (at its Dataset field) and every study run (before anything is decoded) refuse a
mismatch with the same message, naming the fix. Either task's dataset starts from the auto plan
(:mod:`core.search.auto`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from core.contract import Task
from core.search.spec import StudySpec

if TYPE_CHECKING:
    pass

CLASSIFICATION_SIDE = (64, 224)  # a classification study starts at the images' median side, clamped to this


def task_problem(spec: StudySpec, dataset_task: Task) -> str | None:
    """Why ``spec`` cannot run on its dataset, whose task is ``dataset_task`` (a study and a dataset
    of different tasks), or None."""
    if spec.task == dataset_task:
        return None
    dataset = spec.dataset
    if spec.task == Task.CLASSIFICATION:
        return (
            f"study {spec.name!r} is a classification study but dataset {dataset!r} is a segmentation dataset "
            "(images + masks): pick a classification dataset, make one from this dataset's masks (each image "
            "labelled by whether its mask is empty: 'Classify by mask: empty / not empty' on the Datasets page, or "
            "python -m core datasets from-masks "
            f'{dataset} --name {dataset}-presence), or set "task": "segmentation"'
        )
    return (
        f"study {spec.name!r} is a segmentation study but dataset {dataset!r} is a classification dataset "
        '(one label per image, no masks): set "task": "classification" (e.g. start from the '
        "p4-cnn-classification preset) or pick a dataset with masks"
    )
