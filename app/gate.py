"""The login gate: ASGI middleware in front of every Streamlit route when a password is set.

Why middleware: Streamlit serves the page, the websocket (``/_stcore/stream``, over which a
browser asks for upload URLs and receives page content), uploads (``PUT /_stcore/upload_file``),
media (``/media/...``: downloads, images, the exported model card), metrics, component and agent
routes from one Starlette app. A form inside the script only runs *after* the websocket is open,
so it cannot guard the others. ``st.App(middleware=[...])`` is Streamlit's documented hook to run
code before every one of those requests; this module is that code.

With a password (``SEGTUNE_PASSWORD``), a request passes only with a valid signed session cookie
(see ``session_cookie``) except for the public few: ``/login``, ``/logout``, ``/_stcore/health``
(liveness probes), Streamlit's static bundle (``/static/...``, the same files for everyone) and
the favicon. Without the cookie a page request is redirected to ``/login``, an API request gets
401 before its body is read (so an upload stores nothing), and a websocket handshake is refused
(HTTP 403), so no script runs and no page content is sent. Failed logins are throttled per client,
per network and server-wide (``login_throttle``) and logged with the client address on the
``segtune.auth`` logger. Only signing in is throttled: a valid cookie passes whatever the throttle holds.
``/logout`` revokes the cookie it is sent with (``SessionSigner.revoke``), not only the browser's copy.

Without a password the middleware passes everything through (the launcher only allows that on
localhost, or with the explicit insecure flag: see ``app.serve``).
"""

from __future__ import annotations

import html
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import parse_qs, quote

from app.login_throttle import LockScope, LoginThrottle, network_of
from app.session_cookie import COOKIE_NAME, SessionSigner

if TYPE_CHECKING:
    from starlette.responses import Response
    from starlette.types import ASGIApp, Receive, Scope, Send

__all__ = ["PASSWORD_ENV", "Gate", "LoginGateMiddleware", "active_gate"]

PASSWORD_ENV = "SEGTUNE_PASSWORD"
LOGIN_PATH = "/login"
LOGOUT_PATH = "/logout"
# Answer without a session: liveness probes, Streamlit's static bundle (identical for everyone).
_PUBLIC_EXACT = frozenset({"/_stcore/health", "/favicon.png"})
_PUBLIC_PREFIXES = ("/static/",)
# Not pages: an unauthenticated request here gets 401 rather than a redirect to the login page.
_API_PREFIXES = ("/_stcore/", "/media/", "/component/", "/app/static/")
_MAX_LOGIN_BODY = 8192  # bytes; a login form is a few dozen

log = logging.getLogger("segtune.auth")

_active: Gate | None = None


def active_gate() -> Gate | None:
    """The gate guarding this process's server, or None when the app is served without one
    (``streamlit run app/main.py`` directly, or AppTest)."""
    return _active


@dataclass
class Gate:
    """What the middleware needs: the signer (None: no password, let everything through) and the
    throttle. One per process; the Streamlit script reads it back through ``active_gate``."""

    signer: SessionSigner | None
    throttle: LoginThrottle = field(default_factory=LoginThrottle)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Gate:
        password = (os.environ if environ is None else environ).get(PASSWORD_ENV) or None
        return cls(SessionSigner(password) if password else None)

    @property
    def password_required(self) -> bool:
        return self.signer is not None

    def session_valid(self, cookie: str | None) -> bool:
        return self.signer is None or self.signer.is_valid(cookie)


class LoginGateMiddleware:
    """Pure ASGI middleware (works for HTTP and websocket scopes alike; no body buffering)."""

    def __init__(self, app: ASGIApp, gate: Gate) -> None:
        global _active
        self.app = app
        self.gate = gate
        _active = gate

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket") or self.gate.signer is None:
            await self.app(scope, receive, send)
            return
        base = _base_path()
        path = _relative(scope["path"], base)
        if scope["type"] == "http" and path == LOGIN_PATH:
            await self._login(scope, receive, send, base)
        elif scope["type"] == "http" and path == LOGOUT_PATH:
            if self.gate.signer.revoke(_cookie(scope)):
                log.info("signed out from %s", _client(scope))
            await _logout_response(base)(scope, receive, send)
        elif self.gate.session_valid(_cookie(scope)) or _is_public(path):
            await self.app(scope, receive, send)
        else:
            await self._refuse(scope, receive, send, base, path)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send, base: str, path: str) -> None:
        from starlette.responses import PlainTextResponse, RedirectResponse

        client = _client(scope)
        if scope["type"] == "websocket":
            log.info("refused websocket without a session from %s", client)
            await send({"type": "websocket.close", "code": 1008})  # before accept: HTTP 403
            return
        method = scope.get("method", "GET")
        if method in ("GET", "HEAD") and not path.startswith(_API_PREFIXES):
            target = f"{base}{LOGIN_PATH}?next={quote(base + path, safe='/')}"
            await RedirectResponse(target, status_code=303)(scope, receive, send)
            return
        if method not in ("GET", "HEAD", "OPTIONS"):
            log.info("refused %s %s without a session from %s", method, path, client)
        response = PlainTextResponse("Sign in first.", status_code=401, headers={"Connection": "close"})
        await response(scope, receive, send)

    async def _login(self, scope: Scope, receive: Receive, send: Send, base: str) -> None:
        from starlette.responses import HTMLResponse, RedirectResponse

        assert self.gate.signer is not None
        signer, throttle, client = self.gate.signer, self.gate.throttle, _client(scope)
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        if scope.get("method") != "POST":
            if signer.is_valid(_cookie(scope)):
                await RedirectResponse(_safe_next(query, base), status_code=303)(scope, receive, send)
                return
            await HTMLResponse(_login_page(base, _safe_next(query, base)))(scope, receive, send)
            return
        form = parse_qs((await _read_body(receive)).decode("utf-8", "replace"))
        next_url = _safe_next(form, base)
        # From here to the throttle update nothing awaits: on the one event loop, concurrent
        # guesses are checked and counted one after another, so a burst cannot slip past the limit.
        wait = throttle.retry_after(client)
        if wait > 0:
            locked_by = throttle.lock_scope(client) or LockScope.ADDRESS
            log.warning(
                "login refused from %s: locked out for %.0f s more (%s)", client, wait, _scope_text(locked_by, client)
            )
            await _locked_out(base, form, wait, locked_by)(scope, receive, send)
            return
        if signer.check_password(form.get("password", [""])[0]):
            throttle.succeeded(client)
            log.info("login from %s", client)
            response = RedirectResponse(next_url, status_code=303)
            response.set_cookie(
                COOKIE_NAME,
                signer.issue(),
                max_age=signer.max_age_s,
                path=base or "/",
                secure=_is_https(scope),
                httponly=True,
                samesite="lax",
            )
            await response(scope, receive, send)
            return
        lockout = throttle.failed(client)
        failures = throttle.failures(client)
        if lockout > 0:
            locked_by = throttle.lock_scope(client) or LockScope.ADDRESS
            log.warning(
                "login failed from %s (%d in a row): locked out for %.0f s (%s)",
                client,
                failures,
                lockout,
                _scope_text(locked_by, client),
            )
            await _locked_out(base, form, lockout, locked_by)(scope, receive, send)
            return
        log.warning("login failed from %s (%d in a row)", client, failures)
        page = _login_page(base, next_url, error="Wrong password.")
        await HTMLResponse(page, status_code=401)(scope, receive, send)


_LOCKED_OUT = {
    LockScope.ADDRESS: "Too many wrong passwords from your address.",
    LockScope.NETWORK: "Too many wrong passwords from your network.",
    LockScope.SERVER: "Too many wrong passwords have reached this server; signing in is paused for everyone.",
}


def _scope_text(scope: LockScope, client: str) -> str:
    """For the log: which failures locked the client out."""
    return {
        LockScope.ADDRESS: "this address",
        LockScope.NETWORK: f"network {network_of(client)}",
        LockScope.SERVER: "every address: the server's failure budget is spent",
    }[scope]


def _locked_out(base: str, params: dict[str, list[str]], wait_s: float, scope: LockScope) -> Response:
    from starlette.responses import HTMLResponse

    seconds = max(1, round(wait_s))
    message = f"{_LOCKED_OUT[scope]} Try again in {seconds} s."
    page = _login_page(base, _safe_next(params, base), error=message)
    return HTMLResponse(page, status_code=429, headers={"Retry-After": str(seconds)})


def _logout_response(base: str) -> Response:
    from starlette.responses import RedirectResponse

    response = RedirectResponse(f"{base}{LOGIN_PATH}", status_code=303)
    response.delete_cookie(COOKIE_NAME, path=base or "/")
    return response


def _base_path() -> str:
    """``server.baseUrlPath`` as ``/prefix`` (or ``""``), read per request: the config is loaded
    after this module is imported."""
    from streamlit import config

    base = (config.get_option("server.baseUrlPath") or "").strip("/")
    return f"/{base}" if base else ""


def _relative(path: str, base: str) -> str:
    if base and (path == base or path.startswith(base + "/")):
        return path[len(base) :] or "/"
    return path


def _is_public(path: str) -> bool:
    """The public few; a static path only when it names a real file of Streamlit's bundle (not the
    page shell its fallback would serve for any other name, nor a path with ``..``)."""
    if path in _PUBLIC_EXACT:
        return True
    if not path.startswith(_PUBLIC_PREFIXES) or ".." in path.split("/") or "\\" in path:
        return False
    return (_static_dir() / path.lstrip("/")).is_file()


def _static_dir() -> Path:
    from streamlit import file_util

    return Path(file_util.get_static_dir())


def _cookie(scope: Scope) -> str | None:
    from http.cookies import CookieError, SimpleCookie

    for name, value in scope.get("headers", []):
        if name == b"cookie":
            jar = SimpleCookie()
            try:
                jar.load(value.decode("latin-1"))
            except CookieError:
                continue
            if COOKIE_NAME in jar:
                return jar[COOKIE_NAME].value
    return None


def _client(scope: Scope) -> str:
    client = scope.get("client")
    return client[0] if client else "unknown"


def _is_https(scope: Scope) -> bool:
    return scope.get("scheme") in ("https", "wss")


def _safe_next(params: dict[str, list[str]], base: str) -> str:
    """Where to go after signing in: a path on this server only (no open redirect)."""
    target = params.get("next", [""])[0]
    if target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return target
    return f"{base}/"


async def _read_body(receive: Receive) -> bytes:
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if len(body) > _MAX_LOGIN_BODY:
            return b""
        if not message.get("more_body", False):
            return body


def _login_page(base: str, next_url: str, *, error: str | None = None) -> str:
    """A self-contained page (no scripts, no external assets): nothing of the app before login."""
    alert = f'<p class="error" role="alert">{html.escape(error)}</p>' if error else ""
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>SegTune · sign in</title>
<style>
body {{ font-family: system-ui, sans-serif; background: #F1F5F4; color: #1F2933; margin: 0;
       display: flex; min-height: 100vh; align-items: center; justify-content: center; }}
main {{ background: #fff; padding: 2rem 2.5rem; border-radius: 12px; width: min(22rem, 90vw);
        box-shadow: 0 2px 12px rgba(0,0,0,.08); }}
h1 {{ margin: 0 0 .25rem; }} p {{ color: #52606D; }}
input {{ width: 100%; box-sizing: border-box; padding: .6rem; margin: .4rem 0 1rem; font-size: 1rem;
         border: 1px solid #CBD2D9; border-radius: 6px; }}
button {{ width: 100%; padding: .65rem; font-size: 1rem; color: #fff; background: #0F766E;
          border: 0; border-radius: 6px; cursor: pointer; }}
.error {{ color: #B42318; background: #FEF3F2; padding: .5rem .75rem; border-radius: 6px; }}
</style></head>
<body><main>
<h1>SegTune</h1>
<p>This dashboard is protected. Enter the password you were given.</p>
{alert}
<form method="post" action="{html.escape(base + LOGIN_PATH)}">
<label for="password">Password</label>
<input id="password" name="password" type="password" autocomplete="current-password" autofocus required>
<input type="hidden" name="next" value="{html.escape(next_url)}">
<button type="submit">Sign in</button>
</form>
</main></body></html>
"""
