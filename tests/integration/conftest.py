"""The CLI tests' workspace: an environment for ``python -m core`` subprocesses."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers.cli import cli_env


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """A workspace whose artifacts live outside SEGTUNE_HOME (SEGTUNE_ARTIFACTS)."""
    return cli_env(tmp_path)
