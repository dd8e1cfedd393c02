"""The request hot path's database access, without SQLAlchemy's per-call overhead.

Statements are still written with SQLAlchemy Core (so they follow ``schema.py``) but compiled
ONCE for the database's driver (``Prepared``) and run on a raw DBAPI connection that each thread
keeps (``Direct``). On this path a key lookup costs tens of microseconds instead of hundreds.

Reads run in autocommit mode: every read sees everything committed before it, by any process —
which is what keeps "a revoked key stops working at once" true without a cache.

Writes of single rows from concurrent requests can be grouped (``Direct.write_grouped``): rows
that arrive while the event loop is busy are inserted and committed in one transaction, and each
request is answered only after the commit holding its row (group commit: a 2xx is still durable).
A failing group is retried row by row, so one bad row fails only its own request.

Values come back as the driver gives them: on this path JSON columns are JSON *text* on both
databases (callers decode, or pass the text through).
"""

from __future__ import annotations

import asyncio
import threading
from operator import itemgetter
from contextlib import contextmanager
from typing import Any, Iterator, Mapping, Sequence


class Prepared:
    """A Core statement compiled once for one dialect; ``bind(params)`` → the driver's parameters."""

    def __init__(self, statement, dialect):
        compiled = statement.compile(dialect=dialect)
        self.sql: str = compiled.string
        # Defaults of anonymous parameters the compiler added (SQLite's ``OFFSET ?``).
        self._defaults = {k: v for k, v in compiled.params.items() if v is not None}
        positions = compiled.positiontup  # None for drivers taking named parameters
        if positions is None:
            self._pick = None
        elif len(positions) == 1:
            name = positions[0]
            self._pick = lambda params: (params[name],)
        else:
            self._pick = itemgetter(*positions)

    def bind(self, params: Mapping[str, Any]):
        if self._defaults:
            params = {**self._defaults, **params}
        return params if self._pick is None else self._pick(params)


class Direct:
    """Raw DBAPI connections, one per thread, for the request hot path."""

    def __init__(self, engine, is_postgres: bool):
        self._engine = engine
        self._is_postgres = is_postgres
        self._local = threading.local()
        self._all: list = []  # every connection opened, closed by ``dispose``
        self._lock = threading.Lock()
        self._prepared: dict[int, Prepared] = {}
        self._groups: dict[Any, list] = {}  # event loop → rows waiting for the next group commit
        module = engine.dialect.dbapi
        self._broken = (module.OperationalError, module.InterfaceError)

    def prepare(self, statement) -> Prepared:
        key = id(statement)
        prepared = self._prepared.get(key)
        if prepared is None:
            prepared = self._prepared[key] = Prepared(statement, self._engine.dialect)
            prepared._statement = statement  # keeps id(statement) from being reused
        return prepared

    def _connection(self):
        conn = getattr(self._local, "conn", None)
        if conn is None:
            # From the engine's pool, so its connect-time setup (SQLite pragmas) applies; the
            # thread keeps it for good.
            fairy = self._engine.raw_connection()
            conn = fairy.driver_connection
            conn.rollback()  # the pool's pre-ping may have opened a transaction
            if self._is_postgres:
                from psycopg.types.string import TextLoader

                conn.autocommit = True
                for kind in ("json", "jsonb"):
                    conn.adapters.register_loader(kind, TextLoader)
            self._local.conn, self._local.fairy = conn, fairy
            with self._lock:
                self._all.append(fairy)
        return conn

    @contextmanager
    def _using(self) -> Iterator[Any]:
        conn = self._connection()
        try:
            yield conn
        except self._broken:
            self._discard()  # a lost connection: the next call opens a fresh one
            raise

    def _discard(self) -> None:
        fairy = getattr(self._local, "fairy", None)
        self._local.conn = self._local.fairy = None
        if fairy is not None:
            with self._lock:
                if fairy in self._all:
                    self._all.remove(fairy)
            try:
                fairy.invalidate()
            except Exception:  # noqa: BLE001 - already broken
                pass

    def fetch_all(self, statement, params: Mapping[str, Any]) -> list[tuple]:
        prepared = self.prepare(statement)
        with self._using() as conn:
            cursor = conn.cursor()
            try:
                cursor.execute(prepared.sql, prepared.bind(params))
                return cursor.fetchall()
            finally:
                cursor.close()

    def fetch_one(self, statement, params: Mapping[str, Any]) -> tuple | None:
        rows = self.fetch_all(statement, params)
        return rows[0] if rows else None

    def write(self, statement, rows: Sequence[Mapping[str, Any]]) -> None:
        """Execute ``statement`` once per row, all in one transaction; committed on return."""
        self.write_batches([(statement, rows)])

    def write_batches(self, batches: Sequence[tuple[Any, Sequence[Mapping[str, Any]]]]) -> None:
        """Several ``(statement, rows)`` in ONE transaction; committed on return."""
        with self._using() as conn:
            if self._is_postgres:
                with conn.transaction(), conn.cursor() as cursor:
                    for statement, rows in batches:
                        prepared = self.prepare(statement)
                        cursor.executemany(prepared.sql, [prepared.bind(r) for r in rows])
                return
            cursor = conn.cursor()
            try:
                for statement, rows in batches:
                    prepared = self.prepare(statement)
                    cursor.executemany(prepared.sql, [prepared.bind(r) for r in rows])
                conn.commit()
            except BaseException:
                conn.rollback()
                raise
            finally:
                cursor.close()

    async def write_grouped(self, statement, row: Mapping[str, Any]) -> None:
        """Insert one row in the next group commit of this event loop; returns once committed."""
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        pending = self._groups.get(loop)
        if pending is None:
            pending = self._groups[loop] = []
            # Runs after every request already runnable in this loop iteration has queued its row.
            loop.call_soon(self._flush, loop)
        pending.append((statement, row, future))
        await future

    def _flush(self, loop) -> None:
        pending = self._groups.pop(loop, [])
        batches: dict[int, tuple[Any, list]] = {}
        for statement, row, _future in pending:
            batches.setdefault(id(statement), (statement, []))[1].append(row)
        try:
            self.write_batches(list(batches.values()))
        except Exception as exc:  # noqa: BLE001 - retried row by row: only the bad rows fail
            if len(pending) == 1:
                self._settle(pending[0][2], exc)
                return
            for statement, row, future in pending:
                try:
                    self.write(statement, [row])
                except Exception as row_exc:  # noqa: BLE001 - handed to that row's request
                    self._settle(future, row_exc)
                else:
                    self._settle(future, None)
            return
        for _statement, _row, future in pending:
            self._settle(future, None)

    @staticmethod
    def _settle(future, exc: BaseException | None) -> None:
        if future.done():  # the request went away (client disconnected); its row stands
            return
        if exc is None:
            future.set_result(None)
        else:
            future.set_exception(exc)

    def dispose(self) -> None:
        with self._lock:
            fairies, self._all = self._all, []
        for fairy in fairies:
            try:
                fairy.invalidate()
            except Exception:  # noqa: BLE001 - closing at shutdown
                pass
        self._local = threading.local()

