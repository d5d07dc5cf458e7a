"""Errors on a page: a user-fixable one becomes a message, anything else a friendly note.

Wrap each user action (a button's work, a page's reads) in :func:`user_errors`. A
:class:`core.errors.SegTuneError` is shown as its message (with every listed problem); any other
exception is a bug, so the page says so in plain words, puts the exception's one-line summary in
an expander, and logs the traceback on the server. Streamlit's own control flow (st.stop,
st.rerun, st.switch_page) derives from BaseException and passes through untouched.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

import streamlit as st

from core.errors import ProblemsError, SegTuneError

log = logging.getLogger("segtune.app")


def show_user_error(error: SegTuneError) -> None:
    """The message, with the problems of a :class:`ProblemsError` (field -> message) as bullets."""
    if isinstance(error, ProblemsError) and error.problems:
        lines = [f"- **{field}**: {message}" for field, message in error.problems.items()]
        st.error(f"{len(error.problems)} problem(s) to fix:\n\n" + "\n".join(lines), icon=":material/error:")
    else:
        st.error(str(error), icon=":material/error:")


def show_unexpected_error(action: str, error: Exception) -> None:
    log.error("%s failed", action, exc_info=error)
    st.error(
        f"{action} failed because of an unexpected error in SegTune. Nothing you entered was wrong; "
        "try again, and if it keeps happening, report it with the details below.",
        icon=":material/bug_report:",
    )
    with st.expander("Details"):
        st.text(f"{type(error).__name__}: {error}")


@contextmanager
def user_errors(action: str = "This step") -> Iterator[None]:
    """``with user_errors("Ingest"):`` shows any error of the block instead of a traceback."""
    try:
        yield
    except SegTuneError as error:
        show_user_error(error)
    except Exception as error:
        show_unexpected_error(action, error)
