"""Start a study from an earlier one: warm start (seed its top-k configurations) or narrow around its best.

The pure parts are :mod:`core.search.warm_start`'s; this module opens the studies by name in the
workspace's storage, for the CLI (``submit --warm-start`` / ``--narrow``) and the New study page.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from core.contract import StudyAttr
from core.runtime.storage import open_storage
from core.runtime.tuning import load_study, prepare_study
from core.search.warm_start import check_same_dataset, link_narrowed, narrowed_from, warm_start

if TYPE_CHECKING:
    from core.search.spec import StudySpec
    from core.settings import Settings

DEFAULT_TOP_K = 5


def seed_from_study(settings: Settings, spec: StudySpec, source_name: str, top_k: int = DEFAULT_TOP_K) -> int:
    """Create ``spec``'s study (idempotent) and queue the top-k configurations of ``source_name``."""
    source, _ = load_study(source_name, open_storage(settings.db_url, settings.heartbeats))
    check_same_dataset(source, spec)  # before anything is created
    return warm_start(prepare_study(spec, settings), spec, source, top_k)


def narrowed_spec(
    settings: Settings, source_name: str, top_k: int = DEFAULT_TOP_K, name: str | None = None
) -> StudySpec:
    """The spec of a study narrowed around the best trials of ``source_name``."""
    source, spec = load_study(source_name, open_storage(settings.db_url, settings.heartbeats))
    return narrowed_from(source, spec, top_k, name=name)


def link_to_source(settings: Settings, spec: StudySpec, source_name: str, top_k: int = DEFAULT_TOP_K) -> None:
    """Create the narrowed study (idempotent) and record which study it narrows."""
    source, _ = load_study(source_name, open_storage(settings.db_url, settings.heartbeats))
    link_narrowed(prepare_study(spec, settings), source, top_k)


def studies_on_dataset(settings: Settings, dataset: str) -> list[str]:
    """Names of the studies run on ``dataset`` (candidates to reuse), newest first."""
    storage = open_storage(settings.db_url, settings.heartbeats)
    studies = sorted(storage.get_all_studies(), key=lambda s: s._study_id, reverse=True)
    return [s.study_name for s in studies if s.user_attrs.get(StudyAttr.DATASET) == dataset]
