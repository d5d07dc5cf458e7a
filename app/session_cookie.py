"""Signed session cookies: proof that this browser gave the password, checked on every request.

Why a signed cookie and not a flag in ``st.session_state``: uploads (HTTP PUT), media downloads,
metrics and the websocket are separate requests that never see a Streamlit session's state, so a
form inside the app cannot guard them. The browser sends the cookie with each of them instead.

Format: ``v1.<issued unix time>.<random nonce>.<hex HMAC-SHA256>``. The HMAC key is derived from a
per-process random secret and the password, so a restart or a new password signs everybody out,
and nothing on disk can leak a key. The cookie holds no password and no user data; it is valid for
``max_age_s`` after it was issued, unless revoked first.

Signing out revokes the cookie on the server (``revoke``): its nonce is kept until the cookie would
have expired anyway, so a copy of it (another tab, a stolen one) no longer works. Only a valid
cookie can be revoked, so the list grows only with real sign-ins; should it still pass
``MAX_REVOKED``, the key is replaced instead, which signs everybody out (never lets one back in).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field

__all__ = ["COOKIE_NAME", "DEFAULT_MAX_AGE_S", "SessionSigner"]

COOKIE_NAME = "segtune_session"
DEFAULT_MAX_AGE_S = 12 * 3600  # a working day; then the browser asks for the password again
_VERSION = "v1"
_CLOCK_SKEW_S = 60  # a cookie "issued" later than this in the future is refused
MAX_REVOKED = 100_000  # revoked cookies remembered at most (a few MB); then everyone signs in again


def _derive_key(secret: bytes, password: str) -> bytes:
    return hmac.new(secret, b"segtune-session|" + password.encode("utf-8"), hashlib.sha256).digest()


@dataclass
class SessionSigner:
    password: str
    max_age_s: int = DEFAULT_MAX_AGE_S
    clock: Callable[[], float] = time.time
    secret: bytes = field(default_factory=lambda: secrets.token_bytes(32), repr=False)

    def __post_init__(self) -> None:
        self._key = _derive_key(self.secret, self.password)
        self._revoked: dict[str, float] = {}  # nonce -> when its cookie expires anyway

    def issue(self) -> str:
        """A fresh cookie value for a browser that has just given the right password."""
        payload = f"{_VERSION}.{int(self.clock())}.{secrets.token_urlsafe(12)}"
        return f"{payload}.{self._sign(payload)}"

    def is_valid(self, value: str | None) -> bool:
        """True when ``value`` was issued by this signer and has neither expired nor been revoked."""
        if not value or value.count(".") != 3:
            return False
        payload, _, signature = value.rpartition(".")
        if not hmac.compare_digest(signature, self._sign(payload)):
            return False
        version, issued, nonce = payload.split(".")
        if version != _VERSION or not issued.isdigit():
            return False
        age = self.clock() - int(issued)
        return -_CLOCK_SKEW_S <= age < self.max_age_s and nonce not in self._revoked

    def revoke(self, value: str | None) -> bool:
        """End the session of cookie ``value`` on the server; False when it was not valid anyway."""
        if value is None or not self.is_valid(value):
            return False
        _version, issued, nonce, _signature = value.split(".")
        now = self.clock()
        self._revoked = {n: until for n, until in self._revoked.items() if until > now}  # expired ones fail anyway
        if len(self._revoked) >= MAX_REVOKED:
            self.secret = secrets.token_bytes(32)
            self.__post_init__()  # a new key: every cookie, this one included, is invalid
            return True
        self._revoked[nonce] = int(issued) + self.max_age_s
        return True

    def check_password(self, entered: str) -> bool:
        """Constant-time comparison, so response time does not leak how much of a guess was right."""
        return hmac.compare_digest(entered.encode("utf-8"), self.password.encode("utf-8"))

    def _sign(self, payload: str) -> str:
        return hmac.new(self._key, payload.encode("ascii", "replace"), hashlib.sha256).hexdigest()
