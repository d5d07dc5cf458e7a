"""Open the places results live: Optuna's RDB storage and the artifact store.

One DB URL (SQLite by default, PostgreSQL to scale out) holds Optuna's tables and SegTune's own
small tables; artifacts (weights, previews) go through ``optuna.artifacts``. Both are opened here
and passed into everything else, so tests can hand in temporary ones.
"""

from __future__ import annotations

import copy
import threading
import warnings
from typing import TYPE_CHECKING

import optuna
import sqlalchemy
from optuna.artifacts import FileSystemArtifactStore
from optuna.trial import TrialState

from core.contract import TrialAttr
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
                heartbeat_stale_trial_callback=_retry_once(),
            )
    if is_sqlite(db_url):
        engine_for(db_url)  # switches the file to WAL
    return _storages[db_url]


def _retry_once() -> optuna.storages.RetryHeartbeatStaleTrialCallback:
    """Optuna's stale-trial callback: the failed trial runs again once, with the same params."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=1)


def stale_trial_message(heartbeats: Heartbeats) -> str:
    """The ``error`` of a trial whose process stopped heart-beating."""
    return (
        f"the worker running this trial stopped sending heartbeats for over {heartbeats.grace_s} s "
        "(killed, crashed or its machine went down); the trial is run again with the same parameters"
    )


def fail_stale_trials(study: optuna.Study, storage: optuna.storages.BaseStorage, heartbeats: Heartbeats) -> list[int]:
    """Fail the study's trials whose process stopped heart-beating, each with an ``error`` saying so,
    and run each again once (the storage's stale-trial callback). Returns the failed trials' numbers.

    Optuna's own ``optuna.storages.fail_stale_trials`` sets the state first, after which its API
    refuses the trial's attrs; here the ``error`` is written while the trial still runs, then the
    state, both through the public storage API. ``study.optimize`` still fails stale trials itself
    before each trial (then they are retried without an ``error``), so run_study calls this first.
    """
    if not isinstance(storage, optuna.storages.RDBStorage) or storage.get_heartbeat_interval() is None:
        return []
    message = stale_trial_message(heartbeats)
    failed = []
    # The one call outside Optuna's public API, and a read: which trials are stale is exposed only on
    # its heartbeat protocol. tests/test_stale_trials.py holds it to the pinned Optuna.
    for trial_id in storage._get_stale_trial_ids(storage.get_study_id_from_name(study.study_name)):
        try:
            storage.set_trial_user_attr(trial_id, TrialAttr.ERROR, message)
            if storage.set_trial_state_values(trial_id, TrialState.FAIL):
                failed.append(storage.get_trial(trial_id))
        except optuna.exceptions.UpdateFinishedTrialError:
            continue  # another process failed it first, or its own process finished it meanwhile
    retry = storage.get_heartbeat_stale_trial_callback()
    for trial in failed:
        if retry is not None:
            retry(study, _without_error(trial))
    return [trial.number for trial in failed]


def _without_error(trial: optuna.trial.FrozenTrial) -> optuna.trial.FrozenTrial:
    """The trial as its retry copies it: Optuna's retry takes over the user attrs, and it starts clean."""
    clean = copy.deepcopy(trial)
    clean.user_attrs = {key: value for key, value in trial.user_attrs.items() if key != TrialAttr.ERROR}
    return clean


def open_artifact_store(settings: Settings) -> FileSystemArtifactStore:
    """The file artifact store in the workspace (a shared folder when scaled out)."""
    settings.artifacts_dir.mkdir(parents=True, exist_ok=True)
    return FileSystemArtifactStore(str(settings.artifacts_dir))
