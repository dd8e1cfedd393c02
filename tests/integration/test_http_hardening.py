"""Hostile HTTP against a real server: oversized and malformed request heads, and a connection
that must stay usable after an unexpected error. Spoken over raw sockets where a client library
would refuse to send the request, or would hide a dropped connection by opening a new one."""

from __future__ import annotations

import socket
import threading
import time

import httpx
import orjson
import pytest
import uvicorn

from opencues.settings import Settings
from opencues.storage import Database
from opencues.web.app import create_app
from opencues.web.server import uvicorn_options
from tests.integration.conftest import free_port, tls_context


def _exchange(port: int, request: bytes, timeout: float = 10) -> bytes:
    """Send ``request`` on a fresh connection; everything the server answers until it closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        try:
            sock.sendall(request)
        except (BrokenPipeError, ConnectionResetError):  # refused before we finished sending
            pass
        return _read_until_closed(sock)


def _read_until_closed(sock: socket.socket) -> bytes:
    chunks = []
    while True:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks)


def _read_response(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """One response (with Content-Length) from a keep-alive connection."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"the server closed the connection; received so far: {data!r}"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {name.lower(): value.strip() for name, _, value in (line.partition(":") for line in lines)}
    while len(body) < int(headers["content-length"]):
        chunk = sock.recv(65536)
        assert chunk, "the server closed the connection mid-body"
        body += chunk
    return int(status_line.split()[1]), headers, body


def _problem(raw: bytes, status: int) -> dict:
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(f"HTTP/1.1 {status} ".encode()), raw[:300]
    assert b"content-type: application/json" in head.lower(), head
    problem = orjson.loads(body)
    assert problem["status"] == status and problem["error"] is True and problem["type"] == "about:blank", problem
    assert set(problem) == {"type", "error", "status", "title", "detail"}, problem
    return problem


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """One real ``opencues serve`` for the whole module (these tests never change its data)."""
    from tests.integration.conftest import LiveServer

    import os

    workdir = tmp_path_factory.mktemp("hardening")
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENCUES_")}
    env.update(OPENCUES_DATA_DIR=str(workdir / "data"), PYTHONUNBUFFERED="1", OPENCUES_JOB_WORKERS="0")
    live = LiveServer(workdir, env, [], free_port()).start()
    yield live
    live.close()


def test_a_huge_header_is_refused_with_431_without_reading_it(server):
    header = b"X-Big: " + b"a" * (100 * 1024 * 1024)
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        sent = 0
        try:
            while sent < len(header):  # a client that would send 100 MB; the server stops it early
                sent += sock.send(header[sent : sent + 1024 * 1024])
        except (BrokenPipeError, ConnectionResetError):
            pass
        raw = _read_until_closed(sock)
    assert sent < 10 * 1024 * 1024, f"the server read {sent} bytes of one header"
    problem = _problem(raw, 431)
    assert "header" in problem["detail"]
    assert time.monotonic() - started < 10
    assert httpx.get(server.base_url + "/healthz", verify=tls_context()).status_code == 200  # and it is still well


def test_too_many_headers_are_431(server):
    headers = b"".join(b"X-H%d: v\r\n" % i for i in range(Settings().max_header_count + 1))
    raw = _exchange(server.port, b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + headers + b"\r\n")
    assert "headers" in _problem(raw, 431)["detail"]


def test_headers_within_the_limits_are_served(server):
    count = Settings().max_header_count - 2
    headers = b"".join(b"X-H%d: %s\r\n" % (i, b"v" * 100) for i in range(count))
    raw = _exchange(server.port, b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n" + headers + b"\r\n")
    assert raw.startswith(b"HTTP/1.1 200 "), raw[:200]


def test_an_oversized_url_is_414(server):
    path = b"/v2/accounts/a/flows/" + b"f" * Settings().max_url_bytes
    raw = _exchange(server.port, b"GET " + path + b" HTTP/1.1\r\nHost: x\r\n\r\n")
    assert "URL" in _problem(raw, 414)["detail"]


@pytest.mark.parametrize(
    "request_bytes",
    [
        pytest.param(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Bad: a\x01b\r\n\r\n", id="control-character-in-header"),
        pytest.param(b"GET /healthz HTTP/1.1\r\nHost: x\r\nBad Name: v\r\n\r\n", id="space-in-header-name"),
        pytest.param(b"NOT A REQUEST LINE\r\n\r\n", id="bad-request-line"),
        pytest.param(b"GET /healthz HTTP/9.7\r\n\r\n", id="bad-version"),
        pytest.param(b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03", id="tls-hello"),
    ],
)
def test_malformed_http_is_a_400_problem(server, request_bytes):
    problem = _problem(_exchange(server.port, request_bytes), 400)
    assert "HTTP" in problem["detail"]


# -- an unexpected error on a keep-alive connection ------------------------------------------


class ThreadedServer:
    """The app, served by uvicorn exactly as ``opencues serve`` configures it, in a thread of the
    test process, so a test can add a route of its own (one that fails on purpose)."""

    def __init__(self, app, settings: Settings):
        self.port = free_port()
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, **uvicorn_options(settings))
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self):
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            assert time.monotonic() < deadline and self.thread.is_alive(), "server did not start"
            time.sleep(0.02)
        return self

    def __exit__(self, *exc):
        self.server.should_exit = True
        self.thread.join(20)


@pytest.fixture
def failing_app(tmp_path):
    settings = Settings(data_dir=tmp_path, job_workers=0)
    db = Database(settings.resolved_database_url)
    app = create_app(settings, db)

    async def explode(_request):
        raise RuntimeError("secret internals")

    app.add_route("/explode", explode)  # this test's own app only, never a production route
    yield app, settings
    db.dispose()


def test_an_unexpected_error_is_a_500_problem_and_the_connection_stays_usable(failing_app):
    app, settings = failing_app
    with ThreadedServer(app, settings) as served:
        with socket.create_connection(("127.0.0.1", served.port), timeout=10) as sock:
            sock.sendall(b"GET /explode HTTP/1.1\r\nHost: x\r\n\r\n")
            status, headers, body = _read_response(sock)
            assert status == 500 and headers.get("connection", "").lower() != "close"
            problem = orjson.loads(body)
            assert problem["status"] == 500 and problem["type"] == "about:blank"
            assert "secret internals" not in body.decode()
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")  # the same connection
            assert _read_response(sock)[0] == 200

        # And a keep-alive client uses one connection for both.
        addresses = []

        def note_address(response):
            addresses.append(response.extensions["network_stream"].get_extra_info("client_addr"))

        hooks = {"response": [note_address]}
        with httpx.Client(base_url=f"http://127.0.0.1:{served.port}", event_hooks=hooks, verify=tls_context()) as client:
            first = client.get("/explode")
            second = client.get("/healthz")
        assert (first.status_code, second.status_code) == (500, 200)
        assert first.json()["status"] == 500
        assert addresses[0] == addresses[1]
