"""Datasets page with a volume dataset: ingest from the Medical volumes tab, step through slices, per-volume
statistics."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from core.data.manifest import load_manifest
from core.settings import Settings
from tests.helpers import pages
from tests.helpers.pages import MAIN
from tests.helpers.volume_data import SHAPE, msd_folder


def test_volumes_tab_ingests_and_gallery_steps_through_slices(workspace: Settings, tmp_path: Path) -> None:
    source = msd_folder(
        workspace.server_import_roots[0] / "Task-phantom", 3
    )  # server paths: under the import roots only
    at = AppTest.from_file(MAIN, default_timeout=60).run()
    at.text_input(key="ds.vol_path").input(str(source)).run()
    at.text_input(key="ds.vol_name").input("phantoms").run()
    at.selectbox(key="ds.vol_intensity").select("liver").run()
    at.slider(key="ds.vol_empty").set_value(0.0).run()
    at.button(key="ds.vol_go").click().run()
    assert not at.exception
    manifest = load_manifest(workspace.datasets_dir, "phantoms")
    assert manifest.slicing.intensity["preset"] == "liver"
    assert any("from 3 volumes" in s.value for s in at.success)

    assert at.selectbox(key="ds.volume").value == "case_000"
    slider = at.slider(key="ds.slice.case_000")
    slider.set_value(2).run()
    first = manifest.volume_slices()["case_000"][2]
    captions = [caption for image in at.get("image") for caption in image.captions]
    assert any(f"case_000 · slice {first.slice_index} of {SHAPE[2]}" in caption for caption in captions)
    at.selectbox(key="ds.volume").select("case_002").run()
    assert not at.exception and at.slider(key="ds.slice.case_002") is not None
    counts = [v.slices for v in manifest.volumes]  # statistics tab: volumes, slices per volume, spacing
    assert any(
        f"**3 volumes** · {min(counts)}–{max(counts)} slices per volume" in md.value
        and "spacing 0.8 x 0.8 x 2.5 mm" in md.value
        for md in at.markdown
    )
    tables = [frame.value for frame in at.dataframe]
    assert any("spacing (mm)" in table.columns and len(table) == 3 for table in tables)


def test_compare_steps_through_every_slice_of_a_multi_sequence_volume(
    workspace: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A 4-sequence study trains a 4-channel model; Compare shows all stored slices of a test volume with
    masks predicted once from the trial's weights; both pages let the user pick the channel shown."""
    from core.contract import TrialAttr
    from core.data.intensity import IntensityConfig
    from core.data.volume_ingest import VolumeIngestOptions, ingest_volumes
    from core.modeling.bundle import load_bundle_config, trial_bundle
    from core.results import volume_masks
    from core.results.trials import default_trial
    from core.runtime.storage import open_artifact_store
    from core.runtime.tuning import run_study
    from core.search.validation import spec_from_dict

    options = VolumeIngestOptions(intensity=IntensityConfig.window("abdomen"), empty_fraction=0.5)
    manifest = ingest_volumes(
        msd_folder(tmp_path / "src", 4, sequences=4), "mri", workspace.datasets_dir, options=options
    )
    spec = spec_from_dict(
        {
            "name": "mri-study",
            "dataset": "mri",
            "image_size": 32,
            "sampler": "random",
            "pruner": "none",
            "preview_count": 2,
            "budget": {"n_trials": 1, "max_epochs": 1},
            "split": {"train": 0.5, "val": 0.25, "test": 0.25, "seed": 0},
            "search_space": {
                "architecture": "ClassicUNet",
                "unet_start_filters": 4,
                "unet_depth": 2,
                "batch_size": 4,
                "epochs": 1,
            },
        }
    )
    study = run_study(spec, workspace, device="cpu")
    trial = study.best_trial
    assert trial.user_attrs[TrialAttr.MODEL_CONFIG]["in_channels"] == 4, trial.user_attrs.get(TrialAttr.ERROR)
    bundle = load_bundle_config(trial_bundle(default_trial(study), open_artifact_store(workspace), tmp_path / "bundle"))
    assert bundle.channels == 4 and bundle.volume_slicing.sequences == 4

    calls = []
    predict = volume_masks.predict_slices
    monkeypatch.setattr(volume_masks, "predict_slices", lambda *args: calls.append(1) or predict(*args))
    app = pages.open_page("compare.py", study="mri-study", trials=(trial.number,))
    app.button_group(key="compare.source").set_value("volume").run()
    app.radio(key="compare.part").set_value("test").run()
    volume = app.selectbox(key="compare.whole.test").value
    stored = manifest.volume_slices()[volume]
    info = next(v for v in manifest.volumes if v.volume == volume)
    assert any(f"1 of {len(stored)} stored slices (the volume has {info.total_slices}" in c.value for c in app.caption)
    assert [image.captions[0] for image in app.get("image")] == [
        f"{volume} · slice {stored[0].slice_index}",
        "Ground truth",
        f"Trial #{trial.number}",
    ]
    assert [m.label for m in app.metric][0] == f"Trial #{trial.number}: volume Dice"
    app.button(key="compare.slice.next").click().run()
    assert app.get("image")[0].captions[0] == f"{volume} · slice {stored[1].slice_index}"
    app.slider(key="compare.slice.image").set_value(
        len(stored)
    ).run()  # the last stored slice: all of them can be reached
    assert app.get("image")[0].captions[0] == f"{volume} · slice {stored[-1].slice_index}"
    app.selectbox(key="compare.channel").set_value(3).run()
    app.radio(key="compare.part").set_value("val").run()
    assert (
        not app.exception and len(calls) == 2
    )  # the first val volume, the test volume: each predicted once, then cached

    gallery = pages.open_page("datasets.py", dataset="mri")
    assert gallery.metric[2].value == "4 (sequences)"
    gallery.selectbox(key="ds.channel").set_value(2).run()
    assert not gallery.exception and gallery.selectbox(key="ds.channel").value == 2
