"""The request hot path's database access, without SQLAlchemy's per-call overhead.

Statements are still written with SQLAlchemy Core (so they follow ``schema.py``) but compiled
ONCE for the database's driver (``Prepared``) and run on a raw DBAPI connection that each thread
keeps (``Direct``). On this path a key lookup costs tens of microseconds instead of hundreds.

Reads run in autocommit mode: every read sees everything committed before it, by any process —
which is what keeps "a revoked key stops working at once" true without a cache.

Single-row writes of concurrent requests are group-committed (``Direct.write_grouped``): a writer
thread inserts and commits, in one transaction, every row queued while its previous commit ran,
and each request is answered only after the commit holding its row (a 2xx is still durable). The
event loop keeps serving requests meanwhile, even while the commit waits for a disk flush or for
another process's lock. A failing group is retried row by row, so one bad row fails only its own
request. On SQLite, WAL checkpoints run in a thread of their own rather than inside a commit.
A statement can have a *companion* (``Direct.attach``) whose writes join every transaction that
writes the statement's rows: events bring their attribute-key catalogue entries that way.

Reads that a request makes are written once, as *read plans* (``ReadPlan``): generators that
yield each statement with its parameters and receive its rows. ``Direct.run`` runs one on this
thread's connection (the library, the CLI, tests); ``Direct.run_async`` runs one from an event
loop, on PostgreSQL through that loop's asynchronous connections, so the loop serves other
requests while PostgreSQL answers, without handing the read to a thread.

Values come back as the driver gives them: on this path JSON columns are JSON *text* on both
databases (callers decode, or pass the text through).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import weakref
from contextlib import AbstractContextManager, nullcontext
from operator import itemgetter
from typing import Any, Callable, Generator, Mapping, Protocol, Sequence, TypeVar


log = logging.getLogger("opencues")


T = TypeVar("T")
# A read plan: yields ``(statement, params)`` and is sent back that statement's rows (a list of
# tuples), as many times as it needs; what it returns is the read's result.
ReadPlan = Generator[tuple[Any, Mapping[str, Any]], list, T]

# Each PostgreSQL connection of the request path plans only the hot paths' statements, each with an
# index shaped for it: with stale or reset statistics (a partition filled since its ANALYZE) the
# planner may still price a scan and a sort of "a few" rows lower. Discouraged here, the plan is the
# index's whatever the statistics say (test_history_plans). No parallel plans: these statements
# read a few rows by index, and a history's UNION ALL of month windows relies on its Append running
# them in order (``events._history_by_windows``). One generic plan for each prepared statement:
# under the default ``auto`` PostgreSQL may decide, from estimates that move with the statistics,
# to plan a statement afresh at every call — a history page then cost ~0.6 ms of the database's CPU
# instead of ~0.25 (bench/README.md, "PostgreSQL reads from the event loop").
_POSTGRES_SESSION = (
    "SET enable_seqscan = off; SET enable_sort = off; SET enable_incremental_sort = off;"
    " SET max_parallel_workers_per_gather = 0; SET plan_cache_mode = force_generic_plan"
)


def libpq_url(engine) -> str:
    """The engine's PostgreSQL URL as psycopg's own connections take it (without SQLAlchemy's
    driver name): the key cache's listener, the loops' readers, the export helpers."""
    return engine.url.set(drivername="postgresql").render_as_string(hide_password=False)


def _json_as_text(conn) -> None:
    """JSON columns come back as their text on ``conn`` (a psycopg connection, of either kind)."""
    from psycopg.types.string import TextLoader

    for kind in ("json", "jsonb"):
        conn.adapters.register_loader(kind, TextLoader)


class Companion(Protocol):
    """Extra writes for rows being written (see ``Direct.attach``)."""

    def __call__(self, rows: Sequence[Mapping[str, Any]]) -> tuple[list[tuple[Any, list]], Callable[[], None] | None]:
        """``([(statement, rows), ...], committed)``: what to write in the same transaction, and
        what to call once that transaction has committed (or None)."""


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

    def __init__(self, engine, is_postgres: bool, write_turn: Callable[[], AbstractContextManager] = nullcontext):
        self._engine = engine
        self._is_postgres = is_postgres
        self._write_turn = write_turn  # SQLite: writes wait their turn (``Database.write_turn``)
        self._local = threading.local()
        self._all: list = []  # every connection opened, closed by ``dispose``
        self._lock = threading.Lock()
        self._prepared: dict[int, Prepared] = {}
        self._companions: dict[int, tuple[Any, Companion]] = {}
        self._row_orders: dict[int, Callable[[Mapping[str, Any]], Any]] = {}
        # Group commit: each event loop gathers its requests' rows during one iteration
        # (``_gathering``) and hands them to the writer thread's queue (``_pending``), which
        # commits everything queued while its previous commit ran.
        self._gathering: dict[Any, list] = {}
        self._pending: list = []
        self._pending_ready = threading.Condition()
        self._writer: threading.Thread | None = None
        self._wal_grew = threading.Event()  # SQLite: the writer committed since the last checkpoint
        # Set when the writer stops: ends the checkpointer's wait between two checkpoints at once
        # (a plain sleep there held every dispose, and so every shutdown, for up to that interval).
        self._checkpoints_stop = threading.Event()
        # PostgreSQL: each event loop's connections for ``run_async`` (``_LoopReaders``).
        self._loop_readers: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
        module = engine.dialect.dbapi
        self._broken = (module.OperationalError, module.InterfaceError)

    def prepare(self, statement) -> Prepared:
        key = id(statement)
        prepared = self._prepared.get(key)
        if prepared is None:
            prepared = self._prepared[key] = Prepared(statement, self._engine.dialect)
            prepared._statement = statement  # keeps id(statement) from being reused
        return prepared

    def attach(self, statement, make_companion: Callable[[], "Companion"]) -> "Companion":
        """Give ``statement`` a companion (made once by ``make_companion``): every write of its rows
        through this object (``write``, ``write_batches``, ``write_grouped``) also runs the
        companion's writes for those rows, in the same transaction. Returns the companion."""
        entry = self._companions.get(id(statement))
        if entry is None:
            with self._lock:
                entry = self._companions.setdefault(id(statement), (statement, make_companion()))
        return entry[1]

    def order_rows(self, statement, key: Callable[[Mapping[str, Any]], Any]) -> None:
        """Write a group's rows of ``statement`` sorted by ``key`` (stable: rows with equal keys keep
        their order). For an UPSERT, whose rows each lock one row of its table: groups of several
        processes then take those locks in one order and cannot deadlock."""
        self._row_orders[id(statement)] = key

    def _with_companions(self, batches) -> tuple[list, list[Callable[[], None]]]:
        if not self._companions:
            return list(batches), []
        extra, on_commit = [], []
        for statement, rows in batches:
            entry = self._companions.get(id(statement))
            if entry is not None:
                writes, committed = entry[1](rows)
                extra.extend(writes)
                if committed is not None:
                    on_commit.append(committed)
        return [*batches, *extra], on_commit

    def _connection(self):
        conn = getattr(self._local, "conn", None)
        if conn is None:
            # From the engine's pool, so its connect-time setup (SQLite pragmas) applies; the
            # thread keeps it for good.
            fairy = self._engine.raw_connection()
            conn = fairy.driver_connection
            conn.rollback()  # the pool's pre-ping may have opened a transaction
            if self._is_postgres:
                conn.autocommit = True
                _json_as_text(conn)
                conn.execute(_POSTGRES_SESSION)
            self._local.conn, self._local.fairy = conn, fairy
            with self._lock:
                self._all.append(fairy)
            # A thread that ends (a thread pool's idle worker does) gives its connection's pool
            # slot back; kept for good, each would hold one until the pool ran out.
            weakref.finalize(threading.current_thread(), self._forget, fairy)
        return conn

    def _forget(self, fairy) -> None:
        with self._lock:
            if fairy not in self._all:
                return  # already discarded, or closed by ``dispose``
            self._all.remove(fairy)
        try:
            fairy.invalidate()  # closed, not reused: its settings (autocommit, loaders) are this object's
        except Exception:  # noqa: BLE001 - a driver that refuses a close from another thread
            pass

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
        conn = self._connection()
        try:
            cursor = conn.cursor()
            try:
                cursor.execute(prepared.sql, prepared.bind(params))
                return cursor.fetchall()
            finally:
                cursor.close()  # ends SQLite's read transaction: the next read sees newer commits
        except self._broken:
            self._discard()  # a lost connection: the next call opens a fresh one
            raise

    def run(self, plan: ReadPlan[T]) -> T:
        """Run a read plan here, each of its statements through ``fetch_all``; its result."""
        try:
            statement, params = next(plan)
            while True:
                statement, params = plan.send(self.fetch_all(statement, params))
        except StopIteration as done:
            return done.value

    async def run_async(self, plan: ReadPlan[T]) -> T:
        """Run a read plan from the event loop. On PostgreSQL each statement goes through one of
        this loop's asynchronous connections (at most ``_READERS`` at once): the loop serves other
        requests while PostgreSQL answers, and no thread hand-over or GIL contention is paid (a
        reader thread per read cost GET profile a third of its throughput). On SQLite the plan runs
        right here: a local read, cheaper than any hand-over."""
        if not self._is_postgres:
            return self.run(plan)
        loop = asyncio.get_running_loop()
        readers = self._loop_readers.get(loop)
        if readers is None:
            readers = self._loop_readers[loop] = _LoopReaders(libpq_url(self._engine))
            weakref.finalize(loop, readers.close)  # a loop that ends before ``dispose`` (tests)
        try:
            statement, params = next(plan)
            while True:
                prepared = self.prepare(statement)
                statement, params = plan.send(await readers.fetch_all(prepared.sql, prepared.bind(params)))
        except StopIteration as done:
            return done.value

    def fetch_one(self, statement, params: Mapping[str, Any]) -> tuple | None:
        rows = self.fetch_all(statement, params)
        return rows[0] if rows else None

    def write(self, statement, rows: Sequence[Mapping[str, Any]]) -> None:
        """Execute ``statement`` once per row, all in one transaction; committed on return."""
        self.write_batches([(statement, rows)])

    def write_batches(self, batches: Sequence[tuple[Any, Sequence[Mapping[str, Any]]]]) -> None:
        """Several ``(statement, rows)`` in ONE transaction (with their companions' writes);
        committed on return."""
        batches, on_commit = self._with_companions(batches)
        conn = self._connection()
        try:
            if self._is_postgres:
                # One pipeline for the whole transaction: each ``executemany`` would otherwise open
                # its own and wait for its results (the events, their counts and keys: three
                # round trips, and a tenth of the PostgreSQL writer's CPU, besides BEGIN and COMMIT).
                with conn.pipeline(), conn.transaction(), conn.cursor() as cursor:
                    for statement, rows in batches:
                        prepared = self.prepare(statement)
                        cursor.executemany(prepared.sql, [prepared.bind(r) for r in rows])
            else:
                with self._write_turn():
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
        except self._broken:
            self._discard()
            raise
        for committed in on_commit:
            committed()

    async def write_grouped(self, statement, row: Mapping[str, Any]) -> None:
        """Insert one row in the next group commit; returns once it is committed."""
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        gathering = self._gathering.get(loop)
        if gathering is None:
            gathering = self._gathering[loop] = []
            # Runs once every request already runnable in this loop iteration has added its row:
            # the writer thread then gets them all in one hand-over.
            loop.call_soon(self._hand_over, loop)
        gathering.append((statement, row, loop, future))
        await future

    def _hand_over(self, loop) -> None:
        group = self._gathering.pop(loop)
        with self._pending_ready:
            if self._writer is None:
                self._writer = threading.Thread(target=self._write_forever, name="opencues-group-commit", daemon=True)
                self._writer.start()
            self._pending.extend(group)
            self._pending_ready.notify()

    def _write_forever(self) -> None:
        """The writer thread: commit whatever queued while the previous commit ran, in one go."""
        checkpointer = None
        if not self._is_postgres:
            # A checkpoint (copying the WAL into the database file, then an fsync) would otherwise
            # run inside one of this thread's commits every 1000 pages, holding every request of
            # that group for tens of milliseconds: another thread runs them instead.
            try:
                self._connection().execute("PRAGMA wal_autocheckpoint=0")
            except Exception:  # noqa: BLE001 - commits then checkpoint as usual; the writer must run
                log.exception("cannot move WAL checkpoints off the commit path")
            self._checkpoints_stop.clear()
            checkpointer = threading.Thread(target=self._checkpoint_forever, name="opencues-checkpoint", daemon=True)
            checkpointer.start()
        while True:
            with self._pending_ready:
                while not self._pending:
                    self._pending_ready.wait()
                pending, self._pending = self._pending, []
            rows = [p for p in pending if p is not _STOP]
            self._commit_group(rows)
            self._wal_grew.set()
            if len(rows) < len(pending):
                break
        if checkpointer is not None:
            self._checkpoints_stop.set()
            self._wal_grew.set()
            checkpointer.join()

    def _checkpoint_forever(self) -> None:
        while True:
            self._wal_grew.wait()
            self._wal_grew.clear()
            if self._checkpoints_stop.is_set():
                return
            try:
                # PASSIVE: copies what it can without waiting for readers or blocking the writer.
                self._connection().execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
            except Exception:  # noqa: BLE001 - the next commit's signal retries; SQLite also checkpoints on close
                log.exception("WAL checkpoint failed")
            if self._checkpoints_stop.wait(_CHECKPOINT_INTERVAL):
                return

    def _commit_group(self, pending: list) -> None:
        if not pending:
            return
        outcomes: list[BaseException | None]
        try:
            batches: dict[int, tuple[Any, list]] = {}
            for statement, row, _loop, _future in pending:
                batches.setdefault(id(statement), (statement, []))[1].append(row)
            for key, (_statement, rows) in batches.items():
                if key in self._row_orders:
                    rows.sort(key=self._row_orders[key])
            self.write_batches(list(batches.values()))
            outcomes = [None] * len(pending)
        except self._broken as exc:  # the database itself failed (lost, locked for 30 s): no retry
            outcomes = [exc] * len(pending)
        except Exception as exc:  # noqa: BLE001 - a bad row: retried row by row, only bad rows fail
            outcomes = [exc] if len(pending) == 1 else [self._write_alone(s, r) for s, r, _l, _f in pending]
        except BaseException as exc:  # the thread must never leave requests waiting for ever
            outcomes = [exc] * len(pending)
        by_loop: dict[Any, list] = {}
        for (_statement, _row, loop, future), outcome in zip(pending, outcomes):
            by_loop.setdefault(loop, []).append((future, outcome))
        for loop, settled in by_loop.items():  # one wake-up per event loop and group
            try:
                loop.call_soon_threadsafe(_settle_all, settled)
            except RuntimeError:  # that loop is closed: nobody is waiting any more
                pass

    def _write_alone(self, statement, row) -> BaseException | None:
        try:
            self.write(statement, [row])
        except Exception as exc:  # noqa: BLE001 - handed to that row's request
            return exc
        return None

    def _stop_writer(self) -> None:
        with self._pending_ready:
            writer, self._writer = self._writer, None
            if writer is None:
                return
            self._pending.append(_STOP)
            self._pending_ready.notify()
        writer.join()

    def dispose(self) -> None:
        self._stop_writer()
        for readers in list(self._loop_readers.values()):
            readers.close()
        self._loop_readers.clear()
        with self._lock:
            fairies, self._all = self._all, []
        for fairy in fairies:
            try:
                fairy.invalidate()
            except Exception:  # noqa: BLE001 - closing at shutdown
                pass
        self._local = threading.local()


_READERS = 8  # PostgreSQL reads in flight at once per event loop (``run_async``), a connection each


class _LoopReaders:
    """One event loop's PostgreSQL connections for ``Direct.run_async``: opened as reads need
    them, at most ``_READERS``, each running one read at a time and kept for the next."""

    def __init__(self, url: str):
        self._url = url
        self._slots = asyncio.Semaphore(_READERS)
        self._idle: list = []
        self._open: list = []

    async def fetch_all(self, sql: str, params) -> list[tuple]:
        async with self._slots:
            conn = self._idle.pop() if self._idle else await self._connect()
            try:
                cursor = await conn.execute(sql, params)
                rows = await cursor.fetchall()
            except BaseException:
                # Lost, or cancelled mid-read (its answer may still be on the wire): never reused.
                self._discard(conn)
                raise
            self._idle.append(conn)
            return rows

    async def _connect(self):
        import psycopg

        conn = await psycopg.AsyncConnection.connect(self._url, autocommit=True)
        self._open.append(conn)
        try:
            _json_as_text(conn)
            await conn.execute(_POSTGRES_SESSION)
        except BaseException:
            self._discard(conn)
            raise
        return conn

    def _discard(self, conn) -> None:
        if conn in self._open:
            self._open.remove(conn)
        conn.pgconn.finish()  # closes the socket at once, from any thread, without the loop

    def close(self) -> None:
        """Close every connection (``Direct.dispose``: the loop may be gone already)."""
        for conn in list(self._open):
            self._discard(conn)
        self._idle.clear()


_STOP = object()  # queued by ``dispose``: the writer commits what is left, then ends
_CHECKPOINT_INTERVAL = 0.25  # seconds between two checkpoints at most (bounds the WAL's growth)


def _settle_all(settled: list) -> None:
    for future, exc in settled:
        if future.done():  # the request went away (client disconnected); its row stands
            continue
        if exc is None:
            future.set_result(None)
        else:
            future.set_exception(exc)
