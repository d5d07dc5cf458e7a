"""Shared fixtures: a temporary workspace and the real datasets beside the checkout."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from core.settings import Settings, load_settings

REPO = Path(__file__).resolve().parents[1]
SHARED_DATASETS = REPO.parent / "shared" / "datasets"


@pytest.fixture
def workspace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """A fresh SEGTUNE_HOME with its own SQLite DB and artifact folder."""
    home = tmp_path / "segtune-home"
    monkeypatch.setenv("SEGTUNE_HOME", str(home))
    monkeypatch.delenv("SEGTUNE_DB", raising=False)
    monkeypatch.delenv("SEGTUNE_ARTIFACTS", raising=False)
    return load_settings()


def shared_dataset(name: str) -> Path:
    """A dataset from ../shared/datasets, or skip when this machine does not have it."""
    path = SHARED_DATASETS / name
    if not path.is_dir():
        pytest.skip(f"{path} is not on this machine")
    return path


def copy_pairs(source: Path, target: Path, count: int, *, every: int = 1) -> Path:
    """Copy ``count`` image/mask pairs (images/ + masks/ layout, matched by stem) into ``target``."""
    images = sorted((source / "images").iterdir())[::every][:count]
    masks = {path.stem: path for path in (source / "masks").iterdir()}
    (target / "images").mkdir(parents=True)
    (target / "masks").mkdir(parents=True)
    for image in images:
        shutil.copy(image, target / "images" / image.name)
        shutil.copy(masks[image.stem], target / "masks" / masks[image.stem].name)
    return target
