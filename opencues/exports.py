"""Event exports: request validation, the streaming file writer and the ``export_events`` job.

``validate_request(body)`` checks a ``POST export/events`` body up front and returns an
``ExportRequest`` (stored as the job's params). ``write_export(db, account_id, request, out)``
runs ONE query built from the conditions and writes rows to ``out`` as they arrive; it never
holds the result in memory (on PostgreSQL a reader thread fetches the next batches while the
current one is written: ``_fetched_ahead``; on SQLite a large export is cut into time windows
of that query, rendered by helper processes: ``opencues.export_windows``). The database does the
per-row formatting (JSON lines, CSV cells, timestamps in the requested offset), so Python only
moves ready text from the cursor to the file (measured faster than formatting in Python:
``bench/bench_export.py``, ``bench/README.md``).

Output shapes (``docs/exports.md``):

- JSON: newline-delimited, one ``{"name", "timestamp", "user_id", "attributes"}`` object a line.
- CSV: ``name,timestamp,user_id`` then one ``attributes.<path>`` column per attribute key seen in
  the exported rows, sorted, nested objects flattened with dots. The columns must be known before
  the first row: the account's attribute-key catalogue (``opencues.attribute_keys``) gives the
  candidate columns and the JSON types each holds (which pick the cheapest exact cell
  expression), and a key pass over the same rows finds which candidates occur, stopping once all
  have; then the row pass. Both passes run in one read snapshot so they see the same rows, and
  neither holds more than a batch. Columns the database cannot render as a row's cells (more
  than ``MAX_DATABASE_CELLS``; on SQLite, keys its JSON paths cannot address) are rendered in
  Python instead, exactly as the database would (``opencues.export_cells``).
"""

from __future__ import annotations

import gzip
import io
import logging
import queue
import re
import threading
import time
from contextlib import closing, contextmanager
from dataclasses import asdict, dataclass
from typing import Any, BinaryIO, Callable, Iterable, Iterator, Sequence

import orjson
from sqlalchemy import BigInteger, LargeBinary, Text, bindparam, case, cast, func, literal, null, or_, select, type_coerce
from sqlalchemy import text as sql_text
from sqlalchemy.dialects import sqlite as sqlite_dialect
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.sql.expression import Grouping

from opencues import conditions as conditions_lang
from opencues import attribute_keys, export_cells, export_windows, links, mail, timestamps, worker
from opencues.csv_writer import CsvWriter
from opencues.errors import bad_request
from opencues.filestore import EXPORT_FILES, PRESIGNED_MAX_SECONDS
from opencues.storage import Database
from opencues.storage.direct import libpq_url
from opencues.storage.schema import events

log = logging.getLogger("opencues.exports")

FORMATS = ("json", "csv")
MAX_RECIPIENTS = 50
FETCH_ROWS = 5_000
CSV_LEADING = ("name", "timestamp", "user_id")
MEDIA_TYPES = {"json": "application/x-ndjson", "csv": "text/csv; charset=utf-8"}
EXTENSIONS = {"json": "ndjson", "csv": "csv"}
GZIP_LEVEL = 1  # exports are large: level 1 is ~4x faster than the default for ~10% more bytes
# CSV attribute columns the database renders as cells of a row; a wider CSV export is rendered in
# Python (``export_cells``). A statement may select 2,000 columns on SQLite, 1,664 on PostgreSQL, but
# each cell looks its key up in the row's document anew (SQLite parses it, PostgreSQL detoasts it
# once past ~2 KB): with 300 keys a row the database took 3x (SQLite) and 8x (PostgreSQL) as long
# as Python; with 30 and 100, about as long.
MAX_DATABASE_CELLS = 200

_EMAIL_RE = re.compile(r"^[^@\s,;<>()\[\]\"\\]+@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*$")


@dataclass(frozen=True)
class ExportRequest:
    """A validated export request; ``asdict`` of it is the job's params."""

    emails: tuple[str, ...]
    format: str
    conditions: list
    start_ms: int
    end_ms: int
    offset_minutes: int = 0
    limit: int = 10_000_000
    offset: int = 0
    gzip: bool = False

    def to_params(self) -> dict:
        params = asdict(self)
        params["emails"] = list(self.emails)
        return params

    @classmethod
    def from_params(cls, params: dict) -> "ExportRequest":
        fields = {k: params[k] for k in cls.__dataclass_fields__ if k in params}
        fields["emails"] = tuple(fields.get("emails", ()))
        return cls(**fields)

    def condition_tree(self) -> conditions_lang.Conjunction:
        return conditions_lang.parse(self.conditions, tz=timestamps.offset_tz(self.offset_minutes))


# --- validation ----------------------------------------------------------------------------


def validate_request(body: Any, *, max_rows: int = 10_000_000, now_ms: int | None = None) -> ExportRequest:
    """Check every field of a ``POST export/events`` body (400 naming the bad item)."""
    if not isinstance(body, dict):
        raise bad_request("request body must be a JSON object")
    emails = _emails(body.get("email"))
    fmt = body.get("format")
    if fmt not in FORMATS:
        raise bad_request('`format` is required and must be "json" or "csv"')
    if "conditions" not in body:
        raise bad_request("`conditions` is required: an array of conditions ([] exports every event)")
    offset_minutes = 0
    if body.get("time_zone") is not None:
        offset_minutes = timestamps.parse_offset(body["time_zone"], field="time_zone")
    tz = timestamps.offset_tz(offset_minutes)
    conditions_lang.parse(body["conditions"], tz=tz)
    if body.get("start_time") is None:
        raise bad_request("`start_time` is required: an ISO 8601 string or milliseconds since 1970")
    start_ms = _time(body["start_time"], "start_time", tz)
    if body.get("end_time") is None:
        end_ms = timestamps.now_ms() if now_ms is None else now_ms
    else:
        end_ms = _time(body["end_time"], "end_time", tz)
    if start_ms >= end_ms:
        raise bad_request("`start_time` must be before `end_time` (the range includes its start and excludes its end)")
    limit = _integer(body, "limit", 1, max_rows, max_rows)
    offset = _integer(body, "offset", 0, conditions_lang.INT64_MAX, 0)
    compression = body.get("compression")
    if compression not in (None, "none", "gzip"):
        raise bad_request('`compression` must be "gzip" or "none"')
    return ExportRequest(
        emails=emails, format=fmt, conditions=body["conditions"], start_ms=start_ms, end_ms=end_ms,
        offset_minutes=offset_minutes, limit=limit, offset=offset, gzip=compression == "gzip",
    )  # fmt: skip


def _emails(value: Any) -> tuple[str, ...]:
    if value is None:
        raise bad_request("`email` is required: an email address or an array of them")
    items, single = ([value], True) if isinstance(value, str) else (value, False)
    if not isinstance(items, list) or not items:
        raise bad_request("`email` must be an email address or a non-empty array of them")
    if len(items) > MAX_RECIPIENTS:
        raise bad_request(f"`email` lists more than {MAX_RECIPIENTS} addresses")
    seen: dict[str, None] = {}
    for i, item in enumerate(items):
        where = "email" if single else f"email[{i}]"
        if not isinstance(item, str) or not _EMAIL_RE.match(item.strip()) or len(item) > 254:
            raise bad_request(f"`{where}` is not a valid email address: {item!r}")
        seen.setdefault(item.strip(), None)
    return tuple(seen)


def _integer(body: dict, name: str, low: int, high: int, default: int) -> int:
    value = body.get(name)
    if value is None:
        return default
    if isinstance(value, float) and value.is_integer():  # never inf or nan
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise bad_request(f"`{name}` must be an integer from {low} to {high}")
    return value


def _time(value: Any, name: str, tz) -> int:
    """An ISO 8601 time or epoch milliseconds that a 64-bit integer holds (as every timestamp
    the databases compare with must)."""
    return conditions_lang.epoch_ms(value, field=name, tz=tz)


# --- the query -----------------------------------------------------------------------------


class _Sql:
    """Dialect-specific expressions for the export query (SQLite or PostgreSQL)."""

    def __init__(self, db: Database):
        self.pg = db.is_postgres
        self.attributes = type_coerce(events.c.attributes, JSONB) if self.pg else events.c.attributes

    def timestamp_text(self, offset_minutes: int):
        """``timestamps.render`` in SQL: ``YYYY-MM-DDTHH:MM:SS.mmm`` + ``Z`` or ``±HH:MM``."""
        suffix = timestamps.render(0, offset_minutes)[23:]
        shifted = events.c.timestamp + offset_minutes * 60_000
        if self.pg:
            instant = func.timezone("UTC", func.to_timestamp(shifted / 1000.0))
            head = func.to_char(instant, 'YYYY-MM-DD"T"HH24:MI:SS.MS')
            return head + literal(suffix)
        millis = (shifted % 1000 + 1000) % 1000  # floor modulo, for instants before 1970
        seconds = (shifted - millis) / 1000
        head = func.strftime("%Y-%m-%dT%H:%M:%S", seconds, "unixepoch")
        return head + literal(".") + func.substr(literal("00") + cast(millis, Text), -3) + literal(suffix)

    def json_line(self, offset_minutes: int):
        """One export line, rendered by the database from the stored attribute JSON."""
        if self.pg:
            quote = lambda column: cast(func.to_json(column), Text)  # noqa: E731
            attributes = cast(events.c.attributes, Text)
        else:
            quote = func.json_quote
            attributes = type_coerce(events.c.attributes, Text)
        return (
            literal('{"name":') + quote(events.c.name)
            # Outside years 0000-9999 the database renders nothing: fall back to epoch ms.
            + literal(',"timestamp":"') + func.coalesce(self.timestamp_text(offset_minutes), cast(events.c.timestamp, Text))
            + literal('","user_id":') + quote(events.c.user_id)
            + literal(',"attributes":') + attributes + self.extras_json(quote) + literal("}")
        )  # fmt: skip

    def extras_json(self, quote):
        """``,"group_id":…,"context":…`` for the events that carry them; nothing for the others
        (so an export of plain events is what it always was)."""
        context = cast(events.c.context, Text) if self.pg else type_coerce(events.c.context, Text)
        empty = literal("", Text)
        return (
            case((events.c.group_id.is_not(None), literal(',"group_id":') + quote(events.c.group_id)), else_=empty)
            + case((events.c.context.is_not(None), literal(',"context":') + context), else_=empty)
        )

    @staticmethod
    def extras_probe(account_id: str, request: "ExportRequest", column):
        """Whether any event of the export's time range has ``column`` set (its partial index)."""
        return select(literal(1)).where(*_in_time_range(account_id, request), column.is_not(None)).limit(1)

    def extra_cells(self, conn, account_id: str, request: "ExportRequest") -> tuple[list[str], list]:
        """The CSV's ``group_id`` and ``context`` columns (names, cells): each only when some
        event of the export's time range carries it — one lookup in its partial index."""
        names, cells = [], []
        for name, column in (("group_id", events.c.group_id), ("context", events.c.context)):
            if conn.execute(self.extras_probe(account_id, request, column)).first() is not None:
                names.append(name)
                cells.append(column if name == "group_id" else (cast(column, Text) if self.pg else type_coerce(column, Text)))
        return names, cells
    def csv_row(self, offset_minutes: int, extras: list = ()):
        """A CSV row for ``export_cells`` to render: ``[name, timestamp, user_id, attributes,
        *extras]`` as one JSON array, the attributes as the database writes JSON (numbers as their
        text), the extra cells (``extra_cells``) as the text the database path would give them."""
        timestamp = self.timestamp_text(offset_minutes)
        if self.pg:
            return cast(func.json_build_array(events.c.name, timestamp, events.c.user_id, self.attributes, *extras), Text)
        return type_coerce(
            func.json_array(events.c.name, timestamp, events.c.user_id, func.json(events.c.attributes), *extras), Text
        )

    # -- attribute keys (CSV header) and cells ----------------------------------------

    def cell(self, path: tuple[str, ...], types: set[str]):
        """The CSV cell of attribute ``path`` as the database renders it: strings as is, other
        values as JSON text, objects and nulls empty. ``types`` (every JSON type the path may
        hold: see ``attribute_columns``) lets the common single-type columns use one JSON
        lookup instead of three."""
        strings, others = "string" in types, bool(types - {"string", "null"})
        if self.pg:
            value = conditions_lang.pg_attribute(path)
            text = conditions_lang.pg_attribute(path, text=True)
            as_json = cast(value, Text)
            typeof = func.jsonb_typeof(value)
        else:
            sqlite_path = _sqlite_path(path)
            text = func.json_extract(events.c.attributes, sqlite_path)
            as_json = events.c.attributes.op("->")(sqlite_path)
            typeof = func.json_type(events.c.attributes, sqlite_path)
        if not others:
            return text
        if not strings and "object" not in types:
            return func.nullif(as_json, "null")
        string_type = "string" if self.pg else "text"
        return case(
            (typeof == string_type, text),
            (typeof.in_(["object", "null"]), null()),
            else_=as_json,
        )


def _sqlite_path(path: tuple[str, ...]) -> str:
    return "$" + "".join(f'."{part}"' for part in path)


def _sqlite_addressable(path: tuple[str, ...]) -> bool:
    """Whether a SQLite JSON path finds the key: a path has no escapes, and the stored JSON
    escapes ``"``, ``\\`` and control characters in a key, which a path then never matches."""
    return not any(char in '"\\' or char < " " for part in path for char in part)


def _in_time_range(account_id: str, request: ExportRequest) -> list:
    return [events.c.account_id == account_id, events.c.timestamp >= request.start_ms, events.c.timestamp < request.end_ms]


def _exported(db: Database, account_id: str, request: ExportRequest) -> list:
    """The WHERE clauses selecting the exported events (before limit/offset)."""
    return [*_in_time_range(account_id, request), _conditions(db, account_id, request)]


def _conditions(db: Database, account_id: str, request: ExportRequest):
    return conditions_lang.compile_conditions(request.condition_tree(), db.dialect, account_id)


def export_statement(db: Database, account_id: str, request: ExportRequest, columns: Iterable):
    """SELECT ``columns`` of the exported events, in export order, paged by limit/offset."""
    statement = (
        select(*columns)
        .where(*_exported(db, account_id, request))
        .order_by(events.c.timestamp, events.c.id)
        .limit(request.limit)
    )
    if request.offset:
        statement = statement.offset(request.offset)
    return statement


# --- writing -------------------------------------------------------------------------------


def write_export(
    db: Database,
    account_id: str,
    request: ExportRequest,
    out: BinaryIO,
    *,
    progress: Callable[[int], None] | None = None,
    helpers: int = 0,
) -> int:
    """Write the export to ``out`` (binary) as rows arrive; return the number of events written.
    ``progress(rows_so_far)`` is called after each batch (job heartbeats). A large export is
    rendered in time windows by ``helpers`` helpers in parallel (``opencues.export_windows``)."""
    with db.connect() as conn:
        if db.is_postgres:
            conn = conn.execution_options(isolation_level="REPEATABLE READ")
            # A cursor is planned for its first rows (10% by default), which picks slow
            # nested loops and index scans here; an export reads every row.
            conn.execute(sql_text("SET LOCAL cursor_tuple_fraction = 1.0"))
        raw = conn.connection.driver_connection
        if db.is_sqlite:
            # pysqlite starts no transaction for SELECTs: open one so both passes share a snapshot.
            raw.execute("BEGIN")
        try:
            if helpers:
                written = _write_with_helpers(conn, db, account_id, request, out, progress, helpers)
                if written is not None:
                    return written
            if request.format == "json":
                return _write_json(conn, db, account_id, request, out, progress)
            return _write_csv(conn, db, account_id, request, out, progress)
        finally:
            if db.is_sqlite:
                raw.execute("ROLLBACK")


def _batches(conn, statement) -> Iterator[Sequence[tuple]]:
    """Batches of plain row tuples from a streaming cursor (server-side on PostgreSQL), with no
    per-row SQLAlchemy objects. SQLAlchemy reads the first row ahead when streaming, so the
    first batch goes through the result (which hands that row back) and the rest straight
    from the DBAPI cursor."""
    result = conn.execute(statement.execution_options(stream_results=True, yield_per=FETCH_ROWS))
    try:
        first = result.fetchmany(FETCH_ROWS)
        if not first:
            return
        yield [tuple(row) for row in first]
        cursor = result.cursor  # None once SQLAlchemy saw the end of the rows
        while cursor is not None and (rows := cursor.fetchmany(FETCH_ROWS)):
            yield rows
    finally:
        result.close()  # also when the reader stops early (the key pass): frees the cursor


FETCH_AHEAD_BATCHES = 2  # batches queued between the reader thread and the writer (memory: ~4 batches)


def _row_batches(conn, db: Database, statement) -> Iterator[Sequence[tuple]]:
    """The row pass's batches: on PostgreSQL streamed (``_streamed_batches``) and fetched ahead
    in a reader thread while the caller writes; on SQLite in the calling thread, which measured
    faster there (``bench/README.md``). Close the iterator when done (``closing``)."""
    if db.is_postgres:
        return _fetched_ahead(_streamed_batches(conn, statement))
    return _batches(conn, statement)


def _streamed_batches(conn, statement) -> Iterator[list[tuple]]:
    """PostgreSQL: the rows of ``statement`` as one plain query read in libpq's chunked-rows mode
    (psycopg's ``Cursor.stream``), in the transaction (snapshot) of ``conn``.

    Not a server-side cursor: PostgreSQL never plans a cursor's query in parallel, and a filtered
    export's scan-and-sort then ran serially — 1.8x slower than the same query streamed (and than
    the ``COPY`` floor, which is planned in parallel). Rows still arrive ``FETCH_ROWS`` at a time:
    nothing is buffered beyond a chunk. Closing this early cancels the query, which aborts the
    transaction: only done when the export has failed anyway."""
    compiled = statement.compile(dialect=conn.dialect, compile_kwargs={"render_postcompile": True})
    # The values as SQLAlchemy itself would send them (e.g. JSONB paths as arrays).
    processors = compiled._bind_processors
    params = {name: processors[name](value) if name in processors else value for name, value in compiled.params.items()}
    with conn.connection.driver_connection.cursor() as cursor:
        batch: list[tuple] = []
        append = batch.append
        for row in cursor.stream(compiled.string, params, size=FETCH_ROWS):
            append(row)
            if len(batch) == FETCH_ROWS:
                yield batch
                batch = []
                append = batch.append
        if batch:
            yield batch


_END = object()


class _ReaderFailed:
    """What the reader hands over instead of a batch when reading failed."""

    def __init__(self, error: BaseException):
        self.error = error


def _fetched_ahead(batches: Iterator[Sequence[tuple]], depth: int = FETCH_AHEAD_BATCHES) -> Iterator[Sequence[tuple]]:
    """Iterate ``batches`` (a generator) in a reader thread, at most ``depth`` batches ahead of
    the caller.

    The reader owns whatever ``batches`` reads from (the export's connection) until this
    generator finishes or is closed, and closes ``batches`` itself (freeing the cursor in the
    thread that used it). Closing this generator stops the reader and joins it, so the caller
    may use the connection again afterwards. An error in the reader is re-raised here.

    After ``stop`` is set the reader puts at most one more item before it checks ``stop``
    again, and the caller empties the queue after setting it: so that put never blocks and the
    join returns as soon as the reader's current fetch does.
    """
    handoff: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def read() -> None:
        try:
            with closing(batches):
                for batch in batches:
                    handoff.put(batch)
                    if stop.is_set():
                        return
            outcome: object = _END
        except BaseException as exc:  # noqa: BLE001 - handed over to the caller's thread
            outcome = _ReaderFailed(exc)
        if not stop.is_set():
            handoff.put(outcome)

    reader = threading.Thread(target=read, name="export-reader", daemon=True)
    reader.start()
    try:
        while (item := handoff.get()) is not _END:
            if isinstance(item, _ReaderFailed):
                raise item.error
            yield item
    finally:
        stop.set()
        while True:
            try:
                handoff.get_nowait()
            except queue.Empty:
                break
        reader.join()


def _write_json(conn, db, account_id, request, out, progress) -> int:
    statement = json_statement(db, account_id, request)
    written = 0
    with closing(_row_batches(conn, db, statement)) as batches:
        for rows in batches:
            out.write(("\n".join([r[0] for r in rows]) + "\n").encode())
            written += len(rows)
            if progress:
                progress(written)
    return written


def attribute_columns(conn, db, account_id, request) -> list[tuple[str, list[tuple[tuple[str, ...], set[str]]]]]:
    """The CSV attribute columns: ``[(column name, [(path, types), ...])]`` sorted by name.

    The account's attribute-key catalogue lists every (path, type) pair its events carry: its
    leaf paths are the candidate columns, and its types (a superset of those in the exported rows)
    pick each cell expression, which stays exact for any value of those types. The key pass then
    streams the exported rows' attribute JSON (``_KeyPass``) only to learn which candidates occur
    in them, and stops after the first batch in which all have been seen — with uniform data, the
    first batch. An export whose rows lack some candidate reads them all, as one without the
    catalogue did. Two paths can flatten to the same name (a key ``"a.b"`` and ``a`` → ``b``);
    such a column shows the first non-empty of them.

    On PostgreSQL the first batch comes from a cursor planned for its first rows: one planned
    for all of them (as the row pass is) sorts the whole export before returning a row when the
    plan is a scan and a sort. Only if more than that batch is needed does a second cursor,
    planned for all its rows, read them from the start.
    """
    key_pass = _KeyPass(account_id, attribute_keys.read(conn, account_id))
    text = cast(events.c.attributes, Text) if db.is_postgres else type_coerce(events.c.attributes, Text)
    statement = export_statement(db, account_id, request, [text])
    done = False
    if db.is_postgres:
        with _planned_for_first_rows(conn), closing(_batches(conn, statement)) as batches:
            first = next(batches, [])
        done = key_pass.walk([first]) or len(first) < FETCH_ROWS  # that batch was all the rows
    if not done:
        with closing(_batches(conn, statement)) as batches:
            key_pass.walk(batches)
    return key_pass.columns()


class _KeyPass:
    """The key pass's state: the catalogue, and the pairs found in the rows walked so far.

    A pair in the rows that the catalogue lacks (it should never happen: every event writer
    records its pairs) makes the pass distrust the catalogue: it reads every row and takes the
    columns' types from the rows alone, with a warning. Rows after a pass that stopped early
    are not checked."""

    def __init__(self, account_id: str, catalogue: dict[tuple[str, ...], set[str]]):
        self.account_id = account_id
        self.catalogue = catalogue
        self.known = {(path, kind) for path, kinds in catalogue.items() for kind in kinds}
        self.candidates = sum(1 for kinds in catalogue.values() if kinds != {attribute_keys.OBJECT})
        self.walker = attribute_keys.KeyWalker()
        self.trusted = True
        self.leaves = 0  # candidates seen so far (while trusted)

    def walk(self, batches: Iterable[Sequence[tuple]]) -> bool:
        """Walk ``batches`` of ``(attributes JSON text,)`` rows; True as soon as a batch
        completes every candidate (the caller stops reading there)."""
        walker, add, loads = self.walker, self.walker.add, orjson.loads
        for rows in batches:
            grew = False
            for (document,) in rows:
                if add(loads(document)):
                    grew = True
            if grew and self.trusted:
                if walker.pairs <= self.known:
                    self.leaves = len({path for path, kind in walker.pairs if kind != attribute_keys.OBJECT})
                else:
                    self.trusted = False
                    log.warning(
                        "account %s: the attribute-key catalogue lacks %s; this CSV export reads every row for its "
                        "columns (rebuild the catalogue: opencues.attribute_keys.rebuild)",
                        self.account_id, sorted(walker.pairs - self.known)[:10],
                    )  # fmt: skip
            if self.trusted and self.leaves == self.candidates:
                return True
        return False

    def columns(self) -> list[tuple[str, list[tuple[tuple[str, ...], set[str]]]]]:
        found = attribute_keys.by_path(self.walker.pairs)
        types = self.catalogue if self.trusted else found
        by_name: dict[str, list] = {}
        for path in sorted(path for path, kinds in found.items() if kinds != {attribute_keys.OBJECT}):
            by_name.setdefault("attributes." + ".".join(path), []).append((path, types[path]))
        return sorted(by_name.items())


FIRST_ROWS_FRACTION = "0.01"  # PostgreSQL's cursor_tuple_fraction for the key pass's first batch


@contextmanager
def _planned_for_first_rows(conn):
    """PostgreSQL: cursors declared inside are planned for their first rows (this transaction)."""
    previous = conn.execute(sql_text("SELECT current_setting('cursor_tuple_fraction')")).scalar_one()
    conn.execute(sql_text("SELECT set_config('cursor_tuple_fraction', :value, true)"), {"value": FIRST_ROWS_FRACTION})
    try:
        yield
    finally:
        conn.execute(sql_text("SELECT set_config('cursor_tuple_fraction', :value, true)"), {"value": previous})


@dataclass
class CsvLayout:
    """A CSV export's header and how its rows are rendered: ``cells``, the database's cell
    expressions, or None when the database cannot render them (``rendered_in_python``).
    ``extras`` are the ``group_id``/``context`` cells (as text) of an export whose events carry
    them; they follow ``user_id`` on both paths."""

    header: list[str]
    columns: list[tuple[str, list[tuple[tuple[str, ...], set[str]]]]]  # ``attribute_columns``
    cells: list | None
    extras: list

    def paths(self) -> list[tuple[str, list[tuple[str, ...]]]]:
        """The columns as ``export_cells.CellRenderer`` takes them."""
        return [(name, [path for path, _types in paths]) for name, paths in self.columns]

    def json_row(self, db: Database, request: ExportRequest):
        """The row as one JSON array, for ``export_cells`` to render (the Python path)."""
        return _Sql(db).csv_row(request.offset_minutes, self.extras)


def csv_layout(conn, db: Database, account_id: str, request: ExportRequest) -> CsvLayout:
    """The CSV header and its cells (runs the key pass on ``conn``)."""
    columns = attribute_columns(conn, db, account_id, request)
    extra_names, extras = _Sql(db).extra_cells(conn, account_id, request)
    header = [*CSV_LEADING, *extra_names, *(name for name, _ in columns)]
    if rendered_in_python(db, columns):
        return CsvLayout(header, columns, None, extras)
    return CsvLayout(header, columns, _database_cells(db, request, columns, extras), extras)


def rendered_in_python(db: Database, columns: list) -> bool:
    """Whether the CSV columns are more than the database renders as a row's cells, or (SQLite)
    hold a key its JSON paths cannot address."""
    if len(columns) > MAX_DATABASE_CELLS:
        return True
    return db.is_sqlite and not all(_sqlite_addressable(path) for _name, paths in columns for path, _types in paths)


def _database_cells(db: Database, request: ExportRequest, columns: list, extras: list) -> list:
    sql = _Sql(db)
    cells = []
    for _name, paths in columns:
        expressions = [sql.cell(path, types) for path, types in paths]
        cell = expressions[0] if len(expressions) == 1 else func.coalesce(*expressions)
        cells.append(type_coerce(cell, Text))  # already text: no result processing
    leading = [events.c.name, sql.timestamp_text(request.offset_minutes), events.c.user_id, *extras]
    return leading + cells


def csv_cells(conn, db: Database, account_id: str, request: ExportRequest) -> tuple[list, list[str]]:
    """A CSV row's cell expressions as the database renders them, and the header (runs the key
    pass on ``conn``; for columns the database cannot render see ``csv_layout``)."""
    columns = attribute_columns(conn, db, account_id, request)
    extra_names, extras = _Sql(db).extra_cells(conn, account_id, request)
    header = [*CSV_LEADING, *extra_names, *(name for name, _ in columns)]
    return _database_cells(db, request, columns, extras), header


def csv_statement(conn, db: Database, account_id: str, request: ExportRequest):
    """The CSV row query and its header (runs the key pass on ``conn``)."""
    cells, header = csv_cells(conn, db, account_id, request)
    return export_statement(db, account_id, request, cells), header


def json_statement(db: Database, account_id: str, request: ExportRequest):
    """The JSON query: one ready line per row."""
    line = type_coerce(_Sql(db).json_line(request.offset_minutes), Text)
    return export_statement(db, account_id, request, [line])


def _write_csv(conn, db, account_id, request, out, progress) -> int:
    layout = csv_layout(conn, db, account_id, request)
    if layout.cells is None:
        renderer = export_cells.CellRenderer(layout.paths(), db.dialect)
        statement = export_statement(db, account_id, request, [layout.json_row(db, request)])
    else:
        renderer = None
        statement = export_statement(db, account_id, request, layout.cells)
    text = io.TextIOWrapper(out, encoding="utf-8", newline="", write_through=False)
    try:
        writer = CsvWriter(text)
        writer.header(layout.header)
        written = 0
        with closing(_row_batches(conn, db, statement)) as batches:
            for rows in batches:
                writer.cells(rows if renderer is None else renderer.rows([row[0] for row in rows]))
                written += len(rows)
                if progress:
                    progress(written)
        text.flush()
    finally:
        text.detach()
    return written


# --- large exports: time windows rendered by helpers in parallel ----------------------------


def _write_with_helpers(conn, db, account_id, request, out, progress, helpers) -> int | None:
    """Write the export through ``opencues.export_windows``; None (nothing written) when it is
    too small to be worth the helpers or the database is SQLite in memory. Runs in ``conn``'s
    snapshot: the key pass, the span and the helpers' view of the events all come from it."""
    if db.is_sqlite and db.sqlite_path is None:
        return None
    if not worth_helpers(conn, _in_time_range(account_id, request)):
        return None
    span = _span(conn, db, account_id, request)
    plan, header = helper_plan(conn, db, account_id, request)
    if header is not None:
        text = io.StringIO()
        CsvWriter(text).header(header)
        out.write(text.getvalue().encode())
    return export_windows.write(plan, span, out, helpers=helpers, progress=progress)


def helper_plan(conn, db, account_id, request) -> tuple[export_windows.RenderPlan, list[str] | None]:
    """The helpers' window statements (and the CSV header: this runs the key pass on ``conn``).

    PostgreSQL helpers share ``conn``'s snapshot (``pg_export_snapshot``). SQLite helpers cannot:
    their windows read no event newer than the highest id in ``conn``'s snapshot instead."""
    highest_id = conn.execute(select(func.max(events.c.id))).scalar_one() or 0
    if db.is_postgres:
        plan: dict = {**postgres_helpers_source(conn, db), "format": request.format}
    else:
        plan = {"database": str(db.sqlite_path), "cache_kib": export_windows.HELPER_CACHE_MB * 1024, "format": request.format}
    header = None
    if request.format == "json":
        line = _Sql(db).json_line(request.offset_minutes) + literal("\n")
    else:
        layout = csv_layout(conn, db, account_id, request)
        header, cells = layout.header, layout.cells
        if cells is None:  # JSON rows, one a line, rendered by the helper (``export_cells``)
            line = layout.json_row(db, request) + literal("\n")
            plan["csv_paths"], plan["dialect"] = layout.paths(), db.dialect
        else:
            line = _separated_line(cells)
            plan["columns"] = len(cells)
            plan["cells_sql"], plan["cells_params"] = _for_helpers(db, _window_rows(db, account_id, request, highest_id, cells))
    rows = _window_rows(db, account_id, request, highest_id, [events.c.id, type_coerce(line, Text).label("line")])
    plan["sql"], plan["params"] = _for_helpers(db, window_aggregate(db, rows))
    return export_windows.RenderPlan(**plan), header


def worth_helpers(conn, in_range: list) -> bool:
    """Whether the events ``in_range`` (an export's time range) are enough to be worth the
    helpers: at least ``export_windows.PARALLEL_MIN_ROWS`` of them (counted no further)."""
    probe = select(events.c.id).where(*in_range).limit(export_windows.PARALLEL_MIN_ROWS)
    return conn.execute(select(func.count()).select_from(probe.subquery())).scalar_one() >= export_windows.PARALLEL_MIN_ROWS


def postgres_helpers_source(conn, db) -> dict:
    """PostgreSQL: the ``RenderPlan`` fields that put the helpers' connections in ``conn``'s
    snapshot (``conn`` in a REPEATABLE READ transaction that stays open while they run)."""
    snapshot = conn.execute(sql_text("SELECT pg_export_snapshot()")).scalar_one()
    return {"database": libpq_url(db.engine), "snapshot": snapshot}


def window_rows(columns: list, *, before: list, after: Iterable = ()):
    """``columns`` of the rows of one window of the export order (``timestamp``, then id), the
    window's bounds given as the bound parameters ``window_start``, ``window_end``,
    ``window_after_id`` and ``window_rows`` (``export_windows``): the filters ``before`` come
    ahead of the bounds in the WHERE clause, ``after`` behind them."""
    start, end, after_id, rows = (bindparam(f"window_{name}", 0, type_=BigInteger) for name in ("start", "end", "after_id", "rows"))
    bounds = [events.c.timestamp >= start, events.c.timestamp < end, or_(events.c.timestamp > start, events.c.id > after_id)]
    return select(*columns).where(*before, *bounds, *after).order_by(events.c.timestamp, events.c.id).limit(rows)


def window_aggregate(db, rows):
    """One window's answer as ``export_windows`` reads it — (rows, highest id, the ``line``s of
    ``rows`` joined as bytes) — from a ``window_rows`` statement selecting ``id`` and ``line``."""
    rows = rows.subquery()
    # The aggregate joins the rows in the order the ordered subquery yields them.
    if db.is_postgres:
        blob = func.convert_to(func.string_agg(rows.c.line, literal("", Text)), "UTF8")
    else:
        blob = cast(func.group_concat(rows.c.line, ""), LargeBinary)
    return select(func.count(), func.max(rows.c.id), blob).select_from(rows)


def _span(conn, db, account_id, request) -> export_windows.Span:
    """Where the export's rows lie in time: from its first row (at ``offset``) to the last event in
    its time range. Without an offset both ends are index lookups."""
    in_range = _in_time_range(account_id, request)
    last = conn.execute(select(events.c.timestamp).where(*in_range).order_by(events.c.timestamp.desc()).limit(1)).scalar()
    if last is None:
        return export_windows.Span(0, 0, 0)
    first = select(events.c.timestamp, events.c.id).order_by(events.c.timestamp, events.c.id).limit(1)
    if request.offset:
        row = conn.execute(first.where(*_exported(db, account_id, request)).offset(request.offset)).first()
        if row is None:
            return export_windows.Span(0, 0, 0)
        return export_windows.Span(row.timestamp, last + 1, request.limit, after_id=row.id - 1)
    row = conn.execute(first.where(*in_range)).first()
    return export_windows.Span(row.timestamp, last + 1, request.limit)


def _window_rows(db, account_id, request, highest_id: int, columns: list):
    """``columns`` of the exported rows in one window (``export_windows``: its bound parameters).
    The window lies inside the export's time range, and SQLite must seek by the window's bounds:
    given others on ``timestamp`` too (the export's range, a ``timestamp`` condition), it seeks by
    one and filters by the rest, and by any but the window's it reads on past the window to the
    end of the range (every window then costs a scan of the rest). So the range is left out, and
    the conditions come after the window's bounds."""
    return window_rows(
        columns,
        before=[events.c.account_id == account_id],
        after=[events.c.id <= highest_id, _conditions(db, account_id, request)],  # last: of two equal bounds SQLite seeks by the first
    )


def _separated_line(cells: list):
    """A CSV line as the database renders it for the helpers: cells ended by ``CELL_END`` (the
    last by ``ROW_END``)."""
    cell_end, row_end, empty = (literal(value, Text) for value in (export_windows.CELL_END, export_windows.ROW_END, ""))
    parts = []
    for cell in cells:
        parts += [func.coalesce(cell, empty, type_=Text), cell_end]
    parts[-1] = row_end
    return _concatenated(parts)


def _concatenated(parts: list):
    """``parts[0] || parts[1] || ...`` as a balanced tree: written flat, SQLite parses it into a
    tree as deep as it is long, and refuses one deeper than 1,000. Right operands past the first
    level are parenthesised (left ones parse the same without); ``.op("||")`` because ``+``
    drops the parentheses."""
    grouped = False
    while len(parts) > 1:
        pairs = range(0, len(parts) - 1, 2)
        joined = [parts[i].op("||", return_type=Text)(Grouping(parts[i + 1]) if grouped else parts[i + 1]) for i in pairs]
        parts = joined + parts[len(parts) - len(parts) % 2 :]
        grouped = True
    return parts[0]


_NAMED_SQLITE = sqlite_dialect.dialect(paramstyle="named")


def _for_helpers(db: Database, statement) -> tuple[str, dict]:
    """SQL text with named parameters and their values as the driver would get them (JSON-safe
    on SQLite, where they go to another process), without the window's own parameters."""
    dialect = db.engine.dialect if db.is_postgres else _NAMED_SQLITE
    compiled = statement.compile(dialect=dialect, compile_kwargs={"render_postcompile": True})
    processors = compiled._bind_processors
    params = {
        name: processors[name](value) if name in processors else value
        for name, value in compiled.params.items()
        if not name.startswith("window_")
    }
    return compiled.string, params


def open_sink(out: BinaryIO, request: ExportRequest) -> BinaryIO:
    """``out`` itself, or a gzip stream over it for ``compression: "gzip"`` (close it to finish)."""
    if request.gzip:
        return gzip.GzipFile(fileobj=out, mode="wb", compresslevel=GZIP_LEVEL, mtime=0)
    return out


# --- the job -------------------------------------------------------------------------------

JOB_KIND = "export_events"
DOWNLOAD_PATH = "/downloads/"


def job_params(request: ExportRequest, base_url: str) -> dict:
    """What the job row keeps: the validated request and where this server is reachable
    (the worker has no HTTP request to build the download URL from)."""
    return {"request": request.to_params(), "base_url": base_url}


def file_key(account_id: str, job_id: str, request: ExportRequest) -> str:
    return f"{EXPORT_FILES}/{account_id}/{job_id}.{EXTENSIONS[request.format]}" + (".gz" if request.gzip else "")


def download_link(settings, file_store, key: str, filename: str, base_url: str) -> tuple[str, int]:
    """The link to an export file and its expiry (epoch seconds): this server's signed
    ``/downloads/`` link, or with ``s3_presigned_links`` a presigned object-store URL (which
    S3 caps at 7 days)."""
    ttl = settings.export_link_ttl_days * 86_400
    if settings.s3_presigned_links and hasattr(file_store, "presigned_url"):
        ttl = min(ttl, PRESIGNED_MAX_SECONDS)
        return file_store.presigned_url(key, filename, ttl), int(time.time()) + ttl
    token, expires_at = links.sign(links.server_secret(settings), key, filename, ttl)
    return base_url + DOWNLOAD_PATH + token, expires_at


def download_filename(account_id: str, job_id: str, request: ExportRequest) -> str:
    """What the browser saves: the uncompressed name (gzip is a transfer encoding, see the view)."""
    return f"events-{account_id}-{job_id[:8]}.{EXTENSIONS[request.format]}"


def run_export_job(ctx) -> dict:
    """The ``export_events`` handler: write the file, sign its link, mail it, report it.

    A retried attempt rewrites the file from scratch (the store replaces it atomically). A mail
    failure does not fail the export: the message goes to the outbox instead and the
    ``Completed`` event carries ``email_error`` beside the link.
    """
    job = ctx.job
    request = ExportRequest.from_params(job.params["request"])
    key = file_key(job.account_id, job.id, request)
    last_beat = [0]

    def progress(rows: int) -> None:
        if rows - last_beat[0] >= 1_000_000:  # the lease is also renewed by the worker's thread
            last_beat[0] = rows
            ctx.heartbeat()

    with ctx.file_store.writer(key) as handle:
        sink = open_sink(handle, request)
        rows = write_export(ctx.db, job.account_id, request, sink, progress=progress, helpers=ctx.settings.export_helpers)
        if sink is not handle:
            sink.close()
    from opencues import metrics

    metrics.EXPORT_ROWS.inc(rows)
    metrics.EXPORT_BYTES.inc(ctx.file_store.size(key))
    settings = ctx.settings
    base_url = (settings.public_url or job.params.get("base_url") or "http://localhost:8000").rstrip("/")
    url, expires_at = download_link(settings, ctx.file_store, key, download_filename(job.account_id, job.id, request), base_url)
    attributes = {
        "rows_exported": rows,
        "download_url": url,
        "expires_at": timestamps.render(expires_at * 1000),
    }
    mail_args = dict(url=url, expires_at=expires_at, rows=rows, fmt=request.format, job_id=job.id)
    try:
        mail.send_export_link(settings, request.emails, **mail_args)
    except Exception as exc:  # noqa: BLE001 - SMTP/network errors of any kind: keep the export
        log.exception("export %s: emailing the link failed", job.id)
        attributes["email_error"] = f"{type(exc).__name__}: {exc}"
        fallback = settings.model_copy(update={"smtp_url": None})
        mail.send_export_link(fallback, request.emails, **mail_args)
    attributes["runtime_ms"] = ctx.runtime_ms()
    return attributes


worker.register(JOB_KIND, "Export Events", run_export_job, start_event="Exporting")
