"""core.results: the read layer behind the results pages, over hand-made studies that follow the
engine's contract (user attrs, preview artifacts), so 1,000-trial studies are cheap to build."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import optuna
import pytest
from optuna.artifacts import FileSystemArtifactStore
from optuna.trial import create_trial

from core.contract import ArtifactKind, TrialAttr
from core.deploy.export import bundle_zip
from core.deploy.model_card import (
    bundle_problem,
    model_card,
    onnx_snippet,
    predict_command,
    segtune_command,
    smp_snippet,
)
from core.errors import SegTuneError
from core.metrics.catalogue import label
from core.results.curves import learning_curves
from core.results.insights import INSIGHTS, insight_figures
from core.results.previews import load_previews
from core.results.trials import best_numbers, default_trial, get_trial, trials_frame
from tests.helpers.results_study import DISTRIBUTIONS, STEMS, build_study, ground_truth


@pytest.fixture
def store(tmp_path: Path) -> FileSystemArtifactStore:
    (tmp_path / "artifacts").mkdir()
    return FileSystemArtifactStore(str(tmp_path / "artifacts"))


@pytest.fixture
def study(store: FileSystemArtifactStore) -> optuna.Study:
    return build_study(optuna.storages.InMemoryStorage(), store)


def test_trials_frame_has_one_row_per_trial_with_metrics_and_best_flag(study: optuna.Study) -> None:
    frame = trials_frame(study)
    assert list(frame["number"]) == list(range(6))
    assert list(frame["state"]) == ["complete", "complete", "complete", "pruned", "fail", "complete"]
    assert frame.loc[frame["best"], "number"].tolist() == [0]  # dice 0.9 (trial 3 is pruned)
    assert frame["rank"].fillna(0).tolist() == [1, 2, 3, 0, 0, 3]  # ties share a rank; unfinished get none
    assert {"param_lr", "param_optimizer", "param_unet_start_filters", "objective_val_dice"} <= set(frame.columns)
    assert frame.loc[1, "val_dice"] == pytest.approx(0.7) and frame.loc[1, "test_dice"] == pytest.approx(0.65)
    assert frame.loc[0, "n_params"] == 1000 and frame.loc[2, "images_per_s"] == 102.0
    # a pruned trial's validation metrics come from its last epoch; a failed one shows its error
    assert frame.loc[3, "val_dice"] == pytest.approx(0.9) and frame.loc[3, "epochs_run"] == 2
    assert frame.loc[4, "error"] == "CUDA out of memory twice"


def test_multi_objective_best_is_the_pareto_front(store: FileSystemArtifactStore) -> None:
    study = build_study(optuna.storages.InMemoryStorage(), store, directions=("maximize", "minimize"))
    # complete trials 0,1,2,5: (0.9,1000) (0.7,2000) (0.5,3000) (0.7,3000) -> only trial 0 is on the front
    assert best_numbers(study) == [0]
    study.add_trial(create_trial(values=[0.95, 5000.0], params={"lr": 0.01}, distributions={"lr": DISTRIBUTIONS["lr"]}))
    assert best_numbers(study) == [0, 6]
    assert trials_frame(study)["best"].sum() == 2


def test_trials_frame_of_a_thousand_trials_is_fast(store: FileSystemArtifactStore) -> None:
    study = build_study(optuna.storages.InMemoryStorage(), store, n_trials=1000, previews=False)
    start = time.perf_counter()
    frame = trials_frame(study)
    assert len(frame) == 1000 and frame["best"].sum() == 1
    assert time.perf_counter() - start < 2.0


def test_learning_curves_are_tidy_with_train_and_val_loss(study: optuna.Study) -> None:
    curves = learning_curves(study.get_trials(), "loss")
    one = curves[curves["trial"] == 0]
    assert set(one["split"]) == {"train", "val"} and one["epoch"].max() == 4
    assert one[(one["split"] == "val") & (one["epoch"] == 2)]["value"].item() == pytest.approx(0.55)
    dice = learning_curves(study.get_trials(), "dice")
    assert set(dice["split"]) == {"val"}
    assert dice[dice["trial"] == 3]["epoch"].max() == 2 and set(dice[dice["trial"] == 3]["state"]) == {"pruned"}
    lr = learning_curves(study.get_trials(), "lr")  # the schedule: its own curve, not "train"
    assert set(lr["split"]) == {"lr"} and lr[lr["trial"] == 0]["value"].tolist() == pytest.approx(
        [0.01 / e for e in range(1, 5)]
    )


def test_learning_curves_fall_back_to_intermediate_values_and_reject_unknown_metrics(study: optuna.Study) -> None:
    bare = create_trial(value=0.5, params={}, distributions={}, intermediate_values={1: 0.2, 2: 0.4})
    curves = learning_curves([bare], "dice")
    assert curves["split"].tolist() == ["objective", "objective"] and curves["value"].tolist() == [0.2, 0.4]
    with pytest.raises(SegTuneError, match="unknown curve metric 'sharpness'.*dice.*balanced_accuracy"):
        learning_curves(study.get_trials(), "sharpness")


def test_previews_align_by_stem_and_score_per_image_dice(study: optuna.Study, store: FileSystemArtifactStore) -> None:
    previews = load_previews(study, [0, 1, 3], store)
    assert previews.stems == STEMS and previews.trial_numbers == [0, 1] and previews.missing == (3,)
    np.testing.assert_array_equal(previews.predictions[0], ground_truth())
    assert previews.dice[0].tolist() == [1.0, 1.0, 1.0, 1.0]  # the empty image predicted empty scores 1
    # trial 1 shifts each square one pixel right: Dice = 2(s-1)s / 2s^2 = (s-1)/s
    np.testing.assert_allclose(previews.dice[1], [7 / 8, 5 / 6, 3 / 4, 1.0])
    assert previews.order("worst_dice") == [2, 1, 0, 3]
    # trials 0 and 1 disagree on 2s pixels of 256: most on the largest square
    np.testing.assert_allclose(previews.disagreement(), [16 / 256, 12 / 256, 8 / 256, 0.0])
    assert previews.order("disagreement") == [0, 1, 2, 3]
    assert previews.order("name") == [0, 1, 2, 3]
    with pytest.raises(SegTuneError, match="unknown image order 'random'.*worst_dice"):
        previews.order("random")


def test_previews_missing_study_artifact_or_trial_are_clear_errors(store: FileSystemArtifactStore) -> None:
    study = build_study(optuna.storages.InMemoryStorage(), store, previews=False)
    with pytest.raises(SegTuneError, match="stored no preview images"):
        load_previews(study, [0], store)
    with pytest.raises(SegTuneError, match="no trial #99.*6 trials"):
        get_trial(study, 99)


def test_preview_dice_follows_the_metrics_rule_per_image(store: FileSystemArtifactStore) -> None:
    """Per-image Dice is core.metrics.segmentation.per_image_dice applied to each image: one rule, two classes here."""
    from core.metrics.segmentation import per_image_dice

    study = build_study(optuna.storages.InMemoryStorage(), store)
    previews = load_previews(study, [2], store)
    expected = [per_image_dice(p, t, previews.num_classes) for p, t in zip(previews.predictions[2], previews.masks)]
    np.testing.assert_allclose(previews.dice[2], expected)


def test_dice_table_lists_images_in_order_with_each_trial_and_disagreement(
    study: optuna.Study, store: FileSystemArtifactStore
) -> None:
    previews = load_previews(study, [0, 1], store)
    table = previews.dice_table(previews.order("worst_dice"))
    assert list(table.columns) == ["image", "#0", "#1", "disagreement"]
    assert table["image"].tolist() == ["img_c", "img_b", "img_a", "img_d"]
    np.testing.assert_allclose(table["#1"], [3 / 4, 5 / 6, 7 / 8, 1.0])
    np.testing.assert_allclose(table["disagreement"], [8 / 256, 12 / 256, 16 / 256, 0.0])
    single = load_previews(study, [0], store).dice_table([0, 1])
    assert list(single.columns) == ["image", "#0"] and len(single) == 2


def test_insight_figures_draw_or_explain(study: optuna.Study) -> None:
    figures = insight_figures(study)
    assert set(figures) == set(INSIGHTS)
    for key in ("history", "importances", "parallel", "contour", "slice"):
        assert figures[key].figure is not None and figures[key].figure.data, key
    assert figures["pareto"].figure is None and "one objective" in figures["pareto"].message


def test_insight_figures_messages_when_too_few_trials(store: FileSystemArtifactStore) -> None:
    empty = build_study(optuna.storages.InMemoryStorage(), store, n_trials=0)
    assert all(
        insight.figure is None and "No completed trials" in insight.message
        for insight in insight_figures(empty).values()
    )
    one = build_study(optuna.storages.InMemoryStorage(), store, name="one", n_trials=1)
    figures = insight_figures(one)
    assert figures["history"].figure is not None
    assert "at least 2 completed trials" in figures["importances"].message
    assert "Needs at least 2 tuned parameter(s)" in figures["contour"].message


def test_insight_figures_pareto_for_two_objectives(store: FileSystemArtifactStore) -> None:
    study = build_study(optuna.storages.InMemoryStorage(), store, directions=("maximize", "minimize"))
    figures = insight_figures(study, objective=1)
    assert figures["pareto"].figure is not None and figures["pareto"].figure.data
    assert label("n_params") in json.dumps(
        figures["history"].figure.to_plotly_json(), default=str
    )  # the catalogue's name, "Parameters"
    with pytest.raises(SegTuneError, match="objective 2 does not exist.*val_dice, n_params"):
        insight_figures(study, objective=2)


def test_model_card_names_data_split_params_and_metrics(study: optuna.Study) -> None:
    card = model_card(study, default_trial(study))
    assert card.startswith("# Model card — hand-made-trial0")
    for text in (
        "demo-cells",
        "abc123",
        "train 0.7 / val 0.16 / test 0.14, seed 3",
        "| optimizer | adam |",
        "| Dice | 0.9 | 0.85 |",
        "ClassicUNet",
        "never used to choose",
    ):
        assert text in card, text


def test_bundle_zip_refuses_unreadable_weights_and_unfinished_trials(
    study: optuna.Study, store: FileSystemArtifactStore
) -> None:
    """What a good bundle zip holds is checked on real models in tests/test_export.py."""
    with pytest.raises(SegTuneError, match="model.safetensors is not in the safetensors format"):
        bundle_zip(study, get_trial(study, 1), store)  # this study stored b"fake-safetensors"
    with pytest.raises(SegTuneError, match="trial #4 stored no weights or config.*only completed"):
        bundle_zip(study, get_trial(study, 4), store)


def test_bundle_problem_says_why_a_trial_cannot_be_downloaded(
    study: optuna.Study, store: FileSystemArtifactStore
) -> None:
    assert bundle_problem(get_trial(study, 1), store) is None
    assert "stored no weights or config (state fail)" in bundle_problem(get_trial(study, 4), store)
    weights = get_trial(study, 1).user_attrs[TrialAttr.ARTIFACTS][ArtifactKind.WEIGHTS]
    store.remove(weights)
    problem = bundle_problem(get_trial(study, 1), store)
    assert problem is not None and f"weights file ({weights}) is missing from the artifact store" in problem


def test_usage_snippets_need_only_public_packages_and_predict_py() -> None:
    """Each snippet imports only onnxruntime / smp / torch and the bundle's own predict.py (which the
    export tests run from an unzipped folder); the SegTune command parses as core's predict."""
    import ast

    from core.deploy import standalone_predict

    for snippet in (onnx_snippet(), smp_snippet()):
        tree = ast.parse(snippet)
        imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
        assert not any(isinstance(node, ast.ImportFrom) for node in ast.walk(tree))
        assert "predict" in imported and imported - {"predict"} <= {
            "onnxruntime",
            "segmentation_models_pytorch",
            "torch",
        }
        called = {
            node.func.attr
            for node in ast.walk(tree)
            if isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and isinstance(node.func.value, ast.Name)
            and node.func.value.id == "predict"
        }
        assert called and all(hasattr(standalone_predict, name) for name in called)
    assert predict_command() == "python predict.py --images images/ --out masks/"
    from core.cli import build_parser

    args = build_parser().parse_args(segtune_command().split()[1:])  # after "segtune"
    assert (
        args.command == "predict"
        and str(args.model) == "."
        and str(args.images) == "images"
        and str(args.out) == "masks"
    )


def test_default_trial_needs_a_completed_trial(store: FileSystemArtifactStore) -> None:
    empty = build_study(optuna.storages.InMemoryStorage(), store, n_trials=0)
    with pytest.raises(SegTuneError, match="no completed trial yet"):
        default_trial(empty)


def test_pruned_trials_ahead_of_a_complete_one_are_named_for_the_leaderboards_note() -> None:
    import pandas as pd

    from core.results.trials import pruned_ahead

    frame = pd.DataFrame(
        {
            "number": [0, 1, 2, 3],
            "state": ["complete", "complete", "pruned", "pruned"],
            "objective_val_dice": [0.8, 0.6, None, None],
            "val_dice": [0.8, 0.6, 0.7, 0.5],
        }
    )
    assert pruned_ahead(frame, "val_dice", maximize=True) == [2]  # above #1's 0.6, not #3's 0.5
    assert pruned_ahead(frame, "val_dice", maximize=False) == [2, 3]  # lower is better: both under #0's 0.8
    assert pruned_ahead(frame[frame["state"] == "pruned"], "val_dice", maximize=True) == []  # nothing complete to beat
    assert pruned_ahead(frame, "val_loss", maximize=False) == []  # no such column
