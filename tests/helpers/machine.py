"""What a test needs from the machine: the real datasets beside the checkout, chromium, PostgreSQL.

Each is asked for through :func:`missing`: outside CI a missing piece skips the test with the
reason; with ``CI=true`` it fails the run, so CI can never go green by skipping silently.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import NoReturn

import pytest

REPO = Path(__file__).resolve().parents[2]
SHARED_DATASETS = REPO.parent / "shared" / "datasets"
POSTGRES_URL = os.environ.get("SEGTUNE_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
CHROMIUM = Path("/usr/bin/chromium")


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
