"""The request journal: what clients sent and what they got, newest first (``GET /-/requests``).

On with ``OPENCUES_JOURNAL=on`` (always under ``opencues serve --test``). Each API request (not
the control API's own) is one row, handed to the process's ``Writer`` as the response leaves and
committed by it within ``Writer.FLUSH_DELAY`` (10 ms) with the others of that moment. A read of
the journal (``GET /-/requests``) first flushes its own process's writer, so a client that got its answer from
that process finds its request listed; rows of other server processes follow within
milliseconds. Headers never carry a secret: the API secret of Basic credentials and
any bearer token are replaced by ``[redacted]``. Bodies are kept up to ``BODY_BYTES``. The
journal keeps the last ``OPENCUES_JOURNAL_MAX_REQUESTS`` requests; older ones are trimmed every
``TRIM_EVERY`` entries a process writes.
"""

from __future__ import annotations

import base64
import binascii
import logging
import threading
import time

import orjson
from sqlalchemy import bindparam, delete, func, select

from opencues import timestamps
from opencues.errors import bad_request
from opencues.storage import Database
from opencues.storage.schema import control_requests

log = logging.getLogger("opencues")

BODY_BYTES = 64 * 1024
TRIM_EVERY = 500
MAX_LIST = 10_000
REDACTED = "[redacted]"

_COLUMNS = ("time", "method", "path", "query", "headers", "body", "status", "duration_ms", "account_id", "faulted")
INSERT = control_requests.insert().inline().values({c: bindparam(c) for c in _COLUMNS})


def redact_authorization(value: str) -> str:
    """``Basic <key:secret>`` → ``Basic KEY:[redacted]`` (the key stays: it says who called)."""
    scheme, _, credentials = value.partition(" ")
    if scheme.lower() == "basic":
        try:
            key = base64.b64decode(credentials.strip(), validate=True).decode("utf-8").partition(":")[0]
        except (binascii.Error, UnicodeDecodeError):
            return f"{scheme} {REDACTED}"
        return f"{scheme} {key}:{REDACTED}"
    return f"{scheme} {REDACTED}" if credentials else REDACTED


def headers_of(raw_headers) -> dict[str, str]:
    headers: dict[str, str] = {}
    for name, value in raw_headers:
        key = name.decode("latin-1").lower()
        text = value.decode("latin-1")
        if key in ("authorization", "proxy-authorization"):
            text = redact_authorization(text)
        elif key == "cookie":
            text = REDACTED
        headers[key] = f"{headers[key]}, {text}" if key in headers else text
    return headers


def entry(*, method, path, query, headers, body: bytes, status, duration_ms, account_id, faulted) -> dict:
    return {
        "time": timestamps.now_ms(),
        "method": method,
        "path": path,
        "query": query,
        # JSON text on the direct path (both drivers take it for a JSON column's parameter).
        "headers": orjson.dumps(headers).decode(),
        "body": body[:BODY_BYTES].decode("utf-8", "replace").replace("\x00", "\ufffd"),
        "status": status,
        "duration_ms": round(duration_ms, 3),
        "account_id": account_id,
        "faulted": faulted,
    }


class Writer:
    """Writes the entries a server process records, many to a transaction, from a thread of its
    own: the request path only appends to a list (a few microseconds), where awaiting a commit per
    request cost more than the request itself. ``flush`` commits everything added before it."""

    # Seconds a flush waits for more entries to join it: a commit per few requests, not per
    # request (reads of the journal flush first, so they never wait for it).
    FLUSH_DELAY = 0.01

    def __init__(self, database, keep: int):
        self._database = database  # a Database, or a callable giving it (the app's is set at startup)
        self.keep = keep
        self._rows: list[dict] = []
        self._lock = threading.Lock()
        self._flushing = threading.Lock()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._written = 0
        self._closed = False

    @property
    def db(self) -> Database:
        return self._database() if callable(self._database) else self._database

    def add(self, row: dict) -> None:
        with self._lock:
            self._rows.append(row)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="opencues-journal", daemon=True)
                self._thread.start()
        if not self._wake.is_set():
            self._wake.set()

    def _run(self) -> None:
        while not self._closed:
            self._wake.wait()
            time.sleep(self.FLUSH_DELAY)
            self._wake.clear()
            try:
                self.flush()
            except Exception:  # noqa: BLE001 - the journal never fails a request; these entries are lost
                log.exception("could not write the request journal")

    def close(self) -> None:
        """Write what is pending and stop the thread (before the database is disposed)."""
        self._closed = True
        self._wake.set()
        if self._thread is not None:
            self._thread.join(10)
        self.flush()

    def flush(self) -> None:
        with self._flushing:
            with self._lock:
                rows, self._rows = self._rows, []
            if not rows:
                return
            self.db.direct.write(INSERT, rows)
            before, self._written = self._written, self._written + len(rows)
            if before // TRIM_EVERY != self._written // TRIM_EVERY:
                trim(self.db, self.keep)


def trim(db: Database, keep: int) -> int:
    """Drop all but the newest ``keep`` entries."""
    with db.begin() as conn:
        newest = conn.execute(select(func.max(control_requests.c.id))).scalar()
        if newest is None:
            return 0
        return conn.execute(delete(control_requests).where(control_requests.c.id <= newest - keep)).rowcount


def _like(glob: str) -> str:
    escaped = glob.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped.replace("*", "%").replace("?", "_")


def list_requests(db: Database, *, path: str | None = None, account_id: str | None = None, limit=None) -> list[dict]:
    """Journal entries, newest first; ``path`` is a glob like a fault's (``*/events``)."""
    if limit is None or limit == "":
        limit = 100
    try:
        limit = int(limit)
    except (TypeError, ValueError):
        raise bad_request(f"`limit` must be an integer from 1 to {MAX_LIST}") from None
    if not 1 <= limit <= MAX_LIST:
        raise bad_request(f"`limit` must be an integer from 1 to {MAX_LIST}")
    # By the time each response left, not by id: each server process commits its own entries, so
    # ids follow the order of those commits (the id orders one process's entries of a millisecond).
    query = select(control_requests).order_by(control_requests.c.time.desc(), control_requests.c.id.desc()).limit(limit)
    if path:
        query = query.where(control_requests.c.path.like(_like(path), escape="\\"))
    if account_id:
        query = query.where(control_requests.c.account_id == account_id)
    with db.connect() as conn:
        rows = conn.execute(query).all()
    return [
        {
            "id": r.id,
            "time": timestamps.render(r.time),
            "method": r.method,
            "path": r.path,
            "query": r.query,
            "headers": r.headers,
            "body": r.body,
            "status": r.status,
            "duration_ms": r.duration_ms,
            "account_id": r.account_id,
            "faulted": bool(r.faulted),
        }
        for r in rows
    ]


def clear(db: Database) -> int:
    with db.begin() as conn:
        return conn.execute(delete(control_requests)).rowcount
