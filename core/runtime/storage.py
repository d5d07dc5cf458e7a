"""Open the places results live: Optuna's RDB storage and the artifact store.

One DB URL (SQLite by default, PostgreSQL to scale out) holds Optuna's tables and SegTune's own
small tables; artifacts (weights, previews) go through ``optuna.artifacts``. Both are opened here
and passed into everything else, so tests can hand in temporary ones.
"""

from __future__ import annotations

import threading
import warnings
from typing import TYPE_CHECKING

import optuna
import sqlalchemy
from optuna.artifacts import FileSystemArtifactStore

from core.settings import Heartbeats

if TYPE_CHECKING:
    from core.settings import Settings

SQLITE_BUSY_TIMEOUT_S = 60  # several local workers write to one file: wait, don't fail

_lock = threading.Lock()
_storages: dict[str, optuna.storages.RDBStorage] = {}
_engines: dict[str, sqlalchemy.Engine] = {}


def is_sqlite(db_url: str) -> bool:
    return db_url.startswith("sqlite")


def normalise_db_url(db_url: str) -> str:
    """``postgresql://`` means the psycopg2 driver SegTune ships (SQLAlchemy 2.1 would pick psycopg 3)."""
    if db_url.startswith("postgresql://") or db_url.startswith("postgres://"):
        return "postgresql+psycopg2://" + db_url.split("://", 1)[1]
    return db_url


def _engine_kwargs(db_url: str) -> dict:
    if is_sqlite(db_url):
        return {"connect_args": {"timeout": SQLITE_BUSY_TIMEOUT_S}}
    return {"pool_pre_ping": True}


def _enable_sqlite_wal(engine: sqlalchemy.Engine) -> None:
    # WAL lets readers (the dashboard) run while a worker writes; set once, it persists in the file.
    with engine.connect() as connection:
        connection.exec_driver_sql("PRAGMA journal_mode=WAL")


def engine_for(db_url: str) -> sqlalchemy.Engine:
    """One SQLAlchemy engine per URL and process, for SegTune's own tables."""
    db_url = normalise_db_url(db_url)
    with _lock:
        if db_url not in _engines:
            engine = sqlalchemy.create_engine(db_url, **_engine_kwargs(db_url))
            if is_sqlite(db_url):
                _enable_sqlite_wal(engine)
            _engines[db_url] = engine
        return _engines[db_url]


def open_storage(db_url: str, heartbeats: Heartbeats = Heartbeats()) -> optuna.storages.RDBStorage:
    """Optuna RDB storage with heartbeats, so a killed worker's trial is failed and retried.

    One storage per URL and process: the first caller's ``heartbeats`` (a worker passes its settings') hold.
    """
    db_url = normalise_db_url(db_url)
    with _lock, warnings.catch_warnings():
        # Heartbeats are marked experimental in Optuna; they are what makes killed workers recoverable.
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        if db_url not in _storages:
            _storages[db_url] = optuna.storages.RDBStorage(
                db_url,
                engine_kwargs=_engine_kwargs(db_url),
                heartbeat_interval=heartbeats.interval_s,
                grace_period=heartbeats.grace_s,
                heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=1),
            )
    if is_sqlite(db_url):
        engine_for(db_url)  # switches the file to WAL
    return _storages[db_url]


def open_artifact_store(settings: Settings) -> FileSystemArtifactStore:
    """The file artifact store in the workspace (a shared folder when scaled out)."""
    settings.artifacts_dir.mkdir(parents=True, exist_ok=True)
    return FileSystemArtifactStore(str(settings.artifacts_dir))
