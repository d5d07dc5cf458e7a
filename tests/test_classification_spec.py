"""Classification specs: the task's own catalogue, refusals that name the fix, the P4 preset, and task/dataset
agreement."""

from __future__ import annotations

import optuna
import pytest

from core.contract import Task
from core.errors import SegTuneError
from core.search.presets import load_preset, preset_names
from core.search.size import search_space_size
from core.search.space import CLASSIFICATION_HYPERPARAMETERS, HYPERPARAMETERS, ParamSpec, hyperparameters
from core.search.study_source import study_source
from core.search.suggest import grid_points, suggest_params
from core.search.validation import SpecError, spec_from_dict
from core.settings import Settings
from tests.helpers.classification_sets import write_bars


def spec(**overrides: object) -> dict:
    return {"name": "c", "dataset": "bars", "task": "classification", **overrides}


def problems(data: dict) -> dict[str, str]:
    with pytest.raises(SpecError) as error:
        spec_from_dict(data)
    return error.value.problems


def test_a_classification_spec_uses_its_catalogue_and_defaults() -> None:
    parsed = spec_from_dict(spec())
    assert parsed.task == Task.CLASSIFICATION and parsed.is_classification
    assert parsed.objectives[0].metric == "val_balanced_accuracy" and parsed.objectives[0].direction == "maximize"
    assert parsed.param("architecture").value == "MobileNetV2" and parsed.param("loss").value == "cross_entropy"
    assert spec_from_dict(parsed.to_dict()) == parsed and parsed.to_dict()["task"] == "classification"
    # a segmentation spec is written as before tasks existed (stored studies still compare equal)
    assert "task" not in spec_from_dict({"name": "s", "dataset": "d"}).to_dict()
    shared = set(CLASSIFICATION_HYPERPARAMETERS) & set(HYPERPARAMETERS)
    assert {
        "optimizer",
        "lr",
        "batch_size",
        "scheduler",
        "epochs",
        "aug_hflip",
        "loss",
        "architecture",
        "encoder_weights",
    } <= shared
    assert hyperparameters("classification") is CLASSIFICATION_HYPERPARAMETERS


def test_segmentation_options_in_a_classification_spec_are_refused_naming_the_fix() -> None:
    found = problems(
        spec(
            search_space={"encoder": "resnet18", "architecture": {"choices": ["VGG19", "Unet"]}, "loss": "dice_bce"},
            objectives=["val_dice"],
            pruner="median",
        )
    )
    assert found["search_space.encoder"].startswith(
        "encoder is a segmentation hyperparameter; a classification study tunes ["
    )
    assert (
        "'Unet' is a segmentation architecture" in found["search_space.architecture"]
        and "'VGG19'" in found["search_space.architecture"]
    )
    assert '(or set "task": "segmentation")' in found["search_space.loss"]
    assert found["objectives[0].metric"].startswith(
        "val_dice is a segmentation metric; a classification study optimises one of ['val_accuracy'"
    )
    assert "pruner" not in found  # the objective is the problem, not the pruner


def test_classification_options_in_a_segmentation_spec_are_refused_naming_the_fix() -> None:
    found = problems(
        {
            "name": "s",
            "dataset": "d",
            "search_space": {"head_filters": 32, "architecture": "MobileNetV2", "loss": "cross_entropy"},
            "objectives": ["val_f1_macro"],
        }
    )
    assert found["search_space.head_filters"].startswith(
        "head_filters is a classification hyperparameter; a segmentation study tunes"
    )
    assert "'MobileNetV2' is a classification architecture" in found["search_space.architecture"]
    assert '(or set "task": "classification")' in found["search_space.architecture"]
    assert found["objectives[0].metric"].startswith("val_f1_macro is a classification metric")
    assert (
        problems(spec(task="detection"))["task"]
        == "unknown task 'detection'; valid: ['segmentation', 'classification']"
    )
    assert (
        "unknown hyperparameter 'head_size'" in problems(spec(search_space={"head_size": 3}))["search_space.head_size"]
    )


def test_label_smoothing_is_tuned_only_with_cross_entropy_and_the_grid_counts_it_so() -> None:
    parsed = spec_from_dict(
        spec(
            sampler="grid",
            pruner="none",
            search_space={
                "loss": {"choices": ["cross_entropy", "focal"]},
                "label_smoothing": {"choices": [0.0, 0.1, 0.2]},
                "head_kernel_size": {"choices": [1, 3]},
            },
        )
    )
    points = grid_points(parsed)
    assert search_space_size(parsed) == len(points) == (3 + 1) * 2
    assert all(("label_smoothing" in p) == (p["loss"] == "cross_entropy") for p in points)
    study = optuna.create_study()
    trial = study.ask({"loss": optuna.distributions.CategoricalDistribution(["focal"])})
    params = suggest_params(
        trial, spec_from_dict(spec(search_space={"loss": "focal", "label_smoothing": {"low": 0.0, "high": 0.3}}))
    )
    assert "label_smoothing" not in params and "encoder" not in params and params["head_filters"] == 64
    assert (
        problems(spec(search_space={"label_smoothing": {"low": 0.0, "high": 0.9}}))["search_space.label_smoothing"]
        == "range must lie within 0.0..0.5"
    )


def test_the_p4_preset_reproduces_the_papers_search() -> None:
    assert preset_names(Task.CLASSIFICATION) == ["p4-cnn-classification"]
    assert "p4-cnn-classification" not in preset_names(Task.SEGMENTATION) and "p1-unet-keras-tuner" in preset_names(
        Task.SEGMENTATION
    )
    p4 = load_preset("p4-cnn-classification", "faces")
    assert p4.task == Task.CLASSIFICATION and p4.sampler == "random" and p4.cv is not None and p4.cv.folds == 3
    assert p4.search_space["architecture"] == ParamSpec.choice("MobileNetV2", "VGG19")
    grid = {
        name: p4.search_space[name].choices
        for name in ("head_kernel_size", "head_filters", "head_dense_units", "head_dropout")
    }
    assert grid == {
        "head_kernel_size": (1, 3, 5, 7),
        "head_filters": (32, 64, 96, 128),
        "head_dense_units": (128, 64, 32, 16),
        "head_dropout": (0.2, 0.25, 0.3, 0.5),
    }
    assert search_space_size(p4) == 2 * 4**4


def test_a_study_and_a_dataset_of_different_tasks_are_refused_naming_the_fix(workspace: Settings) -> None:
    from core.data.demo import create_demo_dataset

    write_bars(workspace.datasets_dir, "bars", 12)
    create_demo_dataset(workspace.datasets_dir, count=6, size=32)
    with pytest.raises(
        SegTuneError,
        match=r"segmentation study but dataset 'bars' is a classification dataset .*set \"task\": \"classification\"",
    ):
        study_source(spec_from_dict({"name": "s", "dataset": "bars"}), workspace)
    with pytest.raises(
        SegTuneError,
        match=r"classification study but dataset 'demo-cells' is a segmentation dataset .*whether its mask is "
        r"empty.*datasets from-masks demo-cells",
    ):
        study_source(spec_from_dict(spec(dataset="demo-cells")), workspace)
    source = study_source(spec_from_dict(spec(split={"train": 0.5, "val": 0.25, "test": 0.25})), workspace)
    labels = source.manifest.labels
    # stratified: each part holds both classes
    assert all(
        {labels[stem] for stem in part} == {0, 1} for part in (source.split.train, source.split.val, source.split.test)
    )


def test_the_auto_preset_plans_a_classification_dataset(tmp_path) -> None:
    manifest = write_bars(tmp_path, "bars", 4)
    spec = load_preset("auto", "bars", manifest=manifest, device="cpu", hours=0.5)
    assert spec.task == "classification" and spec.objectives[0].metric == "val_balanced_accuracy"
    assert spec.first_trials and spec.first_trials[0]["lr"] == 1e-3
