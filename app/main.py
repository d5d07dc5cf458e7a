"""SegTune dashboard script, served by ``python -m app.serve`` (what ``scripts/start.sh`` runs).

Sets up the page, the script-side password check (the server-side gate is ``app.gate``), the
navigation over ``pages/`` and the sidebar every page shares (workspace, database, the study the
result pages show, sign-out).
"""

from __future__ import annotations

import sys
from pathlib import Path

# Streamlit runs this file as a script with only app/ on the import path; the repo root holds core/ and app/.
REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

import streamlit as st  # noqa: E402

from app import cache, state  # noqa: E402
from app.auth import require_login, sign_out_link  # noqa: E402
from app.nav import available_pages  # noqa: E402
from app.widgets.errors import user_errors  # noqa: E402
from core.runtime.storage import is_sqlite  # noqa: E402

STUDY_PICKER = "sidebar.study_picker"


def navigation() -> st.navigation:
    sections: dict[str, list[st.Page]] = {}
    for info in available_pages():
        page = st.Page(
            REPO_ROOT / "pages" / info.file, title=info.title, icon=info.icon, default=info.file == "datasets.py"
        )
        sections.setdefault(info.section, []).append(page)
    return st.navigation(sections)


def _pick_study() -> None:
    state.STUDY.set(st.session_state[STUDY_PICKER])


def sidebar() -> None:
    settings = cache.settings()
    with st.sidebar:
        names = cache.study_names()
        if names:
            # A page may have chosen a study (e.g. after Start): show that choice in the picker.
            if state.STUDY.get() in names:
                st.session_state[STUDY_PICKER] = state.STUDY.get()
            elif STUDY_PICKER not in st.session_state or st.session_state[STUDY_PICKER] not in names:
                state.STUDY.set(names[0])
                st.session_state[STUDY_PICKER] = names[0]
            st.selectbox(
                "Study", names, key=STUDY_PICKER, on_change=_pick_study, help="The study the result pages show."
            )
        else:
            st.caption("No studies yet: start one on **New study**.")
        st.divider()
        kind = "SQLite" if is_sqlite(settings.db_url) else "PostgreSQL"
        st.caption(f":material/folder: Workspace `{settings.home}`")
        st.caption(f":material/database: {kind} database")
        sign_out_link()


st.set_page_config(page_title="SegTune", page_icon=":material/biotech:", layout="wide")
require_login()
current = navigation()
with user_errors("Opening the workspace"):
    sidebar()
current.run()
