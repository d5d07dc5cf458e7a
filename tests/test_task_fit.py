"""core.search.task_fit: the one refusal of a study on a dataset of the other task, and a
classification dataset's starting spec."""

from __future__ import annotations

from types import SimpleNamespace

from core.contract import Task
from core.data.splits import SplitConfig
from core.search.spec import StudySpec
from core.search.task_fit import classification_start, task_problem


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


def test_a_classification_start_sits_at_the_median_side_within_the_clamp() -> None:
    split = SplitConfig(seed=7)

    def manifest(*sides: int) -> SimpleNamespace:
        return SimpleNamespace(name="bars", pairs=[SimpleNamespace(height=side, width=side + 10) for side in sides])

    spec = classification_start(manifest(100, 150, 200), split)
    assert (spec.name, spec.dataset, spec.task, spec.image_size, spec.split) == (
        "bars-study",
        "bars",
        Task.CLASSIFICATION,
        128,
        split,
    )
    assert spec.objectives[0].metric == "val_balanced_accuracy"
    assert (
        classification_start(manifest(20), split).image_size == 64
        and classification_start(manifest(900), split).image_size == 224
    )
    assert classification_start(manifest(), split).image_size == 128  # no images: a middle size
