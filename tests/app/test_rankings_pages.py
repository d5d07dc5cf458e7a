"""AppTest: reference rows, flags, confidence intervals, mean ± SD and cancelled trials on the
result pages, over a hand-made study shaped like the engine's (tests/test_results.py) plus the
attrs of issue 9; the plain study of tests/test_results.py (no such attrs) must still open."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import optuna
import pytest
from optuna.trial import TrialState, create_trial

from core.contract import StudyAttr, TrialAttr, TrialFlag
from core.results.trials import leaderboard_text, trials_frame
from core.runtime.storage import open_artifact_store, open_storage
from core.settings import Settings
from tests.helpers import pages
from tests.helpers.pages import texts
from tests.helpers.results_study import DISTRIBUTIONS, build_study
from tests.helpers.studies import module_workspace

STUDY = "ranked"
BASELINES = {
    "all_background": {
        "label": "Constant: all background",
        "class": 0,
        "val": {"dice": 0.0, "iou": 0.0},
        "test": {"dice": 0.0},
    },
    "all_foreground": {
        "label": "Constant: all foreground",
        "class": 1,
        "val": {"dice": 0.62, "iou": 0.45},
        "test": {"dice": 0.6},
    },
}


def _counts(tp: int, n: int = 12) -> list:
    rng = np.random.default_rng(tp)
    return [[[int(tp + rng.integers(0, 5)), int(rng.integers(0, 10)), int(rng.integers(0, 10))]] for _ in range(n)]


def _extra_trials(study: optuna.Study) -> None:
    params = {"lr": 0.1, "optimizer": "adam", "unet_start_filters": 4}
    flagged = {
        "val_metrics": {"dice": 0.61},
        "flags": [TrialFlag.CONSTANT_PREDICTION, TrialFlag.NOT_BETTER_THAN_BASELINE],
        "val_foreground_fraction": 1.0,
        "val_image_counts": _counts(20),
    }
    cancelled = {"cancelled": True, "history": [{"epoch": 1, "val_dice": 0.3}]}
    study.add_trials(
        [
            create_trial(
                state=TrialState.COMPLETE, value=0.61, params=params, distributions=DISTRIBUTIONS, user_attrs=flagged
            ),
            create_trial(state=TrialState.FAIL, params=params, distributions=DISTRIBUTIONS, user_attrs=cancelled),
        ]
    )


@pytest.fixture(scope="module")
def ranked(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    with module_workspace(tmp_path_factory.mktemp("ranked-home")) as settings:
        draft = build_study(optuna.storages.InMemoryStorage(), open_artifact_store(settings), name=STUDY, n_trials=6)
        study = optuna.create_study(storage=open_storage(settings.db_url), study_name=STUDY, direction="maximize")
        for key, value in {**draft.user_attrs, StudyAttr.BASELINES: BASELINES}.items():
            study.set_user_attr(key, value)
        for trial in draft.get_trials():
            if trial.number < 3:  # the best two (#0, #1) get identical per-image counts: not distinguishable
                trial.user_attrs = {
                    **trial.user_attrs,
                    TrialAttr.VAL_IMAGE_COUNTS: _counts(40),
                    TrialAttr.VAL_METRICS_STD: {"dice": 0.02},
                }
            study.add_trial(trial)
        _extra_trials(study)
        yield settings


def test_leaderboard_shows_references_flags_intervals_and_cancelled(ranked: Settings) -> None:
    app = pages.open_page("leaderboard.py", study=STUDY)
    table = app.dataframe[0].value
    assert "cancelled" in set(table["state"]) and "failed" in set(table["state"])
    flagged = table[table["number"] == 6].iloc[0]
    assert "constant prediction" in flagged["flags_shown"] and "not better" in flagged["flags_shown"]
    assert table[table["number"] == 0].iloc[0]["val_dice_ci"].count("–") == 1
    assert table[table["number"] == 0].iloc[0]["val_dice_mean_sd"] == "0.900 ± 0.020"
    references = next(frame.value for frame in app.dataframe if "label" in frame.value.columns)
    assert list(references["label"]) == ["Constant: all background", "Constant: all foreground"]
    assert any("not distinguishable from the runner-up" in text for text in texts(app, "info")), texts(app, "info")


def test_export_and_compress_warn_before_a_flagged_trial_is_used(ranked: Settings) -> None:
    app = pages.open_page("export.py", study=STUDY)
    assert not any("flagged" in text for text in texts(app, "warning"))  # the best trial is not flagged
    app.selectbox(key="export.trial").set_value(6).run()
    assert any("Trial #6 is flagged" in text and "exported" in text for text in texts(app, "warning"))
    app = pages.open_page("compress.py", study=STUDY)
    app.selectbox(key="compress.trial").set_value(6).run()
    assert any("Trial #6 is flagged" in text for text in texts(app, "warning")), texts(app, "warning")


def test_curves_draw_the_best_reference_dashed(ranked: Settings) -> None:
    app = pages.open_page("curves.py", study=STUDY, trials=(0, 6))
    app.segmented_control(key="curves.metric").set_value("dice").run()
    figure = app.get("plotly_chart")[0].proto.spec
    assert "Constant: all foreground (val) 0.620" in figure and '"dash":"dash"' in figure.replace(" ", "")
    assert any("Flagged" in text and "#6" in text for text in texts(app, "caption"))


def test_insights_name_the_flagged_trials(ranked: Settings) -> None:
    app = pages.open_page("insights.py", study=STUDY)
    assert any("#6 (constant prediction" in text for text in texts(app, "warning")), texts(app, "warning")


def test_compare_warns_about_flagged_trials(ranked: Settings) -> None:
    app = pages.open_page("compare.py", study=STUDY, trials=(0, 6))
    assert any("#6" in text for text in texts(app, "warning"))


def test_cli_leaderboard_lists_references_and_the_runner_up(ranked: Settings) -> None:
    study = optuna.load_study(study_name=STUDY, storage=open_storage(ranked.db_url))
    text = leaderboard_text(study)
    assert "Constant: all foreground: Validation Dice 0.620" in text and "runner-up" in text
    frame = trials_frame(study)
    assert frame.loc[frame["number"] == 7, "state"].item() == "cancelled"


def test_a_study_without_the_new_attrs_still_opens_everywhere(tmp_path_factory: pytest.TempPathFactory) -> None:
    with module_workspace(tmp_path_factory.mktemp("old-home")) as settings:
        build_study(open_storage(settings.db_url), open_artifact_store(settings), name="old", n_trials=5)
        for page in ("leaderboard.py", "curves.py", "compare.py", "export.py", "compress.py", "insights.py"):
            pages.open_page(page, study="old", trials=(0, 1))  # open_page asserts no exception
