"""A workspace written before core/ was reorganised still opens: every stored name is still read.

The fixture (tests/fixtures/legacy-workspace, see its README) holds a study with finished trials,
preview masks and a compressed variant, written by the old modules. Today's readers must find
everything the contract (core.contract) names in it.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from core.contract import ArtifactKind, StudyAttr, TrialAttr, variants_attr
from core.deploy.compression.variants import list_variants, trade_off_rows, variant_predictions
from core.deploy.export import export_trial
from core.deploy.model_card import model_card
from core.metrics.catalogue import curve_metrics
from core.modeling.bundle import load_bundle
from core.results.curves import learning_curves
from core.results.previews import load_previews
from core.results.trials import best_numbers, default_trial, trials_frame
from core.runtime.storage import open_artifact_store, open_storage
from core.runtime.tuning import load_study
from core.settings import Settings, load_settings
from tests.helpers.pages import open_page

LEGACY = Path(__file__).parent / "fixtures" / "legacy-workspace"


@pytest.fixture
def legacy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    home = tmp_path / "home"
    shutil.copytree(LEGACY, home)
    monkeypatch.setenv("SEGTUNE_HOME", str(home))
    monkeypatch.delenv("SEGTUNE_DB", raising=False)
    monkeypatch.delenv("SEGTUNE_ARTIFACTS", raising=False)
    return load_settings()


def test_the_stored_names_are_the_contracts(legacy: Settings) -> None:
    study, spec = load_study("legacy", open_storage(legacy.db_url))
    assert spec.name == "legacy" and spec.image_size == 64
    assert {
        StudyAttr.SPEC,
        StudyAttr.DATASET,
        StudyAttr.SPLIT_HASH,
        StudyAttr.PREVIEW_ARTIFACT,
        variants_attr(0),
    } <= set(study.user_attrs)
    trial = study.trials[0]
    for attr in (
        TrialAttr.HISTORY,
        TrialAttr.VAL_METRICS,
        TrialAttr.TEST_METRICS,
        TrialAttr.BEST_EPOCH,
        TrialAttr.MODEL_CONFIG,
        TrialAttr.PARAMS_RESOLVED,
        TrialAttr.IMAGES_PER_S,
        TrialAttr.N_PARAMS,
        TrialAttr.WEIGHTS_MB,
        TrialAttr.ARTIFACTS,
    ):
        assert attr in trial.user_attrs, attr
    # every kind but a classifier's predictions and the fold models of cross-validation (newer than this workspace)
    assert set(trial.user_attrs[TrialAttr.ARTIFACTS]) == {kind.value for kind in ArtifactKind} - {
        ArtifactKind.PREDICTIONS,
        ArtifactKind.FOLD_WEIGHTS,
    }


def test_results_read_the_old_study(legacy: Settings) -> None:
    study, _ = load_study("legacy", open_storage(legacy.db_url))
    store = open_artifact_store(legacy)
    frame = trials_frame(study)
    assert list(frame["state"]) == ["complete", "complete"] and frame["val_dice"].notna().all()
    assert best_numbers(study) == [default_trial(study).number]
    stored = set(study.trials[0].user_attrs[TrialAttr.HISTORY][0])
    for metric in curve_metrics():  # metrics added since have no curve there, and no error either
        curve = learning_curves(study.trials, metric)
        assert curve.empty != (f"val_{metric}" in stored or metric in stored), metric
    previews = load_previews(study, [0, 1], store)
    assert previews.predictions[0].shape == previews.masks.shape
    assert "## Metrics" in model_card(study, study.trials[0])


def test_old_bundles_and_variants_still_load(legacy: Settings, tmp_path: Path) -> None:
    study, _ = load_study("legacy", open_storage(legacy.db_url))
    store = open_artifact_store(legacy)
    report = export_trial(study, 0, store, tmp_path / "out", formats=("bundle", "onnx"))
    model, config = load_bundle(report.folder)
    assert config.image_size == 64 and all(f.max_abs_diff is None or f.max_abs_diff < 1e-3 for f in report.files)
    assert model(torch.zeros(1, config.channels, 64, 64)).shape[-2:] == (64, 64)
    assert [record["method"] for record in list_variants(study, 0)] == ["prune"]
    assert [row["variant"] for row in trade_off_rows(list_variants(study, 0))] == [0, 1]
    previews = load_previews(study, [0], store)
    assert variant_predictions(study, 0, 1, store).shape == previews.masks.shape


@pytest.mark.parametrize(
    "page",
    [
        "leaderboard.py",
        "curves.py",
        "compare.py",
        "predictions.py",
        "insights.py",
        "export.py",
        "compress.py",
        "jobs.py",
    ],
)
def test_every_page_opens_the_old_study(legacy: Settings, page: str) -> None:
    app = open_page(page, study="legacy")
    assert not app.exception
    assert not [error.value for error in app.error], [error.value for error in app.error]


def test_bundle_folders_exported_in_the_old_layout_still_load(legacy: Settings, tmp_path: Path) -> None:
    """Before segtune.json, an exported folder was the two artifacts as model.safetensors + config.json."""
    from core.deploy.standalone_predict import input_spec, load_config
    from core.modeling.bundle import LEGACY_CONFIG, WEIGHTS_FILE, load_model

    study, _ = load_study("legacy", open_storage(legacy.db_url))
    store = open_artifact_store(legacy)
    artifacts = study.trials[0].user_attrs[TrialAttr.ARTIFACTS]
    folder = tmp_path / "old-export"
    folder.mkdir()
    for kind, name in ((ArtifactKind.WEIGHTS, WEIGHTS_FILE), (ArtifactKind.CONFIG, LEGACY_CONFIG)):
        with store.open_reader(artifacts[kind]) as reader:
            (folder / name).write_bytes(reader.read())
    model, config = load_model(folder)
    assert config.version == 1 and model(torch.zeros(1, config.channels, 64, 64)).shape[-2:] == (64, 64)
    assert input_spec(load_config(folder))["size"] == [64, 64]  # the shipped predict.py reads it too


# The Python snippet of the model card exported with every bundle before core/ was split into
# subpackages (commit 0e187c4, core/results.py inference_snippet), verbatim but for the folder name.
# It imports core.bundle, core.datasets and core.predict: those modules are kept for it.
OLD_CARD_SNIPPET = """\
from pathlib import Path

from PIL import Image

from core.bundle import load_bundle
from core.datasets import read_image
from core.predict import mask_png, predict_folder, predict_image

bundle = Path("{bundle}")  # the unzipped bundle folder

# A whole folder: the same as `python -m core predict --model {bundle} --images images/ --out masks/`
print(predict_folder(bundle, Path("images"), Path("masks")).summary())

# One image: a class-index mask at the image's own size
model, config = load_bundle(bundle)
mask = predict_image(model, config, read_image(Path("image.png")))
Image.fromarray(mask_png(mask, len(config.classes))).save("mask.png")  # 0/255 when binary
"""


def test_the_python_snippet_of_an_old_model_card_still_runs(
    legacy: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Old bundles' cards print ``from core.bundle/core.datasets/core.predict import ...``: run that text as it was."""
    import numpy as np
    from PIL import Image

    study, _ = load_study("legacy", open_storage(legacy.db_url))
    folder = export_trial(study, 0, open_artifact_store(legacy), tmp_path / "out", formats=("bundle",)).folder
    cells = sorted((legacy.datasets_dir / "demo-cells" / "images").iterdir())[:2]
    (tmp_path / "images").mkdir()
    for cell in cells:
        shutil.copy(cell, tmp_path / "images" / cell.name)
    shutil.copy(cells[0], tmp_path / "image.png")
    monkeypatch.chdir(tmp_path)
    exec(compile(OLD_CARD_SNIPPET.format(bundle=folder), "<old model card>", "exec"), {"__name__": "__card__"})
    assert "2 mask(s) written" in capsys.readouterr().out
    assert sorted(path.name for path in (tmp_path / "masks").glob("*.png")) == sorted(
        f"{cell.stem}.png" for cell in cells
    )
    mask = np.asarray(Image.open(tmp_path / "mask.png"))
    assert mask.shape == np.asarray(Image.open(cells[0])).shape[:2] and set(np.unique(mask)) <= {0, 255}


def test_an_old_variant_downloads_with_onnx_and_predict_py(legacy: Settings) -> None:
    import io
    import zipfile

    from core.deploy.compression.variants import variant_zip

    study, _ = load_study("legacy", open_storage(legacy.db_url))
    with zipfile.ZipFile(io.BytesIO(variant_zip(study, 0, 1, open_artifact_store(legacy)))) as archive:
        names = {Path(name).name for name in archive.namelist()}
        card = next(archive.read(n).decode() for n in archive.namelist() if n.endswith("MODEL_CARD.md"))
    assert names == {"model.safetensors", "segtune.json", "model.onnx", "predict.py", "MODEL_CARD.md"}
    assert "python predict.py --images images/ --out masks/" in card and "pruned" in card
