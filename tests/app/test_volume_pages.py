"""Datasets page with a volume dataset: ingest from the Medical volumes tab, step through slices, per-volume statistics."""

from __future__ import annotations

from pathlib import Path

from streamlit.testing.v1 import AppTest

from core.data.manifest import load_manifest
from core.settings import Settings
from tests.volume_data import SHAPE, msd_folder

MAIN = Path(__file__).resolve().parents[2] / "app" / "main.py"


def test_volumes_tab_ingests_and_gallery_steps_through_slices(workspace: Settings, tmp_path: Path) -> None:
    source = msd_folder(workspace.server_import_roots[0] / "Task-phantom", 3)  # server paths: under the import roots only
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
    assert any("3 volumes" in md.value for md in at.markdown)  # statistics tab: volumes, slices per volume
    tables = [frame.value for frame in at.dataframe]
    assert any("spacing (mm)" in table.columns and len(table) == 3 for table in tables)
