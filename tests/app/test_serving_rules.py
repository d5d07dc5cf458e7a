"""The serving rules without a server: login throttle (stepped clock), session cookies, the
network-exposure rule, the launcher's command line and upload limit."""

from __future__ import annotations

import pytest

from app.launch_rules import LaunchError, exposure_problem, insecure_allowed, is_loopback, parse_args, upload_limit_mb
from app.login_throttle import LoginThrottle, ThrottlePolicy
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
    assert exposure_problem("localhost", password_set=False, allow_insecure=False) is None
    assert exposure_problem("0.0.0.0", password_set=True, allow_insecure=False) is None
    assert exposure_problem("0.0.0.0", password_set=False, allow_insecure=True) is None
    message = exposure_problem("0.0.0.0", password_set=False, allow_insecure=False)
    assert message and "SEGTUNE_PASSWORD" in message and "--insecure-no-password" in message
    assert "every network interface" in (exposure_problem(None, password_set=False, allow_insecure=False) or "")


def test_insecure_env() -> None:
    assert insecure_allowed({"SEGTUNE_ALLOW_INSECURE": "1"})
    assert not insecure_allowed({}) and not insecure_allowed({"SEGTUNE_ALLOW_INSECURE": "0"})


def test_command_line_options_are_typed() -> None:
    overrides, insecure = parse_args(["--server.port", "8600", "--server.address=0.0.0.0", "--server.headless", "true",
                                      "--insecure-no-password"])
    assert overrides == {"server.port": 8600, "server.address": "0.0.0.0", "server.headless": True}
    assert insecure


@pytest.mark.parametrize("argv", [["--server.nope", "1"], ["--server.port"], ["--server.port", "many"], ["app.py"]])
def test_bad_command_lines_are_refused(argv: list[str]) -> None:
    with pytest.raises(LaunchError):
        parse_args(argv)


def test_upload_limit() -> None:
    assert upload_limit_mb({}) is None
    assert upload_limit_mb({"SEGTUNE_MAX_UPLOAD_MB": "512"}) == 512
    for bad in ("0", "-1", "1.5", "lots"):
        with pytest.raises(LaunchError, match="SEGTUNE_MAX_UPLOAD_MB"):
            upload_limit_mb({"SEGTUNE_MAX_UPLOAD_MB": bad})
