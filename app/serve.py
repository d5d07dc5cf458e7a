"""SegTune's launcher: ``python -m app.serve [--server.OPTION VALUE ...] [--insecure-no-password]``.

``scripts/start.sh`` runs this. It serves ``app/main.py`` through ``st.App`` (Streamlit's ASGI
entry) with the login gate (``app.gate``) in front of every route, and it refuses to start when
the dashboard would be reachable from the network without a password:

- Listening on anything but localhost/127.0.0.1/::1 needs ``SEGTUNE_PASSWORD``, unless started
  with ``--insecure-no-password`` (or ``SEGTUNE_ALLOW_INSECURE=1``) for a network you trust. The
  check runs on the final configuration (flags, ``STREAMLIT_*`` variables, config.toml) before
  any socket is opened; it exits with status 2 and says what to do.
- ``SEGTUNE_MAX_UPLOAD_MB`` sets Streamlit's ``server.maxUploadSize`` (default 2048, from
  .streamlit/config.toml); a ``--server.maxUploadSize`` flag wins over it.

Any ``--section.option value`` (or ``=value``) is a Streamlit config option, as with
``streamlit run``. ``streamlit run app/serve.py`` also works (Streamlit discovers ``app``); then
the same checks run at startup, before the first request is served.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import sys
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

# `streamlit run app/serve.py` and `python app/serve.py` put only app/ on the import path.
REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

import streamlit as st  # noqa: E402
from starlette.middleware import Middleware  # noqa: E402

from app.gate import PASSWORD_ENV, Gate, LoginGateMiddleware  # noqa: E402

INSECURE_FLAG = "--insecure-no-password"
INSECURE_ENV = "SEGTUNE_ALLOW_INSECURE"
UPLOAD_ENV = "SEGTUNE_MAX_UPLOAD_MB"
EXIT_REFUSED = 2

log = logging.getLogger("segtune.serve")


class LaunchError(Exception):
    """A setting that makes the launcher refuse to start; the message says what to do."""


def is_loopback(address: str | None) -> bool:
    """True for addresses only this machine can reach. Unset means every interface (Streamlit's
    default), and a host name other than localhost may resolve to anything: both count as open."""
    if not address:
        return False
    if address.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(address.strip("[]")).is_loopback
    except ValueError:
        return False


def insecure_allowed(environ: Mapping[str, str]) -> bool:
    return environ.get(INSECURE_ENV, "").strip().lower() in ("1", "true", "yes")


def exposure_problem(address: str | None, *, password_set: bool, allow_insecure: bool) -> str | None:
    """Why serving on ``address`` is refused, or None when it is fine."""
    if password_set or allow_insecure or is_loopback(address):
        return None
    where = address or "every network interface"
    return (
        f"Refusing to serve SegTune on {where} without a password: anyone who can reach this "
        f"machine would get every dataset, study and model in the workspace.\n"
        f"  - set a password:       {PASSWORD_ENV}='a long passphrase' scripts/start.sh ...\n"
        f"  - or stay local:        --server.address localhost\n"
        f"  - or, on a network you trust, opt out explicitly: {INSECURE_FLAG} (or {INSECURE_ENV}=1)"
    )


def upload_limit_mb(environ: Mapping[str, str]) -> int | None:
    """``SEGTUNE_MAX_UPLOAD_MB`` as a positive whole number of MB, or None when unset."""
    raw = environ.get(UPLOAD_ENV, "").strip()
    if not raw:
        return None
    if not raw.isdigit() or int(raw) < 1:
        raise LaunchError(f"{UPLOAD_ENV}={raw!r} is not a positive whole number of megabytes (e.g. 2048)")
    return int(raw)


def parse_args(argv: Sequence[str]) -> tuple[dict[str, Any], bool]:
    """Split the command line into Streamlit config overrides and the insecure flag."""
    from streamlit import config

    # The table of known options (names, types) that App.run(config=...) also checks against;
    # read without parsing config files, so they are parsed once, with the overrides.
    options = config._config_options_template
    overrides: dict[str, Any] = {}
    insecure = False
    args = list(argv)
    while args:
        arg = args.pop(0)
        if arg == INSECURE_FLAG:
            insecure = True
            continue
        if not arg.startswith("--") or "." not in arg:
            raise LaunchError(f"unknown argument {arg!r}: expected --section.option VALUE or {INSECURE_FLAG}")
        name, has_value, value = arg[2:].partition("=")
        if name not in options:
            raise LaunchError(f"unknown Streamlit option --{name} (see `streamlit config show`)")
        if not has_value:
            if not args:
                raise LaunchError(f"--{name} needs a value")
            value = args.pop(0)
        overrides[name] = _coerce(name, value, options[name].type)
    return overrides, insecure


def _coerce(name: str, value: str, kind: type) -> Any:
    try:
        if kind is bool:
            if value.lower() not in ("true", "false", "1", "0"):
                raise ValueError(value)
            return value.lower() in ("true", "1")
        if kind in (int, float):
            return kind(value)
    except ValueError:
        raise LaunchError(f"--{name} {value!r}: expected a {kind.__name__}") from None
    return value


def check_settings(environ: Mapping[str, str], *, allow_insecure: bool) -> None:
    """The launch rules on Streamlit's loaded config; raises LaunchError when one is broken."""
    from streamlit import config

    address = config.get_option("server.address")
    problem = exposure_problem(address, password_set=bool(environ.get(PASSWORD_ENV)), allow_insecure=allow_insecure)
    if problem:
        raise LaunchError(problem)
    if not environ.get(PASSWORD_ENV) and not is_loopback(address):
        log.warning("serving on %s WITHOUT a password (%s): anyone who can reach it has full access",
                    address or "every interface", INSECURE_FLAG)
    elif environ.get(PASSWORD_ENV):
        log.info("login required (%s is set); upload limit %s MB", PASSWORD_ENV, config.get_option("server.maxUploadSize"))


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
    check_settings(os.environ, allow_insecure=insecure_allowed(os.environ))
    yield


GATE = Gate.from_env()
app = st.App("main.py", middleware=[Middleware(LoginGateMiddleware, gate=GATE)], lifespan=_startup_checks)


def main(argv: Sequence[str] | None = None) -> int:
    """Check the settings, then serve (blocks until stopped). Returns the exit status."""
    from streamlit.web import bootstrap

    configure_logging()
    try:
        overrides, insecure = parse_args(sys.argv[1:] if argv is None else argv)
        if insecure:
            os.environ[INSECURE_ENV] = "1"  # the startup hook re-checks with the same answer
        limit = upload_limit_mb(os.environ)
        if limit is not None:
            overrides.setdefault("server.maxUploadSize", limit)
        bootstrap.load_config_options(overrides)  # the very config app.run() will use
        check_settings(os.environ, allow_insecure=insecure_allowed(os.environ))
    except LaunchError as error:
        print(f"segtune: {error}", file=sys.stderr)
        return EXIT_REFUSED
    app.run(config=overrides)
    return 0


if __name__ == "__main__":
    sys.exit(main())
