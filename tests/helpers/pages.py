"""Open a dashboard page in AppTest the way a user reaches it: app/main.py's navigation first."""

from __future__ import annotations

from typing import Any

from streamlit.testing.v1 import AppTest

from tests.helpers.machine import REPO

MAIN = REPO / "app" / "main.py"


def open_page(page: str, **session: Any) -> AppTest:
    """Run main.py with ``session`` state keys (``segtune.<key>``), switch to ``page``, run it."""
    app = AppTest.from_file(str(MAIN), default_timeout=60)
    for key, value in session.items():
        app.session_state[f"segtune.{key}"] = value
    app.run()
    app.switch_page(f"../pages/{page}")
    app.run()
    assert not app.exception, app.exception
    return app


def texts(app: AppTest, kind: str) -> list[str]:
    return [str(element.value) for element in app.get(kind)]
