"""AppTest of the result pages on a real classification study.

The study is tuned for real once per module (40 synthetic bar images in two classes, 64 px, a
MobileNetV2 with a tiny head, two 1-epoch trials with different learning rates), so every page
reads what the engine stored: metrics, histories, confusion matrices, validation predictions,
baselines and weights. Each page is checked against those stored values. The image-selection
rules of Compare predictions are also checked on hand-made predictions, where the trials are made
to disagree (two 1-epoch trials may or may not).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator

import numpy as np
import optuna
import pytest
from streamlit.testing.v1 import AppTest

from app.widgets.predictions import accuracy_text, confusion_figure, shown_images
from core.contract import Task, TrialAttr
from core.metrics.catalogue import Source, curve_metrics, label, split_metrics
from core.metrics.label_predictions import LabelPredictions
from core.results.predictions import PredictionComparison, compare_predictions
from core.runtime.storage import open_artifact_store, open_storage
from core.settings import Settings
from tests.helpers import pages
from tests.helpers.classification_sets import BARS, tiny_classification_study, write_bars
from tests.helpers.pages import texts
from tests.helpers.studies import module_workspace

STUDY = "bars-study"
CLASS_METRICS = split_metrics(Source.CLASS_PREDICTIONS, task=Task.CLASSIFICATION)  # accuracy ... roc_auc


@pytest.fixture(scope="module")
def classified(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    with module_workspace(tmp_path_factory.mktemp("classification-home")) as settings:
        write_bars(settings.datasets_dir, "bars", 40)
        tiny_classification_study(
            settings,
            STUDY,
            trials=2,
            extra={
                "budget": {"n_trials": 2, "max_epochs": 1},
                "split": {"train": 0.5, "val": 0.3, "test": 0.2},
                "search_space": {
                    "architecture": "MobileNetV2",
                    "head_filters": 8,
                    "head_dense_units": 8,
                    "batch_size": 8,
                    "epochs": 1,
                    "lr": {"low": 1e-3, "high": 3e-2, "log": True},
                },
            },
        )
        yield settings


def stored(settings: Settings) -> optuna.Study:
    return optuna.load_study(study_name=STUDY, storage=open_storage(settings.db_url))


def comparison(settings: Settings, numbers: tuple[int, ...]) -> PredictionComparison:
    return compare_predictions(stored(settings), numbers, open_artifact_store(settings))


def open_page(page: str, selected: tuple[int, ...] = ()) -> AppTest:
    return pages.open_page(page, study=STUDY, trials=selected)


def chart(app: AppTest, index: int = 0) -> dict:
    return json.loads(app.get("plotly_chart")[index].proto.spec)


def numbers(values: list | dict) -> list[float]:
    """A plotly JSON array: a list, or plotly's typed array ``{"dtype", "bdata"}`` (base64)."""
    if isinstance(values, dict):
        return np.frombuffer(base64.b64decode(values["bdata"]), dtype=values["dtype"]).tolist()
    return list(values)


def test_the_study_is_complete(classified: Settings) -> None:
    # guards the fixture: pages over failed trials would prove little
    study = stored(classified)
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.COMPLETE] * 2
    assert all(t.user_attrs.get(TrialAttr.CONFUSION_MATRIX) for t in study.trials)


def test_leaderboard_shows_the_classification_metrics_as_stored(classified: Settings) -> None:
    study = stored(classified)
    app = open_page("leaderboard.py")
    best = study.best_trial.user_attrs
    cards = {m.label: m.value for m in app.metric}
    assert cards["Val Balanced accuracy"] == f"{best[TrialAttr.VAL_METRICS]['balanced_accuracy']:.3f}"
    assert cards["Val Accuracy"] == f"{best[TrialAttr.VAL_METRICS]['accuracy']:.3f}"
    assert cards["Test Balanced accuracy"] == f"{best[TrialAttr.TEST_METRICS]['balanced_accuracy']:.3f}"
    assert not any("Dice" in name for name in cards)
    table = app.dataframe[0].value
    assert [f"val_{m}" for m in CLASS_METRICS] == [c for c in table.columns if c.startswith("val_")]
    for row in table.itertuples():
        metrics = study.trials[row.number].user_attrs[TrialAttr.VAL_METRICS]
        assert [getattr(row, f"val_{m}") for m in CLASS_METRICS] == pytest.approx([metrics[m] for m in CLASS_METRICS])
    references = app.dataframe[1].value
    assert list(references.columns) == [
        "label",
        "val_accuracy",
        "val_balanced_accuracy",
        "val_f1_macro",
        "test_balanced_accuracy",
    ]
    assert any("every image predicted as one class" in text for text in texts(app, "caption"))
    assert app.button(key="leaderboard.compare").label == "Compare predictions"


def test_the_leaderboard_opens_compare_predictions(classified: Settings) -> None:
    app = open_page("leaderboard.py", selected=(0,))
    app.button(key="leaderboard.compare").click().run()
    assert not app.exception and [title.value for title in app.title] == ["Compare predictions"]


def test_curves_offer_the_classification_metrics_and_draw_the_stored_history(classified: Settings) -> None:
    history = stored(classified).trials[1].user_attrs[TrialAttr.HISTORY]
    app = open_page("curves.py", selected=(0, 1))
    metric = app.button_group(key="curves.metric.classification")
    assert metric.options == [label(m) for m in curve_metrics(Task.CLASSIFICATION)] and metric.value == "loss"
    metric.set_value("balanced_accuracy").run()
    assert not app.exception
    figure = chart(app)
    assert figure["layout"]["yaxis"]["title"]["text"] == "Balanced accuracy"
    trace = next(t for t in figure["data"] if t.get("name") == "#1 val")
    assert numbers(trace["y"]) == pytest.approx([epoch["val_balanced_accuracy"] for epoch in history])


def test_confusion_matrices_are_the_stored_ones_with_class_names(classified: Settings) -> None:
    study = stored(classified)
    app = open_page("predictions.py", selected=(0, 1))
    assert not app.exception
    for index, trial in enumerate(study.trials):
        matrix = trial.user_attrs[TrialAttr.CONFUSION_MATRIX]
        heatmap = chart(app, index)["data"][0]
        assert heatmap["type"] == "heatmap" and heatmap["z"] == matrix
        assert heatmap["x"] == list(BARS) and heatmap["y"] == list(BARS)
        assert any(
            text.startswith(f"#{trial.number}: {accuracy_text(np.array(matrix))}") for text in texts(app, "caption")
        )


def test_misclassified_images_are_listed_most_confident_mistake_first(classified: Settings) -> None:
    numbers = (0, 1)
    predictions = comparison(classified, numbers)
    number = max(numbers, key=lambda n: len(predictions.misclassified(n)))
    expected = comparison(classified, (number,)).misclassified(number)
    assert expected, "both 1-epoch trials classify every validation image correctly: nothing to list"
    app = open_page("predictions.py", selected=(number,))
    assert app.button_group(key="predictions.shown").value == "wrong"
    assert app.selectbox(key="predictions.order").value == "confidence"
    assert [image.captions[0] for image in app.get("image")] == expected[:12]
    table = app.dataframe[0].value
    assert table["image"].tolist() == expected and not table[f"#{number} correct"].any()
    assert table[f"#{number} confidence"].is_monotonic_decreasing
    cards = [m.value for m in app.markdown if m.value.startswith("true **")]
    assert all(f":red[:material/close: #{number} " in card for card in cards)
    app.selectbox(key="predictions.order").set_value("least_confident").run()
    assert app.dataframe[0].value[f"#{number} confidence"].is_monotonic_increasing
    assert "Largest disagreement between trials" not in app.selectbox(key="predictions.order").options
    assert "Where the trials disagree" not in app.button_group(key="predictions.shown").options


def test_all_images_are_listed_with_the_stored_disagreement(classified: Settings) -> None:
    both = comparison(classified, (0, 1))
    app = open_page("predictions.py", selected=(0, 1))
    app.button_group(key="predictions.shown").set_value("all").run()
    assert not app.exception
    table = app.dataframe[0].value
    assert sorted(table["image"]) == sorted(both.stems)
    shares = dict(zip(both.stems, both.disagreement()))
    assert table["disagreement"].tolist() == [shares[stem] for stem in table["image"]]
    for number in (0, 1):
        predicted = dict(zip(both.stems, both.trials[number].predicted))
        assert table[f"#{number} predicted"].tolist() == [BARS[predicted[stem]] for stem in table["image"]]


def test_disagreeing_trials_are_filtered_and_ordered(classified: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two 1-epoch trials may well agree everywhere: here trial #1's predictions are flipped on every other image."""
    from app import study_cache

    real = comparison(classified, (0, 1))
    n, labels = len(real.stems), real.labels
    right = np.eye(2, dtype=np.float32)[labels] * 0.8 + 0.1  # 0.9 on the true class
    flipped = right.copy()
    flipped[1::2] = right[1::2, ::-1]  # odd images: 0.9 on the wrong class
    flipped[3::4] = np.where(flipped[3::4] > 0.5, 0.6, 0.4)  # some of them less confidently
    trials = {
        number: LabelPredictions(real.stems, labels, probabilities, np.zeros(n, np.int64), BARS)
        for number, probabilities in ((0, right), (1, flipped))
    }
    crafted = PredictionComparison(real.stems, labels, BARS, trials)
    monkeypatch.setattr(study_cache, "prediction_comparison", lambda name, numbers: crafted)
    app = open_page("predictions.py", selected=(0, 1))
    app.button_group(key="predictions.shown").set_value("disagree").run()
    app.selectbox(key="predictions.order").set_value("disagreement").run()
    assert not app.exception
    table = app.dataframe[0].value
    expected = [crafted.stems[i] for i in crafted.order("disagreement") if i % 2]
    assert table["image"].tolist() == expected and (table["disagreement"] == 1.0).all()
    assert not table["#1 correct"].any() and table["#0 correct"].all()
    assert [image.captions[0] for image in app.get("image")] == expected
    assert len(expected) == n // 2 and table["#1 confidence"].iloc[0] == pytest.approx(0.9)  # most confident first


def test_compare_masks_sends_a_classification_study_to_compare_predictions(classified: Settings) -> None:
    app = open_page("compare.py")
    assert any("classification study" in text and "Compare predictions" in text for text in texts(app, "info"))
    assert not app.get("image")


def test_insights_name_the_objective_from_the_catalogue(classified: Settings) -> None:
    app = open_page("insights.py")
    assert not app.exception and len(app.tabs) == 6
    history = chart(app)
    assert "Validation Balanced accuracy" in json.dumps(history["layout"]["yaxis"]) + json.dumps(history["data"])


def test_export_offers_the_classifier_with_a_csv_predict_command(classified: Settings) -> None:
    study = stored(classified)
    best = study.best_trial
    app = open_page("export.py")
    assert app.selectbox(key="export.trial").value == best.number
    cards = {m.label: m.value for m in app.metric}
    assert cards["Val Balanced accuracy"] == f"{best.user_attrs[TrialAttr.VAL_METRICS]['balanced_accuracy']:.3f}"
    assert app.code[0].value == "segtune predict --model . --images images/ --out predictions.csv"
    assert "classify_folder(" in app.code[1].value
    card = next(text for text in texts(app, "markdown") if text.startswith("# Model card"))
    assert "Classification model" in card and "| Balanced accuracy |" in card
    assert [b.proto.label for b in app.get("download_button")] == [
        "Download model bundle (.zip)",
        "Download model card (.md)",
    ]


def test_compress_page_takes_a_classification_trial(classified: Settings) -> None:
    app = open_page("compress.py")
    assert not app.exception and not texts(app, "error")
    assert any("has no compressed variants yet" in text for text in texts(app, "info"))
    assert all("Compare predictions" in text for text in texts(app, "warning") if "flagged" in text)
    assert not app.button(key="compress.start").disabled


# --- the image-selection rules, on predictions made to disagree --------------------------------


def made_up(probabilities: list[list[float]], labels: list[int]) -> LabelPredictions:
    n = len(labels)
    return LabelPredictions(
        tuple(f"img{i}" for i in range(n)),
        np.array(labels),
        np.array(probabilities, np.float32),
        np.zeros(n, np.int64),
        BARS,
    )


def test_shown_images_pick_mistakes_and_disagreements_in_order() -> None:
    labels = [0, 0, 1, 1]
    first = made_up([[0.9, 0.1], [0.3, 0.7], [0.4, 0.6], [0.8, 0.2]], labels)  # wrong on img1 (0.7) and img3 (0.8)
    second = made_up([[0.6, 0.4], [0.45, 0.55], [0.1, 0.9], [0.3, 0.7]], labels)  # wrong on img1 only
    both = PredictionComparison(first.stems, first.labels, BARS, {3: first, 7: second})
    assert shown_images(both, "confidence", "wrong") == [1, 3]  # img1: wrong for both trials, img3 for one
    assert shown_images(both, "name", "disagree") == [3]  # only img3 gets different labels
    assert shown_images(both, "name", "all") == [0, 1, 2, 3]
    single = PredictionComparison(first.stems, first.labels, BARS, {3: first})
    assert shown_images(single, "confidence", "wrong") == [3, 1] and [
        first.stems[i] for i in [3, 1]
    ] == single.misclassified(3)


def test_confusion_figure_counts_and_shares() -> None:
    figure = confusion_figure(np.array([[3, 1], [0, 4]]), BARS, "Trial #0")
    heatmap = figure.data[0]
    assert (
        [list(row) for row in heatmap.z] == [[3, 1], [0, 4]] and tuple(heatmap.x) == BARS and tuple(heatmap.y) == BARS
    )
    assert heatmap.customdata[0] == pytest.approx([0.75, 0.25]) and figure.layout.yaxis.autorange == "reversed"
    assert accuracy_text(np.array([[3, 1], [0, 4]])) == "7 of 8 right (88%)"
