"""AppTest: the leaderboard says how a study was scored, shows NSD / HD95 columns where trials have
them, and the fold ensemble's test Dice beside the mean of the folds."""

from __future__ import annotations

from collections.abc import Iterator

import optuna
import pytest

from core.contract import StudyAttr, TrialAttr
from core.metrics.cases import NATIVE_EVALUATION
from core.runtime.storage import open_artifact_store, open_storage
from core.settings import Settings
from tests.helpers import pages
from tests.helpers.pages import texts
from tests.helpers.results_study import build_study
from tests.helpers.studies import module_workspace

STUDY = "native-scored"


@pytest.fixture(scope="module")
def scored(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    with module_workspace(tmp_path_factory.mktemp("native-home")) as settings:
        draft = build_study(optuna.storages.InMemoryStorage(), open_artifact_store(settings), name=STUDY, n_trials=3)
        study = optuna.create_study(storage=open_storage(settings.db_url), study_name=STUDY, direction="maximize")
        for key, value in {**draft.user_attrs, StudyAttr.EVALUATION: NATIVE_EVALUATION}.items():
            study.set_user_attr(key, value)
        for trial in draft.get_trials():
            metrics = trial.user_attrs.get(TrialAttr.VAL_METRICS)
            if metrics:
                extra = {
                    TrialAttr.VAL_METRICS: {**metrics, "nsd": 0.8, "hd95": 3.5},
                    TrialAttr.TEST_METRICS: {**trial.user_attrs[TrialAttr.TEST_METRICS], "nsd": 0.7, "hd95": 4.0},
                    TrialAttr.FOLD_METRICS: [metrics, metrics],
                    TrialAttr.ENSEMBLE_TEST_METRICS: {"dice": 0.9512},
                }
                trial.user_attrs = {**trial.user_attrs, **extra}
            study.add_trial(trial)
        yield settings


def test_the_leaderboard_shows_boundary_columns_the_ensemble_and_the_resolution(scored: Settings) -> None:
    app = pages.open_page("leaderboard.py", study=STUDY)
    table = app.dataframe[0].value
    assert {"val_nsd", "val_hd95"} <= set(table.columns), list(table.columns)
    captions = texts(app, "caption")
    assert any("Fold ensemble (2 fold models" in text and "0.9512" in text for text in captions), captions
    assert any("original resolution (NSD tolerance 2 px)" in text for text in captions), captions


def test_a_study_scored_at_training_size_says_so_and_hides_the_empty_columns(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    with module_workspace(tmp_path_factory.mktemp("old-home")) as settings:
        build_study(open_storage(settings.db_url), open_artifact_store(settings), name="old", n_trials=3)
        app = pages.open_page("leaderboard.py", study="old")
        assert "val_nsd" not in app.dataframe[0].value.columns
        assert any("training size" in text for text in texts(app, "caption"))


def test_the_resolution_note_is_for_segmentation_only() -> None:
    from core.contract import Task
    from core.results.reliability import evaluation_note

    assert evaluation_note({}, Task.CLASSIFICATION) is None
    assert "original resolution" in evaluation_note({StudyAttr.EVALUATION: NATIVE_EVALUATION}, Task.SEGMENTATION)
