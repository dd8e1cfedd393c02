"""The request journal: what clients sent and what they got, newest first (``GET /-/requests``).

On with ``OPENCUES_JOURNAL=on`` (always under ``opencues serve --test``). Each API request (not
the control API's own) is one row, queued for the group commit of the request hot path as the
response leaves (waiting for that commit would add a commit to every request's latency). A read
of the journal first waits for its own process's queued rows, so a client that got its answer
from that process finds its request listed; rows of other server processes follow within a
commit (milliseconds). Headers never carry a secret: the API secret of Basic credentials and
any bearer token are replaced by ``[redacted]``. Bodies are kept up to ``BODY_BYTES``. The
journal keeps the last ``OPENCUES_JOURNAL_MAX_REQUESTS`` requests; older ones are trimmed every
``TRIM_EVERY`` writes of a process.
"""

from __future__ import annotations

import base64
import binascii

import orjson
from sqlalchemy import bindparam, delete, func, select

from opencues import timestamps
from opencues.errors import bad_request
from opencues.storage import Database
from opencues.storage.schema import control_requests

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


async def record(db: Database, row: dict) -> None:
    """Write one entry in the next group commit; returns once it is committed."""
    await db.direct.write_grouped(INSERT, row)


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
    query = select(control_requests).order_by(control_requests.c.id.desc()).limit(limit)
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
