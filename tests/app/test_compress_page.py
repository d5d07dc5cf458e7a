"""AppTest of the Compress & deploy page over a tiny real tuned study with one stored variant.

The study is tuned for real (demo cells, 64 px, a 4-filter ClassicUNet, one 2-epoch trial) and its
variant is derived with core.deploy.compression.run.compress_trial directly (2 fine-tune steps), so the table,
chart, masks and exports render from the engine's own artifacts. Starting a task is patched out:
tests/test_tasks.py runs real background tasks.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

import core.runtime.tasks
from core.deploy.compression.config import CompressionConfig
from core.deploy.compression.run import compress_trial, study_compression_data
from core.deploy.compression.variants import list_variants
from core.runtime.storage import open_artifact_store, open_storage
from core.runtime.tasks import TaskSubject
from core.settings import Settings
from tests.helpers import pages
from tests.helpers.pages import texts
from tests.helpers.studies import module_workspace, tiny_study

STUDY = "tiny"
PREVIEWS = 3


@pytest.fixture(scope="module")
def compressed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    """A workspace whose study's trial 0 has one pruned variant."""
    from core.runtime.tuning import load_study

    with module_workspace(tmp_path_factory.mktemp("compress-home")) as settings:
        tiny_study(settings, STUDY, previews=PREVIEWS)
        study, spec = load_study(STUDY, open_storage(settings.db_url))
        config = CompressionConfig("prune", sparsity=0.6, finetune_steps=2, batch_size=8)
        compress_trial(study, 0, config, study_compression_data(spec, settings), open_artifact_store(settings))
        yield settings


def open_page(study: str | None = STUDY) -> AppTest:
    st.cache_data.clear()  # short-TTL reads (task list, variants) must not leak between tests
    return pages.open_page("compress.py", study=study)


def test_without_a_study_the_page_says_what_to_do(workspace: Settings) -> None:
    app = open_page(study=None)
    assert app.title[0].value == "Compress & deploy"
    assert any("No study yet" in text for text in texts(app, "alert") + [i.value for i in app.info])


def test_variants_are_compared_with_the_original_in_a_table_a_chart_and_masks(compressed: Settings) -> None:
    app = open_page()
    table = app.dataframe[0].value
    assert table["model"].tolist() == ["original", "pruned 60% global"]
    original, variant = table.iloc[0], table.iloc[1]
    assert variant["nonzero_params"] < original["nonzero_params"]  # 60 % of the prunable weights are gone
    assert abs(variant["delta_val_dice"] - (variant["val_dice"] - original["val_dice"])) < 1e-9
    chart = app.get("plotly_chart")
    assert len(chart) == 1 and '"star"' in chart[0].proto.spec  # the original is highlighted
    labels = [button.proto.label for button in app.get("download_button")]
    assert labels == ["Download variant 1 (.zip)"]


def captions(app: AppTest) -> list[str]:
    return [caption for image in app.get("image") for caption in image.captions]


def test_one_preview_image_at_a_time_large_with_the_original_next_to_the_variant(compressed: Settings) -> None:
    app = open_page()
    # image | ground truth, then original | variant: two a row, so each is half the page wide
    assert app.slider(key="compress.masks.per_row").value == 2
    first = captions(app)
    assert len(first) == 4 and first[1:] == ["Ground truth", "Trial #0", "Variant 1 · pruned 60% global"]
    assert len(app.metric) == 2  # the original's and the variant's Dice on this image
    assert any("differs from the original's on" in text for text in texts(app, "caption"))
    app.button(key="compress.masks.next").click().run()
    assert app.slider(key="compress.masks.image").value == 2 and captions(app)[0] != first[0]
    assert len(app.expander[-1].dataframe[0].value) == PREVIEWS  # per-image Dice of original and variant
    assert list(app.expander[-1].dataframe[0].value.columns) == [
        "image",
        "#0",
        "Variant 1 · pruned 60% global",
        "disagreement",
    ]


def test_zoom_opens_the_pictures_one_at_a_time_at_full_width(compressed: Settings) -> None:
    app = open_page()
    app.button(key="compress.masks.zoom").click().run()
    assert not app.exception, app.exception
    zoomed = [caption for caption in captions(app) if "Dice" in caption]
    assert len(zoomed) == 1 and zoomed[0].startswith("Variant 1 · pruned 60% global · Dice")  # the variant first
    assert app.button_group(key="compress.masks.zoom_pick").options[-1] == "Variant 1 · pruned 60% global"


def test_compare_masks_puts_a_variant_next_to_its_trial(compressed: Settings) -> None:
    st.cache_data.clear()
    app = pages.open_page("compare.py", study=STUDY, selected=(0,))
    assert len(captions(app)) == 3  # image, ground truth, trial #0
    app.multiselect(key="compare.variants").set_value(["0:1"]).run()
    assert not app.exception, app.exception
    assert captions(app)[1:] == ["Ground truth", "Trial #0", "#0 · variant 1 · pruned 60% global"]
    assert len(app.metric) == 2


def test_starting_a_compression_launches_a_background_task(
    compressed: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    launched: list[list[str]] = []

    def launch(settings: Settings, command: list[str], log: Path) -> int:
        launched.append(command)
        return os.getpid()  # no process: the record is what this test reads

    monkeypatch.setattr(core.runtime.tasks, "_launch", launch)
    app = open_page()
    app.get("button_group")[0].set_value("prune").run()
    app.slider(key="compress.sparsity").set_value(0.8).run()
    app.number_input(key="compress.epochs").set_value(3.0).run()
    app.button(key="compress.start").click().run()
    assert not app.exception, app.exception
    [task] = core.runtime.tasks.list_tasks(compressed, "compress")
    try:
        assert launched[0][3:-2] == [
            "compress",
            "--study",
            STUDY,
            "--trial",
            "0",
            "--method",
            "prune",
            "--sparsity",
            "0.8",
            "--epochs",
            "3.0",
            "--scope",
            "global",
        ]  # the CLI is unchanged
        assert task.subject == TaskSubject(
            study=STUDY,
            trial=0,
            method="prune",
            options={
                "sparsity": 0.8,
                "structured": False,
                "scope": "global",
                "finetune_epochs": 3.0,
                "finetune_steps": None,
                "lr": None,
            },
        )
        assert open_page().button(key="compress.start").disabled  # found by its subject: the trial is busy
    finally:
        core.runtime.tasks._status_path(compressed, task.id).unlink()


def test_a_running_task_shows_its_progress_and_blocks_a_second_start(compressed: Settings) -> None:
    task_id = "compress-test-running"
    legacy = core.runtime.tasks._status_path(compressed, "compress-test-legacy")  # no subject: about no trial
    core.runtime.tasks._merge(
        legacy,
        {
            "id": legacy.stem,
            "kind": "compress",
            "argv": ["compress", "--study", STUDY, "--trial", "0"],
            "created_at": time.time() + 60,
            "pid": os.getpid(),
        },
    )
    core.runtime.tasks._merge(
        core.runtime.tasks._status_path(compressed, task_id),
        {
            "id": task_id,
            "kind": "compress",
            "subject": {"study": STUDY, "trial": 0, "method": "ptq", "options": {}},
            "created_at": time.time(),
            "pid": os.getpid(),  # this test process: alive
        },
    )
    core.runtime.tasks.TaskProgress(compressed, task_id).update(0.4, "int8 static: calibrating on training batch 3/8")
    try:
        app = open_page()
        progress = app.get("progress")
        assert len(progress) == 1 and progress[0].proto.value == 40
        assert "calibrating on training batch 3/8" in progress[0].proto.text
        assert app.button(key="compress.start").disabled
    finally:
        core.runtime.tasks.TaskProgress(compressed, task_id).fail("test over")
        legacy.unlink()
    app = open_page()
    assert any("test over" in text for text in texts(app, "error")) and not app.button(key="compress.start").disabled


def test_onnx_and_torchscript_are_built_checked_and_offered(compressed: Settings) -> None:
    app = open_page()
    app.button(key="compress.build_exports").click().run()
    assert not app.exception, app.exception
    labels = [button.proto.label for button in app.get("download_button")]
    assert [label.split(" (")[0] for label in labels] == ["Download variant 1", "Download onnx", "Download torchscript"]
    assert sum("max |Δ| vs PyTorch" in text for text in texts(app, "caption")) == 2
    assert any(f"{PREVIEWS} validation images" in text for text in texts(app, "caption"))


def test_the_stored_variant_is_what_the_page_lists(compressed: Settings) -> None:
    # guards the fixture: a page test over an empty variant list would prove little
    from core.runtime.tuning import load_study

    study, _ = load_study(STUDY, open_storage(compressed.db_url))
    records = list_variants(study, 0)
    assert [r["label"] for r in records] == ["pruned 60% global"] and "original" in records[0]


def test_the_trade_off_charts_metric_axis_spans_at_least_a_twentieth(compressed: Settings) -> None:
    """Issue 24: Dice 0.52658-0.52668 filled the axis, so a 0.0001 drop looked like a cliff."""
    import json

    app = open_page()
    table = app.dataframe[0].value
    low, high = json.loads(app.get("plotly_chart")[0].proto.spec)["layout"]["yaxis"]["range"]
    assert high - low >= 0.05 - 1e-9 and 0 <= low <= table["val_dice"].min() <= table["val_dice"].max() <= high <= 1


def test_metric_axes_have_a_minimum_span_inside_the_metrics_bounds() -> None:
    from app.widgets.axes import metric_axis_range

    low, high = metric_axis_range([0.52658, 0.52668])
    assert high - low == pytest.approx(0.05) and low < 0.52658 and high > 0.52668
    assert metric_axis_range([0.999, 0.998]) == pytest.approx((0.95, 1.0))  # kept inside [0, 1]
    assert metric_axis_range([0.0, 0.001]) == pytest.approx((0.0, 0.05))
    low, high = metric_axis_range([0.2, 0.8])
    assert low == pytest.approx(0.14) and high == pytest.approx(0.86)  # a real spread: the data, padded
    assert metric_axis_range([float("nan"), None]) is None


def test_the_trade_off_table_shows_its_key_columns_unless_all_are_asked_for(compressed: Settings) -> None:
    """Issue 24: the table was cut off at the right edge; its default columns fit a 1280 px window
    (tests/e2e/test_table_widths.py measures that in a browser)."""
    app = open_page()
    shown = list(app.dataframe[0].proto.column_order)
    assert shown == [
        "variant",
        "model",
        "val_dice",
        "test_dice",
        "size_mb",
        "nonzero_params",
        "latency_ms",
        "delta_val_dice",
        "speedup",
    ]
    app.toggle(key="compress.all_columns").set_value(True).run()
    assert not list(app.dataframe[0].proto.column_order) and "val_iou" in app.dataframe[0].value  # every column
