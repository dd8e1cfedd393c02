"""Large exports cut into time windows, rendered in parallel by helpers, written in order.

The database renders each window's rows into ready lines and joins them into one blob (SQLite's
``group_concat``, PostgreSQL's ``string_agg``): one statement per window (``exports.helper_plan``),
no per-row work in Python. Helpers run those statements side by side while the worker writes
their answers to the file in export order:

- **SQLite** runs a query on one core, and threads of one process do not add another: SQLite
  takes a process-wide lock on every memory allocation, and rendering a row allocates for every
  cell (two threads measured no faster than one, two processes nearly twice as fast:
  ``bench/README.md``). So its helpers are processes (``python -m opencues.export_windows``),
  reading through read-only connections of their own.
- **PostgreSQL** renders in its server processes, so a helper is a thread with a connection of
  its own, in the worker's snapshot (``pg_export_snapshot``). One export streamed through one
  connection is bound by that one server process (and the worker's reading of its rows).

A CSV line is rendered with separator characters (``CELL_END``, ``ROW_END``) instead of commas
and line ends; the helper turns them into CSV, quoting (through the one CSV writer) only the
rows whose cells need it, and renders the window row by row instead when the data itself holds a
separator character. A CSV whose cells the database cannot render (``opencues.export_cells``)
comes as JSON arrays, one a line, which the helper renders.

A window is a half-open range of the export order: the rows with ``start <= timestamp < end``
except those at ``start`` whose id is at most ``after_id``. The worker sizes windows from the
rows and bytes of those before (aiming at ``WINDOW_BYTES`` on SQLite, ``PG_WINDOW_BYTES`` on
PostgreSQL), splits one that holds more than its row cap, and continues a crowded millisecond by
id. At most ``IN_FLIGHT`` windows per helper are ahead of the file, which bounds the memory
whatever the export's size.

SQLite helpers cannot share the worker's read snapshot: every window is bounded by the highest
event id in that snapshot instead (events are never deleted and ids only grow), so the export
holds exactly the events the snapshot holds; segment membership (``user_segment_id``) is read as
each window runs.
"""

from __future__ import annotations

import io
import json
import os
import queue
import sqlite3
import struct
import subprocess
import sys
import threading
from collections import deque
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import BinaryIO, Callable

from opencues.csv_writer import CsvWriter
from opencues.export_cells import CellRenderer

CELL_END = "\x1f"  # between a CSV line's cells, as the database renders it (ASCII unit separator)
ROW_END = "\x1e"  # after each CSV line (ASCII record separator)
# The output a window aims at (a few windows per helper are in memory at once). SQLite: 1 MiB (4 MiB
# took 1.8x the CPU for CSV); PostgreSQL plans each window's statement anew: 4 MiB (1 MiB: 1.2x the time).
WINDOW_BYTES = 1024 * 1024
PG_WINDOW_BYTES = 4 * 1024 * 1024
MIN_WINDOW_ROWS = 100  # ... but not fewer rows than this
ROW_CAP_FACTOR = 4  # a window holding more than 4x its aimed-at rows is split
FIRST_WINDOWS = 1024  # the first windows cut the time range into this many parts
IN_FLIGHT = 2  # windows queued per helper: one rendering, one waiting
PARALLEL_MIN_ROWS = 100_000  # smaller exports (by the events in their time range) skip the helpers
HELPER_CACHE_MB = 8  # each helper's SQLite page cache: it reads each page about once, in order

_FRAME = struct.Struct("<qqqq")  # window number, rows (-1: the payload is an error), highest id, payload bytes
_NEEDS_QUOTES = (b",", b'"', b"\r", b"\n")


@dataclass(frozen=True)
class RenderPlan:
    """What every helper needs (sent to a SQLite helper once, as JSON): the window statement and
    its parameters (``window_start``, ``window_end``, ``window_after_id``, ``window_rows`` are set
    per window)."""

    database: str  # the SQLite file, or PostgreSQL's libpq URL
    sql: str  # one row: (rows, highest id, the rendered lines as one blob)
    params: dict
    format: str  # "json" or "csv"
    columns: int = 0  # CSV: cells per line
    cells_sql: str | None = None  # CSV: the same window's cells row by row (the exact fallback)
    cells_params: dict | None = None
    csv_paths: list | None = None  # CSV rendered in Python: the columns' paths (``export_cells``)
    dialect: str = "sqlite"  # ... and whose JSON the cells follow
    cache_kib: int = 0  # SQLite: each helper's page cache
    snapshot: str | None = None  # PostgreSQL: the worker's exported snapshot


@dataclass(frozen=True)
class Span:
    """The export's rows: from ``start`` (skipping ids up to ``after_id`` there) up to ``end``
    (exclusive, milliseconds), at most ``limit`` of them."""

    start: int
    end: int
    limit: int
    after_id: int = 0


@dataclass
class _Window:
    number: int
    start: int
    end: int
    after_id: int
    rows: int  # the statement's LIMIT
    accept: int  # more rows than this: split the window (only wider than 1 ms)
    helper: "_Helper | None" = None

    def request(self) -> tuple:
        return (self.number, self.start, self.end, self.after_id, self.rows, self.accept)


class HelperFailed(RuntimeError):
    """A helper reported an error or died."""


# --- the worker's side -----------------------------------------------------------------------


def write(plan: RenderPlan, span: Span, out: BinaryIO, *, helpers: int, progress: Callable[[int], None] | None = None) -> int:
    """Render ``span`` in ``helpers`` helpers and write it to ``out`` in order; return the rows."""
    if span.start >= span.end or span.limit <= 0:
        return 0
    kind = _ConnectionHelper if plan.snapshot else _ProcessHelper
    window_bytes = PG_WINDOW_BYTES if plan.snapshot else WINDOW_BYTES
    pool = [kind(plan) for _ in range(helpers)]
    try:
        return _Schedule(pool, span, window_bytes).run(out, progress)
    finally:
        for helper in pool:
            helper.close()


class _Schedule:
    """Cuts the span into windows, keeps the helpers busy, and hands back results in order."""

    def __init__(self, helpers: list["_Helper"], span: Span, window_bytes: int):
        self.helpers = helpers
        self.span = span
        self.window_bytes = window_bytes
        self.pending: deque[_Window] = deque()  # sent, not yet written; in export order
        self.next_start, self.next_after_id = span.start, span.after_id
        self.numbers = iter(range(1 << 62))
        self.width = max(1, (span.end - span.start) // FIRST_WINDOWS)
        self.row_bytes = 256.0  # a guess until the first window is written

    @property
    def target_rows(self) -> int:
        return max(MIN_WINDOW_ROWS, int(self.window_bytes / self.row_bytes))

    def run(self, out: BinaryIO, progress) -> int:
        written, remaining = 0, self.span.limit
        while True:
            self._fill()
            if not self.pending:
                return written
            head = self.pending[0]
            rows, highest_id, payload = head.helper.result(head.number)
            if rows > head.accept:  # too many rows for one window: split it in two
                self.pending.popleft()
                middle = head.start + (head.end - head.start) // 2
                self.width = max(1, (head.end - head.start) // (2 * ROW_CAP_FACTOR))
                self._send_first(self._window(head.start, middle, head.after_id), self._window(middle, head.end, 0))
                continue
            if rows > remaining:  # the limit ends inside this window: render just its first rows
                self.pending.popleft()
                self._send_first(self._window(head.start, head.end, head.after_id, rows=remaining))
                continue
            self.pending.popleft()
            out.write(payload)
            written += rows
            remaining -= rows
            if progress:
                progress(written)
            if remaining == 0:
                return written
            if rows and payload:
                self.row_bytes = len(payload) / rows
            width = head.end - head.start
            if width == 1 and rows == head.rows:  # a full millisecond: continue it by id
                self._send_first(self._window(head.start, head.end, highest_id))
            else:  # aim the next windows at target_rows, growing at most 4x at a time
                wanted = self.target_rows * width / rows if rows else 4 * width
                self.width = max(1, min(int(wanted), 4 * width))

    def _window(self, start: int, end: int, after_id: int, rows: int | None = None) -> _Window:
        if rows is None:
            cap = ROW_CAP_FACTOR * self.target_rows
            # A window of one millisecond cannot be split: it takes `cap` rows and continues.
            rows, accept = (cap, cap) if end - start == 1 else (cap + 1, cap)
        else:
            accept = rows
        return _Window(next(self.numbers), start, end, after_id, rows, accept)

    def _fill(self) -> None:
        while self.next_start < self.span.end and len(self.pending) < IN_FLIGHT * len(self.helpers):
            end = min(self.span.end, self.next_start + self.width)
            window = self._window(self.next_start, end, self.next_after_id)
            self.next_start, self.next_after_id = end, 0
            self._send(window)
            self.pending.append(window)

    def _send_first(self, *windows: _Window) -> None:
        """Send ``windows`` and put them at the head of the export order (the first given first)."""
        for window in windows:
            self._send(window)
        self.pending.extendleft(reversed(windows))

    def _send(self, window: _Window) -> None:
        helper = min(self.helpers, key=lambda h: len(h.waiting))
        helper.send(window)


class _Helper:
    """The windows sent to one helper, and its answers as they arrive (in a thread of the worker)."""

    def __init__(self) -> None:
        self.waiting: set[int] = set()  # sent, not yet taken by ``result``
        self._answers: dict[int, tuple[int, int, bytes]] = {}
        self._failure: str | None = None
        self._arrived = threading.Condition()

    def send(self, window: _Window) -> None:
        window.helper = self
        self.waiting.add(window.number)
        self._send(window)

    def result(self, number: int) -> tuple[int, int, bytes]:
        """The answer for window ``number`` (waiting for it)."""
        with self._arrived:
            while number not in self._answers and self._failure is None:
                self._arrived.wait()
            if number not in self._answers:
                raise HelperFailed(self._failure)
            self.waiting.discard(number)
            return self._answers.pop(number)

    def _answer(self, number: int, rows: int, highest_id: int, payload: bytes) -> None:
        with self._arrived:
            self._answers[number] = (rows, highest_id, payload)
            self._arrived.notify_all()

    def _fail(self, message: str) -> None:
        with self._arrived:
            self._failure = message
            self._arrived.notify_all()

    def _send(self, window: _Window) -> None:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError


class _ProcessHelper(_Helper):
    """SQLite: a helper process, and a thread that reads its answers as they come (a helper
    writing a large answer to a full pipe would otherwise wait, idle, until the worker wants that
    very window)."""

    def __init__(self, plan: RenderPlan):
        super().__init__()
        env = dict(os.environ)
        package_root = str(Path(__file__).resolve().parent.parent)  # importable from a checkout too
        env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "opencues.export_windows"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env
        )
        self._reader = threading.Thread(target=self._read, name="export-helper-reader", daemon=True)
        self._reader.start()
        self._write(json.dumps(asdict(plan)).encode() + b"\n")

    def _send(self, window: _Window) -> None:
        self._write(json.dumps(window.request()).encode() + b"\n")

    def _read(self) -> None:
        stdout = self.process.stdout
        while True:
            head = stdout.read(_FRAME.size)
            number, rows, highest_id, size = _FRAME.unpack(head) if len(head) == _FRAME.size else (0, 0, 0, -1)
            payload = stdout.read(size) if size >= 0 else b""
            if size < 0 or len(payload) < size:
                return self._fail(f"export helper exited (code {self.process.wait()})")
            if rows < 0:
                return self._fail(f"export helper failed: {payload.decode(errors='replace')}")
            self._answer(number, rows, highest_id, payload)

    def _write(self, data: bytes) -> None:
        try:
            self.process.stdin.write(data)
            self.process.stdin.flush()
        except BrokenPipeError:
            raise HelperFailed(f"export helper exited (code {self.process.wait()})") from None

    def close(self) -> None:
        """Stop the helper: at the end of its input when it is idle, killed when still busy (the
        export failed or its limit was reached)."""
        try:
            self.process.stdin.close()
        except BrokenPipeError:
            pass
        if self.waiting:
            self.process.kill()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self._reader.join()
        self.process.stdout.close()


class _ConnectionHelper(_Helper):
    """PostgreSQL: a thread with a connection of its own, in the worker's snapshot."""

    def __init__(self, plan: RenderPlan):
        super().__init__()
        self.plan = plan
        self._windows: queue.Queue = queue.Queue()
        self._conn = None
        self._thread = threading.Thread(target=self._run, name="export-helper", daemon=True)
        self._thread.start()

    def _send(self, window: _Window) -> None:
        self._windows.put(window)

    def _run(self) -> None:
        import psycopg

        try:
            # Never prepared: a prepared statement may switch to a generic plan, which cannot know
            # how narrow a window is (a segment export then took 2.2x as long).
            self._conn = psycopg.connect(self.plan.database, prepare_threshold=None, autocommit=True)
            # A window is a short query: compiling it (JIT, ~50 ms) or starting parallel workers
            # for it cost more than they saved; the helpers are the parallelism.
            self._conn.execute("SET jit = off")
            self._conn.execute("SET max_parallel_workers_per_gather = 0")
            self._conn.autocommit = False
            self._conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            self._conn.execute(f"SET TRANSACTION SNAPSHOT '{self.plan.snapshot}'")  # the id PostgreSQL gave
            with self._conn.cursor() as cursor:

                def execute(sql: str, params: dict):
                    # Binary results: the blob arrives as raw bytes, not as hex text twice its size.
                    return cursor.execute(sql, params, binary=True)

                while (window := self._windows.get()) is not None:
                    self._answer(window.number, *render_window(self.plan, execute, window.request()))
        except Exception as exc:  # noqa: BLE001 - handed to the worker, which fails the export
            self._fail(f"export helper failed: {type(exc).__name__}: {exc}")
        finally:
            if self._conn is not None:
                self._conn.close()

    def close(self) -> None:
        """Stop the helper after its current window (a busy one's connection is cancelled)."""
        while True:  # windows not started are dropped
            try:
                self._windows.get_nowait()
            except queue.Empty:
                break
        if self.waiting and self._conn is not None:
            try:
                self._conn.cancel()
            except Exception:  # noqa: BLE001 - the connection may be closing already
                pass
        self._windows.put(None)
        self._thread.join()


# --- the helper's side -----------------------------------------------------------------------


def render_window(plan: RenderPlan, execute: Callable, request: tuple) -> tuple[int, int, bytes]:
    """One window's (rows, highest id, output); ``execute(sql, params)`` returns a cursor."""
    _number, start, end, after_id, rows, accept = request
    window = {"window_start": start, "window_end": end, "window_after_id": after_id, "window_rows": rows}
    count, highest_id, blob = execute(plan.sql, {**plan.params, **window}).fetchone()
    if count > accept:
        payload = b""  # the worker splits the window: rendering it is wasted
    elif plan.csv_paths is not None:  # JSON rows, one a line (JSON text holds no raw line end)
        lines = bytes(blob or b"").decode().split("\n")
        lines.pop()  # after the last line end
        text = io.StringIO()
        CsvWriter(text).cells(CellRenderer(plan.csv_paths, plan.dialect).rows(lines))
        payload = text.getvalue().encode()
    elif plan.format == "csv":
        payload = _csv(bytes(blob or b""), count, plan.columns)
        if payload is None:
            text = io.StringIO()
            CsvWriter(text).cells(execute(plan.cells_sql, {**plan.cells_params, **window}))
            payload = text.getvalue().encode()
    else:
        payload = bytes(blob or b"")
    return count, highest_id or 0, payload


def serve(requests: BinaryIO, answers: BinaryIO) -> None:
    """A SQLite helper process: answer window requests (JSON lines after the plan) with frames,
    until the end of its input — at once when the input ends before the plan (the worker went
    away first)."""
    first = requests.readline()
    if not first:
        return
    plan = RenderPlan(**json.loads(first))
    uri = Path(plan.database).resolve().as_uri() + "?mode=ro"
    conn = sqlite3.connect(uri, uri=True, timeout=30)
    conn.execute(f"PRAGMA cache_size=-{plan.cache_kib}")
    for line in requests:
        request = json.loads(line)
        try:
            rows, highest_id, payload = render_window(plan, conn.execute, request)
        except Exception as exc:  # noqa: BLE001 - reported to the worker, which fails the export
            message = f"{type(exc).__name__}: {exc}".encode()
            answers.write(_FRAME.pack(request[0], -1, 0, len(message)) + message)
            answers.flush()
            return
        answers.write(_FRAME.pack(request[0], rows, highest_id, len(payload)))
        answers.write(payload)
        answers.flush()


def _csv(blob: bytes, rows: int, columns: int) -> bytes | None:
    """The database's separated lines as CSV; None when the data itself holds a separator character."""
    cell_end, row_end = CELL_END.encode(), ROW_END.encode()
    if blob.count(row_end) != rows or blob.count(cell_end) != rows * (columns - 1):
        return None
    if not any(special in blob for special in _NEEDS_QUOTES):
        return blob.replace(cell_end, b",").replace(row_end, b"\r\n")
    lines = blob.split(row_end)
    lines.pop()  # after the last ROW_END
    for i, line in enumerate(lines):
        if any(special in line for special in _NEEDS_QUOTES):
            lines[i] = _quoted_line(line.decode().split(CELL_END))
    return b"\r\n".join(lines).replace(cell_end, b",") + b"\r\n"


def _quoted_line(cells: list[str]) -> bytes:
    text = io.StringIO()
    CsvWriter(text).cells([cells])
    return text.getvalue().removesuffix("\r\n").encode()


if __name__ == "__main__":
    try:
        serve(sys.stdin.buffer, sys.stdout.buffer)
    except BrokenPipeError:  # the worker went away (killed, or it stopped the export): nobody to
        # answer and nobody to read a traceback; what is left to flush at exit goes nowhere too
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
