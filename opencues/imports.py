"""The bulk-import and segment-membership job handlers, with fast bulk writers.

Each handler streams the stored payload through ``opencues.readers`` from the job's progress mark
(``skip=ctx.rows_done``), validates rows, and writes them in batches of
``settings.import_batch_rows``. One batch is one transaction holding both its rows and the
advanced progress mark (``ctx.commit_progress``). A crash therefore loses or keeps a whole batch
together with its mark: on resumption nothing is skipped and nothing is written twice.

A bad row never blocks the good ones: it is counted in ``ingestions_failed`` and its line number
and reason are kept (the first ``settings.job_error_samples``) for the ``Completed`` event. A row
is bad when ``opencues.readers`` refuses it, and also when its attributes break
``opencues.attributes``' rules (nesting, ``settings.max_attribute_keys``, NUL) — checked here,
on the JSON text every row is encoded to anyway, so that no row can fail a whole batch's write.

Writers bypass SQLAlchemy's per-row overhead and talk to the driver connection of the same
transaction. Events are streamed (``_stream_batches``): a writer thread writes the parsed rows as
the parsing thread hands them over (5,000-20,000 at a time), into their batch's open transaction
(which proves the lease first, ``ctx.hold_lease``, and takes SQLite's write lock); at the batch's
end it writes the progress mark, the hourly counts and the distinct attribute-key pairs
(``opencues.event_counts``, ``opencues.attribute_keys``) and commits — or earlier, at a hand-over
after which another writer of the process waits for SQLite's lock (``storage.write_turns``).
PostgreSQL: one ``COPY`` a batch, open across its writes, and consecutive batches written over
``settings.import_write_connections`` connections at once, committed in order (``_Lanes``);
SQLite: one ``INSERT … SELECT`` a write, reading the rows out of a JSON document; both wait with
the GIL released.

Profiles and membership (``_run_batches``): on SQLite streamed too, but inline (``executemany``,
in the parsing thread, a hand-over of 5,000 rows at a time; a batch commits once it has held the
lock 0.1 s, so that the next part's parse leaves other processes' writers a window); on
PostgreSQL a batch at a time (the mark first), ``COPY`` into a session-local temporary table,
then set-based statements (profiles merged in the database), while the next batch is parsed
(``_Pipeline``).
"""

from __future__ import annotations

import logging
import queue
from collections import Counter
import threading
import time
from contextlib import AbstractContextManager, ExitStack, closing, contextmanager, nullcontext
from dataclasses import dataclass, field
from itertools import islice
from operator import itemgetter
from typing import Callable, Protocol

import orjson

from opencues import attribute_keys, attributes as attribute_rules, event_counts, ingestion_rules, profiles, readers
from opencues.attributes import plainly_allowed
from opencues.events import flow_id_of
from opencues.readers import Format, RowError, RowInvalid
from opencues.timestamps import now_ms
from opencues.worker import JobContext, JobFailed, register

_dumps = orjson.dumps
log = logging.getLogger("opencues.imports")


def _batches(items, size: int):
    iterator = iter(items)
    while True:
        chunk = list(islice(iterator, size))
        if not chunk:
            return
        yield chunk


def _driver(conn):
    """The DBAPI connection under a SQLAlchemy connection (same transaction)."""
    return conn.connection.driver_connection


@dataclass
class _Batch:
    consumed: int  # input items (records and unparsable ones): the progress mark advances by this
    rows: list  # what the writer takes: the good rows, or pieces encoding them (``count`` rows)
    errors: list
    keys: set = field(default_factory=set)  # events: the rows' distinct attribute-key pairs
    count: int | None = None  # good rows, when ``rows`` does not hold one item per row
    hours: Counter = field(default_factory=Counter)  # events: counts by (account, name, hour)
    filtered: int = 0  # events, or attribute values, dropped by the account's ingestion rules

    def __post_init__(self) -> None:
        if self.count is None:
            self.count = len(self.rows)

    def add(self, other: "_Batch", *, rows: bool = True) -> None:
        """Take in ``other``'s counts, errors and catalogue entries, and its rows unless ``rows``
        is false (a streamed batch: its rows are in the database already)."""
        self.consumed += other.consumed
        if rows:
            self.rows.extend(other.rows)
        self.errors.extend(other.errors)
        self.keys |= other.keys
        self.hours.update(other.hours)
        self.count += other.count
        self.filtered += other.filtered


def _run_batches(ctx: JobContext, read, parse: Callable[[list], _Batch], write_rows: Callable[[object, list], None]) -> None:
    """The profile and membership imports: read the payload from the progress mark, parse it and
    write its rows with ``write_rows(conn, rows)``, each batch — its rows and the advanced mark —
    in one transaction.

    SQLite: streamed inline (``_stream_batches``; ``executemany`` writes). PostgreSQL: a whole
    batch at a time, in a writer thread while this thread parses the next batch (the writes wait
    with the GIL released: COPY and set-based statements); they go through a temporary table
    emptied at commit, so they take a whole batch, not streamed hand-overs."""
    if not ctx.db.is_postgres:
        return _stream_batches(ctx, read, parse, _InlineStream(ctx, _RowsTarget(write_rows)))

    def commit(batch: _Batch) -> None:
        with ctx.transaction() as conn:
            ctx.commit_progress(
                conn, consumed=batch.consumed, completed=batch.count, failed=len(batch.errors), errors=batch.errors,
                filtered=batch.filtered,
            )  # fmt: skip
            if batch.count:
                write_rows(conn, batch.rows)

    with ctx.file_store.open(ctx.job.payload_key) as stream, _Pipeline(commit) as pipeline:
        items = read(stream, Format(ctx.job.payload_format), skip=ctx.rows_done)
        # Parse in small chunks so that only compact parsed rows accumulate into a batch: the
        # readers' dicts for a whole 50,000-row batch would cost hundreds of MB.
        pending: _Batch | None = None
        for chunk in _batches(items, min(_PARSE_CHUNK, ctx.settings.import_batch_rows)):
            parsed = parse(chunk)
            if pending is None:
                pending = parsed
            else:
                pending.add(parsed)
            if pending.consumed >= ctx.settings.import_batch_rows:
                pipeline.put(pending)
                pending = None
        if pending is not None:
            pipeline.put(pending)


_PARSE_CHUNK = 1_000


class _WriterThread:
    """One writer thread taking items in order from a short queue. The first error it hits
    (``LeaseLost`` and ``Interrupted`` too) stops all further writes and is re-raised in the
    producer; the producer's own error ends the thread too (``_finish`` cleans up after either)."""

    def __init__(self, depth: int):
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._error: BaseException | None = None
        self.idle = False  # waiting for an item (read by the producer without a lock: a hint)
        self._thread = threading.Thread(target=self._run, name="import-writer", daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def put(self, item) -> None:
        while True:
            if self._error is not None:
                raise self._error
            try:
                self._queue.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def __exit__(self, exc_type, exc, tb) -> bool:
        self._queue.put(_DONE)  # the writer drains the queue even after an error, so this returns
        self._thread.join()
        if exc_type is None and self._error is not None:
            raise self._error
        return False

    def _run(self) -> None:
        while True:
            self.idle = True
            item = self._queue.get()
            self.idle = False
            if item is _DONE:
                self._finish()
                return
            if self._error is None:
                try:
                    self._handle(item)
                except BaseException as exc:  # noqa: BLE001 - handed over to the producer thread
                    self._error = exc
                    self._finish(exc)

    def _handle(self, item) -> None:
        raise NotImplementedError

    def _finish(self, error: BaseException | None = None) -> None:
        """After the last item, or at the first error (``error``)."""


_DONE = object()


class _Pipeline(_WriterThread):
    """Commits whole batches in a writer thread, while the producer parses the next one."""

    def __init__(self, commit: Callable[[_Batch], None], depth: int = 1):
        super().__init__(depth)
        self._commit = commit

    def _handle(self, batch: _Batch) -> None:
        self._commit(batch)


class _BatchTarget(Protocol):
    """Where ``_stream_batches`` writes a batch: its rows, as they are handed over, then its closing writes."""

    def writing(self, conn) -> AbstractContextManager:
        """Entered before a batch's first rows; left, after its last ones, before the progress mark is
        written (a clean exit finishes the writes: PostgreSQL's COPY ends there)."""

    def write(self, conn, rows: list) -> None: ...

    def close(self, conn, batch: _Batch) -> None:
        """The batch's own closing writes, after its progress mark, before the commit."""


def _stream_batches(ctx: JobContext, read, parse: Callable[[list], _Batch], writer: _BatchWriter) -> None:
    """Read the payload from the progress mark and parse it, while ``writer`` (a writer thread,
    ``_StreamWriter``; several, ``_Lanes``; or this thread, ``_InlineStream``) writes the parsed
    rows as they come into their batch's one open transaction; at every ``import_batch_rows``
    items the writer advances the progress mark, closes and commits the batch.

    Parsing and writing overlap through the whole import, not batch by batch (``_Pipeline``: an
    import of two batches overlapped none of the first batch's parse and none of the last one's
    write), and at most ``_STREAM_DEPTH`` writes of at most ``_MAX_WRITE_ROWS`` rows wait in memory,
    not a batch (on each of ``_Lanes``' connections).

    ``_InlineStream``: this thread writes each hand-over itself, between parsing the next ones —
    for SQLite's ``executemany`` writers, which give up and retake the GIL for every row, so that
    a parsing thread beside them starves them (measured: 3× slower than parsing and writing in
    turn)."""
    batch_rows = ctx.settings.import_batch_rows
    with ctx.file_store.open(ctx.job.payload_key) as stream, writer:
        items = read(stream, Format(ctx.job.payload_format), skip=ctx.rows_done)
        consumed = 0  # items of the open batch
        pending: _Batch | None = None  # parsed chunks gathered into one write
        for chunk in _batches(items, min(_PARSE_CHUNK, batch_rows)):
            parsed = parse(chunk)
            consumed += parsed.consumed
            if pending is None:
                pending = parsed
            else:
                pending.add(parsed)
            if consumed >= batch_rows:
                writer.put(pending)
                writer.put(_END_OF_BATCH)
                pending, consumed = None, 0
            elif pending.consumed >= _MAX_WRITE_ROWS or (pending.consumed >= _MIN_WRITE_ROWS and writer.idle):
                writer.put(pending)
                pending = None
        if pending is not None:
            writer.put(pending)
        if consumed:
            writer.put(_END_OF_BATCH)


# Rows handed to the writer thread at once: the minimum while the writer waits for rows, so that
# little is left to write after the parse ends; up to the maximum while it is busy, as each write
# costs it a statement and up to one GIL switch interval (``worker.GIL_SWITCH_INTERVAL``) to get
# the GIL back from the parsing thread. Fixed sizes measured: 5,000 the fastest at 100,000 rows,
# 20,000 at 1,000,000 (bench/README.md, "Streaming an import's batches").
_MIN_WRITE_ROWS = 5_000
_MAX_WRITE_ROWS = 20_000
_STREAM_DEPTH = 2  # writes queued for the writer thread
_END_OF_BATCH = object()


class _BatchWriter(Protocol):
    """The writing side of ``_stream_batches``: takes hand-overs of parsed rows and
    ``_END_OF_BATCH`` markers, in order, inside its ``with`` block."""

    idle: bool  # waiting for rows: the producer hands over fewer at a time

    def put(self, item) -> None: ...

    def __enter__(self): ...

    def __exit__(self, exc_type, exc, tb) -> bool: ...


class _StreamedBatches:
    """The writing side of ``_stream_batches``. A batch's transaction begins with its first rows
    and proves the lease before writing any (``JobContext.hold_lease``); every later write checks
    for shutdown; the end-of-batch marker ends the target's writes, writes the progress mark and
    the target's closing writes, and commits; so does a hand-over after which another writer
    waits for SQLite's write lock, or after which the batch has held it ``lock_seconds``. An
    error, the writer's (``LeaseLost`` and ``Interrupted`` too) or the producer's, rolls the open
    batch back."""

    lock_seconds: float | None = None  # ends a batch that has held the lock this long (None: never)

    def __init__(self, ctx: JobContext, target: _BatchTarget):
        self._ctx = ctx
        self._target = target
        self._open: _OpenBatch | None = None

    def _handle(self, item) -> None:
        if item is _END_OF_BATCH:
            if self._open is not None:  # (None: committed early, below)
                self._commit()
            return
        self._write(item)
        if self._ctx.db.writers_waiting() or self._held_too_long():
            # SQLite: another writer waits for the lock (a track call's group commit, say), or
            # the batch has held it long enough. The batch ends here, at a hand-over, so a waiting
            # writer waits for one hand-over, not a whole batch; the progress mark counts what
            # was consumed, wherever a batch ends.
            self._commit()

    def _held_too_long(self) -> bool:
        return self.lock_seconds is not None and time.monotonic() - self._open.opened > self.lock_seconds

    def _finish(self, error: BaseException | None = None) -> None:
        if self._open is not None:  # an error, or the producer stopped mid-batch
            self._roll_back(error or RuntimeError("the import stopped mid-batch"))

    def _write(self, rows: _Batch) -> None:
        batch = self._open
        if batch is None:
            batch = self._open = _OpenBatch(ExitStack(), ExitStack(), None, _Batch(0, [], []), time.monotonic())
            batch.conn = batch.transaction.enter_context(self._ctx.transaction())
            self._prove_lease(batch.conn)
            batch.writes.enter_context(self._target.writing(batch.conn))
        else:
            self._ctx.raise_if_stopping()
        if rows.count:
            self._target.write(batch.conn, rows.rows)
        batch.totals.add(rows, rows=False)

    def _prove_lease(self, conn) -> None:
        self._ctx.hold_lease(conn)

    def _commit(self) -> None:
        batch = self._open
        batch.writes.close()  # PostgreSQL: the COPY ends once the server has caught up with it
        self._commit_written(batch)

    def _commit_written(self, batch: _OpenBatch) -> None:
        """The progress mark and the target's closing writes, then the commit."""
        totals = batch.totals
        self._ctx.commit_progress(
            batch.conn, consumed=totals.consumed, completed=totals.count, failed=len(totals.errors),
            errors=totals.errors, filtered=totals.filtered,
        )  # fmt: skip
        self._target.close(batch.conn, totals)
        self._open = None
        batch.transaction.close()  # commits (a failed commit rolls back and raises)

    def _roll_back(self, error: BaseException) -> None:
        batch, self._open = self._open, None
        for stack in (batch.writes, batch.transaction):  # the transaction ends even if the writes' exit fails
            try:
                stack.__exit__(type(error), error, error.__traceback__)
            except BaseException:  # noqa: BLE001 - the error that made us roll back is the one to report
                log.exception("import job %s: rolling back the open batch failed", self._ctx.job.id)


class _StreamWriter(_StreamedBatches, _WriterThread):
    """``_StreamedBatches`` in a writer thread, beside the parsing one."""

    def __init__(self, ctx: JobContext, target: _BatchTarget, depth: int = _STREAM_DEPTH):
        _WriterThread.__init__(self, depth)
        _StreamedBatches.__init__(self, ctx, target)


class _EarlierBatchFailed(Exception):
    """A batch ahead of this one failed: this one must not commit (``_CommitOrder``)."""


class _CommitOrder:
    """The batches of one import commit in the order they were read, whichever connection wrote
    them: a batch's progress mark counts every item up to its end, so it must not commit before
    the batches ahead of it. A failed batch fails the batches after it (they roll back), never
    the ones before it."""

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._due = 0  # the batch whose commit is next
        self._failed_at: int | None = None  # the first failed batch
        self.failure: BaseException | None = None  # and its error: the import's

    def wait_for_turn(self, seq: int) -> None:
        with self._changed:
            self._changed.wait_for(lambda: self._due == seq or (self._failed_at is not None and self._failed_at < seq))
            if self._due != seq:
                raise _EarlierBatchFailed(f"batch {self._failed_at} failed")

    def committed(self) -> None:
        with self._changed:
            self._due += 1
            self._changed.notify_all()

    def fail(self, seq: int, error: BaseException) -> None:
        with self._changed:
            if self._failed_at is None or seq < self._failed_at:
                self._failed_at, self.failure = seq, error
            self._changed.notify_all()


class _Lane(_StreamWriter):
    """One connection of ``_Lanes``: batches ``first``, ``first + step``, … of the import, each
    committed in its turn."""

    def __init__(self, ctx: JobContext, target: _BatchTarget, order: _CommitOrder, first: int, step: int):
        super().__init__(ctx, target)
        self._order, self._seq, self._step = order, first, step

    def _prove_lease(self, conn) -> None:
        # Without the job row's lock, which the batch ahead (on another connection) may hold until
        # its commit; this batch's progress mark is the fence.
        self._ctx.check_lease(conn)

    def _commit_written(self, batch: _OpenBatch) -> None:
        self._order.wait_for_turn(self._seq)
        super()._commit_written(batch)
        self._seq += self._step
        self._order.committed()

    def _finish(self, error: BaseException | None = None) -> None:
        if error is not None or self._open is not None:  # this lane's batch will not commit
            self._order.fail(self._seq, error or RuntimeError("the import stopped mid-batch"))
        super()._finish(error)


class _Lanes:
    """PostgreSQL: an events import's batches written over ``n`` connections at once — batch
    ``k`` by lane ``k mod n``, a writer thread and its connection — and committed in the order
    they were read (``_CommitOrder``). The server inserts a batch's rows into the table and its
    indexes in that connection's backend; the client sends them ahead of it, so at a batch's end
    that backend has tens of thousands of rows still to insert. One connection waited for it
    there; with two the next batch's backend is already at work (bench/README.md, "Import rate:
    batches over two connections"). Ids then interleave between neighbouring batches: the table
    keeps no order of arrival (docs/decisions.md)."""

    def __init__(self, ctx: JobContext, make_target: Callable[[], _BatchTarget], n: int):
        self._order = _CommitOrder()
        self._lanes = [_Lane(ctx, make_target(), self._order, first, n) for first in range(n)]
        self._batch = 0  # the batch being handed over
        self._running = ExitStack()

    @property
    def _current(self) -> _Lane:
        """The lane of the batch being handed over."""
        return self._lanes[self._batch % len(self._lanes)]

    @property
    def idle(self) -> bool:
        return self._current.idle

    def put(self, item) -> None:
        try:
            self._current.put(item)
        except _EarlierBatchFailed:
            raise self._order.failure from None
        if item is _END_OF_BATCH:
            self._batch += 1

    def __enter__(self) -> "_Lanes":
        for lane in self._lanes:
            self._running.enter_context(lane)
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        try:  # every lane drains its queue and ends; the first failed batch's error is the import's
            return self._running.__exit__(exc_type, exc, tb)
        except _EarlierBatchFailed:
            raise self._order.failure from None


class _InlineStream(_StreamedBatches):
    """``_StreamedBatches`` in the parsing thread: each hand-over written as it is made."""

    idle = True  # the writer is this thread: always ready, so hand-overs stay small
    # The lock is held while the next part is parsed too; other processes' writers, which cannot
    # see the turns, get it between a commit and the next part's write.
    lock_seconds = 0.1

    def put(self, item) -> None:
        self._handle(item)

    def __enter__(self) -> "_InlineStream":
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        self._finish(exc)
        return False


@dataclass
class _OpenBatch:
    transaction: ExitStack  # the batch's transaction (``JobContext.transaction``)
    writes: ExitStack  # the target's ``writing``
    conn: object
    totals: _Batch  # what its written rows added up to: counts, errors, catalogue entries
    opened: float  # time.monotonic() when it began


def _stored_text(attributes: dict, where: str, max_keys: int) -> str:
    """``attributes`` as the JSON text to store, or ``RowInvalid`` naming what breaks the rules."""
    text, problem = attribute_rules.encoded(attributes, max_keys=max_keys, where=where)
    return _checked_text(text, problem, where)


def _checked_text(text: bytes | None, problem: str | None, where: str) -> str:
    """The encoded ``text`` to store, unless the rules' check found a ``problem`` or the encoder
    could not write it (``RowInvalid``)."""
    if problem is not None:
        raise RowInvalid(problem)
    if text is None:
        raise RowInvalid(f"`{where or 'row'}` cannot be written as JSON")
    return text.decode()


# --------------------------------------------------------------------------- events


def import_events(ctx: JobContext) -> None:
    account_id = ctx.job.account_id
    event_from_record = readers.event_from_record
    max_keys = ctx.settings.max_attribute_keys

    postgres = ctx.db.is_postgres
    rules = ingestion_rules.load(ctx.db, account_id)
    keeps = rules.keeps_event if rules.event_names else None  # None: nothing to filter, no check

    def parse(chunk) -> _Batch:
        # The per-row work of every events import: each call and copy here costs ~0.1-0.4 µs a
        # row, so the usual case runs inline (bench/README.md, "Import rate against the code
        # before analytics") and the rest goes through the general functions.
        rows, errors = [], []
        append = rows.append
        keys = attribute_keys.KeyWalker()
        add_keys = keys.add
        filtered = 0
        for item in chunk:
            if type(item) is RowError:
                errors.append(item)
                continue
            line, value = item
            try:
                # ``value`` is this loop's alone: it becomes the attributes without a copy.
                user_id, name, timestamp, attributes = event_from_record(value, owned=True)
                try:
                    text = _dumps(attributes)
                except orjson.JSONEncodeError:
                    text = None
                if text is not None and plainly_allowed(text, max_keys):
                    document = text.decode()
                else:  # the walk decides; the text is encoded already
                    found = attribute_rules.problem(attributes, max_keys=max_keys, where="attributes")
                    document = _checked_text(text, found, "attributes")
            except RowInvalid as exc:
                errors.append(RowError(line, exc.reason))
                continue
            if keeps is not None and not keeps(name):
                filtered += 1
                continue
            flow_id = flow_id_of(attributes)
            if postgres:
                append((account_id, user_id, name, timestamp, document, flow_id))
            else:
                append((user_id, name, timestamp, document, flow_id))
            add_keys(attributes)
        # The rows' (name, hour) pairs, made and counted in C after the loop: a tuple a row in
        # the loop cost ~0.4 µs a row more.
        names, stamps = (itemgetter(2), itemgetter(3)) if postgres else (itemgetter(1), itemgetter(2))
        per_hour = Counter(zip(map(names, rows), map(event_counts.HOUR_MS.__rfloordiv__, map(stamps, rows))))
        hours = Counter({(account_id, name, hour): count for (name, hour), count in per_hour.items()})
        if postgres or not rows:
            return _Batch(len(chunk), rows, errors, keys.pairs, filtered=filtered, hours=hours)
        # SQLite: the chunk's rows as one piece of a write's JSON array (``_insert_events_sqlite``),
        # encoded here rather than in the writer thread, where it would hold the GIL.
        return _Batch(len(chunk), [_dumps(rows)[1:-1].decode()], errors, keys.pairs, count=len(rows), filtered=filtered, hours=hours)

    lanes = ctx.settings.import_write_connections if postgres else 1
    writer = _Lanes(ctx, lambda: _EventsTarget(ctx), lanes) if lanes > 1 else _StreamWriter(ctx, _EventsTarget(ctx))
    _stream_batches(ctx, readers.read_records, parse, writer)


class _EventsTarget:
    """An events batch: rows written as they are parsed, then its hourly counts and catalogue entries."""

    def __init__(self, ctx: JobContext):
        self._account_id = ctx.job.account_id
        self._postgres = ctx.db.is_postgres
        self._cache_mb = ctx.settings.sqlite_import_cache_mb, ctx.db.sqlite_cache_mb
        self._copy = None  # PostgreSQL: the batch's COPY

    def writing(self, conn) -> AbstractContextManager:
        return self._copying(_driver(conn)) if self._postgres else _sqlite_cache(_driver(conn), *self._cache_mb)

    @contextmanager
    def _copying(self, raw):
        """One COPY a batch, open across its writes: the server inserts rows as they arrive, and the
        writer waits for it to catch up once a batch, not after every write (a COPY per write of
        5,000 rows measured 8% slower)."""
        with raw.cursor() as cursor, cursor.copy(f"COPY events ({_EVENT_COLUMNS}) FROM STDIN") as copy:
            self._copy = copy
            try:
                yield
            finally:
                self._copy = None

    def write(self, conn, rows: list) -> None:
        if self._postgres:
            _copy_events(self._copy, rows)
        else:
            _insert_events_sqlite(_driver(conn), self._account_id, rows)

    def close(self, conn, batch: _Batch) -> None:
        # Counts, then keys (last: holds catalogue rows for the shortest time), as track's group
        # commit writes them (``events._EventCompanion``): one lock order, no deadlock.
        event_counts.record(conn, batch.hours)
        attribute_keys.record(conn, self._account_id, batch.keys)


class _RowsTarget:
    """A batch whose rows are all it writes (SQLite's profile and membership imports)."""

    def __init__(self, write_rows: Callable[[object, list], None]):
        self.write = write_rows

    def writing(self, conn) -> AbstractContextManager:
        return nullcontext()

    def close(self, conn, batch: _Batch) -> None:
        pass


# One statement per write (``_stream_batches``): SQLite reads the rows out of a JSON array (``json_each``), so
# the insert runs in C with the GIL released while the next rows are parsed. On its own this is as
# fast as ``executemany``, which would retake the GIL for every row (see ``_stream_batches``).
# The attributes travel as JSON text in a JSON string: stored exactly as ``orjson`` wrote them
# (an object there would be parsed into nodes and rendered again: 10% slower).
_SQLITE_EVENTS = (
    "INSERT INTO events (account_id, user_id, name, timestamp, attributes, flow_id) SELECT ?, json_extract(value, '$[0]'), "
    "json_extract(value, '$[1]'), json_extract(value, '$[2]'), json_extract(value, '$[3]'), json_extract(value, '$[4]') "
    "FROM json_each(?)"
)
_EVENT_COLUMNS = 'account_id, user_id, name, "timestamp", attributes, flow_id'


def _insert_events_sqlite(raw, account_id: str, pieces: list[str]) -> None:
    """Insert the rows encoded in ``pieces``: each a comma-separated run of JSON arrays
    ``[user_id, name, timestamp, attributes as JSON text, flow_id]``. (Bound as text: SQLite 3.45 and
    later read a BLOB given to a JSON function as its binary JSONB format.)"""
    raw.execute(_SQLITE_EVENTS, (account_id, "[" + ",".join(pieces) + "]"))


@contextmanager
def _sqlite_cache(raw, batch_cache_mb: int, cache_mb: int):
    """The connection's page cache is ``batch_cache_mb`` while a batch is written, then
    ``cache_mb`` again: a batch inserts into six indexes, three of them at many places at once
    (``ix_events_user_time`` by user, the name and flow indexes by name and flow), and with the
    usual cache their pages were evicted and read back, and dirty ones spilled to the WAL before
    the commit (a 1,000,000-row import: 8,700 → 16,600-18,100 rows/s, 35 → 30 µs of CPU a row;
    bench/README.md, "Import rate against the code before analytics"). Shrinking it again frees
    the clean pages only (SQLite keeps every dirty page until the commit writes it), so the memory
    is held by one connection for one batch at a time."""
    raw.execute(f"PRAGMA cache_size=-{batch_cache_mb * 1024}")
    try:
        yield
    finally:
        raw.execute(f"PRAGMA cache_size=-{cache_mb * 1024}")


def _copy_events(copy, rows) -> None:
    """Write ``rows`` into an open ``COPY events`` (``_EVENT_COLUMNS``)."""
    write_row = copy.write_row
    for row in rows:
        write_row(row)


# --------------------------------------------------------------------------- profiles


def import_profiles(ctx: JobContext) -> None:
    rules = ingestion_rules.load(ctx.db, ctx.job.account_id)
    _import_bags(ctx, readers.profile_from_record, rules.filter_profile if rules.profile_attributes else None)


def import_groups(ctx: JobContext) -> None:
    """Group properties, merged exactly as profile attributes are (table ``groups``)."""
    rules = ingestion_rules.load(ctx.db, ctx.job.account_id)
    _import_bags(ctx, readers.group_from_record, rules.filter_group if rules.group_attributes else None, table="groups", key="group_id")


def _import_bags(ctx: JobContext, from_record, rule_filter, *, table: str = "profiles", key: str = "user_id") -> None:
    """Merge rows of ``(id, attributes)`` (``from_record``) into ``table`` keyed by ``key``, after
    ``rule_filter`` (None: the account's rules drop nothing of this kind)."""
    account_id = ctx.job.account_id
    max_keys = ctx.settings.max_attribute_keys

    def parse(chunk) -> _Batch:
        # Each change is kept as JSON text until it is written: a batch of 50,000 profile dicts
        # costs ~60 MB (~5x their text), and on PostgreSQL three batches can be alive at once.
        changes: list[tuple[str, str]] = []
        errors = []
        filtered = 0
        for item in chunk:
            if type(item) is RowError:
                errors.append(item)
                continue
            line, value = item
            try:
                user_id, attributes = from_record(value)
                dropped = 0
                if rule_filter is not None:
                    attributes, dropped = rule_filter(attributes)
                changes.append((user_id, _stored_text(attributes, "", max_keys)))
                filtered += dropped
            except RowInvalid as exc:
                errors.append(RowError(line, exc.reason))
        return _Batch(len(chunk), changes, errors, filtered=filtered)

    merge = _merge_profiles_postgres if ctx.db.is_postgres else _merge_profiles_sqlite
    where = {} if table == "profiles" else {"table": table, "key": key}
    write_rows = lambda conn, rows: merge(_driver(conn), account_id, rows, **where)  # noqa: E731
    _run_batches(ctx, readers.read_records, parse, write_rows)


def _merged(existing: dict[str, dict], changes: list[tuple[str, str]]) -> dict[str, dict]:
    """Apply the batch's updates (JSON text) in file order (a user may appear several times)."""
    result: dict[str, dict] = {}
    merge, loads = profiles.merge, orjson.loads
    for user_id, document in changes:
        current = result.get(user_id)
        if current is None:
            current = existing.get(user_id, {})
        result[user_id] = merge(current, loads(document))
    return result


def _merge_profiles_sqlite(raw, account_id: str, changes, *, table: str = "profiles", key: str = "user_id") -> None:
    # The batch's transaction already holds SQLite's write lock (it proved the lease first), so
    # no other writer can change these profiles between this read and the write below.
    user_ids = list(dict.fromkeys(u for u, _ in changes))
    loads = orjson.loads
    existing = {
        user_id: loads(attributes) if attributes else {}
        for user_id, attributes in raw.execute(
            f"SELECT {key}, attributes FROM {table} WHERE account_id = ? AND {key} IN (SELECT value FROM json_each(?))",
            (account_id, _dumps(user_ids).decode()),
        )
    }
    now = now_ms()
    merged = _merged(existing, changes)
    raw.executemany(
        f"INSERT INTO {table} (account_id, {key}, attributes, created_at, updated_at) VALUES (?, ?, ?, ?, ?) "
        f"ON CONFLICT (account_id, {key}) DO UPDATE SET attributes = excluded.attributes, updated_at = excluded.updated_at",
        [(account_id, u, _dumps(a).decode(), now, now) for u, a in merged.items()],
    )


def _combined(changes: list[tuple[str, str]]) -> dict[str, str]:
    """One change set (JSON text) per user: later rows win key by key and a ``null`` stays a
    removal, so merging the combined set equals merging the rows one after another."""
    result: dict[str, str] = {}
    loads = orjson.loads
    for user_id, document in changes:
        current = result.get(user_id)
        result[user_id] = document if current is None else _dumps({**loads(current), **loads(document)}).decode()
    return result


# Temporary tables are per session and emptied at each commit: a pooled connection keeps its own.
_PROFILE_CHANGES = (
    "CREATE TEMPORARY TABLE IF NOT EXISTS opencues_profile_changes "
    "(user_id text PRIMARY KEY, changes jsonb, removed text[]) ON COMMIT DELETE ROWS"
)
_USER_IDS = "CREATE TEMPORARY TABLE IF NOT EXISTS opencues_user_ids (user_id text) ON COMMIT DELETE ROWS"


def _copy_into(cursor, table: str, columns: str, rows, types: list[str] | None = None) -> None:
    with cursor.copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
        if types:
            copy.set_types(types)
        write_row = copy.write_row
        for row in rows:
            write_row(row)


def _without_nulls(document: str) -> tuple[str, list[str]]:
    """A change set as (the keys it sets, as JSON text; the keys it removes)."""
    if "null" not in document:  # the common case, decided without parsing
        return document, []
    changes = orjson.loads(document)
    removed = [key for key, value in changes.items() if value is None]
    if not removed:
        return document, []
    return _dumps({key: value for key, value in changes.items() if value is not None}).decode(), removed


def _merge_profiles_postgres(raw, account_id: str, changes, *, table: str = "profiles", key: str = "user_id") -> None:
    # Merged in the database, set-based: one upsert sets the changed keys (a new profile is its
    # changes; an existing one becomes `existing || changes`), then one UPDATE removes the keys
    # set to null, for the few users whose changes hold any. ON CONFLICT DO UPDATE locks each row
    # and merges into its latest version, so a concurrent update is kept; the rows come in
    # user_id order so that concurrent imports lock them in one order. (One statement computing
    # the removed keys with jsonb_each for every row measured 1.4x slower.)
    now = now_ms()
    rows = ((user_id, *_without_nulls(document)) for user_id, document in _combined(changes).items())
    with raw.cursor() as cursor:
        cursor.execute(_PROFILE_CHANGES)
        # The changes are JSON text already: copied as text (a jsonb dumper would encode them again).
        _copy_into(cursor, "opencues_profile_changes", "user_id, changes, removed", rows, ["text", "text", "text[]"])
        cursor.execute(
            f"INSERT INTO {table} AS p (account_id, {key}, attributes, created_at, updated_at) "
            # COLLATE "C": code point order, the order the server's grouped PATCHes lock rows in.
            "SELECT %s, c.user_id, c.changes, %s, %s FROM opencues_profile_changes AS c ORDER BY c.user_id COLLATE \"C\" "
            f"ON CONFLICT (account_id, {key}) DO UPDATE "
            "SET attributes = p.attributes || excluded.attributes, updated_at = excluded.updated_at",
            (account_id, now, now),
        )
        cursor.execute(
            f"UPDATE {table} AS p SET attributes = p.attributes - c.removed FROM opencues_profile_changes AS c "
            f"WHERE cardinality(c.removed) > 0 AND p.account_id = %s AND p.{key} = c.user_id",
            (account_id,),
        )


# --------------------------------------------------------------------------- segment membership


def _check_segment(conn, ctx: JobContext) -> None:
    """The segment must still exist; on PostgreSQL its row is share-locked for the batch so a
    concurrent delete (which removes the membership) waits until the batch is committed."""
    lock = " FOR SHARE" if ctx.db.is_postgres else ""
    mark = "%s" if ctx.db.is_postgres else "?"
    with closing(_driver(conn).cursor()) as cursor:
        cursor.execute(
            f"SELECT 1 FROM segments WHERE account_id = {mark} AND id = {mark}{lock}",
            (ctx.job.account_id, ctx.job.params["segment_id"]),
        )
        found = cursor.fetchone()
    if found is None:
        raise JobFailed(f"segment {ctx.job.params['segment_id']!r} was deleted")


def _membership(ctx: JobContext, *, add: bool) -> None:
    account_id = ctx.job.account_id
    segment_id = ctx.job.params["segment_id"]
    with ctx.transaction() as conn:
        _check_segment(conn, ctx)

    def parse(chunk) -> _Batch:
        user_ids, errors = [], []
        for item in chunk:
            if type(item) is RowError:
                errors.append(item)
            else:
                user_ids.append(item[1])
        return _Batch(len(chunk), user_ids, errors)

    apply = _membership_postgres if ctx.db.is_postgres else _membership_sqlite

    def write_rows(conn, user_ids: list[str]) -> None:
        _check_segment(conn, ctx)
        apply(_driver(conn), account_id, segment_id, user_ids, add)

    _run_batches(ctx, readers.read_user_ids, parse, write_rows)


def _membership_sqlite(raw, account_id: str, segment_id: str, user_ids: list[str], add: bool) -> None:
    rows = [(account_id, segment_id, u) for u in user_ids]
    if add:
        raw.executemany(
            "INSERT INTO segment_members (account_id, segment_id, user_id) VALUES (?, ?, ?) ON CONFLICT DO NOTHING", rows
        )
    else:
        raw.executemany("DELETE FROM segment_members WHERE account_id = ? AND segment_id = ? AND user_id = ?", rows)


def _membership_postgres(raw, account_id: str, segment_id: str, user_ids: list[str], add: bool) -> None:
    with raw.cursor() as cursor:
        cursor.execute(_USER_IDS)
        _copy_into(cursor, "opencues_user_ids", "user_id", ((u,) for u in user_ids))
        if add:
            cursor.execute(
                "INSERT INTO segment_members (account_id, segment_id, user_id) "
                "SELECT DISTINCT %s, %s, user_id FROM opencues_user_ids ORDER BY 3 ON CONFLICT DO NOTHING",
                (account_id, segment_id),
            )
        else:
            cursor.execute(
                "DELETE FROM segment_members AS m USING opencues_user_ids AS i "
                "WHERE m.account_id = %s AND m.segment_id = %s AND m.user_id = i.user_id",
                (account_id, segment_id),
            )


def add_user_ids(ctx: JobContext) -> None:
    _membership(ctx, add=True)


def remove_user_ids(ctx: JobContext) -> None:
    _membership(ctx, add=False)


register("import_profiles", "Import Profiles", import_profiles, filters=True)
register("import_events", "Import Events", import_events, filters=True)
register("import_groups", "Import Groups", import_groups, filters=True)
register("add_user_ids", "Add User IDs to Segment", add_user_ids)
register("remove_user_ids", "Remove User IDs from Segment", remove_user_ids)
