"""``Idempotency-Key``: a retried job-creating POST returns the original 202 instead of running twice.

A key is remembered per account together with a hash of the request (method, path and the
payload's SHA-256) and the job it created, in the same transaction as that job. A repeat with the
same hash gets the original job; the same key with a different request is a client bug (422).
Keys older than ``settings.idempotency_ttl_hours`` are forgotten (purged when keys are used).
"""

from __future__ import annotations

import hashlib

from sqlalchemy import Connection, delete, select

from opencues import timestamps
from opencues.errors import ApiError, bad_request
from opencues.storage.schema import idempotency_keys

HEADER = "Idempotency-Key"
MAX_KEY_LENGTH = 255


def validate_key(key: str) -> str:
    if not key or len(key) > MAX_KEY_LENGTH or not key.isprintable():
        raise bad_request(f"`{HEADER}` header must be 1 to {MAX_KEY_LENGTH} printable characters")
    return key


def request_hash(method: str, path: str, *parts: str) -> str:
    """What identifies "the same request": method, path and e.g. the payload's SHA-256 and format."""
    digest = hashlib.sha256()
    for part in (method.upper(), path, *parts):
        digest.update(part.encode())
        digest.update(b"\0")
    return digest.hexdigest()


def claim(conn: Connection, db, account_id: str, key: str, req_hash: str, job_id: str, ttl_hours: int) -> str | None:
    """Bind ``key`` to ``job_id`` in the caller's transaction and return None — or, when the key
    is already bound (and not expired) for the same request, return that earlier job id.

    Concurrent first uses are safe: the insert is ON CONFLICT DO NOTHING, so the second one waits
    for the first to commit and then reads its binding.
    """
    now = timestamps.now_ms()
    conn.execute(delete(idempotency_keys).where(idempotency_keys.c.created_at < now - ttl_hours * 3_600_000))
    inserted = conn.execute(
        db.insert(idempotency_keys)
        .values(account_id=account_id, key=key, request_sha256=req_hash, job_id=job_id, created_at=now)
        .on_conflict_do_nothing(index_elements=["account_id", "key"])
        .returning(idempotency_keys.c.job_id)
    ).first()
    if inserted is not None:
        return None
    row = conn.execute(
        select(idempotency_keys.c.request_sha256, idempotency_keys.c.job_id).where(
            idempotency_keys.c.account_id == account_id, idempotency_keys.c.key == key
        )
    ).one()
    if row.request_sha256 != req_hash:
        raise ApiError(
            422,
            f"`{HEADER}` {key!r} was already used for a different request; use a new key for a new request",
        )
    return row.job_id
