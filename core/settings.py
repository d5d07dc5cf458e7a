"""Where SegTune keeps its state: workspace folder, database URL and artifact store.

Everything is read from the environment once, through :func:`load_settings`, and then passed
around as a :class:`Settings` value so tests can hand in temporary workspaces.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from core.errors import SegTuneError


@dataclass(frozen=True)
class Heartbeats:
    """How workers show they are alive; a trial whose worker is silent ``grace_s`` is failed and retried."""

    interval_s: int = 10  # SEGTUNE_HEARTBEAT_S
    grace_s: int = 60  # SEGTUNE_GRACE_S (default: 6 beats)

    @property
    def worker_stale_s(self) -> float:
        # Generous: a loaded machine may delay beats by seconds, and on the worker's own machine a
        # vanished pid tells at once anyway.
        return float(max(self.grace_s, 60))


@dataclass(frozen=True)
class Settings:
    """Paths and URLs of one SegTune workspace."""

    home: Path  # SEGTUNE_HOME: datasets, artifacts, logs and the default SQLite DB live here
    db_url: str  # SEGTUNE_DB: Optuna + SegTune tables (SQLite by default, PostgreSQL to scale out)
    artifacts_dir: Path  # SEGTUNE_ARTIFACTS: optuna.artifacts file store (a shared folder when scaled out)
    heartbeats: Heartbeats = Heartbeats()
    # SEGTUNE_IMPORT_ROOTS (os.pathsep-separated): the only server folders the dashboard may ingest
    # from ("Folder on the server"); empty = the workspace's imports/ folder. The CLI is not confined.
    import_roots: tuple[Path, ...] = ()
    # SEGTUNE_MAX_VOLUME_MB: the most memory one medical volume may take when ingested (checked on its
    # header before reading); None = IngestLimits' default (2 GiB). `ingest --max-volume-mb` overrides it.
    max_volume_mb: int | None = None

    @property
    def datasets_dir(self) -> Path:
        return self.home / "datasets"

    @property
    def imports_dir(self) -> Path:
        return self.home / "imports"

    @property
    def server_import_roots(self) -> tuple[Path, ...]:
        """The configured import roots, or the workspace's ``imports/`` folder; symlinks resolved."""
        return tuple(root.resolve() for root in (self.import_roots or (self.imports_dir,)))

    @property
    def logs_dir(self) -> Path:
        return self.home / "logs"

    def ensure_dirs(self) -> Settings:
        for folder in (self.home, self.datasets_dir, self.logs_dir, self.artifacts_dir, self.imports_dir):
            folder.mkdir(parents=True, exist_ok=True)
        return self


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Build :class:`Settings` from ``SEGTUNE_HOME``, ``SEGTUNE_DB``, ``SEGTUNE_ARTIFACTS``, the heartbeat
    timings, ``SEGTUNE_IMPORT_ROOTS`` and ``SEGTUNE_MAX_VOLUME_MB``."""
    env = os.environ if env is None else env
    home = Path(env.get("SEGTUNE_HOME") or Path.home() / ".segtune").expanduser().resolve()
    db_url = env.get("SEGTUNE_DB") or f"sqlite:///{home / 'segtune.db'}"
    artifacts = Path(env.get("SEGTUNE_ARTIFACTS") or home / "artifacts").expanduser().resolve()
    interval = int(env.get("SEGTUNE_HEARTBEAT_S") or Heartbeats.interval_s)
    grace = int(env.get("SEGTUNE_GRACE_S") or interval * 6)
    roots = tuple(
        Path(part).expanduser().resolve()
        for part in (env.get("SEGTUNE_IMPORT_ROOTS") or "").split(os.pathsep)
        if part.strip()
    )
    volume_mb = _positive_int(env, "SEGTUNE_MAX_VOLUME_MB")
    return Settings(
        home=home,
        db_url=db_url,
        artifacts_dir=artifacts,
        heartbeats=Heartbeats(interval, grace),
        import_roots=roots,
        max_volume_mb=volume_mb,
    ).ensure_dirs()


def _positive_int(env: Mapping[str, str], name: str) -> int | None:
    text = (env.get(name) or "").strip()
    if not text:
        return None
    if not text.isdigit() or int(text) == 0:
        raise SegTuneError(f"{name} must be a whole number above 0, got {text!r}")
    return int(text)
