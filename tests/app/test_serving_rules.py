"""The serving rules without a server: login throttle (stepped clock), session cookies, the
network-exposure rule, the launcher's command line and upload limit."""

from __future__ import annotations

import pytest

from app.launch_rules import LaunchError, exposure_problem, insecure_allowed, is_loopback, parse_args, upload_limit_mb
from app.login_throttle import BudgetPolicy, LockScope, LoginThrottle, ThrottlePolicy, network_of
from app.session_cookie import SessionSigner


class Clock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


# --- throttle ------------------------------------------------------------------------------------


def test_free_tries_then_a_lockout_that_doubles_up_to_a_cap() -> None:
    clock = Clock()
    throttle = LoginThrottle(ThrottlePolicy(free_failures=3, base_lockout_s=10, max_lockout_s=35), clock)
    assert [throttle.failed("1.2.3.4") for _ in range(3)] == [0, 0, 0]
    assert throttle.retry_after("1.2.3.4") == 0
    assert throttle.failed("1.2.3.4") == 10
    assert throttle.retry_after("1.2.3.4") == 10
    clock.now += 4
    assert throttle.retry_after("1.2.3.4") == 6
    clock.now += 6
    assert throttle.retry_after("1.2.3.4") == 0
    assert throttle.failed("1.2.3.4") == 20
    clock.now += 20
    assert throttle.failed("1.2.3.4") == 35  # 40, capped


def test_throttle_is_per_client_and_success_resets() -> None:
    throttle = LoginThrottle(ThrottlePolicy(free_failures=1, base_lockout_s=30), Clock())
    throttle.failed("a")
    assert throttle.failed("a") == 30
    assert throttle.retry_after("b") == 0  # another address is not affected
    throttle.succeeded("a")
    assert throttle.retry_after("a") == 0 and throttle.failures("a") == 0


def test_quiet_clients_are_forgotten_and_records_are_bounded() -> None:
    clock = Clock()
    throttle = LoginThrottle(ThrottlePolicy(free_failures=5, forget_after_s=60, max_clients=3), clock)
    throttle.failed("old")
    clock.now += 61
    throttle.failed("new")
    assert throttle.failures("old") == 0 and throttle.failures("new") == 1
    for client in ("c1", "c2", "c3", "c4"):
        throttle.failed(client)
    assert sum(throttle.failures(c) for c in ("new", "c1", "c2", "c3", "c4")) == 3


@pytest.mark.parametrize(
    ("client", "network"),
    [
        ("10.1.2.3", "10.1.2.0/24"),
        ("::ffff:10.1.2.3", "10.1.2.0/24"),
        ("2001:db8:1:2:aaaa::1", "2001:db8:1:2::/64"),
        ("unknown", "unknown"),
    ],
)
def test_failures_are_charged_to_the_network(client: str, network: str) -> None:
    assert network_of(client) == network


def test_a_network_budget_locks_every_address_of_that_network() -> None:
    clock = Clock()
    throttle = LoginThrottle(
        ThrottlePolicy(free_failures=5),
        clock,
        network_budget=BudgetPolicy(8, 60, 30, 900),
        server_budget=BudgetPolicy(1000, 1, 1, 1),
    )
    for host in range(4):  # 4 addresses x 2 failures: each within its own 5, the /24 at its 8
        assert throttle.failed(f"10.0.0.{host}") == 0
        assert throttle.failed(f"10.0.0.{host}") == 0
    assert throttle.failed("10.0.0.99") == 30  # the 9th: the network is spent
    assert throttle.retry_after("10.0.0.200") == 30 and throttle.lock_scope("10.0.0.200") is LockScope.NETWORK
    assert throttle.retry_after("10.0.1.1") == 0 and throttle.lock_scope("10.0.1.1") is None  # another /24
    throttle.succeeded("10.0.0.99")
    assert throttle.retry_after("10.0.0.99") == 30  # a success does not refill the network's budget
    clock.now += 30
    assert throttle.failed("10.0.0.5") == 60  # still spent: the next failure doubles the lockout
    clock.now += 60 * 10 + 60  # ten failures forgiven, one a minute (and the lockout over)
    assert throttle.failed("10.0.0.6") == 0


def test_the_server_budget_slows_a_flood_from_many_networks() -> None:
    clock = Clock()
    throttle = LoginThrottle(
        clock=clock, server_budget=BudgetPolicy(free_failures=100, refill_s=10, base_lockout_s=10, max_lockout_s=300)
    )
    lockouts = [throttle.failed(f"2001:db8:{n:x}::1") for n in range(101)]  # 101 different /64s, one guess each
    assert lockouts[:100] == [0] * 100 and lockouts[100] == 10
    assert throttle.lock_scope("192.0.2.1") is LockScope.SERVER and throttle.retry_after("192.0.2.1") == 10
    clock.now += 10
    assert throttle.failed("192.0.2.1") == 20  # still over budget: each further failure doubles it


def test_throttle_memory_is_bounded_under_a_flood_of_networks() -> None:
    throttle = LoginThrottle(ThrottlePolicy(max_clients=50), Clock())
    for n in range(500):
        throttle.failed(f"2001:db8:{n:x}::1")
    assert len(throttle._records) <= 50 and len(throttle._networks) <= 50


# --- session cookie ------------------------------------------------------------------------------


def test_session_cookie_is_signed_and_expires() -> None:
    clock = Clock(1_700_000_000)
    signer = SessionSigner("pw", max_age_s=100, clock=clock)
    cookie = signer.issue()
    assert signer.is_valid(cookie)
    assert not signer.is_valid(cookie[:-1] + ("0" if cookie[-1] != "0" else "1"))  # tampered signature
    version, issued, nonce, signature = cookie.split(".")
    assert not signer.is_valid(f"{version}.{int(issued) + 50}.{nonce}.{signature}")  # tampered time
    assert not SessionSigner("pw", clock=clock).is_valid(cookie)  # another process (secret)
    assert not SessionSigner("other", secret=signer.secret, clock=clock).is_valid(cookie)  # new password
    clock.now += 100
    assert not signer.is_valid(cookie)
    assert not signer.is_valid(None) and not signer.is_valid("") and not signer.is_valid("a.b.c.d")


def test_a_revoked_cookie_stops_working_and_others_do_not() -> None:
    clock = Clock(1_700_000_000)
    signer = SessionSigner("pw", max_age_s=100, clock=clock)
    kept, ended = signer.issue(), signer.issue()
    assert signer.revoke(ended)
    assert not signer.is_valid(ended) and signer.is_valid(kept)
    assert not signer.revoke("v1.1700000000.forged.00") and not signer.revoke(None)  # only a valid cookie is recorded
    clock.now += 100
    signer.revoke(signer.issue())  # the expired one's record is dropped on the next revoke
    assert len(signer._revoked) == 1


def test_revoking_past_the_cap_signs_everybody_out(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("app.session_cookie.MAX_REVOKED", 2)
    signer = SessionSigner("pw")
    cookies = [signer.issue() for _ in range(4)]
    for cookie in cookies[:3]:
        assert signer.revoke(cookie)
    assert not any(signer.is_valid(cookie) for cookie in cookies)  # a new key, never a forgotten revocation


def test_password_check() -> None:
    signer = SessionSigner("s3cret")
    assert signer.check_password("s3cret")
    assert not signer.check_password("s3cre") and not signer.check_password("")


# --- launch rules --------------------------------------------------------------------------------


@pytest.mark.parametrize("address", ["localhost", "127.0.0.1", "127.0.1.1", "::1", "[::1]"])
def test_loopback_addresses(address: str) -> None:
    assert is_loopback(address)


@pytest.mark.parametrize("address", [None, "", "0.0.0.0", "::", "192.168.1.10", "myhost.lab"])
def test_open_addresses(address: str | None) -> None:
    assert not is_loopback(address)


def test_exposure_rule() -> None:
    good = "correct horse battery"
    assert exposure_problem("localhost", password=None, allow_insecure=False) is None
    assert exposure_problem("localhost", password="short", allow_insecure=False) is None  # only this machine
    assert exposure_problem("0.0.0.0", password=good, allow_insecure=False) is None
    assert exposure_problem("0.0.0.0", password=None, allow_insecure=True) is None
    message = exposure_problem("0.0.0.0", password="", allow_insecure=False)
    assert message and "SEGTUNE_PASSWORD" in message and "--insecure-no-password" in message
    assert "every network interface" in (exposure_problem(None, password=None, allow_insecure=False) or "")


@pytest.mark.parametrize(
    ("password", "why"),
    [("s3cret", "has 6 characters"), ("x" * 11, "has 11 characters"), (" " * 20, "is blank"), ("\t\n" * 8, "is blank")],
)
def test_weak_passwords_are_refused_beyond_this_machine(password: str, why: str) -> None:
    for insecure in (False, True):  # opting out of a password does not excuse a weak one that is set
        message = exposure_problem("0.0.0.0", password=password, allow_insecure=insecure)
        assert message and f"SEGTUNE_PASSWORD {why}" in message and "at least 12 characters" in message
        assert password.strip() == "" or password not in message  # never echoed
    assert exposure_problem("0.0.0.0", password="x" * 12, allow_insecure=False) is None


def test_insecure_env() -> None:
    assert insecure_allowed({"SEGTUNE_ALLOW_INSECURE": "1"})
    assert not insecure_allowed({}) and not insecure_allowed({"SEGTUNE_ALLOW_INSECURE": "0"})


def test_command_line_options_are_typed() -> None:
    overrides, insecure = parse_args(
        ["--server.port", "8600", "--server.address=0.0.0.0", "--server.headless", "true", "--insecure-no-password"], {}
    )
    assert overrides == {"server.port": 8600, "server.address": "0.0.0.0", "server.headless": True}
    assert insecure


def test_streamlit_variables_apply_where_no_flag_does() -> None:
    environ = {
        "STREAMLIT_SERVER_ADDRESS": "0.0.0.0",
        "STREAMLIT_SERVER_PORT": "8700",
        "STREAMLIT_SERVER_HEADLESS": "true",
        "STREAMLIT_SERVER_CORS_ALLOWED_ORIGINS": "https://a.lab https://b.lab",
        "STREAMLIT_SERVER_COOKIE_SECRET": "x",
    }
    overrides, _ = parse_args(["--server.port", "8600"], environ)
    assert overrides == {
        "server.port": 8600,
        "server.address": "0.0.0.0",
        "server.headless": True,  # the flag wins
        "server.corsAllowedOrigins": ["https://a.lab", "https://b.lab"],
    }  # sensitive: Streamlit's own
    with pytest.raises(LaunchError, match="STREAMLIT_SERVER_PORT 'many': expected a int"):
        parse_args([], {"STREAMLIT_SERVER_PORT": "many"})


@pytest.mark.parametrize("argv", [["--server.nope", "1"], ["--server.port"], ["--server.port", "many"], ["app.py"]])
def test_bad_command_lines_are_refused(argv: list[str]) -> None:
    with pytest.raises(LaunchError):
        parse_args(argv, {})


def test_upload_limit() -> None:
    assert upload_limit_mb({}) is None
    assert upload_limit_mb({"SEGTUNE_MAX_UPLOAD_MB": "512"}) == 512
    for bad in ("0", "-1", "1.5", "lots"):
        with pytest.raises(LaunchError, match="SEGTUNE_MAX_UPLOAD_MB"):
            upload_limit_mb({"SEGTUNE_MAX_UPLOAD_MB": bad})
