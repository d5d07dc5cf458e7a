"""Throttle for failed logins: per address, per network, and for the whole server.

Why: the password is the only thing between the network and the workspace, so guessing must be
slow. A client (one IP address) gets ``free_failures`` wrong tries; each further failure locks it
out for ``base_lockout_s`` doubled per extra failure, capped at ``max_lockout_s``. A locked-out
client is refused before its password is even compared, and that refusal does not count as a
failure (it would only lengthen the client's own wait). A success clears the client's record; a
record untouched for ``forget_after_s`` is dropped, and at most ``max_clients`` are kept, so a
flood of addresses cannot grow memory without bound.

One address is cheap to change (an IPv6 /64 holds 2**64 of them), so every failure is also
charged to two shared budgets (``BudgetPolicy``): its network's (the /24 of an IPv4 address, the
/64 of an IPv6 one) and the server's. A budget absorbs some failures, forgives one per
``refill_s`` outside its lockouts, and once spent locks out everyone who shares it, with its own
doubling lockout: a flood from many addresses slows every guesser. A success does not refill a budget (the guesser's
failures still count). Only sign-ins are throttled: a browser that already holds a valid session
cookie never meets the throttle. Network budgets are bounded like client records.

The clock is injected (``time.monotonic`` by default) so tests step time instead of sleeping.
Behind a reverse proxy every client has the proxy's address unless the proxy sends
``X-Forwarded-For`` and the server trusts it (uvicorn trusts it from 127.0.0.1 by default).
"""

from __future__ import annotations

import ipaddress
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum

__all__ = ["BudgetPolicy", "LockScope", "LoginThrottle", "ThrottlePolicy", "network_of"]

IPV4_PREFIX = 24  # one site's or one NAT's addresses
IPV6_PREFIX = 64  # the smallest network an ISP hands out: one subscriber's whole address space


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


@dataclass(frozen=True)
class BudgetPolicy:
    """A failure budget shared by many addresses (one network, or the whole server)."""

    free_failures: int  # failures absorbed before anyone sharing the budget is locked out
    refill_s: float  # one failure is forgiven per this many seconds
    base_lockout_s: float  # first lockout once spent; doubles with each further failure
    max_lockout_s: float  # cap on one lockout

    def lockout_s(self, level: float) -> float:
        """Lockout after a failure that brought the budget's count to ``level`` (0.0 while within it)."""
        extra = math.ceil(level - self.free_failures - 1e-9)
        if extra <= 0:
            return 0.0
        return min(self.max_lockout_s, self.base_lockout_s * 2 ** min(extra - 1, 32))


# 4 addresses of one network guessing their fill; a refill of one failure a minute.
NETWORK_BUDGET = BudgetPolicy(free_failures=20, refill_s=60.0, base_lockout_s=30.0, max_lockout_s=900.0)
# Far beyond a lab's typos (6 a minute are forgiven); a flood then gets about one guess per 5 minutes.
SERVER_BUDGET = BudgetPolicy(free_failures=100, refill_s=10.0, base_lockout_s=10.0, max_lockout_s=300.0)


class LockScope(StrEnum):
    """Whose failures locked a client out: its own, its network's, or everyone's."""

    ADDRESS = "address"
    NETWORK = "network"
    SERVER = "server"


def network_of(client: str) -> str:
    """The network whose budget ``client``'s failures are charged to: ``a.b.c.0/24`` or ``x:x:x:x::/64``
    (an IPv4-mapped IPv6 address counts as IPv4; a client that is no address is its own network)."""
    try:
        address = ipaddress.ip_address(client)
    except ValueError:
        return client
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    prefix = IPV4_PREFIX if address.version == 4 else IPV6_PREFIX
    return str(ipaddress.ip_network(f"{address}/{prefix}", strict=False))


@dataclass
class _Budget:
    level: float = 0.0  # failures not yet forgiven, as of ``updated``
    updated: float = 0.0
    locked_until: float = 0.0

    def current(self, now: float, policy: BudgetPolicy) -> float:
        # nothing is forgiven while locked, so a guesser who waits out each lockout gets longer ones
        return max(0.0, self.level - max(0.0, now - max(self.updated, self.locked_until)) / policy.refill_s)

    def charge(self, now: float, policy: BudgetPolicy) -> float:
        """Count one failure; return the lockout it now imposes (0.0: none)."""
        self.level = self.current(now, policy) + 1
        self.updated = now
        lockout = policy.lockout_s(self.level)
        self.locked_until = max(self.locked_until, now + lockout)
        return lockout


@dataclass
class _Record:
    failures: int = 0
    locked_until: float = 0.0
    last_seen: float = 0.0


@dataclass
class LoginThrottle:
    policy: ThrottlePolicy = field(default_factory=ThrottlePolicy)
    clock: Callable[[], float] = time.monotonic
    network_budget: BudgetPolicy = NETWORK_BUDGET
    server_budget: BudgetPolicy = SERVER_BUDGET
    _records: dict[str, _Record] = field(default_factory=dict)
    _networks: dict[str, _Budget] = field(default_factory=dict)
    _server: _Budget = field(default_factory=_Budget)

    def retry_after(self, client: str) -> float:
        """Seconds ``client`` must still wait before its next try (0.0: it may try now)."""
        return max(self._waits(client).values())

    def lock_scope(self, client: str) -> LockScope | None:
        """Whose failures hold ``client``'s longest lockout now (None: it is not locked out)."""
        waits = self._waits(client)
        scope = max(waits, key=lambda s: waits[s])
        return scope if waits[scope] > 0 else None

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
        name = network_of(client)
        network = self._networks.pop(name, None) or _Budget()
        self._networks[name] = network  # likewise least recently charged first
        return max(lockout, network.charge(now, self.network_budget), self._server.charge(now, self.server_budget))

    def _waits(self, client: str) -> dict[LockScope, float]:
        now = self.clock()
        record = self._records.get(client)
        network = self._networks.get(network_of(client))
        return {
            LockScope.ADDRESS: max(0.0, record.locked_until - now) if record else 0.0,
            LockScope.NETWORK: max(0.0, network.locked_until - now) if network else 0.0,
            LockScope.SERVER: max(0.0, self._server.locked_until - now),
        }

    def failures(self, client: str) -> int:
        record = self._records.get(client)
        return record.failures if record else 0

    def succeeded(self, client: str) -> None:
        self._records.pop(client, None)

    def _forget_stale(self, now: float) -> None:
        stale = [
            c
            for c, r in self._records.items()
            if now - r.last_seen > self.policy.forget_after_s and r.locked_until <= now
        ]
        for client in stale:
            del self._records[client]
        while len(self._records) >= self.policy.max_clients:
            del self._records[next(iter(self._records))]
        spent = [
            n for n, b in self._networks.items() if b.current(now, self.network_budget) == 0 and b.locked_until <= now
        ]
        for network in spent:
            del self._networks[network]
        while len(self._networks) >= self.policy.max_clients:
            del self._networks[next(iter(self._networks))]
