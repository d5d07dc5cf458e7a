"""The real CLI (``python -m core ...``) in a subprocess, in a workspace of its own."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.helpers.machine import REPO


def cli(env: dict[str, str], *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "core", *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout
    )


def cli_env(folder: Path) -> dict[str, str]:
    """This process's environment with a workspace in ``folder`` whose artifacts live outside
    SEGTUNE_HOME (SEGTUNE_ARTIFACTS), and heartbeats fast enough for a test."""
    variables = {k: v for k, v in os.environ.items() if not k.startswith("SEGTUNE_")}
    variables.update(
        SEGTUNE_HOME=str(folder / "home"),
        SEGTUNE_ARTIFACTS=str(folder / "shared-artifacts"),
        SEGTUNE_HEARTBEAT_S="1",
        SEGTUNE_GRACE_S="4",
    )
    return variables
