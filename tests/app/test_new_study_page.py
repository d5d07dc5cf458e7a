"""New study page: form <-> spec, presets, import, validation next to fields, estimate, start."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator

import pytest
from streamlit.testing.v1 import AppTest

from app.widgets.spec_form import LABELS, SECTIONS, form_to_dict, spec_to_form
from core.contract import Task
from core.data.demo import create_demo_dataset
from core.metrics.catalogue import objective_metrics
from core.modeling import architectures
from core.modeling.classification_losses import CLASSIFICATION_LOSSES
from core.runtime.storage import open_storage
from core.runtime.tuning import load_study
from core.search.presets import load_preset, preset_names
from core.search.space import ParamSpec, hyperparameters
from core.search.validation import spec_from_dict
from core.settings import Settings
from core.training.estimate import TrialCost
from tests.helpers.classification_sets import write_bars
from tests.helpers.pages import MAIN
from tests.helpers.reuse_study import earlier_study


@pytest.fixture
def demo(workspace: Settings) -> Settings:
    create_demo_dataset(workspace.datasets_dir, count=12, size=64)
    return workspace


def new_study_page() -> AppTest:
    at = AppTest.from_file(MAIN, default_timeout=60).run()
    return at.switch_page("../pages/new_study.py").run()


@pytest.mark.parametrize("preset", preset_names())  # the classification presets too: the form follows the task
def test_every_preset_survives_the_form(preset: str) -> None:
    spec = load_preset(preset, "demo-cells")
    again = spec_from_dict(form_to_dict(spec_to_form(spec)))
    shown, expected = (
        again.to_dict(),
        spec_from_dict(spec.to_dict()).to_dict() | {"search_space": again.to_dict()["search_space"]},
    )
    if (
        spec.cv
    ):  # cross-validation cuts its folds from what the test split leaves: the unused train/val fractions are not kept
        for data in (shown, expected):
            data["split"] = {k: v for k, v in data["split"].items() if k not in ("train", "val")}
    assert shown == expected
    for name, dimension in spec.search_space.items():
        assert again.param(name) == dimension, name


def test_no_dataset_shows_what_to_do(workspace: Settings) -> None:
    at = new_study_page()
    assert any("No datasets yet" in info.value for info in at.info)


def test_default_form_is_valid_and_bad_name_is_flagged_at_the_field(demo: Settings) -> None:
    at = new_study_page()
    assert not at.exception
    assert not at.button(key="ns._start").disabled
    at.text_input(key="ns.name").input("bad name!").run()
    assert any("must be 1-64 letters" in e.value for e in at.error)
    assert at.button(key="ns._start").disabled


def test_preset_fills_the_form(demo: Settings) -> None:
    at = new_study_page()
    at.selectbox(key="ns._preset").set_value("p1-unet-keras-tuner").run()
    at.button(key="ns._apply_preset").click().run()
    assert not at.exception
    assert at.multiselect(key="ns.sp.architecture").value == ["ClassicUNet"]
    assert at.multiselect(key="ns.sp.unet_activation").value == ["mish", "elu", "lrelu"]
    assert at.session_state["ns.pruner"] == "hyperband"
    assert any("Filled the form" in s.value for s in at.success)


def test_imported_spec_fills_the_form_and_invalid_one_is_reported(demo: Settings) -> None:
    at = new_study_page()
    spec = {
        "name": "imported",
        "dataset": "demo-cells",
        "image_size": 64,
        "sampler": "random",
        "pruner": "none",
        "search_space": {"architecture": "ClassicUNet", "lr": {"low": 1e-4, "high": 1e-2, "log": True}},
    }
    at.file_uploader(key="ns._import").upload("spec.json", json.dumps(spec).encode(), "application/json").run()
    assert at.text_input(key="ns.name").value == "imported"
    assert at.session_state["ns.sp.lr.mode"] == "range" and at.session_state["ns.sp.lr.log"] is True
    at.file_uploader(key="ns._import").set_value(
        ("bad.json", b'{"name": "x", "sampler": "nope"}', "application/json")
    ).run()
    assert any("sampler" in e.value for e in at.error)
    bom = {**spec, "name": "with-bom"}
    at.file_uploader(key="ns._import").set_value(
        ("bom.json", b"\xef\xbb\xbf" + json.dumps(bom).encode(), "application/json")
    ).run()
    assert at.text_input(key="ns.name").value == "with-bom"


def test_estimate_shows_the_probe(demo: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    import core.training.estimate

    cost = TrialCost(
        n_params=1_234_567, weights_mb=4.7, seconds_per_epoch=3.0, epochs=10, params=(("architecture", "Unet"),)
    )
    monkeypatch.setattr(core.training.estimate, "estimate_trial_cost", lambda spec, settings: cost)
    at = new_study_page()
    at.button(key="ns._estimate").click().run()
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Parameters"] == "1.23 M" and metrics["Minutes / trial"] == "0.5"


def test_start_submits_a_job_and_opens_it_on_the_jobs_page(demo: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    import core.runtime.queue

    submitted = {}

    def fake_submit(settings: Settings, spec: object, **kwargs: object) -> int:
        submitted.update(spec=spec, **kwargs)
        return 7

    monkeypatch.setattr(core.runtime.queue, "submit_job", fake_submit)
    at = new_study_page()
    at.text_input(key="ns.name").input("my-run").run()
    at.button(key="ns._start").click().run()
    assert not at.exception
    # No explicit worker count: None, so core.runtime.launcher starts "Trials per GPU" on every GPU.
    assert submitted["spec"].name == "my-run" and submitted["workers"] is None and submitted["per_gpu"] == 1
    assert at.session_state["segtune.job"] == 7 and at.session_state["segtune.study"] == "my-run"
    assert [t.value for t in at.title] == ["Jobs"]


@pytest.fixture
def two_gpus(demo: Settings, monkeypatch: pytest.MonkeyPatch) -> Iterator[Settings]:
    """The page sees two GPUs (its device list is a cached resource: cleared before and after)."""
    import streamlit as st

    import core.runtime.launcher

    monkeypatch.setattr(core.runtime.launcher, "visible_gpu_ids", lambda: ["0", "1"])
    st.cache_resource.clear()
    yield demo
    st.cache_resource.clear()


def plan_text(at: AppTest) -> str:
    return next(c.value for c in at.caption if "Start launches" in c.value)


def test_trials_per_gpu_sets_the_workers_started_unless_a_count_is_given(
    two_gpus: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    import core.runtime.queue

    submitted = {}
    monkeypatch.setattr(
        core.runtime.queue, "submit_job", lambda settings, spec, **kwargs: submitted.update(kwargs) or 7
    )
    at = new_study_page()
    assert "2 worker(s): 1 on cuda:0, 1 on cuda:1" in plan_text(at)
    at.number_input(key="ns._per_gpu").set_value(3).run()
    assert "6 worker(s): 3 on cuda:0, 3 on cuda:1" in plan_text(at)
    at.number_input(key="ns._workers").set_value(4).run()
    assert "4 worker(s): 2 on cuda:0, 2 on cuda:1" in plan_text(at) and at.number_input(key="ns._per_gpu").disabled
    at.number_input(key="ns._workers").set_value(None).run()
    at.button(key="ns._start").click().run()
    assert not at.exception and submitted["workers"] is None and submitted["per_gpu"] == 3


def test_a_huge_grid_is_counted_and_refused_in_the_form_without_listing_it(
    demo: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    from core.search import suggest

    def never(*_: object) -> None:
        raise AssertionError("the page listed the grid")

    monkeypatch.setattr(suggest, "grid_points", never)
    at = new_study_page()
    at.selectbox(key="ns._preset").set_value("p3-optimizer-loss-cells").run()  # a grid preset: every dimension finite
    at.button(key="ns._apply_preset").click().run()
    at.session_state["ns.sampler"] = "grid"
    for name, high in (("batch_size", 1024), ("epochs", 10_000)):
        for field, value in (("mode", "range"), ("low", 1), ("high", high), ("step", 0), ("log", False)):
            at.session_state[f"ns.sp.{name}.{field}"] = value
    at.session_state["ns.max_epochs"] = 10_000
    at.run()
    assert not at.exception
    # the preset's other choices multiply the 1,024 x 10,000 points
    counts = [
        int(m.group(1).replace(",", ""))
        for e in at.error
        if (m := re.search(r"([\d,]+) points, above the limit of 10,000", e.value))
    ]
    assert counts and counts[0] >= 10_240_000 and counts[0] % 10_240_000 == 0, [e.value for e in at.error]
    assert at.button(key="ns._start").disabled


def test_the_form_starts_from_the_auto_plan_and_says_why(demo: Settings) -> None:
    at = new_study_page()
    assert not at.exception and not at.button(key="ns._start").disabled
    assert at.selectbox(key="ns._preset").value == "auto"
    why = next(e for e in at.expander if "Why these settings" in e.label)
    text = "\n".join(m.value for m in why.markdown)
    assert "image size 64 px" in text and "losses" in text and "augmentation" in text
    at.selectbox(key="ns._preset").set_value("p1-unet-keras-tuner").run()
    at.button(key="ns._apply_preset").click().run()
    assert not any("Why these settings" in e.label for e in at.expander)  # a paper preset: no plan to explain


def test_the_plans_first_trial_follows_an_edited_space() -> None:
    from core.search.auto import plan
    from tests.helpers.fingerprints import segmentation

    spec = spec_from_dict(plan(segmentation(300), dataset="d", device="cpu").spec)
    values = spec_to_form(spec)
    assert form_to_dict(values)["first_trials"] == [dict(spec.first_trials[0])]
    values["ns.sp.lr.low"] = (
        2e-3  # the default's 1e-3 is now outside the range: dropped, not a problem at a hidden field
    )
    data = form_to_dict(values)
    assert "lr" not in data["first_trials"][0] and data["first_trials"][0]["optimizer"] == "adam"
    assert spec_from_dict(data).first_trials[0]["loss"] == "dice_bce"


def test_the_form_shows_the_study_total_and_warns_past_the_budget(demo: Settings) -> None:
    at = new_study_page()
    total = [c.value for c in at.caption if "Estimated study total" in c.value]
    assert total and "trial(s) of about" in total[0]
    # the plan fits its own budget
    assert not any("exceeds the time budget" in w.value for w in at.warning), [w.value for w in at.warning]
    assert at.session_state["ns.first_trials"]  # the plan's plain default travels with the form
    assert form_to_dict(at.session_state)["first_trials"][0]["lr"] == 1e-3
    at.number_input(key="ns.n_trials").set_value(5000).run()
    at.number_input(key="ns._hours").set_value(0.1).run()
    assert any("exceeds the time budget of 0.1 h" in w.value for w in at.warning)
    at.button(key="ns._apply_preset").click().run()  # re-plan the auto preset for the 0.1 h budget
    assert not any("exceeds the time budget" in w.value for w in at.warning), [w.value for w in at.warning]
    why = "\n".join(m.value for e in at.expander if "Why these settings" in e.label for m in e.markdown)
    assert "time budget 6 min" in why


def test_reuse_an_earlier_study_warm_start_and_narrow(demo: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    import optuna

    import core.runtime.queue
    from core.contract import StudyAttr
    from core.runtime.storage import open_storage

    storage = open_storage(demo.db_url)
    earlier_study(storage)
    monkeypatch.setattr(core.runtime.queue, "submit_job", lambda settings, spec, **kwargs: 9)
    at = new_study_page()
    assert at.selectbox(key="ns._reuse_study").value == "earlier"
    at.number_input(key="ns._reuse_k").set_value(2).run()
    at.button(key="ns._narrow").click().run()
    assert not at.exception and any("narrowed around its 2 best" in s.value for s in at.success)
    assert at.text_input(key="ns.name").value == "earlier-narrow"
    at.checkbox(key="ns._warm_start").check().run()
    at.button(key="ns._start").click().run()
    assert not at.exception
    study = optuna.load_study(study_name="earlier-narrow", storage=storage)
    assert study.user_attrs[StudyAttr.PARENT]["study"] == "earlier"
    assert len(study.get_trials(states=(optuna.trial.TrialState.WAITING,))) >= 1  # the warm start's configurations


# --- classification studies ------------------------------------------------------------------


@pytest.mark.parametrize("task", list(Task))
def test_every_hyperparameter_of_a_task_has_one_place_in_its_form(task: Task) -> None:
    placed = [name for params in SECTIONS[task].values() for name in params]
    assert sorted(placed) == sorted(hyperparameters(task)) and len(placed) == len(set(placed))
    assert all(name in LABELS for name in placed)


@pytest.fixture
def bars(demo: Settings) -> Settings:
    """The demo cells (segmentation) and 24 bar images in two classes (classification)."""
    write_bars(demo.datasets_dir, "bars", 24)
    return demo


def editor_labels(at: AppTest) -> set[str]:
    return {widget.label for kind in ("multiselect", "button_group") for widget in at.get(kind)}


def test_a_classification_dataset_gets_the_classification_form_and_starts_a_real_job(
    bars: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    import core.runtime.queue

    real_submit = core.runtime.queue.submit_job
    monkeypatch.setattr(
        core.runtime.queue,
        "submit_job",
        lambda settings, spec, **kwargs: real_submit(settings, spec, **kwargs, launch=False),
    )
    at = new_study_page()  # "bars" is the first dataset: the form starts as a classification study
    assert not at.exception and at.selectbox(key="ns.dataset").value == "bars"
    assert at.session_state["ns.task"] == "classification"
    assert any("Task: **Classification" in c.value and "horizontal (12), vertical (12)" in c.value for c in at.caption)
    assert at.multiselect(key="ns.sp.architecture").options == list(architectures.names(task=Task.CLASSIFICATION))
    assert at.multiselect(key="ns.sp.loss").options == list(CLASSIFICATION_LOSSES.names)
    labels = editor_labels(at)
    assert {"Head kernel size", "Head filters", "Head dense units", "Head dropout", "Label smoothing"} <= labels
    assert not labels & {
        "Encoders",
        "Encoder depth",
        "U-Net depth",
        "U-Net start filters",
    }  # segmentation's model fields
    assert at.multiselect(key="ns.objectives").value == ["val_balanced_accuracy"]
    assert [option.split(" (")[0] for option in at.multiselect(key="ns.objectives").options] == list(
        objective_metrics(Task.CLASSIFICATION)
    )
    presets = at.selectbox(key="ns._preset")
    assert presets.value == "auto" and len(presets.options) == 2  # the classification plan, then the paper preset
    why = "\n".join(m.value for e in at.expander if "Why these settings" in e.label for m in e.markdown)
    assert (
        "val_balanced_accuracy" in why and "cross-validation" in why and "estimated study total" in why
    )  # the classification plan
    assert at.session_state["ns.split.mode"] == "Cross-validation"
    presets.set_value("p4-cnn-classification").run()
    at.button(key="ns._apply_preset").click().run()
    assert any(
        "objective is the paper's val_accuracy, not val_balanced_accuracy" in s.value for s in at.success
    )  # never silent
    at.multiselect(key="ns.objectives").set_value(["val_balanced_accuracy"]).run()

    at.multiselect(key="ns.sp.loss").set_value(["cross_entropy", "focal"]).run()
    at.session_state["ns.sp.head_filters.values"] = "16, 32"
    for field, value in (("mode", "range"), ("low", 0.0), ("high", 0.2), ("step", 0.0), ("log", False)):
        at.session_state[f"ns.sp.label_smoothing.{field}"] = value
    at.text_input(key="ns.name").input("bars-run").run()
    at.button(key="ns._start").click().run()
    assert not at.exception and [t.value for t in at.title] == ["Jobs"]
    spec = load_study("bars-run", open_storage(bars.db_url))[1]  # what the job's workers will run
    assert spec.task == Task.CLASSIFICATION and spec.objectives[0].metric == "val_balanced_accuracy"
    assert spec.search_space["loss"] == ParamSpec.choice("cross_entropy", "focal")
    assert spec.search_space["head_filters"] == ParamSpec.choice(16, 32)
    assert spec.search_space["label_smoothing"] == ParamSpec.float_range(0.0, 0.2)
    assert "encoder" not in spec.search_space


def test_label_smoothing_only_for_cross_entropy_and_the_form_follows_the_dataset(bars: Settings) -> None:
    at = new_study_page()
    at.multiselect(key="ns.sp.loss").set_value(["focal"]).run()
    assert "Label smoothing" not in editor_labels(at)
    assert "label_smoothing" not in form_to_dict(at.session_state)["search_space"]
    at.selectbox(key="ns._preset").set_value("p4-cnn-classification").run()
    at.button(key="ns._apply_preset").click().run()
    assert not at.exception and not at.button(key="ns._start").disabled
    assert at.multiselect(key="ns.sp.architecture").value == ["MobileNetV2", "VGG19"]
    assert at.session_state["ns.sp.head_kernel_size.values"] == "1, 3, 5, 7"
    assert at.session_state["ns.split.mode"] == "Cross-validation" and at.session_state["ns.split.cv_folds"] == 3
    at.selectbox(key="ns.dataset").set_value("demo-cells").run()  # a segmentation dataset
    assert not at.exception and at.session_state["ns.task"] == "segmentation"
    assert any(
        "demo-cells is a segmentation dataset: the form now describes a segmentation study" in s.value
        for s in at.success
    )
    assert "Encoders" in editor_labels(at) and "Head filters" not in editor_labels(at)
    assert at.selectbox(key="ns._preset").value == "auto"
    at.selectbox(key="ns.dataset").set_value("bars").run()  # and back
    assert any("bars is a classification dataset" in s.value for s in at.success)
    assert at.multiselect(key="ns.sp.loss").value == ["cross_entropy"] and "Label smoothing" in editor_labels(at)


def test_a_classification_spec_on_a_segmentation_dataset_is_refused_at_the_dataset(bars: Settings) -> None:
    at = new_study_page()
    spec = load_preset("p4-cnn-classification", "demo-cells", "wrong-data").to_dict()
    at.file_uploader(key="ns._import").upload("spec.json", json.dumps(spec).encode(), "application/json").run()
    assert at.session_state["ns.task"] == "classification" and at.selectbox(key="ns.dataset").value == "demo-cells"
    at.run()  # the next run keeps the import: the task follows a dataset only when the user picks one
    assert any(
        "'wrong-data' is a classification study but dataset 'demo-cells' is a segmentation dataset" in e.value
        for e in at.error
    )  # core's refusal (core.search.task_fit), the one a run gives
    assert at.button(key="ns._start").disabled


def test_a_training_patch_survives_the_form_and_is_shown_for_segmentation_only(demo: Settings) -> None:
    spec = spec_from_dict({"name": "em", "dataset": "demo-cells", "image_size": 512, "patch_size": 128})
    values = spec_to_form(spec)
    assert spec_from_dict(form_to_dict(values)).patch_size == 128
    assert spec_from_dict(form_to_dict({**values, "ns.patch_size": 0})).patch_size is None  # "whole image"
    assert (
        form_to_dict({**values, "ns.task": str(Task.CLASSIFICATION)})["patch_size"] is None
    )  # hidden for classifiers: never sent
    at = new_study_page()
    at.file_uploader(key="ns._import").upload(
        "spec.json", json.dumps(spec.to_dict()).encode(), "application/json"
    ).run()
    assert not at.exception and at.selectbox(key="ns.patch_size").value == 128
    at.selectbox(key="ns.patch_size").set_value(1024).run()
    assert any("multiple of 32 from 32 to image_size (512)" in e.value for e in at.error)
    assert at.button(key="ns._start").disabled
