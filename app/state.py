"""Typed session-state keys: what the user has selected, shared by every page.

Only ids live here (dataset name, study name, job id, trial numbers, the chosen split); the
objects they name are read through ``app.cache``. Access goes through :class:`Key` so a typo is
an AttributeError, not a silently empty value.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Generic, TypeVar

import streamlit as st

from core.data.splits import SplitConfig

T = TypeVar("T")


@dataclass(frozen=True)
class Key(Generic[T]):
    """One session-state entry with its default."""

    name: str
    default: T

    def get(self) -> T:
        return st.session_state.get(self.name, self.default)

    def set(self, value: T) -> None:
        st.session_state[self.name] = value

    def clear(self) -> None:
        st.session_state.pop(self.name, None)


DATASET: Key[str | None] = Key("segtune.dataset", None)  # dataset name shown / used for a new study
STUDY: Key[str | None] = Key("segtune.study", None)  # the study the result pages show
JOB: Key[int | None] = Key("segtune.job", None)  # job id selected on the Jobs page
SELECTED_TRIALS: Key[tuple[int, ...]] = Key("segtune.trials", ())  # trial numbers to compare
SPLIT: Key[SplitConfig] = Key("segtune.split", SplitConfig())  # split chosen on the Datasets page
