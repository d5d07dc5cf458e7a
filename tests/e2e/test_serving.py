"""Serving on a network, over real HTTP and Streamlit's websocket against ``python -m app.serve``
(what scripts/start.sh runs): what answers without signing in, login throttling, the refusal to
listen on the network without a password, and the upload limit.

Run with ``python -m pytest -m serve tests/e2e -q`` (no browser needed).
"""

from __future__ import annotations

import secrets
import socket
import subprocess
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import pytest
from websockets.exceptions import InvalidStatus

from core.data.demo import create_demo_dataset
from core.settings import load_settings
from tests.helpers.dashboard import (
    REPO,
    Dashboard,
    Reply,
    ScriptRun,
    app_session,
    dashboard_env,
    free_port,
    launch_command,
    login,
    request,
    rss_kb,
    run_script,
    running_dashboard,
    session_cookie,
    xsrf_cookie,
)

pytestmark = pytest.mark.serve

PASSWORD = "correct horse battery staple"


@pytest.fixture(scope="module")
def protected(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dashboard]:
    """A password-protected dashboard whose workspace has the demo dataset (its page shows images,
    which Streamlit serves from /media)."""
    home = tmp_path_factory.mktemp("serve-protected")
    create_demo_dataset(load_settings({"SEGTUNE_HOME": str(home)}).datasets_dir, count=12, size=64)
    with running_dashboard(home, SEGTUNE_PASSWORD=PASSWORD) as dashboard:
        yield dashboard


@pytest.fixture(scope="module")
def signed_in(protected: Dashboard) -> Iterator[tuple[str, ScriptRun]]:
    """A session cookie from a real login, and one run of the app over a websocket opened with it
    (kept open: an upload needs a live session)."""
    reply = login(protected.url, PASSWORD, "/jobs")
    assert reply.status == 303 and reply.headers["location"] == "/jobs"
    cookie = session_cookie(reply)
    attributes = reply.headers["set-cookie"].lower()
    assert "httponly" in attributes and "samesite=lax" in attributes
    with app_session(protected.url, cookie) as run:
        yield cookie, run


def multipart(name: str, data: bytes) -> tuple[bytes, str]:
    boundary = secrets.token_hex(8)
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{name}"\r\n'
        "Content-Type: application/zip\r\n\r\n"
    ).encode()
    return head + data + f"\r\n--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def put_upload(url: str, session_id: str, data: bytes, cookie: str = "") -> int:
    """PUT a file to the upload endpoint as Streamlit's file_uploader does (with the XSRF token a
    client gets from /_stcore/health); returns the status."""
    token = xsrf_cookie(url, cookie or None)
    body, content_type = multipart("data.zip", data)
    cookies = "; ".join(c for c in (cookie, f"_streamlit_xsrf={token}") if c)
    headers = {"Content-Type": content_type, "X-Xsrftoken": token, "Cookie": cookies}
    return request(
        f"{url}/_stcore/upload_file/{session_id}/file-{secrets.token_hex(4)}", "PUT", body=body, headers=headers
    ).status


# --- 1. Only the login page and static assets answer without a session ---------------------------


def test_login_page_health_and_static_assets_are_public(protected: Dashboard) -> None:
    page = request(f"{protected.url}/login")
    assert page.status == 200 and b'name="password"' in page.body
    assert b"<script" not in page.body  # the login page carries nothing of the app
    assert request(f"{protected.url}/_stcore/health").status == 200
    import streamlit

    bundle = next((Path(streamlit.__file__).parent / "static" / "static" / "js").glob("*.js"))
    assert request(f"{protected.url}/static/js/{bundle.name}").status == 200


@pytest.mark.parametrize("path", ["/", "/jobs", "/leaderboard"])
def test_pages_redirect_to_login_without_a_session(protected: Dashboard, path: str) -> None:
    reply = request(f"{protected.url}{path}")
    assert reply.status == 303
    assert reply.headers["location"] == f"/login?next={path}"
    assert b'<div id="root"' not in reply.body and reply.body == b""


@pytest.mark.parametrize(
    "path", ["/_stcore/metrics", "/_stcore/host-config", "/_stcore/agent/openapi.json", "/component/x/index.html"]
)
def test_api_routes_refuse_without_a_session(protected: Dashboard, path: str) -> None:
    assert request(f"{protected.url}{path}").status == 401


@pytest.mark.parametrize("path", ["/static/no-such-file", "/static/../_stcore/metrics", "/static/x/../../media/a.jpg"])
def test_only_real_static_files_are_public(protected: Dashboard, path: str) -> None:
    """Streamlit's static handler would answer any unknown name with the page shell."""
    reply = request(f"{protected.url}{path}")
    assert reply.status in (303, 401) and reply.body == b""


def test_metrics_answer_with_a_session(protected: Dashboard, signed_in: tuple[str, ScriptRun]) -> None:
    cookie, _ = signed_in
    assert request(f"{protected.url}/_stcore/metrics", headers={"Cookie": cookie}).status == 200


def test_websocket_refused_without_a_valid_session(protected: Dashboard) -> None:
    for cookie in (None, "segtune_session=v1.9999999999.forged.0000", "segtune_session=garbage"):
        with pytest.raises(InvalidStatus) as refused:
            run_script(protected.url, cookie)
        assert refused.value.response.status_code == 403
    assert "refused websocket without a session from 127.0.0.1" in protected.log_text()


def test_signed_in_session_runs_the_app(signed_in: tuple[str, ScriptRun]) -> None:
    _, run = signed_in
    assert "Datasets" in run.texts and run.session_id
    assert run.media_urls, "the demo dataset's gallery should be served from /media"


def test_media_needs_a_session(protected: Dashboard, signed_in: tuple[str, ScriptRun]) -> None:
    cookie, run = signed_in
    media = f"{protected.url}{run.media_urls[0]}"
    assert request(media, headers={"Cookie": cookie}).status == 200
    refused = request(media)
    assert refused.status == 401 and not refused.body.startswith(b"\xff\xd8")  # no JPEG bytes


def test_upload_needs_a_session_and_stores_nothing(protected: Dashboard, signed_in: tuple[str, ScriptRun]) -> None:
    cookie, run = signed_in
    assert put_upload(protected.url, run.session_id, b"PK small", cookie) == 204  # the request is valid...
    before = rss_kb(protected.process.pid)
    for _ in range(3):  # ...but without the cookie, 3 x 40 MB are refused and never buffered
        try:
            status = put_upload(protected.url, run.session_id, b"\0" * (40 << 20))
        except (BrokenPipeError, ConnectionResetError):
            status = 401  # the server answered and closed while the body was still being sent
        assert status == 401
    grown_mb = (rss_kb(protected.process.pid) - before) / 1024
    assert grown_mb < 30, f"the server grew by {grown_mb:.0f} MB on refused uploads"
    assert "refused PUT /_stcore/upload_file/" in protected.log_text()


def test_sign_out_clears_the_cookie(protected: Dashboard) -> None:
    reply = request(f"{protected.url}/logout")
    assert reply.status == 303 and reply.headers["location"] == "/login"
    assert 'segtune_session=""' in reply.headers["set-cookie"] or "Max-Age=0" in reply.headers["set-cookie"]


def test_sign_out_revokes_the_cookie_on_the_server(protected: Dashboard, signed_in: tuple[str, ScriptRun]) -> None:
    """A copy of the cookie (another tab, a stolen one) stops working too; other sessions go on."""
    ended = session_cookie(login(protected.url, PASSWORD))
    assert request(f"{protected.url}/_stcore/metrics", headers={"Cookie": ended}).status == 200
    assert request(f"{protected.url}/logout", headers={"Cookie": ended}).status == 303
    assert request(f"{protected.url}/_stcore/metrics", headers={"Cookie": ended}).status == 401
    assert request(f"{protected.url}/", headers={"Cookie": ended}).status == 303  # back to the login page
    with pytest.raises(InvalidStatus) as refused:
        run_script(protected.url, ended)
    assert refused.value.response.status_code == 403
    assert request(f"{protected.url}/_stcore/metrics", headers={"Cookie": signed_in[0]}).status == 200
    assert "signed out from 127.0.0.1" in protected.log_text()


# --- 1b. Failed logins are throttled per client and logged ----------------------------------------


def test_failed_logins_are_throttled_and_logged(tmp_path: Path) -> None:
    with running_dashboard(tmp_path / "home", SEGTUNE_PASSWORD=PASSWORD) as dashboard:
        started = time.monotonic()
        statuses = [login(dashboard.url, f"guess-{i}").status for i in range(8)]
        assert statuses[:5] == [401] * 5  # five free tries...
        assert statuses[5:] == [429] * 3  # ...then locked out
        assert time.monotonic() - started < 10  # refusals are immediate, not slow-walked
        locked = login(dashboard.url, PASSWORD)
        assert locked.status == 429, "while locked out even the right password is refused"
        assert 1 <= int(locked.headers["retry-after"]) <= 30
        log = dashboard.log_text()
    assert "login failed from 127.0.0.1 (1 in a row)" in log
    assert "login failed from 127.0.0.1 (6 in a row): locked out for 30 s" in log
    assert "login refused from 127.0.0.1: locked out" in log


def test_parallel_guesses_get_no_more_tries(tmp_path: Path) -> None:
    """20 connections send their headers, wait, then their guesses together (the last one right):
    still only 5 guesses are compared, the rest are refused unread."""
    import http.client
    import urllib.parse

    with running_dashboard(tmp_path / "home", SEGTUNE_PASSWORD=PASSWORD) as dashboard:
        connections = []
        for i in range(20):
            body = urllib.parse.urlencode({"password": PASSWORD if i == 19 else f"guess-{i}"}).encode()
            connection = http.client.HTTPConnection("127.0.0.1", dashboard.port, timeout=30)
            connection.putrequest("POST", "/login")
            connection.putheader("Content-Type", "application/x-www-form-urlencoded")
            connection.putheader("Content-Length", str(len(body)))
            connection.endheaders()
            connections.append((connection, body))
        time.sleep(0.5)  # every request is now in the server, waiting for its body
        for connection, body in connections:
            connection.send(body)
        statuses = [connection.getresponse().status for connection, _ in connections]
        for connection, _ in connections:
            connection.close()
    assert sorted(statuses) == [401] * 5 + [429] * 15, statuses


def test_a_flood_from_many_addresses_slows_every_guesser_but_no_signed_in_user(tmp_path: Path) -> None:
    """Guesses from many addresses (X-Forwarded-For, which uvicorn trusts from 127.0.0.1): a /24's
    shared budget is 20 failures, the server's 100; a browser with a valid cookie never waits."""

    def guess(dashboard: Dashboard, address: str, password: str = "wrong guess") -> Reply:
        form = urllib.parse.urlencode({"password": password}).encode()
        return request(
            f"{dashboard.url}/login",
            "POST",
            body=form,
            headers={"Content-Type": "application/x-www-form-urlencoded", "X-Forwarded-For": address},
        )

    with running_dashboard(tmp_path / "home", SEGTUNE_PASSWORD=PASSWORD) as dashboard:
        cookie = session_cookie(login(dashboard.url, PASSWORD))
        started = time.monotonic()
        # one network: 5 addresses x 4 guesses, each within its own 5 free ones, spend the /24's 20
        assert [guess(dashboard, f"10.9.9.{host}").status for host in range(1, 6) for _ in range(4)] == [401] * 20
        locked = guess(dashboard, "10.9.9.6")
        assert locked.status == 429 and b"Too many wrong passwords from your network" in locked.body
        assert guess(dashboard, "10.9.9.7", PASSWORD).status == 429  # the whole /24 waits, right password or not
        assert guess(dashboard, "10.9.8.1").status == 401  # the next /24 does not
        # the server: 22 failures so far; 78 more from as many networks fill its 100, the 101st locks everyone
        assert [guess(dashboard, f"172.16.{n}.1").status for n in range(78)] == [401] * 78
        flooded = guess(dashboard, "192.0.2.1")
        assert flooded.status == 429 and b"signing in is paused for everyone" in flooded.body
        assert guess(dashboard, "198.51.100.1", PASSWORD).status == 429
        assert time.monotonic() - started < 60  # refusals are immediate
        # a signed-in browser is never locked out
        assert request(f"{dashboard.url}/_stcore/metrics", headers={"Cookie": cookie}).status == 200
        assert request(f"{dashboard.url}/login", headers={"Cookie": cookie}).status == 303
        assert "Datasets" in run_script(dashboard.url, cookie).texts
        log = dashboard.log_text()
    assert "login failed from 10.9.9.6 (1 in a row): locked out for 30 s (network 10.9.9.0/24)" in log
    assert (
        "login failed from 192.0.2.1 (1 in a row): locked out for 10 s (every address: the server's failure budget "
        "is spent)" in log
    )


# --- 2. No password on a network address: refused unless explicitly insecure ---------------------


def _port_open(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def test_network_address_without_password_is_refused(tmp_path: Path) -> None:
    port = free_port()
    result = subprocess.run(
        launch_command(port, "--server.address", "0.0.0.0"),
        cwd=REPO,
        env=dashboard_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "Refusing to serve SegTune on 0.0.0.0 without a password" in result.stderr
    assert "SEGTUNE_PASSWORD" in result.stderr and "--insecure-no-password" in result.stderr
    assert "You can now view" not in result.stdout + result.stderr
    assert not _port_open(port)


def test_a_blank_or_short_password_on_a_network_address_is_refused(tmp_path: Path) -> None:
    port = free_port()
    result = subprocess.run(
        launch_command(port, "--server.address", "0.0.0.0"),
        cwd=REPO,
        env=dashboard_env(tmp_path, SEGTUNE_PASSWORD=" "),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "Refusing to serve SegTune on 0.0.0.0: SEGTUNE_PASSWORD is blank" in result.stderr
    assert "at least 12 characters" in result.stderr  # a short one: tests/app/test_serving_rules.py
    assert not _port_open(port)


def test_the_address_variable_is_honoured_like_streamlit_run(tmp_path: Path) -> None:
    """STREAMLIT_SERVER_ADDRESS (as `streamlit run` reads it) puts the launcher on the network: refused."""
    port = free_port()
    result = subprocess.run(
        launch_command(port),
        cwd=REPO,
        env=dashboard_env(tmp_path, STREAMLIT_SERVER_ADDRESS="0.0.0.0"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "Refusing to serve SegTune on 0.0.0.0 without a password" in result.stderr
    assert not _port_open(port)


def test_insecure_flag_allows_it_with_a_warning(tmp_path: Path) -> None:
    with running_dashboard(tmp_path / "home", "--server.address", "0.0.0.0", "--insecure-no-password") as dashboard:
        assert request(f"{dashboard.url}/").status == 200  # no gate: the app itself
        assert "WITHOUT a password" in dashboard.log_text()


def test_streamlit_run_of_the_launcher_also_refuses(tmp_path: Path) -> None:
    """`streamlit run app/serve.py` (Streamlit finds the st.App) checks at startup, before serving."""
    import sys

    port = free_port()
    command = [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        "app/serve.py",
        "--server.port",
        str(port),
        "--server.address",
        "0.0.0.0",
        "--server.headless",
        "true",
    ]
    result = subprocess.run(command, cwd=REPO, env=dashboard_env(tmp_path), capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert "Refusing to serve SegTune on 0.0.0.0 without a password" in result.stdout + result.stderr


# --- 3. Upload size limit ------------------------------------------------------------------------


def test_upload_limit_from_environment(tmp_path: Path) -> None:
    with running_dashboard(tmp_path / "home", SEGTUNE_MAX_UPLOAD_MB="1") as dashboard:
        with app_session(dashboard.url) as run:
            assert put_upload(dashboard.url, run.session_id, b"\0" * (512 << 10)) == 204
            assert put_upload(dashboard.url, run.session_id, b"\0" * (2 << 20)) == 413


def test_bad_upload_limit_is_refused(tmp_path: Path) -> None:
    result = subprocess.run(
        launch_command(free_port()),
        cwd=REPO,
        env=dashboard_env(tmp_path, SEGTUNE_MAX_UPLOAD_MB="lots"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2 and "SEGTUNE_MAX_UPLOAD_MB='lots'" in result.stderr
