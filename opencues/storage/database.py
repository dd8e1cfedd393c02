"""The database handle shared by the library, the web layer, the workers and the CLI.

Everything dialect-specific lives here (connection pragmas, upsert flavour, bulk-insert fast
paths) so that resource modules stay plain SQLAlchemy Core.
"""

from __future__ import annotations

from contextlib import AbstractContextManager, contextmanager, nullcontext
from functools import cached_property, partial
from pathlib import Path
from typing import Iterator

import orjson
from sqlalchemy import Connection, Engine, create_engine, event, exc
from sqlalchemy.dialects import postgresql, sqlite

from opencues.settings import SQLITE_CACHE_MB
from opencues.storage import schema
from opencues.storage.direct import Direct, libpq_url
from opencues.storage.schema_version import head_revision
from opencues.storage.write_turns import WriteTurns


def _json_dumps(value) -> str:
    return orjson.dumps(value).decode()


class Database:
    def __init__(self, url: str, *, sqlite_cache_mb: int = SQLITE_CACHE_MB):
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        self.is_postgres = url.startswith("postgresql")
        kwargs: dict = {"json_serializer": _json_dumps, "json_deserializer": orjson.loads}
        self.sqlite_cache_mb = sqlite_cache_mb
        self.sqlite_path: Path | None = None  # the SQLite file (None: PostgreSQL or in memory)
        if self.is_sqlite:
            path = url.split("///", 1)[1] if "///" in url else ""
            if path and path != ":memory:":
                self.sqlite_path = Path(path)
                self.sqlite_path.parent.mkdir(parents=True, exist_ok=True)
            kwargs["connect_args"] = {"check_same_thread": False, "timeout": 30}
        else:
            kwargs.update(pool_size=10, max_overflow=20, pool_pre_ping=True)
        try:
            self.engine: Engine = create_engine(url, **kwargs)
        except ModuleNotFoundError as exc:
            if not (exc.name or "").startswith("psycopg"):
                raise
            from opencues.settings import ConfigurationError

            raise ConfigurationError(
                "PostgreSQL needs the psycopg driver: pip install 'opencues[postgres]'"
            ) from None
        if self.is_sqlite:
            event.listen(self.engine, "connect", partial(_sqlite_pragmas, cache_kib=sqlite_cache_mb * 1024))

    @cached_property
    def direct(self) -> Direct:
        """Raw per-thread DBAPI access with compiled statements, for the request hot path."""
        return Direct(self.engine, self.is_postgres, self.write_turn)

    @cached_property
    def _write_turns(self) -> WriteTurns | None:
        return None if self.is_postgres else WriteTurns()

    def writers_waiting(self) -> int:
        """SQLite: this process's writers waiting for their turn; PostgreSQL: 0."""
        turns = self._write_turns
        return 0 if turns is None else turns.waiting

    def write_turn(self) -> AbstractContextManager:
        """SQLite: wait for this process's earlier writers, then hold the turn at the write lock
        (``opencues.storage.write_turns``); PostgreSQL: nothing to wait for."""
        turns = self._write_turns
        return nullcontext() if turns is None else turns.turn()

    @cached_property
    def key_cache(self):
        """PostgreSQL: this process's remembered API keys (``opencues.key_cache``); SQLite: None
        (a key look-up there is a local read, cheaper than keeping a cache right)."""
        if not self.is_postgres:
            return None
        from opencues.key_cache import KeyCache

        return KeyCache(libpq_url(self.engine))

    @cached_property
    def events_partitioned(self) -> bool:
        """Whether ``events`` is partitioned by month (PostgreSQL after migration 0008;
        ``opencues.event_partitions``): a user's history then reads the newest partitions first."""
        if not self.is_postgres:
            return False
        from opencues.event_partitions import is_partitioned  # (it imports this module)

        with self.connect() as conn:
            return is_partitioned(conn)

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @contextmanager
    def begin(self) -> Iterator[Connection]:
        """A connection in a transaction, committed on success and rolled back on error."""
        with self.engine.begin() as conn:
            yield conn

    @contextmanager
    def connect(self) -> Iterator[Connection]:
        with self.engine.connect() as conn:
            yield conn

    def insert(self, table):
        """An INSERT supporting ``.on_conflict_do_nothing/update`` on either dialect."""
        if self.is_postgres:
            return postgresql.insert(table)
        return sqlite.insert(table)

    def migrate(self) -> None:
        """Bring the schema to the head revision. A database already there is seen with one
        query, without loading Alembic (see ``schema_version``)."""
        if self.schema_revision() == head_revision():
            return
        from opencues.storage.migrations import upgrade

        upgrade(self)

    def schema_revision(self) -> str | None:
        """The revision the database is at (None: not migrated, or unreadable)."""
        try:
            with self.engine.connect() as conn:
                return conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalar()
        except exc.DBAPIError:
            return None

    def dispose(self) -> None:
        if self.__dict__.get("key_cache") is not None:
            self.key_cache.close()
        if "direct" in self.__dict__:
            self.direct.dispose()
        self.engine.dispose()


def _sqlite_pragmas(dbapi_connection, _record, *, cache_kib: int) -> None:
    # WAL + synchronous=NORMAL: a committed transaction survives a crash or kill -9 of the
    # process (the WAL is written before commit returns); only an OS crash/power loss can
    # roll back the last transactions. busy_timeout lets several processes share the file.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA foreign_keys=ON")
    # Temporary data (sorts, the journal of a statement that changes many rows) in temporary
    # files, i.e. the OS page cache, not this process's memory: holding an import statement's
    # journal in memory raised an import's peak by ~40 MB.
    cursor.execute("PRAGMA temp_store=FILE")
    # Per connection; an import or export job fills its connection's cache: 64 MiB instead of
    # 32 raised an import's peak memory by ~60 MB for no measurable speed (bench_import.py).
    cursor.execute(f"PRAGMA cache_size=-{cache_kib}")
    # Checkpoint every 64 MiB of WAL rather than SQLite's 4 MiB: a 50,000-row import batch
    # otherwise pays a checkpoint (and its fsync) per commit — measured 11% of an import.
    cursor.execute("PRAGMA wal_autocheckpoint=16384")
    cursor.close()
    # A profile update's merge, inside its UPSERT (``opencues.profiles``): one atomic statement.
    dbapi_connection.create_function("opencues_merge", 2, _merge_json, deterministic=True)


def _merge_json(stored: str | None, changes: str) -> str:
    """``profiles.merge`` of two JSON object texts, as JSON text (SQLite's ``opencues_merge``)."""
    from opencues.profiles import merge  # (profiles imports this module)

    return orjson.dumps(merge(orjson.loads(stored) if stored else {}, orjson.loads(changes))).decode()


def open_database(settings) -> Database:
    """Open (and migrate) the database the settings point at."""
    db = Database(settings.resolved_database_url, sqlite_cache_mb=settings.sqlite_cache_mb)
    db.migrate()
    return db


__all__ = ["Database", "open_database", "schema"]
