"""Cached reads of one study for the result pages (DESIGN rule 7), over ``core.results``.

Each study is opened once per server (``st.cache_resource``) with an incremental trial cache
(:class:`core.results.trial_cache.TrialCache`: finished trials are read once; new, running and
waiting ones are re-read) and the leaderboard frame built on it (:class:`FrameCache`: a finished
trial's row is built once), so a 1,000-trial study is tabulated once and then costs milliseconds
per change. Other derived results (curves, previews, figures) are ``st.cache_data`` entries keyed
by the study's :class:`Stamp` — trial count, finished count and, only while trials run, a
few-second time bucket.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, NamedTuple

import optuna
import streamlit as st

from app import cache, state
from app.nav import page_path
from core.contract import StudyAttr, Task
from core.deploy import model_card as cards
from core.errors import SegTuneError
from core.results import curves, reliability
from core.results import insights as insight_figures
from core.results import predictions as label_predictions
from core.results import previews as preview_sets
from core.results import trials as trial_reads
from core.results.trial_cache import FrameCache, LatestResult, TrialCache
from core.runtime import budget
from core.runtime.job_model import ACTIVE_STATES
from core.runtime.job_table import list_jobs

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd
    from optuna.trial import FrozenTrial


LIVE_TTL_S = cache.READ_TTL_S  # how stale a running study's results may be
IDLE_TTL_S = 600  # a finished study only changes when trials are added: its stamp says when
REFRESH_S = 5.0  # how often a live result view redraws while its study runs
STAMP_MAX_AGE_S = 1.0  # one page run asks for the stamp several times: read the storage once
BUNDLE_CHECK_TTL_S = 60  # how long "this trial's weights are readable" is trusted before a re-check
VARIANTS_TTL_S = 3  # a trial's variant list is a study attribute, written by background compression tasks


class Stamp(NamedTuple):
    """What a study's results depend on; a new stamp means new results (a tuple: hashable)."""

    n_trials: int
    n_finished: int
    live_bucket: int  # time // LIVE_TTL_S while a trial runs or waits, else 0


def study(name: str) -> optuna.Study:
    """The named study, opened once per server and database."""
    settings = cache.settings()
    storage = cache.storage()
    try:
        study_id = storage.get_study_id_from_name(name)
    except KeyError as exc:
        raise SegTuneError(f"no study named {name!r} in {settings.db_url}; pick one in the sidebar") from exc
    return _open(settings.db_url, name, study_id)


@st.cache_resource(show_spinner=False, max_entries=16)
def _open(db_url: str, name: str, study_id: int) -> optuna.Study:
    # study_id in the key: a study deleted and re-created under the same name is a new study.
    return optuna.load_study(study_name=name, storage=cache.storage())


def is_live(name: str) -> bool:
    """True while the study may change: a trial runs or waits, or a job of the study is active.

    The job matters between trials, when every trial is finished but the next is about to start.
    """
    return stamp(name).live_bucket != 0 or name in _active_studies(cache.settings().db_url)


def show_live(view: Callable[[str, bool], None], name: str, what: str) -> None:
    """Render ``view(name, live)``; while the study runs, as a fragment that redraws every REFRESH_S."""
    live = is_live(name)
    if live:
        st.caption(f":material/autorenew: The study is running: {what} every {REFRESH_S:.0f} s.")
    st.fragment(run_every=REFRESH_S if live else None)(view)(name, live)


@st.cache_data(ttl=LIVE_TTL_S, show_spinner=False)
def _active_studies(db_url: str) -> frozenset[str]:
    return frozenset(job.study_name for job in list_jobs(cache.settings(), ACTIVE_STATES))


def rearm_if_changed(name: str, drawn_live: bool) -> None:
    """From inside a live view: rerun the page when the study started or stopped running, so the
    view's ``run_every`` is set again (a fragment cannot change its own interval)."""
    if is_live(name) != drawn_live:
        st.rerun()


def stamp(name: str) -> Stamp:
    trials = _results(name).trials
    trials.refresh(max_age_s=STAMP_MAX_AGE_S)
    live = trials.n_finished < trials.n_trials
    return Stamp(trials.n_trials, trials.n_finished, int(time.time() // LIVE_TTL_S) if live else 0)


def _results(name: str) -> FrameCache:
    """The study's incremental trial and frame caches, kept for the server's life."""
    current = study(name)
    return _frame_cache(cache.settings().db_url, name, current._study_id, id(current._storage), current)


@st.cache_resource(show_spinner=False, max_entries=16)
def _frame_cache(db_url: str, name: str, study_id: int, storage_id: int, _current: optuna.Study) -> FrameCache:
    # Over the study's own storage (Optuna's cached RDB storage, or whatever the study was opened with).
    return FrameCache(
        TrialCache(_current._storage, study_id),
        _current.directions,
        trial_reads.objective_names(_current),
        reliability.study_task(_current),
    )


def require_study() -> str:
    """The study the sidebar picked; otherwise an empty state that says what to do, and stop."""
    name = state.STUDY.get()
    if name and name in cache.study_names():
        return name
    st.info(
        "No study yet — create a dataset on **Datasets**, then start a study on **New study**.",
        icon=":material/science:",
    )
    st.page_link(page_path("new_study.py"), label="Start a study", icon=":material/tune:")
    st.stop()
    raise AssertionError("unreachable: st.stop() ends the script")


# --- cached results --------------------------------------------------------------------------


def trials_frame(name: str) -> pd.DataFrame:
    """The leaderboard frame: built once, then only the rows of new or changed trials."""
    return _results(name).frame(max_age_s=STAMP_MAX_AGE_S)


def baselines(name: str) -> pd.DataFrame:
    """The study's reference rows (constant predictors); empty for studies made before them."""
    return _baselines(cache.settings().db_url, name, stamp(name))


@st.cache_data(ttl=IDLE_TTL_S, max_entries=8, show_spinner=False)
def _baselines(db_url: str, name: str, version: Stamp) -> pd.DataFrame:
    return reliability.baseline_frame(study(name))


def runner_up(name: str) -> reliability.RunnerUp | None:
    """The best trial against the runner-up (paired bootstrap), or None."""
    return _runner_up(cache.settings().db_url, name, stamp(name))


@st.cache_data(ttl=IDLE_TTL_S, max_entries=8, show_spinner=False)
def _runner_up(db_url: str, name: str, version: Stamp) -> reliability.RunnerUp | None:
    return reliability.best_vs_runner_up(study(name), trials_frame(name))


def trial_counts(name: str) -> budget.TrialCounts:
    """Trials against the budget, counted as the jobs count them (``core.runtime.budget.trial_counts``)."""
    return _trial_counts(cache.settings().db_url, name, stamp(name))


@st.cache_data(ttl=IDLE_TTL_S, max_entries=8, show_spinner=False)
def _trial_counts(db_url: str, name: str, version: Stamp) -> budget.TrialCounts:
    return budget.trial_counts(study(name))


def task(name: str) -> Task:
    """The study's task (segmentation or classification), from its stored spec."""
    return reliability.study_task(study(name))


def preview_stems(name: str) -> list[str]:
    """The validation images whose predictions a study keeps as previews (and compressed variants are run on)."""
    return list(study(name).user_attrs.get(StudyAttr.PREVIEW_STEMS) or [])


def objective_names(name: str) -> list[str]:
    return trial_reads.objective_names(study(name))


def trials(name: str, numbers: tuple[int, ...]) -> list[FrozenTrial]:
    """The given trials (in order), whole (histories included), from the study's incremental trial cache."""
    results = _results(name).trials
    results.refresh(max_age_s=STAMP_MAX_AGE_S)
    return results.full_trials(numbers)  # with their curves: the leaderboard's summaries leave them out


def learning_curves(name: str, numbers: tuple[int, ...], metric: str, each_fold: bool = False) -> pd.DataFrame:
    return _learning_curves(cache.settings().db_url, name, stamp(name), numbers, metric, each_fold)


@st.cache_data(ttl=IDLE_TTL_S, max_entries=32, show_spinner=False)
def _learning_curves(
    db_url: str, name: str, version: Stamp, numbers: tuple[int, ...], metric: str, each_fold: bool
) -> pd.DataFrame:
    return curves.learning_curves(trials(name, numbers), metric, each_fold=each_fold)


def previews(name: str, numbers: tuple[int, ...]) -> preview_sets.PreviewSet:
    # Previews of a trial never change once stored: only finishing trials can add some.
    return _previews(cache.settings().db_url, name, stamp(name).n_finished, numbers)


@st.cache_data(ttl=IDLE_TTL_S, max_entries=16, show_spinner="Loading preview masks…")
def _previews(db_url: str, name: str, n_finished: int, numbers: tuple[int, ...]) -> preview_sets.PreviewSet:
    return preview_sets.load_previews(study(name), numbers, cache.artifact_store())


def prediction_comparison(name: str, numbers: tuple[int, ...]) -> label_predictions.PredictionComparison:
    """A classification study's validation predictions of the given trials, aligned by image."""
    # Predictions of a trial never change once stored: only finishing trials can add some.
    return _prediction_comparison(cache.settings().db_url, name, stamp(name).n_finished, numbers)


@st.cache_data(ttl=IDLE_TTL_S, max_entries=16, show_spinner="Loading the predictions…")
def _prediction_comparison(
    db_url: str, name: str, n_finished: int, numbers: tuple[int, ...]
) -> label_predictions.PredictionComparison:
    return label_predictions.compare_predictions(study(name), numbers, cache.artifact_store())


def confusion_matrix(name: str, number: int) -> np.ndarray:
    """Trial ``number``'s stored validation confusion matrix (rows = true class, columns = predicted)."""
    return _confusion_matrix(cache.settings().db_url, name, stamp(name).n_finished, number)


@st.cache_data(ttl=IDLE_TTL_S, max_entries=64, show_spinner=False)
def _confusion_matrix(db_url: str, name: str, n_finished: int, number: int) -> np.ndarray:
    return label_predictions.confusion_matrix(study(name), number)


def prediction_images(name: str, stems: tuple[str, ...]) -> np.ndarray:
    """The study's images of ``stems`` (uint8 N, C, S, S) at its image size, for thumbnails."""
    return _prediction_images(cache.settings().db_url, name, stems)


@st.cache_data(ttl=IDLE_TTL_S, max_entries=32, show_spinner="Loading the images…")
def _prediction_images(db_url: str, name: str, stems: tuple[str, ...]) -> np.ndarray:
    return label_predictions.prediction_images(cache.settings(), study(name), stems)


def insights(name: str, objective: int) -> tuple[dict[str, insight_figures.Insight], bool]:
    """Insights figures and whether newer ones are being drawn.

    Drawn once per change of the finished trials, in a background thread: while new figures are
    drawn the page keeps showing the last ones (``True``); only the very first drawing is waited for.
    """
    current = study(name)
    worker = _insights_worker(cache.settings().db_url, name, objective, id(current._storage))
    return worker.get(stamp(name).n_finished, lambda: insight_figures.insight_figures(current, objective))


@st.cache_resource(show_spinner=False, max_entries=8)
def _insights_worker(db_url: str, name: str, objective: int, storage_id: int) -> LatestResult:
    return LatestResult()


def model_card(name: str, number: int) -> str:
    return _model_card(cache.settings().db_url, name, stamp(name).n_finished, number)


@st.cache_data(ttl=IDLE_TTL_S, max_entries=32, show_spinner=False)
def _model_card(db_url: str, name: str, n_finished: int, number: int) -> str:
    current = study(name)
    return cards.model_card(current, trial_reads.get_trial(current, number))


def bundle_problem(name: str, number: int) -> str | None:
    """Why trial ``number`` cannot be downloaded (checked before the button is drawn), else None."""
    return _bundle_problem(cache.settings().db_url, name, stamp(name).n_finished, number)


@st.cache_data(ttl=BUNDLE_CHECK_TTL_S, max_entries=64, show_spinner=False)
def _bundle_problem(db_url: str, name: str, n_finished: int, number: int) -> str | None:
    return cards.bundle_problem(trial_reads.get_trial(study(name), number), cache.artifact_store())


def bundle_zip(name: str, number: int) -> bytes:
    """Read at download time only (weights can be large): never cached, never on a rerun."""
    from core.deploy.export import bundle_zip as zip_bundle  # torch: only a download needs it

    current = study(name)
    return zip_bundle(current, trial_reads.get_trial(current, number), cache.artifact_store())


# --- compressed variants (Compress & deploy, Compare masks) ------------------------------------------


def variant_records(name: str, number: int) -> list[dict]:
    """Trial ``number``'s stored variants (a study attribute: re-read every few seconds)."""
    return _variant_records(cache.settings().db_url, name, number)


@st.cache_data(ttl=VARIANTS_TTL_S, show_spinner=False)
def _variant_records(db_url: str, name: str, number: int) -> list[dict]:
    from core.deploy.compression.variants import list_variants

    return list_variants(study(name), number)


def forget_variant_records() -> None:
    """After a compression task ends: its new variant shows at once."""
    _variant_records.clear()


def variant_masks(name: str, number: int, index: int) -> np.ndarray:
    """Variant ``index`` of trial ``number``: its masks of the preview images, in the previews' order."""
    return _variant_masks(cache.settings().db_url, name, number, index)


@st.cache_data(max_entries=16, show_spinner="Running the variant on the preview images…")
def _variant_masks(db_url: str, name: str, number: int, index: int) -> np.ndarray:
    # a stored variant never changes: (study, trial, index) names it for good
    from core.deploy.compression.variants import variant_predictions  # torch: only when variant masks are drawn

    return variant_predictions(study(name), number, index, cache.artifact_store())
