"""The launcher's rules, apart from the server so tests can check them without starting one.

- Listening beyond this machine needs a password of at least ``MIN_PASSWORD_LENGTH`` characters,
  not all blank, unless explicitly opted out of a password altogether (``exposure_problem``).
- ``SEGTUNE_MAX_UPLOAD_MB`` is a positive whole number of MB (``upload_limit_mb``).
- The command line is Streamlit's ``--section.option value`` flags plus ``--insecure-no-password``
  (``parse_args``); values are converted to each option's type, unknown names are refused. As with
  ``streamlit run``, an option's ``STREAMLIT_SECTION_OPTION`` variable applies where no flag sets it
  (``streamlit run`` reads them in its command-line parser, which this launcher does not use).
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping, Sequence
from typing import Any

from app.gate import PASSWORD_ENV

__all__ = [
    "EXIT_REFUSED",
    "INSECURE_ENV",
    "INSECURE_FLAG",
    "MIN_PASSWORD_LENGTH",
    "UPLOAD_ENV",
    "LaunchError",
    "exposure_problem",
    "insecure_allowed",
    "is_loopback",
    "parse_args",
    "upload_limit_mb",
]

INSECURE_FLAG = "--insecure-no-password"
INSECURE_ENV = "SEGTUNE_ALLOW_INSECURE"
UPLOAD_ENV = "SEGTUNE_MAX_UPLOAD_MB"
EXIT_REFUSED = 2
MIN_PASSWORD_LENGTH = 12  # the gate throttles guessing; a short password would still fall to a patient guesser


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


def exposure_problem(address: str | None, *, password: str | None, allow_insecure: bool) -> str | None:
    """Why serving on ``address`` with ``password`` (None or "": unset) is refused, or None when it is fine."""
    if is_loopback(address):
        return None
    where = address or "every network interface"
    if password:
        return _weak_password_problem(password, where)
    if allow_insecure:
        return None
    return (
        f"Refusing to serve SegTune on {where} without a password: anyone who can reach this "
        f"machine would get every dataset, study and model in the workspace.\n"
        f"  - set a password:       {PASSWORD_ENV}='a long passphrase' scripts/start.sh ...\n"
        f"  - or stay local:        --server.address localhost\n"
        f"  - or, on a network you trust, opt out explicitly: {INSECURE_FLAG} (or {INSECURE_ENV}=1)"
    )


def _weak_password_problem(password: str, where: str) -> str | None:
    """A set password that is too weak to guard a network address (the flag to go without one does
    not excuse a weak one: whoever set it meant the dashboard to be protected)."""
    if not password.strip():
        why = "is blank"
    elif len(password) < MIN_PASSWORD_LENGTH:
        why = f"has {len(password)} characters"
    else:
        return None
    return (
        f"Refusing to serve SegTune on {where}: {PASSWORD_ENV} {why}, and a password that guards a "
        f"network address needs at least {MIN_PASSWORD_LENGTH} characters, not all blank (a few words "
        f"make one that is easy to remember).\n"
        f"  - or stay local:        --server.address localhost"
    )


def upload_limit_mb(environ: Mapping[str, str]) -> int | None:
    """``SEGTUNE_MAX_UPLOAD_MB`` as a positive whole number of MB, or None when unset."""
    raw = environ.get(UPLOAD_ENV, "").strip()
    if not raw:
        return None
    if not raw.isdigit() or int(raw) < 1:
        raise LaunchError(f"{UPLOAD_ENV}={raw!r} is not a positive whole number of megabytes (e.g. 2048)")
    return int(raw)


def parse_args(argv: Sequence[str], environ: Mapping[str, str] | None = None) -> tuple[dict[str, Any], bool]:
    """Split the command line into Streamlit config overrides and the insecure flag; options no
    flag sets are taken from their ``STREAMLIT_*`` variables in ``environ`` (default: os.environ)."""
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
        overrides[name] = _coerce(f"--{name}", value, options[name].type)
    environ = os.environ if environ is None else environ
    for name, option in options.items():
        # sensitive options: Streamlit's config reads their variables itself (and refuses them as flags)
        if name not in overrides and not option.sensitive and option.env_var in environ:
            value = environ[option.env_var]
            overrides[name] = (
                [_coerce(option.env_var, v, option.type) for v in value.split()]
                if option.multiple
                else _coerce(option.env_var, value, option.type)
            )
    return overrides, insecure


def _coerce(source: str, value: str, kind: type) -> Any:
    try:
        if kind is bool:
            if value.lower() not in ("true", "false", "1", "0"):
                raise ValueError(value)
            return value.lower() in ("true", "1")
        if kind in (int, float):
            return kind(value)
    except ValueError:
        raise LaunchError(f"{source} {value!r}: expected a {kind.__name__}") from None
    return value
