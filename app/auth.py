"""Optional password gate for a dashboard served beyond localhost.

Off by default (the server listens on localhost only, see .streamlit/config.toml). To share the
dashboard on a network, start it with a password in the environment:

    SEGTUNE_PASSWORD='a long passphrase' streamlit run app/main.py --server.address 0.0.0.0

Every page then asks for the password once per browser session. Put TLS in front of it (a
reverse proxy) when the network is not trusted: the password travels like any form field.
"""

from __future__ import annotations

import hmac
import os

import streamlit as st

PASSWORD_ENV = "SEGTUNE_PASSWORD"
_SIGNED_IN = "segtune.signed_in"


def password_required() -> bool:
    return bool(os.environ.get(PASSWORD_ENV))


def check_password(entered: str, expected: str) -> bool:
    """Constant-time comparison, so response time does not leak how much of a guess was right."""
    return hmac.compare_digest(entered.encode("utf-8"), expected.encode("utf-8"))


def require_login() -> None:
    """Show a sign-in form and stop the script until the session has given the right password."""
    expected = os.environ.get(PASSWORD_ENV)
    if not expected or st.session_state.get(_SIGNED_IN):
        return
    gate = st.empty()  # cleared on success, so the page renders in this same run
    with gate.container():
        _, middle, _ = st.columns([1, 2, 1])
        with middle:
            st.title("SegTune")
            st.caption("This dashboard is protected. Enter the password you were given.")
            with st.form("segtune-login"):
                entered = st.text_input("Password", type="password")
                submitted = st.form_submit_button("Sign in", type="primary", width="stretch")
            if submitted and check_password(entered, expected):
                st.session_state[_SIGNED_IN] = True
            elif submitted:
                st.error("Wrong password.")
    if st.session_state.get(_SIGNED_IN):
        gate.empty()
        return
    st.stop()
