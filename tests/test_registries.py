"""The registries and the metric catalogue are consistent with the code behind them.

These replace the import-time asserts the modules used to have: each registry entry names things
that exist (a factory, tunable hyperparameters, a size rule), and every catalogue metric is a
value SegTune really computes and stores.
"""

from __future__ import annotations

import importlib
from dataclasses import fields

import pytest

from core.contract import Task, TrialAttr
from core.errors import SegTuneError
from core.metrics.catalogue import (
    METRICS,
    Scope,
    Source,
    curve_metrics,
    default_objective,
    epoch_objectives,
    label,
    objective_metrics,
    report_metrics,
    split_metrics,
    stored_metrics,
    task_metrics,
)
from core.modeling.architectures import ARCHITECTURES, Family, input_size_problem
from core.modeling.config import ModelConfig
from core.modeling.losses import LOSSES
from core.modeling.optimizers import OPTIMIZERS
from core.search.space import HYPERPARAMETERS, hyperparameters
from core.settings import Settings
from tests.helpers.classification_sets import tiny_classification_study
from tests.helpers.studies import tiny_study


@pytest.mark.parametrize("entry", list(ARCHITECTURES), ids=lambda entry: entry.name)
def test_every_architecture_entry_names_a_real_factory_and_real_hyperparameters(entry) -> None:
    module, _, function = entry.build.target.partition(":")
    assert callable(getattr(importlib.import_module(module), function))
    config_fields = {f.name for f in fields(ModelConfig)}
    for name in entry.hyperparameters:
        assert name in hyperparameters(entry.task) and name in config_fields, name
    assert entry.description


@pytest.mark.parametrize("entry", list(ARCHITECTURES), ids=lambda entry: entry.name)
def test_every_input_rule_accepts_its_minimum_and_refuses_what_breaks_it(entry) -> None:
    config = ModelConfig(
        entry.name, 1, 2, encoder="tu-vit_tiny_patch16_224" if entry.name == "DPT" else "resnet18", encoder_depth=3
    )
    rule = entry.input_rule(config)
    assert rule.minimum % rule.multiple == 0
    assert input_size_problem(config, rule.minimum) is None
    assert "multiple" in input_size_problem(config, rule.minimum + 1)
    if rule.minimum > rule.multiple:
        assert "at least" in input_size_problem(config, rule.minimum - rule.multiple)


def test_architecture_families_match_the_hyperparameters_they_take() -> None:
    for entry in ARCHITECTURES:
        assert ("encoder" in entry.hyperparameters) == (entry.family == Family.SMP), entry.name


def test_hybrid_losses_combine_single_losses_and_every_optimizer_option_is_tunable() -> None:
    for loss in LOSSES:
        assert (loss.build is None) == bool(loss.parts), loss.name
        assert all(LOSSES.get(part).build is not None for part in loss.parts), loss.name
    for optimizer in OPTIMIZERS:
        assert all(name in HYPERPARAMETERS for name in optimizer.hyperparameters), optimizer.name


def test_a_registry_lookup_lists_the_valid_names() -> None:
    with pytest.raises(SegTuneError, match=r"unknown architecture 'UNet3D'; valid: \['Unet', 'UnetPlusPlus'"):
        ARCHITECTURES.get("UNet3D")
    assert ARCHITECTURES.problem(3) and ARCHITECTURES.problem("Unet") is None


@pytest.mark.parametrize("task", list(Task))
def test_catalogue_views_are_consistent(task: Task) -> None:
    objectives = objective_metrics(task)
    assert set(epoch_objectives(task)) <= set(objectives) and default_objective(task) in epoch_objectives(task)
    assert all(name.startswith("val_") for name in epoch_objectives(task))
    assert set(report_metrics(task)) <= set(stored_metrics(task))  # split metrics, or per case (NSD, HD95)
    assert set(curve_metrics(task)) <= set(METRICS.names)
    assert all(task in METRICS.get(name).tasks for name in (*split_metrics(task=task), *curve_metrics(task)))
    assert label("val_dice") == "Validation Dice" and label("test_iou") == "Test IoU" and label("lr") == "Learning rate"


@pytest.mark.parametrize("task", list(Task))
def test_every_catalogue_metric_is_computed_and_stored_by_a_real_trial(workspace: Settings, task: Task) -> None:
    study = (
        tiny_study(workspace, "catalogue")
        if task == Task.SEGMENTATION
        else tiny_classification_study(workspace, "catalogue")
    )
    trial = study.trials[0]
    attrs = trial.user_attrs
    for name in split_metrics(task=task):
        assert name in attrs[TrialAttr.VAL_METRICS] and name in attrs[TrialAttr.TEST_METRICS], name
    epoch = attrs[TrialAttr.HISTORY][0]
    for metric in task_metrics(task):
        if metric.scope == Scope.SPLIT:
            assert f"val_{metric.name}" in epoch, metric.name
        elif metric.scope == Scope.EPOCH:
            assert metric.name in epoch, metric.name
        elif metric.scope == Scope.VOLUME:  # volume datasets only: tests/test_volume_roundtrip.py
            assert metric.name not in attrs[TrialAttr.VAL_METRICS], metric.name
        elif metric.scope == Scope.CASE:  # per image at the original size, when the trial ends
            assert metric.name in attrs[TrialAttr.VAL_METRICS] and metric.name in attrs[TrialAttr.TEST_METRICS], (
                metric.name
            )
            assert all(metric.name in row for row in attrs[TrialAttr.VAL_CASES]), metric.name
        else:
            assert metric.source == Source.MEASUREMENT and attrs[metric.name] > 0, metric.name
    # the objective is the validation metric the catalogue names, never the test one
    assert trial.values[0] == attrs[TrialAttr.VAL_METRICS][default_objective(task).removeprefix("val_")]
    other = Task.CLASSIFICATION if task == Task.SEGMENTATION else Task.SEGMENTATION
    assert not set(split_metrics(task=other)) - {"loss"} & set(
        attrs[TrialAttr.VAL_METRICS]
    )  # no metric of the other task
