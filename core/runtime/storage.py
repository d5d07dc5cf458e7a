"""Open the places results live: Optuna's RDB storage and the artifact store.

One DB URL (SQLite by default, PostgreSQL to scale out) holds Optuna's tables and SegTune's own
small tables; artifacts (weights, previews) go through ``optuna.artifacts``. Both are opened here
and passed into everything else, so tests can hand in temporary ones.
"""

from __future__ import annotations

import json
import logging
import threading
import warnings
from typing import TYPE_CHECKING

import optuna
import sqlalchemy
from optuna.artifacts import FileSystemArtifactStore

from core.contract import TrialAttr
from core.settings import Heartbeats

if TYPE_CHECKING:
    from core.settings import Settings

log = logging.getLogger("segtune.storage")
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
                heartbeat_stale_trial_callback=RetryStaleTrial(heartbeats),
            )
    if is_sqlite(db_url):
        engine_for(db_url)  # switches the file to WAL
    return _storages[db_url]


class RetryStaleTrial:
    """Optuna's ``RetryHeartbeatStaleTrialCallback`` (one retry with the same params), and the failed
    trial gets an ``error`` user attr saying why, as every failed trial does.

    Optuna calls it after the trial is FAIL, when its attrs can no longer be set through the storage
    API (``UpdateFinishedTrialError``), so the attr row is written through the RDB storage's own
    session and models; tests/test_stale_trials.py holds this to the pinned Optuna.
    """

    def __init__(self, heartbeats: Heartbeats | None = None, max_retry: int = 1) -> None:
        heartbeats = heartbeats or Heartbeats()
        self.message = (
            f"the worker running this trial stopped sending heartbeats for over {heartbeats.grace_s} s "
            "(killed, crashed or its machine went down); the trial is run again with the same parameters"
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            self._retry = optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=max_retry)

    def __call__(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        try:
            _write_user_attr(study, trial._trial_id, TrialAttr.ERROR, self.message)
        except Exception:  # the retry matters more than the note
            log.exception("could not record why trial %d failed", trial.number)
        self._retry(study, trial)


def _write_user_attr(study: optuna.Study, trial_id: int, key: str, value: object) -> None:
    """Set a user attr of a finished trial, which the public storage API refuses."""
    from optuna.storages._rdb import models
    from optuna.storages._rdb.storage import _create_scoped_session

    storage = getattr(study._storage, "_backend", study._storage)  # under Optuna's _CachedStorage
    with _create_scoped_session(storage.scoped_session) as session:
        row = session.query(models.TrialUserAttributeModel).filter_by(trial_id=trial_id, key=key).one_or_none()
        if row is None:
            session.add(models.TrialUserAttributeModel(trial_id=trial_id, key=key, value_json=json.dumps(value)))
        else:
            row.value_json = json.dumps(value)


def open_artifact_store(settings: Settings) -> FileSystemArtifactStore:
    """The file artifact store in the workspace (a shared folder when scaled out)."""
    settings.artifacts_dir.mkdir(parents=True, exist_ok=True)
    return FileSystemArtifactStore(str(settings.artifacts_dir))
