"""Start the real dashboard (``python -m app.serve``, what scripts/start.sh runs) on a free port,
and talk to it as a browser would: HTTP requests and Streamlit's websocket protocol."""

from __future__ import annotations

import http.client
import os
import socket
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.helpers.machine import REPO


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_server(url: str, process: subprocess.Popen, timeout_s: float = 60) -> None:
    import urllib.request

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the dashboard exited with {process.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    raise TimeoutError(f"the dashboard did not answer at {url} within {timeout_s} s")


def dashboard_env(home: Path, **extra: str) -> dict[str, str]:
    env = {**os.environ, "SEGTUNE_HOME": str(home), "SEGTUNE_HEARTBEAT_S": "2", **extra}
    for name in ("SEGTUNE_DB", "SEGTUNE_ARTIFACTS", "SEGTUNE_ALLOW_INSECURE", "SEGTUNE_MAX_UPLOAD_MB"):
        if name not in extra:
            env.pop(name, None)
    if "SEGTUNE_PASSWORD" not in extra:
        env.pop("SEGTUNE_PASSWORD", None)
    return env


def launch_command(port: int, *args: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "app.serve",
        "--server.port",
        str(port),
        "--server.headless",
        "true",
        "--browser.gatherUsageStats",
        "false",
        *args,
    ]


@dataclass
class Dashboard:
    url: str
    port: int
    process: subprocess.Popen
    log: Path

    def log_text(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")


@contextmanager
def running_dashboard(home: Path, *args: str, **env: str) -> Iterator[Dashboard]:
    """The dashboard on 127.0.0.1:<free port> with workspace ``home``; extra CLI ``args``; extra
    environment ``env`` (e.g. SEGTUNE_PASSWORD). Stopped and waited for on exit."""
    home.mkdir(parents=True, exist_ok=True)
    port = free_port()
    log_path = home / f"dashboard-{port}.log"
    with log_path.open("w") as log:
        process = subprocess.Popen(
            launch_command(port, "--server.address", "127.0.0.1", *args),
            cwd=REPO,
            env=dashboard_env(home, **env),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        url = f"http://127.0.0.1:{port}"
        try:
            wait_for_server(url, process)
            yield Dashboard(url, port, process, log_path)
        finally:
            process.terminate()
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes


def request(
    url: str, method: str = "GET", *, body: bytes | None = None, headers: dict[str, str] | None = None
) -> Reply:
    """One HTTP request, no redirects followed (a redirect is an answer we check)."""
    parts = urllib.parse.urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    try:
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        connection.request(method, path or "/", body=body, headers=headers or {})
        response = connection.getresponse()
        return Reply(response.status, {k.lower(): v for k, v in response.getheaders()}, response.read())
    finally:
        connection.close()


def login(url: str, password: str, next_path: str = "/") -> Reply:
    form = urllib.parse.urlencode({"password": password, "next": next_path}).encode()
    return request(f"{url}/login", "POST", body=form, headers={"Content-Type": "application/x-www-form-urlencoded"})


def session_cookie(reply: Reply) -> str:
    """``segtune_session=...`` from a successful login's Set-Cookie."""
    return reply.headers["set-cookie"].split(";", 1)[0]


def xsrf_cookie(url: str, cookie: str | None = None) -> str:
    """The XSRF token Streamlit hands out with /_stcore/health (to anyone, as a browser gets it)."""
    reply = request(f"{url}/_stcore/health", headers={"Cookie": cookie} if cookie else {})
    value = reply.headers["set-cookie"].split(";", 1)[0]
    assert value.startswith("_streamlit_xsrf="), value
    return value.split("=", 1)[1]


def websocket_url(url: str) -> str:
    return url.replace("http://", "ws://") + "/_stcore/stream"


@dataclass
class ScriptRun:
    session_id: str
    texts: list[str]
    media_urls: list[str]


@contextmanager
def app_session(url: str, cookie: str | None = None, timeout_s: float = 60) -> Iterator[ScriptRun]:
    """Open Streamlit's websocket like the browser, ask for one run of the app, and collect what
    it sends back: the session id, every text element and every /media URL. The session stays
    open (uploads need a live session) until the block ends."""
    from streamlit.proto.BackMsg_pb2 import BackMsg
    from streamlit.proto.ForwardMsg_pb2 import ForwardMsg
    from websockets.sync.client import connect

    headers = {"Cookie": cookie} if cookie else {}
    run = ScriptRun("", [], [])
    with connect(
        websocket_url(url), subprotocols=["streamlit"], additional_headers=headers, open_timeout=20, max_size=None
    ) as ws:
        rerun = BackMsg()
        rerun.rerun_script.query_string = ""
        rerun.rerun_script.page_script_hash = ""
        ws.send(rerun.SerializeToString())
        deadline = time.monotonic() + timeout_s
        while True:
            if time.monotonic() > deadline:
                raise TimeoutError("the script did not finish")
            message = ForwardMsg()
            message.ParseFromString(ws.recv(timeout=max(0.1, deadline - time.monotonic())))
            kind = message.WhichOneof("type")
            if kind == "new_session":
                run.session_id = message.new_session.initialize.session_id
            elif kind == "delta":
                _collect(message.delta, run.texts, run.media_urls)
            elif kind == "script_finished":
                break
        yield run


def run_script(url: str, cookie: str | None = None) -> ScriptRun:
    """One run of the app over a websocket that is closed again afterwards."""
    with app_session(url, cookie) as run:
        return run


def _collect(delta: object, texts: list[str], media: list[str]) -> None:
    from google.protobuf.json_format import MessageToDict

    def walk(node: object) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if isinstance(value, str) and key in ("body", "label") and value:
                    texts.append(value)
                elif isinstance(value, str) and value.startswith("/media/"):
                    media.append(value)
                else:
                    walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(MessageToDict(delta))


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")
