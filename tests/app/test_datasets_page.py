"""Datasets page: demo, upload, validation report, gallery, statistics, split preview, delete."""

from __future__ import annotations

import io
import os
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from streamlit.testing.v1 import AppTest

from core.data.manifest import dataset_names, load_manifest
from core.settings import Settings
from tests.helpers.pages import MAIN


def datasets_page() -> AppTest:
    return AppTest.from_file(MAIN, default_timeout=60).run()


def png_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def tiny_zip(with_orphan: bool = False) -> bytes:
    rng = np.random.default_rng(0)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for i in range(4):
            archive.writestr(f"set/images/img_{i}.png", png_bytes(rng.integers(0, 255, (32, 32), dtype=np.uint8)))
            mask = np.zeros((32, 32), np.uint8)
            mask[: 8 * (i + 1)] = 255
            archive.writestr(f"set/masks/img_{i}.png", png_bytes(mask))
        if with_orphan:
            archive.writestr("set/images/lonely.png", png_bytes(np.zeros((32, 32), np.uint8)))
    return buffer.getvalue()


def test_empty_state_then_demo_dataset_with_gallery_and_stats(workspace: Settings) -> None:
    at = datasets_page()
    assert any("No datasets yet" in info.value for info in at.info)
    at.button(key="ds.demo_empty").click().run()
    assert not at.exception
    assert dataset_names(workspace.datasets_dir) == ["demo-cells"]
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Image/mask pairs"] == "60" and metrics["Channels"] == "1 (grey)"
    assert len(at.image) >= 12  # a gallery page of overlays
    assert at.get("plotly_chart"), "the foreground histogram is missing"


def test_zip_upload_is_ingested(workspace: Settings) -> None:
    at = datasets_page()
    at.file_uploader(key="ds.upload").upload("cells.zip", tiny_zip(), "application/zip").run()
    at.button(key="ds.upload_go").click().run()
    assert not at.exception
    assert any("Added **cells**: 4 image/mask pairs" in s.value for s in at.success)
    assert dataset_names(workspace.datasets_dir) == ["cells"]
    assert load_manifest(workspace.datasets_dir, "cells").source == "cells.zip"  # the user's file, not a /tmp copy


def test_invalid_zip_lists_the_problem_and_stores_nothing(workspace: Settings) -> None:
    at = datasets_page()
    at.file_uploader(key="ds.upload").upload("broken.zip", tiny_zip(with_orphan=True), "application/zip").run()
    at.button(key="ds.upload_go").click().run()
    assert not at.exception
    report = " ".join(e.value for e in at.error)
    assert "problem(s) to fix" in report and "lonely" in report
    assert dataset_names(workspace.datasets_dir) == []


def test_missing_server_folder_is_reported(workspace: Settings, tmp_path: Path) -> None:
    at = datasets_page()
    at.text_input(key="ds.folder").input(str(tmp_path / "nowhere")).run()
    at.button(key="ds.folder_go").click().run()
    assert not at.exception
    assert any("nowhere" in e.value for e in at.error)


def test_split_preview_and_delete(workspace: Settings) -> None:
    at = datasets_page()
    at.button(key="ds.demo_empty").click().run()
    at.slider(key="ds.split.test").set_value(20).run()
    metrics = {m.label: int(m.value) for m in at.metric if m.label in ("Train", "Validation", "Test")}
    assert sum(metrics.values()) == 60 and metrics["Test"] == 12
    assert at.session_state["segtune.split"].test == 0.2
    delete = at.button(key="ds.delete")
    assert delete.disabled
    at.text_input(key="ds.delete_confirm").input("demo-cells").run()
    at.button(key="ds.delete").click().run()
    assert not at.exception
    assert dataset_names(workspace.datasets_dir) == []
    assert any("No datasets yet" in info.value for info in at.info)


def test_server_folder_outside_the_import_roots_is_refused_without_listing_it(workspace: Settings) -> None:
    at = datasets_page()
    assert str(workspace.imports_dir) in " ".join(c.value for c in at.caption)  # the page says where it may read
    for typed in ("/etc", "/proc/self", "../datasets"):
        at.text_input(key="ds.folder").input(typed).run()
        at.text_input(key="ds.folder_name").input("stolen").run()
        at.button(key="ds.folder_go").click().run()
        assert not at.exception
        report = " ".join(e.value for e in at.error)
        assert "outside the folders the dashboard may read" in report
        assert "passwd" not in report and "status" not in report and "hosts" not in report
    assert dataset_names(workspace.datasets_dir) == []


def test_server_folder_inside_the_imports_folder_is_ingested(workspace: Settings) -> None:
    with zipfile.ZipFile(io.BytesIO(tiny_zip())) as archive:
        archive.extractall(workspace.imports_dir)
    at = datasets_page()
    at.text_input(key="ds.folder").input("set").run()
    at.text_input(key="ds.folder_name").input("cells").run()
    at.button(key="ds.folder_go").click().run()
    assert not at.exception
    assert dataset_names(workspace.datasets_dir) == ["cells"]


@pytest.mark.timeout(60)
def test_server_folder_with_a_fifo_or_an_odd_typed_path_gets_a_clean_message(workspace: Settings) -> None:
    """A FIFO would hang the page; a NUL byte, a link loop or a very long path once showed an exception class."""
    with zipfile.ZipFile(io.BytesIO(tiny_zip())) as archive:
        archive.extractall(workspace.imports_dir)
    os.mkfifo(workspace.imports_dir / "set" / "images" / "img_9.png")
    os.symlink("loop", workspace.imports_dir / "loop")
    at = datasets_page()
    at.text_input(key="ds.folder_name").input("cells").run()
    for typed, expected in (
        ("set", "images/img_9.png**: is a named pipe (FIFO)"),
        ("set\x00/../..", "control character"),
        ("loop", "loops back on itself"),
        ("x" * 5000, "too long"),
    ):
        at.text_input(key="ds.folder").input(typed).run()
        at.button(key="ds.folder_go").click().run()
        assert not at.exception
        report = " ".join(e.value for e in at.error)
        assert expected in report, report
        assert "unexpected error" not in report and str(workspace.home) not in report.replace(
            str(workspace.imports_dir), ""
        )
    assert dataset_names(workspace.datasets_dir) == []
    assert list(workspace.datasets_dir.iterdir()) == []  # no .ingest-* folder left behind


def test_a_dataset_a_queued_job_uses_is_not_deleted_and_the_page_names_the_job(workspace: Settings) -> None:
    from core.data.demo import create_demo_dataset
    from core.runtime.queue import submit_job
    from core.search.validation import spec_from_dict

    create_demo_dataset(workspace.datasets_dir, count=12, size=32)
    spec = spec_from_dict(
        {
            "name": "busy",
            "dataset": "demo-cells",
            "image_size": 32,
            "sampler": "random",
            "pruner": "none",
            "preview_count": 2,
            "budget": {"n_trials": 1, "max_epochs": 1},
        }
    )
    job_id = submit_job(workspace, spec, workers=0, launch=False)
    at = datasets_page()
    at.text_input(key="ds.delete_confirm").input("demo-cells").run()
    at.button(key="ds.delete").click().run()
    assert not at.exception
    assert any(f"used by job {job_id}" in e.value and "busy" in e.value for e in at.error)
    assert dataset_names(workspace.datasets_dir) == ["demo-cells"]


# --- classification datasets ---------------------------------------------------------------------------


def class_zip(per_class: dict[str, int]) -> bytes:
    """A zip with one sub-folder of distinct images per class, under a top folder."""
    rng = np.random.default_rng(1)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, count in per_class.items():
            for i in range(count):
                archive.writestr(
                    f"scans/{name}/{name}_{i}.png", png_bytes(rng.integers(0, 255, (24, 24), dtype=np.uint8))
                )
    return buffer.getvalue()


def test_a_classification_zip_is_detected_shown_per_class_and_split_by_class(workspace: Settings) -> None:
    at = datasets_page()
    at.file_uploader(key="ds.upload").upload(
        "scans.zip", class_zip({"normal": 9, "tumour": 5}), "application/zip"
    ).run()
    at.button(key="ds.upload_go").click().run()
    assert not at.exception
    assert any("Added **scans**: 14 labelled images in 2 classes (normal, tumour)" in s.value for s in at.success)
    assert load_manifest(workspace.datasets_dir, "scans").source == "scans.zip"
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Labelled images"] == "14" and metrics["Smallest class"] == "5" and metrics["Classes"] == "2"
    assert sorted(image.captions[0] for image in at.image) == [
        f"normal_{i}" for i in range(9)
    ]  # the first class's gallery
    at.selectbox(key="ds.class").set_value("tumour").run()
    assert sorted(image.captions[0] for image in at.image) == [f"tumour_{i}" for i in range(5)]
    chart = at.get("plotly_chart")
    assert chart and "Images per class" in chart[0].proto.spec
    tables = [frame.value for frame in at.dataframe]
    per_class = next(t for t in tables if "share" in t.columns)
    assert per_class.set_index("class")["images"].to_dict() == {"normal": 9, "tumour": 5}
    split_table = next(t for t in tables if {"train", "val", "test"} <= set(t.columns))
    assert split_table[["train", "val", "test"]].to_numpy().sum() == 14
    assert (split_table[["train", "val", "test"]] > 0).all().all()  # stratified: every part holds both classes
    assert "presence_go" not in " ".join(b.key or "" for b in at.button)  # only segmentation datasets classify by mask


def test_class_folder_problems_are_listed_on_the_page(workspace: Settings) -> None:
    at = datasets_page()
    at.file_uploader(key="ds.upload").upload("one.zip", class_zip({"normal": 3}), "application/zip").run()
    at.selectbox(key="ds.upload_task").set_value("classification").run()
    at.text_input(key="ds.upload_name").input("one").run()
    at.button(key="ds.upload_go").click().run()
    assert not at.exception
    report = " ".join(e.value for e in at.error)
    assert "problem(s) to fix" in report and "normal/ holds images but no class sub-folders" in report
    assert dataset_names(workspace.datasets_dir) == []


def test_a_segmentation_dataset_becomes_a_mask_presence_dataset(workspace: Settings) -> None:
    rng = np.random.default_rng(2)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for i in range(8):
            archive.writestr(f"set/images/s{i}.png", png_bytes(rng.integers(0, 255, (24, 24), dtype=np.uint8)))
            mask = np.zeros((24, 24), np.uint8)
            mask[: 3 * i] = 0 if i % 2 else 255  # s2, s4, s6 show the organ; the others are empty
            archive.writestr(f"set/masks/s{i}.png", png_bytes(mask))
    at = datasets_page()
    at.file_uploader(key="ds.upload").upload("organ.zip", buffer.getvalue(), "application/zip").run()
    at.text_input(key="ds.upload_classes").input("background, organ").run()
    at.button(key="ds.upload_go").click().run()
    assert any(
        "**organ** when the mask holds any foreground (3 images), **no organ** when it is empty (5)" in c.value
        for c in at.caption
    )
    at.text_input(key="ds.presence_name").input("organ-cls").run()
    at.button(key="ds.presence_go").click().run()
    assert not at.exception
    assert any("Created **organ-cls**: 8 labelled images in 2 classes (no organ, organ)" in s.value for s in at.success)
    assert dataset_names(workspace.datasets_dir) == ["organ", "organ-cls"]
