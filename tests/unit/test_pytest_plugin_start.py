"""The pytest plugin's wait for its server, without starting one: a stand-in that answers
``/-/ready`` with 503 a few times, then 200."""

from __future__ import annotations

import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from opencues import pytest_plugin


class _StartingServer(BaseHTTPRequestHandler):
    answers: list[int] = []

    def do_GET(self):  # noqa: N802 - the name http.server calls
        status = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


class _Running:
    def poll(self):
        return None


def test_waiting_for_ready_builds_one_tls_context_not_one_per_poll(monkeypatch):
    # httpx builds a TLS context (the CA bundle loaded, ~30 ms of CPU) for every client it makes.
    built = []
    real = ssl.create_default_context
    monkeypatch.setattr(ssl, "create_default_context", lambda *a, **kw: built.append(1) or real(*a, **kw))
    _StartingServer.answers = [503, 503, 503, 200]
    http = ThreadingHTTPServer(("127.0.0.1", 0), _StartingServer)
    threading.Thread(target=http.serve_forever, daemon=True).start()
    try:
        server = pytest_plugin.OpencuesServer(f"http://127.0.0.1:{http.server_port}", "token", _Running())
        built.clear()  # the server's control client is not the wait's
        assert pytest_plugin.wait_ready(server, timeout=10) is server
    finally:
        http.shutdown()
        http.server_close()
    assert _StartingServer.answers == [200]  # it did poll four times
    assert len(built) <= 1
