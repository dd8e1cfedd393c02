"""pytest fixtures for testing code that talks to the Appcues API, against a real opencues server.

Registered through the ``pytest11`` entry point: ``pip install opencues`` is all it takes.

``opencues_server`` (session): an ``opencues serve --test`` process on a free port of
127.0.0.1, with a fresh temporary data dir, stopped at the end of the session — or, when
``OPENCUES_TEST_URL`` and ``OPENCUES_ADMIN_TOKEN`` are set, that server, already running. It has
``.url``, ``.admin_token`` and ``.control`` (an ``opencues.client.Control``).

``appcues``: a ``opencues.client.Client`` for a fresh account (``.account_id``), deleted with its
data after the test.

Both are lazy: nothing starts unless a test that will run asks for one of them (a suite's own
fixture of the same name does not count) — and then the server is launched as soon as the tests
are collected, so it starts while the session gets going.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

STARTUP_TIMEOUT_SECONDS = 60


class OpencuesServer:
    """A running opencues server with its control API."""

    def __init__(self, url: str, admin_token: str, process: subprocess.Popen | None = None, log: Path | None = None):
        from opencues.client import Control

        self.url = url.rstrip("/")
        self.admin_token = admin_token
        self.process = process
        self.log = log
        self.control = Control(self.url, admin_token)

    def client(self, account: dict):
        """A ``Client`` for an account made with ``control.create_account()``."""
        return self.control.client(account)

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log and self.log.exists() else ""

    def stop(self) -> None:
        self.control.close()
        if self.process is None:
            return
        try:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(5)
        except ProcessLookupError:
            pass
        if self.log is not None:
            self.log.unlink(missing_ok=True)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def launch() -> OpencuesServer:
    """Start ``opencues serve --test`` on a free port, without waiting for it (``wait_ready``)."""
    import secrets

    token = secrets.token_urlsafe(24)
    port = _free_port()
    # Nothing of the caller's OPENCUES_* configuration: a test server must never point at real data.
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENCUES_")}
    env.update(OPENCUES_ADMIN_TOKEN=token, OPENCUES_JOB_POLL_SECONDS="0.05", PYTHONUNBUFFERED="1")
    log = Path(tempfile.mkstemp(prefix="opencues-test-server-", suffix=".log")[1])
    with open(log, "wb") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "opencues", "serve", "--test", "--host", "127.0.0.1", "--port", str(port)],
            env=env, stdin=subprocess.DEVNULL, stdout=sink, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    return OpencuesServer(f"http://127.0.0.1:{port}", token, process, log)


def wait_ready(server: OpencuesServer, timeout: float = STARTUP_TIMEOUT_SECONDS) -> OpencuesServer:
    """Return once ``/-/ready`` answers 200 (the process died or timed out: RuntimeError).
    One client for every poll: httpx builds a TLS context per client (~30 ms of CPU, the CA
    bundle loaded), which at a poll every 10 ms took a core from the server being waited for."""
    import httpx

    deadline = time.monotonic() + timeout
    with httpx.Client(base_url=server.url, timeout=1) as http:
        while True:
            if server.process.poll() is not None:
                raise RuntimeError(f"opencues serve --test exited with {server.process.returncode}:\n{server.output()}")
            try:
                if http.get("/-/ready").status_code == 200:
                    return server
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                output = server.output()
                server.stop()
                raise RuntimeError(f"opencues serve --test not ready after {timeout:.0f}s:\n{output}")
            time.sleep(0.01)


def start_server(timeout: float = STARTUP_TIMEOUT_SECONDS) -> OpencuesServer:
    """``opencues serve --test`` on a free port, once ``/-/ready`` answers."""
    return wait_ready(launch(), timeout)


_FIXTURES = ("opencues_server", "appcues")
_early: list[OpencuesServer] = []  # a server launched at collection, not yet claimed by the fixture


def _external() -> tuple[str, str] | None:
    url, token = os.environ.get("OPENCUES_TEST_URL"), os.environ.get("OPENCUES_ADMIN_TOKEN")
    return (url, token) if url and token else None


@pytest.hookimpl(trylast=True)  # after -k/-m deselection: only the tests that will run count
def pytest_collection_modifyitems(session, config, items):
    """When a test that will run uses the fixtures, launch the server now, so that it starts while
    the session gets going rather than when the first such test asks for it."""
    if _external() is None and not _early and any(_uses_our_fixtures(item) for item in items):
        _early.append(launch())


def _uses_our_fixtures(item) -> bool:
    """Whether the test asks for this plugin's ``opencues_server`` or ``appcues`` — not for a
    suite's own fixture of the same name (an in-process ``appcues``, say), which needs no server."""
    definitions = getattr(getattr(item, "_fixtureinfo", None), "name2fixturedefs", None)
    for name in _FIXTURES:
        if name not in getattr(item, "fixturenames", ()):
            continue
        if definitions is None or not definitions.get(name):  # unknown shape: assume it is ours
            return True
        if getattr(definitions[name][-1].func, "__module__", __name__) == __name__:
            return True
    return False


def pytest_sessionfinish(session, exitstatus):
    while _early:  # launched, never used (e.g. the session was interrupted)
        _early.pop().stop()


@pytest.fixture(scope="session")
def opencues_server():
    """An opencues server for the session (see the module docstring)."""
    external = _external()
    if external is not None:
        server = OpencuesServer(*external)
    else:
        server = wait_ready(_early.pop() if _early else launch())
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def appcues(opencues_server):
    """A ``Client`` for a fresh account (``.account_id``), deleted after the test."""
    from opencues.client import AppcuesError

    account = opencues_server.control.create_account()
    client = opencues_server.client(account)
    try:
        yield client
    finally:
        client.close()
        try:
            opencues_server.control.delete_account(account["id"])
        except AppcuesError as exc:  # the test deleted it itself, or reset the server
            if exc.status != 404:
                raise
