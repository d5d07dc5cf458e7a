"""Shared, cached handles for the pages: settings, storage, artifact store, and short-TTL reads.

Resources (``st.cache_resource``) are keyed by the environment values they come from, so tests
that point ``SEGTUNE_HOME`` at a temporary folder get a fresh workspace without clearing caches.
The study list goes through ``st.cache_data`` with a short TTL (DESIGN rule 7): a page rerun every
two seconds must not hit the database every time; a study's trials are read in ``app.study_cache``.
Dataset names are listed afresh (one directory listing); their manifests are cached until the
``dataset.json`` changes. Writers call ``clear_reads``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import optuna
import streamlit as st

from core.data.manifest import MANIFEST_FILE, DatasetManifest, dataset_names, load_manifest
from core.runtime.storage import open_artifact_store, open_storage
from core.settings import Settings, load_settings

if TYPE_CHECKING:
    from optuna.artifacts import FileSystemArtifactStore

READ_TTL_S = 3  # how stale a trial table or study list may be: shorter than the Jobs refresh
ENV_KEYS = ("SEGTUNE_HOME", "SEGTUNE_DB", "SEGTUNE_ARTIFACTS", "SEGTUNE_IMPORT_ROOTS", "SEGTUNE_MAX_VOLUME_MB")


def settings() -> Settings:
    """The workspace of this server process (from SEGTUNE_HOME / SEGTUNE_DB / SEGTUNE_ARTIFACTS / SEGTUNE_IMPORT_ROOTS /
    SEGTUNE_MAX_VOLUME_MB)."""
    return _settings_for(tuple(os.environ.get(key, "") for key in ENV_KEYS))


@st.cache_resource(show_spinner=False)
def _settings_for(env_values: tuple[str, ...]) -> Settings:
    return load_settings({key: value for key, value in zip(ENV_KEYS, env_values) if value})


def storage() -> optuna.storages.RDBStorage:
    return _storage_for(settings().db_url)


@st.cache_resource(show_spinner=False)
def _storage_for(db_url: str) -> optuna.storages.RDBStorage:
    return open_storage(db_url)


def artifact_store() -> FileSystemArtifactStore:
    return _artifact_store_for(str(settings().artifacts_dir))


@st.cache_resource(show_spinner=False)
def _artifact_store_for(artifacts_dir: str) -> FileSystemArtifactStore:
    return open_artifact_store(_settings_with_artifacts(artifacts_dir))


def _settings_with_artifacts(artifacts_dir: str) -> Settings:
    current = settings()
    return Settings(home=current.home, db_url=current.db_url, artifacts_dir=Path(artifacts_dir))


# --- short-lived reads --------------------------------------------------------------------------


def study_names() -> list[str]:
    """Names of every study in the DB, newest first."""
    return _study_names(settings().db_url)


@st.cache_data(ttl=READ_TTL_S, show_spinner=False)
def _study_names(db_url: str) -> list[str]:
    studies = _storage_for(db_url).get_all_studies()
    # Optuna exposes creation order only through the study id.
    return [study.study_name for study in sorted(studies, key=lambda s: s._study_id, reverse=True)]


def datasets() -> list[str]:
    """Names of the stored datasets, listed afresh: one folder listing, never stale after an ingest."""
    return dataset_names(settings().datasets_dir)


def manifest(name: str) -> DatasetManifest:
    """A dataset's manifest, re-read only when its ``dataset.json`` changes."""
    path = settings().datasets_dir / name / MANIFEST_FILE
    stamp = path.stat().st_mtime_ns if path.is_file() else 0
    return _manifest(str(settings().datasets_dir), name, stamp)


@st.cache_data(max_entries=32, show_spinner=False)
def _manifest(datasets_dir: str, name: str, stamp: int) -> DatasetManifest:
    return load_manifest(Path(datasets_dir), name)


def clear_reads() -> None:
    """Forget cached reads after a write (new dataset, new job, deleted study)."""
    _study_names.clear()
    _manifest.clear()
