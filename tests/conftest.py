"""Fixtures only: a temporary workspace and one torch thread per test.

What tests share besides fixtures (builders, the machine's datasets, PostgreSQL, chromium) lives in
``tests/helpers``; nothing imports this file, so pytest loads it once.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from core.settings import Settings, load_settings

# One torch thread in every test: a trained model's last digits depend on the thread count, enough to
# move a small model's score, so a test's outcome would otherwise depend on the machine's cores.
TORCH_THREADS = 1


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
