"""The script's side of the password gate: a second check, and a sign-out link.

The real gate is the server middleware (``app.gate``, installed by ``app.serve``, which
``scripts/start.sh`` runs): with ``SEGTUNE_PASSWORD`` set, no websocket opens without a valid
session cookie, so this script never runs for a visitor who has not signed in. This module only
covers what the middleware cannot see:

- the app served without the gate (``streamlit run app/main.py`` directly) while a password is
  set, or to a client on another machine: the page then refuses to render and says how to start;
- a session cookie that expires while its websocket stays open: every rerun re-checks it.
"""

from __future__ import annotations

import os

import streamlit as st

from app.gate import LOGIN_PATH, LOGOUT_PATH, PASSWORD_ENV, active_gate
from app.launch_rules import is_loopback
from app.session_cookie import COOKIE_NAME

__all__ = ["PASSWORD_ENV", "password_required", "require_login", "sign_out_link"]

_UNGATED = (
    "SegTune was started without its login gate, so it does not serve this page{why}. "
    "Start it with `scripts/start.sh` (or `python -m app.serve`)."
)


def password_required() -> bool:
    return bool(os.environ.get(PASSWORD_ENV))


def _session_cookie() -> str | None:
    return st.context.cookies.get(COOKIE_NAME)


def _client_is_remote() -> bool:
    # st.context.ip_address is None for localhost clients; AppTest hands out a stand-in object.
    ip = st.context.ip_address
    return isinstance(ip, str) and not is_loopback(ip)


def ungated_problem() -> str | None:
    """Why this page must not render when the app is served without the gate, or None."""
    if active_gate() is not None:
        return None
    if password_required():
        return _UNGATED.format(why=" while a password is set")
    if _client_is_remote():
        return _UNGATED.format(why=" to other machines")
    return None


def require_login() -> None:
    """Stop the script unless this session may see the app (see the module docstring)."""
    problem = ungated_problem()
    if problem:
        st.error(problem)
        st.stop()
    gate = active_gate()
    if gate is not None and not gate.session_valid(_session_cookie()):
        st.warning(f"Your sign-in has expired. [Sign in again]({_base_path()}{LOGIN_PATH})")
        st.stop()


def sign_out_link() -> None:
    """A sign-out link (in the sidebar) when the dashboard is password-protected."""
    gate = active_gate()
    if gate is not None and gate.password_required:
        # A plain link in this tab (st.link_button opens a new one): the server clears the cookie.
        st.markdown(f'<a href="{_base_path()}{LOGOUT_PATH}" target="_self">Sign out</a>', unsafe_allow_html=True)


def _base_path() -> str:
    base = (st.get_option("server.baseUrlPath") or "").strip("/")
    return f"/{base}" if base else ""
