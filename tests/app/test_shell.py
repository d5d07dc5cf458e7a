"""The dashboard shell: navigation, shared sidebar, password gate, error display."""

from __future__ import annotations

import optuna
import pytest
from streamlit.testing.v1 import AppTest

from app import auth, gate
from app.session_cookie import SessionSigner
from core.runtime.storage import open_storage
from core.settings import Settings
from tests.helpers.pages import MAIN


def open_app() -> AppTest:
    return AppTest.from_file(MAIN, default_timeout=60).run()


def test_opens_on_datasets_with_workspace_in_sidebar(workspace: Settings) -> None:
    at = open_app()
    assert not at.exception
    assert [t.value for t in at.title] == ["Datasets"]
    sidebar = " ".join(c.value for c in at.sidebar.caption)
    assert str(workspace.home) in sidebar and "SQLite database" in sidebar
    assert "No studies yet" in sidebar


def test_sidebar_study_picker_selects_a_study(workspace: Settings) -> None:
    storage = open_storage(workspace.db_url)
    optuna.create_study(study_name="older", storage=storage)
    optuna.create_study(study_name="newer", storage=storage)
    at = open_app()
    picker = at.sidebar.selectbox[0]
    assert picker.options == ["newer", "older"]
    assert at.session_state["segtune.study"] == "newer"
    picker.set_value("older").run()
    assert at.session_state["segtune.study"] == "older"


def test_every_page_opens_without_error(workspace: Settings) -> None:
    at = open_app()
    for page in ("datasets.py", "new_study.py", "jobs.py"):
        at.switch_page(f"../pages/{page}").run()
        assert not at.exception, page
        assert at.title, page


def test_password_without_the_server_gate_renders_nothing(workspace: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    """`streamlit run app/main.py` with a password would have no login gate: the page refuses."""
    monkeypatch.setenv("SEGTUNE_PASSWORD", "s3cret")
    at = open_app()
    assert not at.title and not at.sidebar.caption
    assert "started without its login gate" in at.error[0].value and "scripts/start.sh" in at.error[0].value


@pytest.fixture
def gated(monkeypatch: pytest.MonkeyPatch) -> SessionSigner:
    """The app as served by app.serve: a gate is active; the script reads the session cookie."""
    monkeypatch.setenv("SEGTUNE_PASSWORD", "s3cret")
    signer = SessionSigner("s3cret")
    monkeypatch.setattr(gate, "_active", gate.Gate(signer))
    return signer


def test_signed_in_session_sees_the_app_and_a_sign_out_link(
    workspace: Settings, gated: SessionSigner, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(auth, "_session_cookie", gated.issue)
    at = open_app()
    assert [t.value for t in at.title] == ["Datasets"]
    assert any("/logout" in m.value for m in at.sidebar.markdown)


def test_expired_session_is_stopped_on_rerun(
    workspace: Settings, gated: SessionSigner, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(auth, "_session_cookie", lambda: "v1.1.expired.00")
    at = open_app()
    assert not at.title
    assert "sign-in has expired" in at.warning[0].value


def _raise_user_error() -> None:
    import streamlit as st

    from app.widgets.errors import user_errors
    from core.data.manifest import DatasetError

    with user_errors("Adding"):
        raise DatasetError({"images/a.png": "has no mask", "masks/b.png": "has no image"})
    st.write("page goes on")


def _raise_bug() -> None:
    import streamlit as st

    from app.widgets.errors import user_errors

    with user_errors("Adding"):
        raise RuntimeError("boom")
    st.write("page goes on")


def test_user_error_becomes_a_message_listing_every_problem() -> None:
    at = AppTest.from_function(_raise_user_error).run()
    assert not at.exception
    message = at.error[0].value
    assert (
        "2 problem(s)" in message
        and "**images/a.png**: has no mask" in message
        and "**masks/b.png**: has no image" in message
    )
    assert at.markdown[-1].value == "page goes on"


def test_unexpected_error_is_friendly_with_details_folded_away() -> None:
    at = AppTest.from_function(_raise_bug).run()
    assert not at.exception
    assert "unexpected error" in at.error[0].value
    assert "Traceback" not in at.error[0].value
    assert at.expander[0].label == "Details"
    assert "RuntimeError: boom" in at.expander[0].text[0].value


def test_counts_on_cards_are_compact() -> None:
    from app.widgets.trial_table import shown_count

    assert [shown_count(v) for v in (13_047_112, 850_400, 512, 2.4e9, None, float("nan"))] == [
        "13.0 M",
        "850.4 k",
        "512",
        "2.4 G",
        "—",
        "—",
    ]
