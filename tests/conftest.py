"""Shared fixtures: a temporary workspace, the real datasets beside the checkout, PostgreSQL.

What a test needs from the machine (../shared/datasets, chromium + playwright, a PostgreSQL
server) is asked for through :func:`missing`: outside CI a missing piece skips the test with the
reason; with ``CI=true`` it fails the run, so CI can never go green by skipping silently.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NoReturn

import pytest
import torch

from core.settings import Settings, load_settings

REPO = Path(__file__).resolve().parents[1]
SHARED_DATASETS = REPO.parent / "shared" / "datasets"
POSTGRES_URL = os.environ.get("SEGTUNE_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
CHROMIUM = Path("/usr/bin/chromium")
# One torch thread in every test: a trained model's last digits depend on the thread count, enough to
# move a small model's score, so a test's outcome would otherwise depend on the machine's cores.
TORCH_THREADS = 1


def in_ci() -> bool:
    """True under CI (``CI=true``, as GitHub Actions, GitLab CI and most runners set it)."""
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def missing(reason: str) -> NoReturn:
    """Skip with ``reason`` on a developer's machine; fail the run in CI, where nothing may be missing."""
    if in_ci():
        pytest.fail(f"{reason} -- CI=true, so this is a failure, not a skip", pytrace=False)
    pytest.skip(reason, allow_module_level=True)


def shared_path(*parts: str) -> Path:
    """A folder of ../shared/datasets, or :func:`missing` when this machine does not have it."""
    path = SHARED_DATASETS.joinpath(*parts)
    if not path.is_dir():
        missing(f"{path} is not on this machine (the real datasets live in ../shared/datasets)")
    return path


@pytest.fixture(autouse=True)
def _torch_threads() -> None:
    """Every test starts on ``TORCH_THREADS``, whatever the tests before it set (the bench tests run
    the scripts' main(), which sets the count)."""
    torch.set_num_threads(TORCH_THREADS)


@pytest.fixture
def workspace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """A fresh SEGTUNE_HOME with its own SQLite DB and artifact folder."""
    home = tmp_path / "segtune-home"
    monkeypatch.setenv("SEGTUNE_HOME", str(home))
    monkeypatch.delenv("SEGTUNE_DB", raising=False)
    monkeypatch.delenv("SEGTUNE_ARTIFACTS", raising=False)
    monkeypatch.delenv("SEGTUNE_IMPORT_ROOTS", raising=False)
    monkeypatch.delenv("SEGTUNE_MAX_VOLUME_MB", raising=False)
    return load_settings()


def shared_dataset(name: str) -> Path:
    """A dataset from ../shared/datasets (see :func:`shared_path`)."""
    return shared_path(name)


def require_chromium() -> Path:
    if not CHROMIUM.is_file():
        missing(f"Debian chromium is not installed at {CHROMIUM} (apt-get install -y chromium)")
    return CHROMIUM


def postgres_database() -> Iterator[str]:
    """A fresh database on the test server (dropped afterwards), as a SQLAlchemy URL with psycopg2."""
    import psycopg2
    import sqlalchemy as sa

    try:
        admin = psycopg2.connect(POSTGRES_URL, connect_timeout=3)
    except psycopg2.OperationalError as exc:
        missing(
            f"no PostgreSQL answers at {POSTGRES_URL} ({str(exc).strip()}); start one or set SEGTUNE_TEST_POSTGRES_URL"
        )
    admin.autocommit = True
    name = f"segtune_test_{uuid.uuid4().hex[:12]}"
    with admin.cursor() as cursor:
        cursor.execute(f'CREATE DATABASE "{name}"')
    try:
        # SQLAlchemy 2.1 maps plain postgresql:// to psycopg 3; the project ships psycopg2.
        url = sa.engine.make_url(POSTGRES_URL).set(drivername="postgresql+psycopg2", database=name)
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.cursor() as cursor:
            cursor.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


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


def tiny_study(
    settings: Settings, name: str, *, dataset: str = "demo-cells", trials: int = 1, previews: int = 3, lr: object = 3e-3
):
    """A real, fast study (tiny ClassicUNet, 64 px, 2 epochs) on ``dataset``; the demo cells are
    created when that dataset is asked for and missing."""
    from core.data.demo import create_demo_dataset
    from core.data.manifest import dataset_names
    from core.runtime.tuning import run_study
    from core.search.validation import spec_from_dict

    if dataset == "demo-cells" and dataset not in dataset_names(settings.datasets_dir):
        create_demo_dataset(settings.datasets_dir, count=24, size=64)
    spec = spec_from_dict(
        {
            "name": name,
            "dataset": dataset,
            "image_size": 64,
            "sampler": "random",
            "pruner": "none",
            "budget": {"n_trials": trials, "max_epochs": 2},
            "preview_count": previews,
            "search_space": {
                "architecture": "ClassicUNet",
                "unet_start_filters": 4,
                "unet_depth": 2,
                "batch_size": 8,
                "epochs": 2,
                "lr": lr,
            },
        }
    )
    return run_study(spec, settings, device="cpu")


@contextmanager
def module_workspace(folder: Path) -> Iterator[Settings]:
    """Like the ``workspace`` fixture, for module- or session-scoped fixtures (no monkeypatch there)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SEGTUNE_HOME", str(folder))
        for name in ("SEGTUNE_DB", "SEGTUNE_ARTIFACTS", "SEGTUNE_PASSWORD", "SEGTUNE_IMPORT_ROOTS"):
            patch.delenv(name, raising=False)
        yield load_settings()
