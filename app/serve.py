"""SegTune's launcher: ``python -m app.serve [--server.OPTION VALUE ...] [--insecure-no-password]``.

``scripts/start.sh`` runs this. It serves ``app/main.py`` through ``st.App`` (Streamlit's ASGI
entry) with the login gate (``app.gate``) in front of every route, and it refuses to start when
the dashboard would be reachable from the network without a password:

- Listening on anything but localhost/127.0.0.1/::1 needs ``SEGTUNE_PASSWORD`` (at least 12
  characters, not all blank), unless started with ``--insecure-no-password`` (or
  ``SEGTUNE_ALLOW_INSECURE=1``) for a network you trust. The check runs on the final configuration
  (flags, ``STREAMLIT_*`` variables, config.toml) before any socket is opened; it exits with
  status 2 and says what to do.
- ``SEGTUNE_MAX_UPLOAD_MB`` sets Streamlit's ``server.maxUploadSize`` (default 2048, from
  app/.streamlit/config.toml); a ``--server.maxUploadSize`` flag wins over it.

The dashboard's defaults (localhost only, upload limit, theme) are ``app/.streamlit/config.toml``,
Streamlit's script-level config: it applies from any working directory (also when installed with
pip), over ``~/.streamlit`` and ``./.streamlit``; flags and ``STREAMLIT_*`` variables still win.

Any ``--section.option value`` (or ``=value``) is a Streamlit config option, as with
``streamlit run``. ``streamlit run app/serve.py`` also works (Streamlit discovers ``app``); then
the same checks run at startup, before the first request is served.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

# `streamlit run app/serve.py` and `python app/serve.py` put only app/ on the import path.
REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

import streamlit as st  # noqa: E402
from starlette.middleware import Middleware  # noqa: E402

from app.gate import PASSWORD_ENV, Gate, LoginGateMiddleware  # noqa: E402
from app.launch_rules import (  # noqa: E402
    EXIT_REFUSED,
    INSECURE_ENV,
    INSECURE_FLAG,
    UPLOAD_ENV,
    LaunchError,
    exposure_problem,
    insecure_allowed,
    is_loopback,
    parse_args,
    upload_limit_mb,
)

log = logging.getLogger("segtune.serve")


def check_settings(environ: Mapping[str, str], *, allow_insecure: bool, announce: bool = True) -> None:
    """The launch rules on Streamlit's loaded config; raises LaunchError when one is broken.
    With ``announce``, logs what protects the server (or loudly, that nothing does)."""
    from streamlit import config

    address = config.get_option("server.address")
    problem = exposure_problem(address, password=environ.get(PASSWORD_ENV), allow_insecure=allow_insecure)
    if problem:
        raise LaunchError(problem)
    if not announce:
        return
    if not environ.get(PASSWORD_ENV) and not is_loopback(address):
        log.warning(
            "serving on %s WITHOUT a password (%s): anyone who can reach it has full access",
            address or "every interface",
            INSECURE_FLAG,
        )
    elif environ.get(PASSWORD_ENV):
        log.info(
            "login required (%s is set); upload limit %s MB", PASSWORD_ENV, config.get_option("server.maxUploadSize")
        )


def configure_logging() -> None:
    """Login events on stderr next to Streamlit's own log (they are the audit trail)."""
    logger = logging.getLogger("segtune")
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False


@asynccontextmanager
async def _startup_checks(_app: st.App) -> AsyncIterator[None]:
    """Runs before the first request in every launch mode; for ``streamlit run app/serve.py``
    (which opens its socket before importing this module) it is the only check."""
    from streamlit import config

    configure_logging()
    limit = upload_limit_mb(os.environ)
    if limit is not None and not config.get_where_defined("server.maxUploadSize").startswith("command-line"):
        config.set_option("server.maxUploadSize", limit, where_defined=UPLOAD_ENV)
    check_settings(os.environ, allow_insecure=insecure_allowed(os.environ), announce=not _checked_before_bind)
    yield


_checked_before_bind = False  # main() ran the checks already (and said so)
GATE = Gate.from_env()
# Absolute: Streamlit reads the script-level config next to the script (app/.streamlit/config.toml,
# the dashboard's defaults) from any working directory, e.g. for the installed `segtune` command.
MAIN_SCRIPT = Path(__file__).resolve().with_name("main.py")
app = st.App(str(MAIN_SCRIPT), middleware=[Middleware(LoginGateMiddleware, gate=GATE)], lifespan=_startup_checks)


def main(argv: Sequence[str] | None = None) -> int:
    """Check the settings, then serve (blocks until stopped). Returns the exit status."""
    global _checked_before_bind
    from streamlit.web import bootstrap

    configure_logging()
    options = sys.argv[1:] if argv is None else list(argv)
    try:
        overrides, insecure = parse_args(options)
        if insecure:
            os.environ[INSECURE_ENV] = "1"  # the startup hook re-checks with the same answer
        limit = upload_limit_mb(os.environ)
        if limit is not None:
            overrides.setdefault("server.maxUploadSize", limit)
        bootstrap.load_config_options(overrides)  # the very config app.run() will use
        check_settings(os.environ, allow_insecure=insecure_allowed(os.environ))
        _checked_before_bind = True
    except LaunchError as error:
        print(f"segtune: {error}", file=sys.stderr)
        return EXIT_REFUSED
    # App.run re-anchors the script-level config at sys.argv[0]: make that this file, whichever
    # command started the process (python -m app.serve, the installed segtune, python -m segtune).
    sys.argv = [str(Path(__file__).resolve()), *options]
    app.run(config=overrides)
    return 0


if __name__ == "__main__":
    sys.exit(main())
