"""core.search.task_fit: the one refusal of a study on a dataset of the other task."""

from __future__ import annotations

from core.contract import Task
from core.search.spec import StudySpec
from core.search.task_fit import task_problem


def test_a_task_mismatch_names_the_fix_either_way() -> None:
    segmentation = StudySpec(name="s", dataset="cells")
    classification = StudySpec(name="c", dataset="cells", task=Task.CLASSIFICATION)
    assert (
        task_problem(segmentation, Task.SEGMENTATION) is None
        and task_problem(classification, Task.CLASSIFICATION) is None
    )
    assert "study 'c' is a classification study but dataset 'cells' is a segmentation dataset" in task_problem(
        classification, Task.SEGMENTATION
    )
    assert "datasets from-masks cells --name cells-presence" in task_problem(classification, Task.SEGMENTATION)
    assert 'set "task": "classification"' in task_problem(segmentation, Task.CLASSIFICATION)
