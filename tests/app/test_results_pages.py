"""AppTest of the result pages (Leaderboard, Learning curves, Compare masks, Insights, Export).

The pages run inside app/main.py's navigation against a temporary workspace holding a hand-made
study shaped exactly like the engine's (tests/helpers/results_study.py builds it), so every page is
exercised with complete, pruned and failed trials. The 1,000-trial study lives in memory and is
patched into the page's study reader: writing 1,000 trials to SQLite takes Optuna minutes.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import optuna
import pytest
from streamlit.testing.v1 import AppTest

from app import cache, study_cache
from core.runtime.storage import open_artifact_store, open_storage
from core.settings import Settings
from tests.helpers import pages
from tests.helpers.pages import texts
from tests.helpers.results_study import STEMS, build_study
from tests.helpers.studies import module_workspace, tiny_study

STUDY = "cells"
BIG = "cells-1000"
CROSS_VALIDATED = "cells-cv"


@pytest.fixture(scope="session")
def results_workspace(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    with module_workspace(tmp_path_factory.mktemp("results-home")) as settings:
        storage, store = open_storage(settings.db_url), open_artifact_store(settings)
        build_study(storage, store, name=STUDY, n_trials=12)
        build_study(storage, store, name=CROSS_VALIDATED, n_trials=1, folds=3)
        yield settings


@pytest.fixture
def big_study(results_workspace: Settings, monkeypatch: pytest.MonkeyPatch) -> optuna.Study:
    big = build_study(
        optuna.storages.InMemoryStorage(),
        open_artifact_store(results_workspace),
        name=BIG,
        n_trials=1000,
        previews=False,
    )
    real_study, real_names = study_cache.study, cache.study_names
    monkeypatch.setattr(study_cache, "study", lambda name: big if name == BIG else real_study(name))
    monkeypatch.setattr(cache, "study_names", lambda: [BIG, *real_names()])
    return big


def open_page(page: str, study: str | None = STUDY, selected: tuple[int, ...] = ()) -> AppTest:
    return pages.open_page(page, study=study, trials=selected)


def test_leaderboard_ranks_filters_and_shows_the_best(results_workspace: Settings) -> None:
    app = open_page("leaderboard.py")
    assert app.title[0].value == "Leaderboard"
    metrics = {m.label: m.value for m in app.metric}
    assert metrics["Trials"] == "12" and metrics["Failed"] == "2" and metrics["Val Dice"] == "0.900"
    assert "Best trial #0" in app.subheader[0].value
    table = app.dataframe[0].value
    assert len(table) == 12 and table.iloc[0]["best"] == "★" and table.iloc[0]["number"] == 0
    app.button_group(key="leaderboard.states").set_value(["complete"]).run()
    assert len(app.dataframe[0].value) == 8 and not app.exception
    assert app.get("download_button")[0].proto.label == "Download CSV"


def test_leaderboard_stays_responsive_with_a_thousand_trials(big_study: optuna.Study) -> None:
    start = time.perf_counter()
    app = open_page("leaderboard.py", study=BIG)
    first = time.perf_counter() - start
    assert len(app.dataframe[0].value) == 1000
    start = time.perf_counter()
    app.button_group(key="leaderboard.groups").set_value(["val"]).run()  # a rerun reads the cached frame
    again = time.perf_counter() - start
    assert not app.exception and first < 20 and again < 3, (first, again)


def test_result_pages_say_what_to_do_without_a_study(workspace: Settings) -> None:
    for page in ("leaderboard.py", "curves.py", "compare.py", "predictions.py", "insights.py", "export.py"):
        app = open_page(page, study=None)
        assert any("start a study on **New study**" in text for text in texts(app, "info")), page


def test_curves_overlay_chosen_trials_and_mark_pruned(results_workspace: Settings) -> None:
    app = open_page("curves.py", selected=(0, 3))
    assert app.multiselect(key="curves.trials").value == [0, 3]
    figure = json.loads(app.get("plotly_chart")[0].proto.spec)
    names = [trace.get("name") for trace in figure["data"]]
    assert {"#0 train", "#0 val", "#3 train", "#3 val"} <= set(names)
    assert [a["text"] for a in figure["layout"]["annotations"]] == ["#3 pruned"]
    app.button_group(key="curves.metric").set_value("dice").run()
    figure = json.loads(app.get("plotly_chart")[0].proto.spec)
    assert figure["layout"]["yaxis"]["title"]["text"] == "Dice"
    app.button_group(key="curves.metric").set_value("lr").run()
    figure = json.loads(app.get("plotly_chart")[0].proto.spec)
    assert {trace.get("name") for trace in figure["data"]} >= {"#0 lr", "#3 lr"} and not any(
        "train" in str(t.get("name")) for t in figure["data"]
    )


def test_cross_validated_trials_show_fold_0_the_stored_model_and_count_folds_from_0(
    results_workspace: Settings,
) -> None:
    app = open_page("curves.py", study=CROSS_VALIDATED, selected=(0,))
    assert "the curves are fold 0's" in " ".join(texts(app, "caption"))
    app.toggle(key="curves.each_fold").set_value(True).run()
    names = {trace.get("name") for trace in json.loads(app.get("plotly_chart")[0].proto.spec)["data"]}
    assert {"#0 val · fold 0", "#0 val · fold 2"} <= names and "#0 val · fold 3" not in names, names
    app = open_page("compare.py", study=CROSS_VALIDATED, selected=(0,))
    assert "the masks shown are fold 0's model's" in " ".join(texts(app, "caption"))


def test_compare_shows_images_truth_and_predictions_with_dice(results_workspace: Settings) -> None:
    app = open_page("compare.py", selected=(0, 1))
    captions = [image.captions[0] for image in app.get("image")]
    assert captions == ["img_c", "Ground truth", "Trial #0", "Trial #1"]  # worst Dice first: the smallest square
    assert texts(app, "metric") == ["1.000", "0.750"]
    assert app.slider(key="compare.image").value == 1
    app.button(key="compare.next").click().run()
    assert app.slider(key="compare.image").value == 2 and texts(app, "metric") == ["1.000", "0.833"]
    app.selectbox(key="compare.order").set_value("name").run()
    app.slider(key="compare.image").set_value(1).run()
    assert texts(app, "metric") == ["1.000", "0.875"] and app.get("image")[0].captions == [STEMS[0]]
    app.button_group(key="compare.view").set_value("errors").run()
    assert not app.exception and any("false positive" in text for text in texts(app, "markdown"))


def test_compare_orders_by_disagreement_only_between_several_trials(results_workspace: Settings) -> None:
    app = open_page("compare.py", selected=(0,))
    assert "Largest disagreement between trials" not in app.selectbox(key="compare.order").options
    app.multiselect(key="compare.trials").set_value([0, 2]).run()
    app.selectbox(key="compare.order").set_value("disagreement").run()
    # trials 0 and 2 (shifted 2 px) differ most on the largest square, img_a
    assert not app.exception and app.get("image")[0].captions == [STEMS[0]]


def test_compare_predictions_sends_a_segmentation_study_to_compare_masks(results_workspace: Settings) -> None:
    app = open_page("predictions.py", selected=(0, 1))
    assert any("segmentation study" in text and "Compare masks" in text for text in texts(app, "info"))
    assert not app.get("plotly_chart") and not app.get("image")


def test_insights_draw_figures_or_explain(results_workspace: Settings) -> None:
    app = open_page("insights.py")
    assert [tab.label for tab in app.tabs] == [
        "Optimization history",
        "Parameter importances",
        "Parallel coordinates",
        "Contour",
        "Slice",
        "Pareto front",
    ]
    assert len(app.get("plotly_chart")) == 5
    assert "one objective" in app.info[0].value


def test_export_offers_bundle_snippet_and_card_of_the_best_trial(results_workspace: Settings) -> None:
    from core.deploy import model_card as cards

    app = open_page("export.py")
    assert app.selectbox(key="export.trial").value == 0
    # a ClassicUNet: onnxruntime only (no smp folder); the card's usage shows the very same code
    assert [code.value for code in app.code] == [cards.predict_command(), cards.onnx_snippet()]
    card = next(text for text in texts(app, "markdown") if text.startswith("# Model card — cells-trial0"))
    assert cards.predict_command() in card and cards.onnx_snippet() in card and "smp.from_pretrained" not in card
    assert any("segtune predict --model ." in text for text in texts(app, "caption"))
    labels = [button.proto.label for button in app.get("download_button")]
    assert labels == ["Download model bundle (.zip)", "Download model card (.md)"]
    app.selectbox(key="export.trial").set_value(1).run()
    assert any(text.startswith("# Model card — cells-trial1") for text in texts(app, "markdown")) and not app.exception


@pytest.mark.slow
def test_compare_and_export_over_a_real_tuned_study(workspace: Settings) -> None:
    """The engine's own artifacts (run_study on the demo dataset) render on Compare and Export."""
    tiny_study(workspace, "real", trials=2, lr={"low": 1e-3, "high": 1e-2, "log": True})
    app = open_page("compare.py", study="real", selected=(0, 1))
    assert len(app.get("image")) == 4 and len(texts(app, "metric")) == 2
    app = open_page("export.py", study="real")
    assert app.code[1].value.startswith("import onnxruntime") and len(app.get("download_button")) == 2


def test_leaderboard_shows_why_trials_failed(results_workspace: Settings) -> None:
    app = open_page("leaderboard.py")
    table = app.dataframe[0].value
    assert table[table["state"] == "failed"]["error"].tolist() == ["CUDA out of memory twice"] * 2
    assert app.expander[0].label == "Why 2 trial(s) failed"
    assert [code.value for code in app.expander[0].code] == ["CUDA out of memory twice"] * 2
    app.button_group(key="leaderboard.states").set_value(["complete"]).run()
    assert "error" not in app.dataframe[0].value.columns  # no failed row shown: no failure column


def test_leaderboard_counts_trials_as_the_jobs_do_and_refreshes_while_running(
    results_workspace: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    from optuna.trial import TrialState, create_trial

    running = build_study(
        optuna.storages.InMemoryStorage(),
        open_artifact_store(results_workspace),
        name="cells-live",
        n_trials=5,
        previews=False,
    )
    running.add_trial(
        create_trial(state=TrialState.FAIL, user_attrs={"cancelled": True, "error": "cancelled by the user"})
    )
    running.enqueue_trial({})  # a waiting trial: the study is still running
    real_study, real_names = study_cache.study, cache.study_names
    monkeypatch.setattr(study_cache, "study", lambda name: running if name == "cells-live" else real_study(name))
    monkeypatch.setattr(cache, "study_names", lambda: ["cells-live", *real_names()])
    app = open_page("leaderboard.py", study="cells-live")
    metrics = {m.label: m.value for m in app.metric}
    # 5 used budget (3 complete, 1 pruned, 1 failed); the cancelled one is listed but not counted
    assert (metrics["Trials"], metrics["Failed"], metrics["Running"]) == ("5", "1", "1")
    captions = texts(app, "caption")
    assert any("1 cancelled trial(s)" in text for text in captions)
    assert any("refreshes every 5 s" in text for text in captions)
    assert len(app.dataframe[0].value) == 7


def test_export_says_why_a_bundle_cannot_be_downloaded_before_offering_it(
    results_workspace: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = open_artifact_store(results_workspace)
    gone = build_study(optuna.storages.InMemoryStorage(), store, name="cells-gone", n_trials=1, previews=False)
    store.remove(gone.trials[0].user_attrs["artifacts"]["weights"])  # e.g. the artifacts folder was cleaned
    real_study, real_names = study_cache.study, cache.study_names
    monkeypatch.setattr(study_cache, "study", lambda name: gone if name == "cells-gone" else real_study(name))
    monkeypatch.setattr(cache, "study_names", lambda: ["cells-gone", *real_names()])
    app = open_page("export.py", study="cells-gone")
    assert any("weights file" in text and "missing from the artifact store" in text for text in texts(app, "error"))
    assert [button.proto.label for button in app.get("download_button")] == ["Download model card (.md)"]


def test_export_shows_the_smp_route_for_smp_architectures(
    results_workspace: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    from core.deploy import model_card as cards

    monkeypatch.setattr(cards, "smp_loadable", lambda trial: True)  # these hand-made trials are ClassicUNets
    app = open_page("export.py")
    assert [code.value for code in app.code] == [cards.predict_command(), cards.onnx_snippet(), cards.smp_snippet()]
    assert any("standard smp folder" in text for text in texts(app, "caption"))


def test_leaderboard_dashes_unranked_rows_explains_pruned_values_and_ticks_the_shared_choice(
    results_workspace: Settings,
) -> None:
    """Issue 24: pruned rows showed "None" for rank and objective; a pruned trial whose last value
    beats a complete one needs a word; "Selected: #2, #0, #1" showed with no box ticked; the
    Parameters card was cut to "13,047,…"."""
    import json as json_lib

    app = open_page("leaderboard.py", selected=(1, 2))
    table = app.dataframe[0]
    assert table.proto.placeholder == "–"  # missing rank / objective cells read as a dash
    numbers = list(table.value["number"])
    ticked = json_lib.loads(table.proto.selection_default)["selection"]["rows"]
    assert sorted(numbers[row] for row in ticked) == [1, 2]
    assert "Selected: #1, #2" in texts(app, "caption")
    note = next(c for c in texts(app, "caption") if c.startswith("Pruned trials are not ranked"))
    assert "#3" in note and "#8" not in note  # #3 ended at 0.9 (above complete ones), #8 at 0.5 (above none)
    assert {m.label: m.value for m in app.metric}["Parameters"] == "1.0 k"
