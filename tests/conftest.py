"""Shared fixtures. Every database-backed test runs twice: on SQLite and on PostgreSQL.

PostgreSQL comes from ``OPENCUES_TEST_POSTGRES_URL`` (default: the local server at
``postgresql://postgres@127.0.0.1:5432/test``; set it empty to skip). Each test session works in a
database of its own, created on that server and dropped at the end. When PostgreSQL cannot be
reached its tests are skipped — unless ``OPENCUES_REQUIRE_POSTGRES=1`` (CI), which fails instead.
"""

from __future__ import annotations

import base64
import os
import select
import shutil
import sys
import tempfile
import threading
import uuid
from dataclasses import dataclass


def _cache_compiled_modules() -> None:
    """Keep compiled modules between processes even under ``PYTHONDONTWRITEBYTECODE``.

    With that variable set (as in some shells and CI images), every process compiled every module
    it imported that had no ``.pyc`` yet: the checkout's own, and all that pytest rewrites for its
    assertions (the whole of each pytest plugin's distribution: hypothesis, schemathesis, anyio,
    opencues…), ~1.5 s of CPU per pytest process and more per server or CLI process a test starts.
    Compiled files now go to a cache outside the checkout (``PYTHONPYCACHEPREFIX``, by default in
    the temporary directory), so nothing is written beside the sources, as the variable wants;
    this process and every process it starts (xdist workers, servers, the CLI) share it."""
    if not sys.dont_write_bytecode:
        return
    default = os.path.join(tempfile.gettempdir(), f"opencues-pycache-{os.getuid()}")
    prefix = os.environ.get("PYTHONPYCACHEPREFIX") or default
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    os.environ["PYTHONPYCACHEPREFIX"] = prefix
    sys.pycache_prefix = prefix
    sys.dont_write_bytecode = False


_cache_compiled_modules()

import pytest
from hypothesis import settings as hypothesis_settings
from sqlalchemy import create_engine, text

from opencues import accounts
from opencues.settings import Settings
from opencues.storage import Database
from opencues.storage.schema import metadata

DEFAULT_POSTGRES = "postgresql://postgres@127.0.0.1:5432/test"


def _share_compiled_statements() -> None:
    """Every ``Database`` this process opens shares, per kind of database, one SQLAlchemy dialect
    and with it one cache of compiled statements. A test opens databases of its own (a copied
    SQLite file, a fresh app), and SQLAlchemy keys its compiled statements by the dialect
    object, which each engine makes anew: every test compiled every statement it ran again
    (~1 ms each; half of what making an account cost). The dialects are alike (same driver,
    same options: ``Database`` passes nothing else per engine), and the shared one is
    initialized by its own engine's first connection before any other engine uses it.

    The engine's own dialect still connects (it made the pool) but is not initialized again: its
    pool's first connection would otherwise run the dialect's start-up queries (server version,
    schema, isolation level, the hstore type: ~5 round trips, ~20 ms on PostgreSQL) for a dialect
    nothing reads — once per test database."""
    make_engine = Database.__init__

    def __init__(self, url: str, **kwargs) -> None:
        make_engine(self, url, **kwargs)
        engine = self.engine
        kind = (engine.dialect.name, engine.dialect.driver)
        if kind not in _SHARED_DIALECTS:
            with engine.connect():  # initializes the dialect (server version, defaults)
                pass
            _SHARED_DIALECTS[kind] = (engine.dialect, engine._compiled_cache)
        else:
            engine.dialect.initialize = _initialized_already
        engine.dialect, engine._compiled_cache = _SHARED_DIALECTS[kind]

    Database.__init__ = __init__


def _initialized_already(connection) -> None:
    """``Dialect.initialize`` of an engine whose dialect was replaced by the shared one."""


_SHARED_DIALECTS: dict = {}
_share_compiled_statements()


class _KeptPostgresSessions:
    """PostgreSQL sessions to this process's test databases, kept open from one test to the next.

    Each PostgreSQL test opens a ``Database`` of its own and disposes of it: its engine's pool
    (two connections when the app's job worker reads beside the test), ``Direct``'s per-thread
    connections and the key cache's listener, ~3 new connections a test. Each was a new backend
    process on the server (~6 ms of its CPU, ~4 ms more to load the catalogue entries of the
    events table's partitions) and a connect here. Now a connection closed healthy and idle hands
    its session back (``DISCARD ALL``: settings, LISTENs, prepared statements, temporary tables,
    advisory locks all gone, as in a new session) and the next ``psycopg.connect`` with the same
    parameters gets it inside a new ``psycopg.Connection`` (its adapters, autocommit and cache
    of prepared statements new too). Nothing passes from a test to the next but the backend
    process and its caches: the opencues objects (pools, threads, key caches) are still each
    test's own, and still close what they opened.

    Only databases made by ``postgres_url`` (a database being copied or dropped must have no
    sessions). A transaction left open is rolled back first, as closing would have; a session
    broken, running a query, or that the server ended while it waited here (something to read on
    its socket: the error that ended it) is closed, as before."""

    _CLIENT_SIDE = ("autocommit", "prepare_threshold", "context", "row_factory", "cursor_factory")

    def __init__(self, psycopg) -> None:
        from psycopg import pq
        from psycopg.adapt import AdaptersMap
        from psycopg.conninfo import conninfo_to_dict

        self._pq, self._select, self._adapters_map, self._parse = pq, select.select, AdaptersMap, conninfo_to_dict
        self._connect = psycopg.connect
        self._databases: set[str] = set()
        self._idle: dict[tuple, list] = {}  # connection parameters → sessions (``PGconn``) to hand out
        self._lock = threading.Lock()
        # What a handed-back connection is left with: a libpq connection that never opened (an
        # unparsable conninfo, so no I/O), so that it reads as closed and cannot reach the session.
        self._nowhere = pq.PGconn.connect_start(b"nowhere")
        sessions = self

        class KeptConnection(psycopg.Connection):
            kept_as: tuple | None = None

            def close(self) -> None:
                if not self.closed and sessions._keep(self):
                    return
                super().close()

        self._connection_class = KeptConnection
        psycopg.connect = self.connect
        os.register_at_fork(after_in_child=self._idle.clear)  # the parent's sockets

    def keep_for(self, database: str) -> None:
        self._databases.add(database)

    def close_for(self, database: str) -> None:
        self._databases.discard(database)
        with self._lock:
            closing = [self._idle.pop(key) for key in list(self._idle) if ("dbname", database) in key]
        for pgconn in (p for sessions in closing for p in sessions):
            pgconn.finish()

    def connect(self, conninfo: str = "", **kwargs):
        """``psycopg.connect``: a kept session of these parameters when there is one."""
        client = {name: kwargs.pop(name) for name in self._CLIENT_SIDE if name in kwargs}
        params = self._parse(conninfo, **kwargs)
        if params.get("dbname") not in self._databases:
            return self._connect(conninfo, **kwargs, **client)
        key = tuple(sorted((name, str(value)) for name, value in params.items()))
        pgconn = self._take(key)
        if pgconn is None:
            connection = self._connection_class.connect(conninfo, **kwargs, **client)
        else:  # as ``Connection.connect`` finishes a new connection
            connection = self._connection_class(pgconn)
            connection.autocommit = bool(client.get("autocommit"))
            if client.get("row_factory"):
                connection.row_factory = client["row_factory"]
            if client.get("cursor_factory"):
                connection.cursor_factory = client["cursor_factory"]
            if client.get("context"):  # SQLAlchemy's adapters; psycopg's own connect sets them so
                connection._adapters = self._adapters_map(client["context"].adapters)
            connection.prepare_threshold = client.get("prepare_threshold", 5)
        connection.kept_as = key
        return connection

    def _take(self, key: tuple):
        while True:
            with self._lock:
                sessions = self._idle.get(key)
                if not sessions:
                    return None
                pgconn = sessions.pop()
            if pgconn.status == self._pq.ConnStatus.OK and not self._select([pgconn.socket], [], [], 0)[0]:
                return pgconn
            pgconn.finish()  # ended by the server meanwhile (pg_terminate_backend, DROP … FORCE)

    def _keep(self, connection) -> bool:
        pgconn, key, ok = connection.pgconn, connection.kept_as, self._pq.ExecStatus.COMMAND_OK
        if (
            key is None
            or pgconn.status != self._pq.ConnStatus.OK
            or pgconn.transaction_status == self._pq.TransactionStatus.ACTIVE
            or pgconn.pipeline_status != self._pq.PipelineStatus.OFF
            or len(self._idle.get(key, ())) >= _KEPT_SESSIONS_MAX
        ):
            return False
        # A transaction left open is rolled back, as the server does when a connection closes in one.
        if pgconn.transaction_status != self._pq.TransactionStatus.IDLE and pgconn.exec_(b"ROLLBACK").status != ok:
            return False
        if pgconn.exec_(b"DISCARD ALL").status != ok:
            return False
        while pgconn.notifies() is not None:  # arrived before the UNLISTEN: not the next user's
            pass
        connection.pgconn = self._nowhere  # reads as closed, and cannot reach the session
        with self._lock:
            self._idle.setdefault(key, []).append(pgconn)
        return True


_KEPT_SESSIONS_MAX = 6  # idle sessions kept per set of connection parameters (per test process)
try:
    import psycopg
except ImportError:  # no PostgreSQL tests
    _KEPT_SESSIONS = None
else:
    _KEPT_SESSIONS = _KeptPostgresSessions(psycopg)

# Property-based tests (tests/unit/*_properties.py) run a bounded number of examples so that the
# suite stays fast: PROPERTY_EXAMPLES per property unless a test asks for fewer. `ci` (chosen when
# CI is set, as in .ci/run) is derandomized — the same examples on every run, so a red build is
# reproducible and a green one stays green; `dev` draws new examples each run (and remembers
# failing ones in .hypothesis/); `thorough` is for a deliberate long hunt. Pick one with
# HYPOTHESIS_PROFILE=ci|dev|thorough.
PROPERTY_EXAMPLES = 100
hypothesis_settings.register_profile(
    "ci", max_examples=PROPERTY_EXAMPLES, derandomize=True, deadline=None, database=None, print_blob=True
)
hypothesis_settings.register_profile("dev", max_examples=PROPERTY_EXAMPLES, deadline=None)
hypothesis_settings.register_profile("thorough", max_examples=20 * PROPERTY_EXAMPLES, deadline=None)
hypothesis_settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE") or ("ci" if os.environ.get("CI") else "dev"))


def _driver_url(url: str) -> str:
    return "postgresql+psycopg://" + url.split("://", 1)[1]


def create_postgres_database(prefix: str = "opencues_test", template: str | None = None) -> tuple[str, callable]:
    """A new, empty PostgreSQL database (libpq URL) and a function that drops it — or a skip
    (a failure under ``OPENCUES_REQUIRE_POSTGRES=1``) when PostgreSQL is not to be had. With
    ``template`` (a database's name, which nobody may be connected to), a copy of that one."""
    base = os.environ.get("OPENCUES_TEST_POSTGRES_URL", DEFAULT_POSTGRES)
    required = os.environ.get("OPENCUES_REQUIRE_POSTGRES") == "1"
    if not base:
        if required:
            pytest.fail("OPENCUES_REQUIRE_POSTGRES=1 but OPENCUES_TEST_POSTGRES_URL is empty")
        pytest.skip("PostgreSQL tests disabled (OPENCUES_TEST_POSTGRES_URL is empty)")
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    try:
        admin = create_engine(_driver_url(base), isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else "")))
            # A test database need not survive a crash of PostgreSQL itself (what opencues
            # promises is that its rows survive a crash of opencues): commits don't wait for the
            # WAL to reach the disk, which on a machine busy writing took most of a test's time.
            conn.execute(text(f'ALTER DATABASE "{name}" SET synchronous_commit TO off'))
    except Exception as exc:  # noqa: BLE001 - any connection problem means "no PostgreSQL here"
        if required:
            pytest.fail(f"PostgreSQL is required but unreachable at {base}: {exc}")
        pytest.skip(f"PostgreSQL unreachable at {base}: {exc}")

    def drop() -> None:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()

    return base.rsplit("/", 1)[0] + "/" + name, drop


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_auto_num_workers(config):
    """``-n auto``: two workers per CPU, at least four — a test spends most of its time waiting
    (for PostgreSQL, for a server process to start, for a job), not computing."""
    return max(4, 2 * (os.cpu_count() or 1))


_PROCESS_ENVIRONMENT = ("OPENCUES_", "PROMETHEUS_MULTIPROC_DIR")


@pytest.fixture(autouse=True)
def _restore_opencues_environment():
    """The CLI writes its options into ``os.environ`` for the code it calls (``--database-url``
    becomes ``OPENCUES_DATABASE_URL``); in-process CLI tests must not hand theirs to whichever test
    their worker runs next."""
    saved = {name: value for name, value in os.environ.items() if name.startswith(_PROCESS_ENVIRONMENT)}
    yield
    for name in [name for name in os.environ if name.startswith(_PROCESS_ENVIRONMENT) and name not in saved]:
        del os.environ[name]
    os.environ.update(saved)


@pytest.fixture(scope="session")
def postgres_url():
    """A migrated PostgreSQL database private to this test session, or a skip."""
    url, drop = create_postgres_database()
    name = url.rsplit("/", 1)[1]
    if _KEPT_SESSIONS is not None:
        _KEPT_SESSIONS.keep_for(name)
    db = Database(_driver_url(url))
    db.migrate()
    db.dispose()
    yield url
    engine = _EMPTYING_ENGINES.pop(url, None)
    if engine is not None:
        engine.dispose()
    if _KEPT_SESSIONS is not None:
        _KEPT_SESSIONS.close_for(name)
    drop()


@pytest.fixture
def redis_url():
    """A reachable Redis (``OPENCUES_TEST_REDIS_URL``, default the local one), or a skip — a
    failure when ``OPENCUES_REQUIRE_REDIS=1``, as in CI."""
    url = os.environ.get("OPENCUES_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
    try:
        import redis

        redis.Redis.from_url(url, socket_connect_timeout=2).ping()
    except Exception as exc:  # noqa: BLE001 - any failure means "no Redis here"
        if os.environ.get("OPENCUES_REQUIRE_REDIS") == "1":
            pytest.fail(f"Redis is required but unreachable at {url}: {exc}")
        pytest.skip(f"Redis unreachable at {url}: {exc}")
    return url


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory):
    """A migrated SQLite file, copied for each test (migrating every time is slow)."""
    path = tmp_path_factory.mktemp("template") / "opencues.db"
    db = Database(f"sqlite:///{path}")
    db.migrate()
    db.dispose()
    return path


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def backend(request):
    return request.param


@pytest.fixture
def database_url(backend, request, tmp_path):
    """The URL of an empty, migrated database of the current backend. SQLite's is in the test's
    data directory, ``tmp_path / "data"``, which lives in memory (see ``_data_in_memory``)."""
    if backend == "sqlite":
        data = tmp_path / "data"
        in_memory = _data_in_memory(data)
        target = data / "opencues.db"
        shutil.copy(request.getfixturevalue("sqlite_template"), target)
        yield f"sqlite:///{target}"
        if in_memory is not None:
            shutil.rmtree(in_memory, ignore_errors=True)
        return
    url = request.getfixturevalue("postgres_url")
    empty_postgres_database(url)
    yield url


_MEMORY_FILESYSTEM = "/dev/shm"  # tmpfs on Linux


def _data_in_memory(data) -> str | None:
    """Make ``data`` a link to a new directory on the memory file system, when there is one, and
    return that directory (None: ``data`` is a plain directory). A test's SQLite database is
    written for that test alone: on the disk every commit that began a write-ahead log, every
    checkpoint and every last close (which checkpoints) waited for ``fsync`` — with the disk busy,
    ~5 ms each, several times a test. In memory the same files, the same SQLite and the same
    paths (``settings.data_dir / "opencues.db"``), without the waits. Removed after the test."""
    if data.exists() or not (os.path.isdir(_MEMORY_FILESYSTEM) and os.access(_MEMORY_FILESYSTEM, os.W_OK)):
        data.mkdir(parents=True, exist_ok=True)
        return None
    directory = tempfile.mkdtemp(prefix=f"opencues-test-{os.getpid()}-", dir=_MEMORY_FILESYSTEM)
    data.parent.mkdir(parents=True, exist_ok=True)
    data.symlink_to(directory, target_is_directory=True)
    return directory


# One engine (one pooled connection) per session database for emptying it before each test: a
# new engine each time, and with it a new PostgreSQL backend process, cost ~55 ms a test (of
# which ~15 ms CPU here and more in the server); reusing the connection, ~9 ms.
_EMPTYING_ENGINES: dict = {}


def empty_postgres_database(url: str) -> None:
    """Every table emptied and every sequence restarted, as a fresh migrated database has them.
    DELETE rather than TRUNCATE: a test leaves a handful of rows, and TRUNCATE of every table
    (new files for each, then a commit that syncs them) took ~0.6 s a test, DELETE ~10 ms. All
    in one round trip (one string of statements): a statement each cost ~0.3 ms of this
    process's CPU more, ~20 tables, before every PostgreSQL test."""
    engine = _EMPTYING_ENGINES.get(url)
    if engine is None:
        engine = _EMPTYING_ENGINES[url] = create_engine(_driver_url(url), pool_size=1, pool_pre_ping=True)
    with engine.begin() as conn:
        conn.exec_driver_sql(_EMPTY_EVERY_TABLE)


_RESTART_SEQUENCES = (
    "SELECT setval(format('%%I.%%I', schemaname, sequencename), start_value, false)"
    " FROM pg_sequences WHERE schemaname = current_schema()"
)  # %% for psycopg, which reads the string as a statement with parameters
_EMPTY_EVERY_TABLE = "; ".join(
    [f'DELETE FROM "{table.name}"' for table in reversed(metadata.sorted_tables)] + [_RESTART_SEQUENCES]
)


@pytest.fixture
def settings(database_url, tmp_path):
    """``Settings(data_dir=…, database_url=…)``: a copy, with those two, of the settings the
    current environment gives. Reading the environment into a ``Settings`` costs ~3 ms of CPU
    (pydantic-settings matches every field against ``os.environ``), once per test; the copy
    ~0.01 ms. A test that changed an ``OPENCUES_`` variable before asking gets settings read
    anew, as before."""
    environment = tuple(sorted((name.upper(), value) for name, value in os.environ.items()
                               if name.upper().startswith("OPENCUES_")))  # fmt: skip
    read = _SETTINGS_READ.get(environment)
    if read is None:
        read = _SETTINGS_READ[environment] = Settings()
    return read.model_copy(update={"data_dir": tmp_path / "data", "database_url": database_url})


_SETTINGS_READ: dict = {}  # OPENCUES_ environment → the Settings read from it (never handed out)


@pytest.fixture
def db(settings):
    database = Database(settings.resolved_database_url)
    database.migrate()
    yield database
    database.dispose()


@dataclass
class Credentials:
    account_id: str
    key: str
    secret: str

    @property
    def auth(self) -> tuple[str, str]:
        return (self.key, self.secret)

    @property
    def header(self) -> dict[str, str]:
        token = base64.b64encode(f"{self.key}:{self.secret}".encode()).decode()
        return {"Authorization": f"Basic {token}"}


def make_account(db: Database, account_id: str, read_only: bool = False) -> Credentials:
    try:
        accounts.create_account(db, account_id)
    except Exception:  # noqa: BLE001, S110 - the account may exist already
        pass
    key = accounts.create_key(db, account_id, read_only=read_only)
    return Credentials(account_id, key["key"], key["secret"])


@pytest.fixture
def account(db) -> Credentials:
    return make_account(db, "acct1")


@pytest.fixture
def other_account(db) -> Credentials:
    return make_account(db, "acct2")


@pytest.fixture
def app(settings, db):
    from opencues.web.app import create_app

    return create_app(settings, db)


@pytest.fixture
def client(app):
    """An in-process HTTP client (no auth preset): one thread hop a request (tests/in_process_client.py)."""
    from tests.in_process_client import InProcessClient

    with InProcessClient(app, base_url="http://testserver") as test_client:
        yield test_client


class AccountClient:
    """A client bound to one account: paths are relative to ``/v2/accounts/{id}/``."""

    def __init__(self, client, creds: Credentials):
        self.client = client
        self.creds = creds

    def url(self, path: str) -> str:
        return f"/v2/accounts/{self.creds.account_id}/{path.lstrip('/')}"

    def request(self, method: str, path: str, **kwargs):
        kwargs.setdefault("auth", self.creds.auth)
        return self.client.request(method, self.url(path), **kwargs)

    def get(self, path, **kw):
        return self.request("GET", path, **kw)

    def post(self, path, **kw):
        return self.request("POST", path, **kw)

    def patch(self, path, **kw):
        return self.request("PATCH", path, **kw)

    def delete(self, path, **kw):
        return self.request("DELETE", path, **kw)


@pytest.fixture
def api(client, account) -> AccountClient:
    return AccountClient(client, account)


def assert_problem(response, status: int, mentions: str | None = None) -> dict:
    """The response is Problem Details with this status (and, if given, a detail naming it)."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"type", "error", "status", "title", "detail"}, body
    assert body["error"] is True and body["status"] == status
    assert body["type"] == "about:blank", body  # RFC 9457: the status code says it all
    if mentions:
        assert mentions in body["detail"], body["detail"]
    return body


@dataclass
class S3Server:
    """moto's S3-compatible server, started for the test session (``moto_server`` on a free port)."""

    endpoint_url: str
    env: dict  # what a process needs to reach it: endpoint and (fake) credentials

    def client(self):
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint_url, aws_access_key_id="testing",
                            aws_secret_access_key="testing", region_name="us-east-1")  # fmt: skip

    def new_bucket(self) -> str:
        name = f"opencues-test-{uuid.uuid4().hex[:12]}"
        self.client().create_bucket(Bucket=name)
        return name


@pytest.fixture(scope="session")
def s3_server():
    """A real S3-compatible HTTP server (moto); skipped when moto is not installed — unless
    ``OPENCUES_REQUIRE_S3=1`` (CI), which fails instead."""
    try:
        import boto3  # noqa: F401
        from moto.server import ThreadedMotoServer
    except ImportError as exc:
        if os.environ.get("OPENCUES_REQUIRE_S3") == "1":
            pytest.fail(f"OPENCUES_REQUIRE_S3=1 but moto/boto3 are missing: {exc}")
        pytest.skip("moto[server] and boto3 are not installed (pip install '.[test]')")
    import logging

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one line per S3 request otherwise
    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    env = {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "OPENCUES_S3_ENDPOINT_URL": f"http://127.0.0.1:{port}",
    }
    saved = {name: os.environ.get(name) for name in env}
    os.environ.update({k: v for k, v in env.items() if k.startswith("AWS_")})
    yield S3Server(f"http://127.0.0.1:{port}", env)
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    server.stop()


def _free_port() -> int:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# -- fuzzing statistics: how many generated requests the run sent (tests/unit/web/test_fuzz.py) --

# Gathered from the xdist workers, which run the tests; the controller prints the summary.
_FUZZ_SENT_BY_WORKERS: list = []


def _fuzz_sent() -> list:
    """(backend, operation, status, count) of this process's fuzz requests."""
    import sys

    fuzz = sys.modules.get("tests.unit.web.test_fuzz")
    return [[backend, operation, status, count] for (backend, operation, status), count in fuzz.SENT.items()] if fuzz else []


def pytest_sessionfinish(session):
    workeroutput = getattr(session.config, "workeroutput", None)
    if workeroutput is not None:  # an xdist worker: hand the counts to the controller
        workeroutput["fuzz_sent"] = _fuzz_sent()


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node, error):
    _FUZZ_SENT_BY_WORKERS.extend(getattr(node, "workeroutput", {}).get("fuzz_sent", []))


def pytest_terminal_summary(terminalreporter):
    import collections

    by_backend: collections.Counter = collections.Counter()
    by_status: collections.Counter = collections.Counter()
    for backend, _operation, status, count in _FUZZ_SENT_BY_WORKERS + _fuzz_sent():
        by_backend[backend] += count
        by_status[status] += count
    if by_backend:
        terminalreporter.write_line(
            f"fuzz: {sum(by_backend.values())} generated requests "
            f"({', '.join(f'{b}: {n}' for b, n in sorted(by_backend.items()))}); "
            f"by status: {', '.join(f'{s}: {n}' for s, n in sorted(by_status.items()))}"
        )
