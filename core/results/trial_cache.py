"""Incremental reads of a study's trials and of its leaderboard frame, for long-lived readers.

A finished trial never changes again (Optuna refuses updates to it), so :class:`TrialCache` reads
each finished trial once and afterwards re-reads only what can have changed: the trials that
were running or waiting at the last read, and trials created since — the idea of
optuna-dashboard's trial cache (``_storage.get_trials``, ``_cached_extra_study_property``) over
any Optuna storage. :class:`FrameCache` builds the leaderboard's row of a finished trial once
and appends new rows to the finished part of the frame, so a 1,000-trial study is tabulated
once, then costs a few milliseconds per change. Both are thread-safe (one per study and server).

Over an RDB storage the first read takes the finished trials as leaderboard summaries
(:func:`core.results.trial_summaries.read_summaries`: no per-epoch histories, no intermediate
values); :meth:`TrialCache.full_trials` reads the whole trial, once, when a page needs its curves.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from concurrent import futures

import optuna
import pandas as pd
from optuna.trial import FrozenTrial, TrialState

from core.contract import Task
from core.results.trial_summaries import rdb_engine, read_summaries
from core.results.trials import best_numbers_for, finish_frame, frame_columns, trial_row

UNFINISHED = (TrialState.RUNNING, TrialState.WAITING)


class TrialCache:
    """A study's trials, re-read incrementally from ``storage``: each finished trial is read once."""

    def __init__(
        self, storage: optuna.storages.BaseStorage, study_id: int, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.storage = storage
        self.study_id = study_id
        self.clock = clock
        self.version = 0  # goes up whenever a refresh saw a change
        self.trials_read = 0  # trials fetched from storage so far (what the cache saves is visible here)
        self._finished: dict[int, FrozenTrial] = {}
        self._unfinished: dict[int, FrozenTrial] = {}
        self._summaries: set[int] = set()  # numbers of finished trials held without their curves (read_summaries)
        self._loaded = False
        self._last_refresh = -float("inf")
        self._lock = threading.Lock()

    def refresh(self, max_age_s: float = 0.0) -> bool:
        """Bring the cache up to date (unless it was refreshed less than ``max_age_s`` ago); True if anything
        changed."""
        with self._lock:
            if self.clock() - self._last_refresh < max_age_s:
                return False
            changed = self._read_changes() if self._loaded else self._read_all()
            self._loaded = True
            self._last_refresh = self.clock()
            if changed:
                self.version += 1
            return changed

    def trials(self) -> list[FrozenTrial]:
        """Every trial, by number (refresh first for fresh ones)."""
        with self._lock:
            merged = {**self._finished, **self._unfinished}
        return [merged[number] for number in sorted(merged)]

    def full_trials(self, numbers: Sequence[int]) -> list[FrozenTrial]:
        """The given trials (in order; unknown numbers skipped) with everything stored: their curves
        and intermediate values too. A summary is replaced by the whole trial, read once."""
        with self._lock:
            for number in numbers:
                if number in self._summaries:
                    self._keep(self._read(self._finished[number]._trial_id))
                    self._summaries.discard(number)
            merged = {**self._finished, **self._unfinished}
        return [merged[number] for number in numbers if number in merged]

    @property
    def n_trials(self) -> int:
        return len(self._finished) + len(self._unfinished)

    @property
    def n_finished(self) -> int:
        return len(self._finished)

    def _read_all(self) -> bool:
        engine = rdb_engine(self.storage)
        if engine is None:
            trials = self.storage.get_all_trials(self.study_id, deepcopy=False)
        else:
            # Unfinished first: a trial that finishes in between is then read twice, never missed.
            trials = self.storage.get_all_trials(self.study_id, deepcopy=False, states=UNFINISHED)
            summaries = read_summaries(engine, self.study_id)
            self._summaries.update(trial.number for trial in summaries)
            trials += summaries
        self.trials_read += len(trials)
        for trial in trials:
            self._keep(trial)
        return True

    def _read_changes(self) -> bool:
        now_unfinished = {
            t.number: t for t in self.storage.get_all_trials(self.study_id, deepcopy=False, states=UNFINISHED)
        }
        self.trials_read += len(now_unfinished)
        changed = False
        for number, old in list(self._unfinished.items()):
            if number not in now_unfinished:  # it finished (or failed) since the last read
                self._keep(self._read(old._trial_id))
                changed = True
        for number, trial in now_unfinished.items():
            if self._unfinished.get(number) != trial:
                self._unfinished[number] = trial
                changed = True
        return self._read_new_finished() or changed

    def _read_new_finished(self) -> bool:
        """Trials created and finished between two reads: probe the numbers after the known ones."""
        changed = False
        number = self._next_unknown(0)
        while True:
            try:
                trial_id = self.storage.get_trial_id_from_study_id_trial_number(self.study_id, number)
            except KeyError:
                return changed
            self._keep(self._read(trial_id))
            changed = True
            number = self._next_unknown(number + 1)

    def _next_unknown(self, start: int) -> int:
        number = start
        while number in self._finished or number in self._unfinished:
            number += 1
        return number

    def _read(self, trial_id: int) -> FrozenTrial:
        self.trials_read += 1
        return self.storage.get_trial(trial_id)

    def _keep(self, trial: FrozenTrial) -> None:
        if trial.state.is_finished():
            self._finished[trial.number] = trial
            self._unfinished.pop(trial.number, None)
        else:
            self._unfinished[trial.number] = trial


class FrameCache:
    """The leaderboard frame of a :class:`TrialCache`'s study, rebuilt only for what changed."""

    def __init__(
        self,
        trials: TrialCache,
        directions: Sequence[optuna.study.StudyDirection],
        objective_names: list[str],
        task: Task = Task.SEGMENTATION,
    ) -> None:
        self.trials = trials
        self.directions = list(directions)
        self.names = objective_names
        self.task = task  # the study's (core.results.reliability.study_task): which metric columns the frame has
        self.rows_built = 0  # rows built so far (finished rows once each; unfinished on every change)
        self._finished_frame = pd.DataFrame()
        self._in_frame: set[int] = set()
        self._frame: pd.DataFrame | None = None
        self._frame_version = -1
        self._lock = threading.Lock()

    def frame(self, max_age_s: float = 0.0) -> pd.DataFrame:
        """The current frame (a copy: callers may change it)."""
        self.trials.refresh(max_age_s)
        with self._lock:
            if self._frame is None or self._frame_version != self.trials.version:
                self._frame_version = self.trials.version
                self._frame = self._build(self.trials.trials())
            return self._frame.copy()

    def _build(self, trials: list[FrozenTrial]) -> pd.DataFrame:
        new_finished = [t for t in trials if t.state.is_finished() and t.number not in self._in_frame]
        if new_finished:
            rows = pd.DataFrame([trial_row(t, self.names, False, self.task) for t in new_finished])
            self._finished_frame = (
                rows if self._finished_frame.empty else pd.concat([self._finished_frame, rows], ignore_index=True)
            )
            self._in_frame.update(t.number for t in new_finished)
            self.rows_built += len(new_finished)
        unfinished = [trial_row(t, self.names, False, self.task) for t in trials if not t.state.is_finished()]
        self.rows_built += len(unfinished)
        parts = [self._finished_frame] if not self._finished_frame.empty else []
        if unfinished:
            parts.append(pd.DataFrame(unfinished))
        frame = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()
        frame = frame.reindex(columns=frame_columns(trials, self.names, self.task))
        if not frame.empty:
            frame = frame.sort_values("number", kind="stable")
        best = set(best_numbers_for(self.directions, trials))
        frame["best"] = frame["number"].isin(best) if not frame.empty else pd.Series(dtype=bool)
        return finish_frame(frame, self.directions, self.names[0])


class LatestResult:
    """A result computed once per version, in a background thread, served stale meanwhile.

    ``get(version, compute)`` returns ``(value, updating)``: the value for ``version`` when it is
    ready; otherwise the last value while ``compute`` runs in a thread (``updating`` is True). Only
    the very first call waits. A failed computation is raised to the caller that asks next.
    """

    def __init__(self) -> None:
        self._executor = futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="segtune-results")
        self._lock = threading.Lock()
        self._value: object = None
        self._version: object = None
        self._pending: tuple[object, object] | None = None  # (version, future)

    def get(self, version: object, compute: Callable[[], object], *, wait: bool = False) -> tuple[object, bool]:
        with self._lock:
            if self._version == version and self._pending is None:
                return self._value, False
            if self._pending is None or self._pending[0] != version:
                self._pending = (version, self._executor.submit(compute))
            pending_version, future = self._pending
            first = self._version is None
        if first or wait:
            futures.wait([future])
        with self._lock:
            if future.done() and self._pending is not None and self._pending[1] is future:
                self._pending = None  # a failed computation is tried again on the next call
                self._value, self._version = future.result(), pending_version  # raises what compute raised
            return self._value, self._pending is not None
