"""Black-box fixtures: the real ``opencues serve`` process, spoken to over real HTTP.

``live_server(...)`` starts a server as a subprocess on a free port, in a temporary working
directory with its own data dir (SQLite) or its own freshly created PostgreSQL database, and waits
until ``/healthz`` answers. The returned :class:`LiveServer` knows the exact environment the server
runs with, so ``server.cli("keys", "create", ...)``, ``server.spawn("worker")`` and
``server.database()`` reach the same data, and ``stop()`` / ``kill()`` / ``start()`` /
``restart()`` exercise shutdowns, crashes and restarts. Everything it started is killed and every database it created is dropped at teardown.

Typical use::

    def test_something(live_server, backend):
        server = live_server(backend=backend, env={"OPENCUES_RATE_LIMIT": "5/second"})
        account = server.create_account()                       # in-process, on the server's database
        key = server.cli_json("keys", "create", "--account", account, "--json")   # or the real CLI
        response = server.client(auth=(key["key"], key["secret"])).get(f"/v2/accounts/{account}/flows")
        server.kill()     # SIGKILL the whole process group: a crash
        server.start()    # same port, same data
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from opencues.storage import Database
from tests.conftest import _driver_url, create_postgres_database

STARTUP_TIMEOUT = float(os.environ.get("OPENCUES_TEST_STARTUP_TIMEOUT", "60"))


def pytest_collection_modifyitems(config, items):
    """Every test under tests/integration starts real processes: mark it ``slow``."""
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.slow)


@functools.cache
def tls_context():
    """The one TLS context of every HTTP client these tests make. httpx builds a new one per
    client, loading the whole CA bundle (~30 ms of CPU), even for the plain-HTTP servers here:
    a poll loop of ``httpx.get`` cost that per poll. Pass it as ``verify=``."""
    return httpx.create_ssl_context()


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def opencues_command() -> list[str]:
    """The installed ``opencues`` entry point beside this interpreter (else ``python -m opencues``)."""
    script = Path(sys.executable).parent / "opencues"
    return [str(script)] if script.exists() else [sys.executable, "-m", "opencues"]


class LiveServer:
    """One ``opencues serve`` process (group) and the configuration it runs with."""

    def __init__(self, workdir: Path, env: dict[str, str], serve_args: list[str], port: int):
        self.workdir = workdir
        self.env = env
        self.serve_args = serve_args
        self.port = port
        self.base_url = f"http://127.0.0.1:{port}"
        self.process: subprocess.Popen | None = None
        self._spawned: list[subprocess.Popen] = []
        self._starts = 0
        self.log_path = workdir / "serve-0.log"

    # -- configuration --------------------------------------------------------------------

    @property
    def data_dir(self) -> Path:
        return Path(self.env.get("OPENCUES_DATA_DIR") or self.workdir / "opencues-data")

    @property
    def database_url(self) -> str:
        return self.env.get("OPENCUES_DATABASE_URL") or f"sqlite:///{self.data_dir / 'opencues.db'}"

    # -- lifecycle ------------------------------------------------------------------------

    def start(self, timeout: float = STARTUP_TIMEOUT) -> "LiveServer":
        """Start ``opencues serve`` (again) on the same port and wait until it is healthy."""
        assert not self.running, "server is already running"
        self.log_path = self.workdir / f"serve-{self._starts}.log"
        self._starts += 1
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                [*opencues_command(), "serve", "--host", "127.0.0.1", "--port", str(self.port), *self.serve_args],
                cwd=self.workdir,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: kill() reaches uvicorn's workers too
            )
        self._wait_healthy(timeout)
        return self

    def _wait_healthy(self, timeout: float) -> None:
        """Polls every 20 ms (a refused connection or a reused client's request costs ~0.3 ms):
        at 0.1 s a start waited ~50 ms on average past the moment the server was ready."""
        deadline = time.monotonic() + timeout
        with self.client(timeout=2) as http:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    raise RuntimeError(f"opencues serve exited with {self.process.returncode}:\n{self.output()}")
                try:
                    if http.get("/healthz").status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
                time.sleep(0.02)
        self.kill()
        raise RuntimeError(f"opencues serve not healthy after {timeout}s:\n{self.output()}")

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def _signal_group(self, process: subprocess.Popen, sig: int) -> None:
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            pass

    def stop(self, timeout: float = 20) -> int:
        """Graceful shutdown (SIGTERM to the process group); SIGKILL if it overstays ``timeout``."""
        if self.process is None:
            return 0
        self._signal_group(self.process, signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            return self.kill()

    def kill(self) -> int:
        """Crash: SIGKILL the server and all its worker processes at once."""
        if self.process is None:
            return 0
        self._signal_group(self.process, signal.SIGKILL)
        return self.process.wait(10)

    def restart(self, *, crash: bool = False) -> "LiveServer":
        self.kill() if crash else self.stop()
        return self.start()

    def output(self) -> str:
        """What the current (or last) server process printed, stdout and stderr together."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    # -- the same configuration, from the command line ------------------------------------

    def cli(self, *args: str, check: bool = True, timeout: float = 120, input: str | None = None):
        """Run ``opencues ARGS`` with the server's environment; a CompletedProcess (text)."""
        result = subprocess.run(
            [*opencues_command(), *args],
            cwd=self.workdir,
            env=self.env,
            input=input,
            stdin=None if input is not None else subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if check and result.returncode != 0:
            raise AssertionError(f"opencues {' '.join(args)} failed ({result.returncode}):\n{result.stdout}{result.stderr}")
        return result

    def cli_json(self, *args: str, **kwargs):
        return json.loads(self.cli(*args, **kwargs).stdout)

    def spawn(self, *args: str, log_name: str | None = None) -> subprocess.Popen:
        """Start ``opencues ARGS`` in the background (e.g. ``worker``), killed at teardown.
        Its output goes to ``workdir/<log_name or args[0]-N>.log``."""
        log_path = self.workdir / f"{log_name or args[0]}-{len(self._spawned)}.log"
        with open(log_path, "wb") as log:
            process = subprocess.Popen(
                [*opencues_command(), *args],
                cwd=self.workdir,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        process.log_path = log_path
        self._spawned.append(process)
        return process

    def wait_spawned(self, process: subprocess.Popen, line: str = "running", timeout: float = STARTUP_TIMEOUT) -> None:
        """Wait until a process from ``spawn`` has printed ``line`` (``opencues worker`` prints
        "… thread(s) running" once its threads poll for jobs) — not a fixed sleep, which is too
        long on an idle machine and may be too short on a loaded one."""
        deadline = time.monotonic() + timeout
        while line not in process.log_path.read_text(errors="replace"):
            if process.poll() is not None:
                raise RuntimeError(f"{process.args} exited with {process.returncode}:\n{process.log_path.read_text()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{process.args} printed no {line!r} in {timeout}s:\n{process.log_path.read_text()}")
            time.sleep(0.02)

    def kill_spawned(self, process: subprocess.Popen, sig: int = signal.SIGKILL) -> int:
        self._signal_group(process, sig)
        return process.wait(20)

    # -- conveniences ---------------------------------------------------------------------

    def database(self):
        """A library ``Database`` on the server's database (dispose it after use). Faster than the
        CLI for test setup; use ``cli(...)`` where the command line itself matters."""
        from opencues.settings import Settings
        from opencues.storage import Database

        settings = Settings(data_dir=self.data_dir, database_url=self.env.get("OPENCUES_DATABASE_URL"))
        return Database(settings.resolved_database_url)

    def create_account(self, account_id: str | None = None, name: str | None = None) -> str:
        from opencues import accounts

        db = self.database()
        try:
            return accounts.create_account(db, account_id, name)["id"]
        finally:
            db.dispose()

    def create_key(self, account_id: str, read_only: bool = False) -> tuple[str, str]:
        from opencues import accounts

        db = self.database()
        try:
            created = accounts.create_key(db, account_id, read_only=read_only)
        finally:
            db.dispose()
        return created["key"], created["secret"]

    def client(self, auth: tuple[str, str] | None = None, timeout: float = 30, **kwargs) -> httpx.Client:
        """A real HTTP client for this server (close it, or use it as a context manager)."""
        kwargs.setdefault("verify", tls_context())
        return httpx.Client(base_url=self.base_url, auth=auth, timeout=timeout, **kwargs)

    def close(self) -> None:
        for process in self._spawned:
            if process.poll() is None:
                self._signal_group(process, signal.SIGKILL)
                process.wait(10)
        if self.running:
            self.kill()




@pytest.fixture(scope="session")
def live_postgres_template():
    """The name of a migrated PostgreSQL database that each PostgreSQL ``live_server`` is a copy
    of: migrating a new database took ~1 s of each such test (most of it PostgreSQL's)."""
    url, drop = create_postgres_database("opencues_live_template")
    db = Database(_driver_url(url))
    db.migrate()
    db.dispose()  # a template must have no connections when it is copied
    yield url.rsplit("/", 1)[1]
    drop()


@pytest.fixture
def live_server(tmp_path_factory, request):
    """A factory: ``live_server(backend="sqlite"|"postgres", env={...}, args=[...], start=True, migrated=True)``.

    ``env`` is laid over a clean environment (no inherited ``OPENCUES_*``); a value of None
    removes a variable (e.g. ``{"OPENCUES_DATA_DIR": None}`` to use the default ``./opencues-data``
    of the working directory). ``args`` are extra ``serve`` arguments such as ``["--workers", "2"]``
    or ``["--demo"]``. With ``start=False`` the server is configured but not started (call ``start()``).

    The database starts migrated, as after a server's first start: a copy of a migrated template
    (the session's SQLite file into the data dir; a PostgreSQL database made from one), which
    saves each server a migration (~0.3 s of CPU on SQLite, ~1 s on PostgreSQL). ``migrated=False``
    leaves it empty for the server to migrate itself; so does a data dir or SQLite URL of the
    test's own (``OPENCUES_DATA_DIR``: None, ``OPENCUES_DATABASE_URL`` set in ``env``).
    """
    servers: list[LiveServer] = []
    cleanups: list = []

    def make(
        backend: str = "sqlite", env: dict | None = None, args: list[str] | None = None, start: bool = True,
        migrated: bool = True,
    ):  # fmt: skip
        workdir = tmp_path_factory.mktemp("live")
        server_env = {k: v for k, v in os.environ.items() if not k.startswith("OPENCUES_")}
        server_env["OPENCUES_DATA_DIR"] = str(workdir / "opencues-data")
        server_env["PYTHONUNBUFFERED"] = "1"
        if backend == "postgres":
            template = request.getfixturevalue("live_postgres_template") if migrated else None
            url, drop = create_postgres_database("opencues_live", template=template)
            cleanups.append(drop)
            server_env["OPENCUES_DATABASE_URL"] = url
        elif backend != "sqlite":
            raise ValueError(f"unknown backend {backend!r}")
        for key, value in (env or {}).items():
            if value is None:
                server_env.pop(key, None)
            else:
                server_env[key] = str(value)
        if migrated and backend == "sqlite" and "OPENCUES_DATABASE_URL" not in server_env and "OPENCUES_DATA_DIR" in server_env:
            target = Path(server_env["OPENCUES_DATA_DIR"]) / "opencues.db"
            if not target.exists():
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(request.getfixturevalue("sqlite_template"), target)
        server = LiveServer(workdir, server_env, list(args or []), free_port())
        servers.append(server)
        if start:
            server.start()
        return server

    yield make
    for server in servers:
        server.close()
    for cleanup in cleanups:
        cleanup()
    for server in servers:
        shutil.rmtree(server.workdir, ignore_errors=True)
