"""Compare masks over every validation and test image of a 2D study (issue 24), not only the
preview images: pages of images predicted on demand and cached, and mask colours chosen by
contrast or by the user. The hand-made study of tests/test_results.py is laid over a real demo
dataset (so its frozen split and images are real); loading and running the trials' models is
patched out: a trial's "prediction" is the bright pixels, shifted by the trial's number."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import optuna
import pytest

import core.results.volume_masks as volume_masks
from app import volume_cache
from core.contract import StudyAttr
from core.data.demo import create_demo_dataset
from core.runtime.storage import open_artifact_store, open_storage
from core.settings import Settings
from tests.helpers import pages
from tests.helpers.pages import texts
from tests.helpers.results_study import build_study
from tests.helpers.studies import module_workspace

STUDY = "cells-every"


@pytest.fixture(scope="module")
def every_image(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    with module_workspace(tmp_path_factory.mktemp("every-image-home")) as settings:
        create_demo_dataset(settings.datasets_dir, count=60, size=32)
        study = build_study(open_storage(settings.db_url), open_artifact_store(settings), name=STUDY, n_trials=3)
        study.set_user_attr(
            StudyAttr.SPEC, {**study.user_attrs[StudyAttr.SPEC], "image_size": 32}
        )  # its 16 px previews need no valid size
        yield settings


@pytest.fixture
def predictions(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Each trial's model call, recorded: the trial's number is its 'model'."""
    calls: list[int] = []

    def predict(model: int, config: object, images: np.ndarray) -> np.ndarray:
        calls.append(model)
        return np.roll((images[:, 0] > 127).astype(np.uint8), model, axis=2)

    monkeypatch.setattr(volume_cache, "_model", lambda db_url, name, number: (number, None))
    monkeypatch.setattr(volume_masks, "predict_slices", predict)
    volume_cache._page_predictions.clear()
    volume_cache._image_page.clear()
    return calls


def test_every_validation_and_test_image_is_paged_through_and_predicted_once(
    every_image: Settings, predictions: list[int]
) -> None:
    study = optuna.load_study(study_name=STUDY, storage=open_storage(every_image.db_url))
    from core.results.split_masks import split_images

    parts = split_images(study, every_image)
    assert len(parts["val"]) > 8 and parts["test"]  # more than one page of validation images
    app = pages.open_page("compare.py", study=STUDY, trials=(0, 1))
    assert app.button_group(key="compare.source").options  # previews or every image
    app.button_group(key="compare.source").set_value("split").run()
    assert not app.exception
    assert [image.captions[0] for image in app.get("image")] == [
        parts["val"][0],
        "Ground truth",
        "Trial #0",
        "Trial #1",
    ]
    assert any(f"image 1 of {len(parts['val'])} validation images" in text for text in texts(app, "caption"))
    assert sorted(predictions) == [0, 1]  # the first page, once per trial
    app.slider(key="compare.split.image").set_value(9).run()  # the second page
    assert app.get("image")[0].captions == [parts["val"][8]] and sorted(predictions) == [0, 0, 1, 1]
    app.slider(key="compare.split.image").set_value(2).run()  # back to the first page: cached
    assert app.get("image")[0].captions == [parts["val"][1]] and len(predictions) == 4
    metrics = texts(app, "metric")
    assert (
        len(metrics) == 2 and metrics[0] != metrics[1]
    )  # each trial's Dice on this image (trial 1's masks are shifted)
    app.radio(key="compare.split_part").set_value("test").run()
    assert app.get("image")[0].captions == [parts["test"][0]] and not app.exception


def test_mask_colours_can_be_chosen_and_the_legend_follows(every_image: Settings, predictions: list[int]) -> None:
    app = pages.open_page("compare.py", study=STUDY, trials=(0, 1))
    app.button_group(key="compare.source").set_value("split").run()
    assert app.selectbox(key="compare.split.colours").value == "auto"
    app.button_group(key="compare.split.view").set_value("errors").run()
    app.selectbox(key="compare.split.colours").set_value("cool").run()
    legend = next(text for text in texts(app, "markdown") if "false positive" in text)
    assert "rgb(255, 234, 0)" in legend and not app.exception  # the cool scheme's yellow false positives


def test_the_original_resolution_and_the_per_case_table(
    tmp_path_factory: pytest.TempPathFactory, predictions: list[int]
) -> None:
    """A 64-px demo dataset studied at 32 px: the toggle shows the stored 64-px image, its mask and
    each trial's mask resized to it; the per-case table lists the stored native scores."""
    from core.contract import TrialAttr
    from core.results.split_masks import split_images

    with module_workspace(tmp_path_factory.mktemp("native-compare")) as settings:
        create_demo_dataset(settings.datasets_dir, count=40, size=64)
        draft = build_study(
            optuna.storages.InMemoryStorage(), open_artifact_store(settings), name="native-cells", n_trials=2
        )
        study = optuna.create_study(
            storage=open_storage(settings.db_url), study_name="native-cells", direction="maximize"
        )
        for key, value in {
            **draft.user_attrs,
            StudyAttr.SPEC: {**draft.user_attrs[StudyAttr.SPEC], "image_size": 32},
        }.items():
            study.set_user_attr(key, value)
        val = split_images(study, settings)["val"]
        for trial in draft.get_trials():
            cases = [
                {
                    "name": stem,
                    "height": 64,
                    "width": 64,
                    "dice": 0.5 + trial.number / 10,
                    "iou": 0.4,
                    "nsd": 0.7,
                    "hd95": 3.0,
                }
                for stem in val
            ]
            trial.user_attrs = {**trial.user_attrs, TrialAttr.VAL_CASES: cases}
            study.add_trial(trial)
        app = pages.open_page("compare.py", study="native-cells", trials=(0, 1))
        app.button_group(key="compare.source").set_value("split").run()
        app.toggle(key="compare.split.native").set_value(True).run()
        assert not app.exception
        assert any("At the original 64 x 64 px" in text for text in texts(app, "caption"))
        assert [image.captions[0] for image in app.get("image")] == [val[0], "Ground truth", "Trial #0", "Trial #1"]
        table = next(frame.value for frame in app.dataframe if "#1 nsd" in frame.value.columns)
        assert (
            list(table["image"]) == sorted(val)
            and set(table["size"]) == {"64x64"}
            and table["#1 dice"].iloc[0] == pytest.approx(0.6)
        )
