"""Per-client throttle for failed logins: a few free tries, then a lockout that doubles.

Why: the password is the only thing between the network and the workspace, so guessing must be
slow. A client (one IP address) gets ``free_failures`` wrong tries; each further failure locks it
out for ``base_lockout_s`` doubled per extra failure, capped at ``max_lockout_s``. A locked-out
client is refused before its password is even compared, and that refusal does not count as a
failure (it would only lengthen the client's own wait). A success clears the client's record; a
record untouched for ``forget_after_s`` is dropped, and at most ``max_clients`` are kept, so a
flood of addresses cannot grow memory without bound.

The clock is injected (``time.monotonic`` by default) so tests step time instead of sleeping.
Behind a reverse proxy every client has the proxy's address unless the proxy sends
``X-Forwarded-For`` and the server trusts it (uvicorn trusts it from 127.0.0.1 by default).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

__all__ = ["LoginThrottle", "ThrottlePolicy"]


@dataclass(frozen=True)
class ThrottlePolicy:
    free_failures: int = 5  # wrong passwords allowed before the first lockout
    base_lockout_s: float = 30.0  # first lockout; doubles with each further failure
    max_lockout_s: float = 900.0  # never lock a client out for longer than this (15 min)
    forget_after_s: float = 3600.0  # a client quiet this long starts afresh
    max_clients: int = 10_000  # records kept at most (oldest dropped first)

    def lockout_s(self, failures: int) -> float:
        """Lockout after the ``failures``-th consecutive failure (0 while still free)."""
        extra = failures - self.free_failures
        if extra <= 0:
            return 0.0
        return min(self.max_lockout_s, self.base_lockout_s * 2 ** min(extra - 1, 32))


@dataclass
class _Record:
    failures: int = 0
    locked_until: float = 0.0
    last_seen: float = 0.0


@dataclass
class LoginThrottle:
    policy: ThrottlePolicy = field(default_factory=ThrottlePolicy)
    clock: Callable[[], float] = time.monotonic
    _records: dict[str, _Record] = field(default_factory=dict)

    def retry_after(self, client: str) -> float:
        """Seconds ``client`` must still wait before its next try (0.0: it may try now)."""
        record = self._records.get(client)
        if record is None:
            return 0.0
        return max(0.0, record.locked_until - self.clock())

    def failed(self, client: str) -> float:
        """Record a wrong password from ``client``; return the lockout it now has (0.0: none)."""
        now = self.clock()
        self._forget_stale(now)
        record = self._records.pop(client, None) or _Record()
        record.failures += 1
        record.last_seen = now
        lockout = self.policy.lockout_s(record.failures)
        record.locked_until = now + lockout
        self._records[client] = record  # re-inserted last: dict order is least recently seen first
        return lockout

    def failures(self, client: str) -> int:
        record = self._records.get(client)
        return record.failures if record else 0

    def succeeded(self, client: str) -> None:
        self._records.pop(client, None)

    def _forget_stale(self, now: float) -> None:
        stale = [c for c, r in self._records.items() if now - r.last_seen > self.policy.forget_after_s and r.locked_until <= now]
        for client in stale:
            del self._records[client]
        while len(self._records) >= self.policy.max_clients:
            del self._records[next(iter(self._records))]
