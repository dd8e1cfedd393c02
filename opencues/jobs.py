"""Offline jobs: the job row, its history (``events``) and the lease-guarded progress mark.

A job is created IN_PROGRESS (the API has no "queued" state) in the same transaction as its
idempotency key, after its payload is durably stored; a worker (``opencues.worker``) later claims
it with a lease and runs the handler registered for its ``kind``. Everything a handler commits —
rows *and* the progress mark — goes through ``progress_update``, an UPDATE fenced by
``lease_owner``: when another worker has taken the job over, it matches no row and the
transaction is rolled back, so a job's rows are written exactly once.

Library use (the web views, the export module)::

    submitted = jobs.submit(db, account_id, "import_events", payload_key=key, payload_format="ndjson",
                            idempotency_key=header, request_hash=idempotency.request_hash(...),
                            file_store=store)
    jobs.get_job(db, account_id, submitted.job_id)   # the API's job resource, with events
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from sqlalchemy import Connection, select, update

from opencues import ids, idempotency, timestamps
from opencues.errors import not_found
from opencues.storage import Database
from opencues.storage.schema import job_events, jobs


class JobStatus(str, Enum):
    IN_PROGRESS = "IN_PROGRESS"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"


# kind → the display name the API shows as the job's `name`. Handlers are registered separately
# (``opencues.worker.register``) so that the web process can create jobs without importing them.
JOB_NAMES: dict[str, str] = {
    "import_profiles": "Import Profiles",
    "import_events": "Import Events",
    "add_user_ids": "Add User IDs to Segment",
    "remove_user_ids": "Remove User IDs from Segment",
    "export_events": "Export Events",
    "export_segment_membership": "Export Segment Membership",
}

COLUMNS = ("id", "name", "status", "started_at", "url")  # the spec's CSV column order

# Kinds with an API of their own, absent from ``GET jobs`` (analytics exports: spec §9.5).
UNLISTED_KINDS = ("analytics_export",)


@dataclass
class Job:
    """A job row as the worker sees it."""

    id: str
    account_id: str
    kind: str
    name: str
    status: str
    started_at: int
    params: dict
    payload_key: str | None
    payload_format: str | None
    rows_done: int
    ingestions_completed: int
    ingestions_failed: int
    requests_failed: int
    row_errors: list = field(default_factory=list)
    runtime_ms: int = 0
    attempts: int = 0
    lease_owner: str | None = None
    lease_expires_at: int | None = None
    finished_at: int | None = None
    ingestions_filtered: int = 0

    @classmethod
    def from_row(cls, row) -> "Job":
        m = row._mapping
        return cls(**{f: m[f] for f in cls.__dataclass_fields__})


@dataclass(frozen=True)
class Submitted:
    job_id: str
    replayed: bool  # True when an Idempotency-Key matched an earlier request


def create_job(
    conn: Connection,
    account_id: str,
    kind: str,
    *,
    params: dict | None = None,
    payload_key: str | None = None,
    payload_format: str | None = None,
    job_id: str | None = None,
) -> str:
    """Insert a job row in the caller's transaction; it is claimable once committed."""
    job_id = job_id or ids.job_id()
    now = timestamps.now_ms()
    conn.execute(
        jobs.insert().values(
            id=job_id, account_id=account_id, kind=kind, name=JOB_NAMES.get(kind, kind),
            status=JobStatus.IN_PROGRESS.value, started_at=now, updated_at=now, params=params or {},
            payload_key=payload_key, payload_format=payload_format, rows_done=0,
            ingestions_completed=0, ingestions_failed=0, requests_failed=0, row_errors=[],
            runtime_ms=0, attempts=0,
        )  # fmt: skip
    )
    return job_id


def submit(
    db: Database,
    account_id: str,
    kind: str,
    *,
    params: dict | None = None,
    payload_key: str | None = None,
    payload_format: str | None = None,
    idempotency_key: str | None = None,
    request_hash: str | None = None,
    file_store=None,
    ttl_hours: int = 48,
) -> Submitted:
    """Create a job durably — or, when ``idempotency_key`` was seen before for the same request,
    return the original job and delete the just-stored duplicate payload.

    The key and the job are committed in one transaction, so a retry after a lost 202 can never
    create a second job. The same key with a different request raises 422.
    """
    if idempotency_key is not None:
        idempotency.validate_key(idempotency_key)
    job_id = ids.job_id()
    try:
        with db.begin() as conn:
            replayed = None
            if idempotency_key is not None:
                replayed = idempotency.claim(conn, db, account_id, idempotency_key, request_hash or "", job_id, ttl_hours)
            if replayed is None:
                create_job(conn, account_id, kind, params=params, payload_key=payload_key,
                           payload_format=payload_format, job_id=job_id)  # fmt: skip
    except BaseException:
        # No job will ever read this payload (422 for a reused key, a database error, …).
        if payload_key and file_store is not None:
            file_store.delete(payload_key)
        raise
    if replayed is not None:
        if payload_key and file_store is not None:
            file_store.delete(payload_key)
        return Submitted(replayed, True)
    return Submitted(job_id, False)


def add_event(conn: Connection, job_id: str, name: str, attributes: dict | None = None) -> None:
    conn.execute(
        job_events.insert().values(job_id=job_id, name=name, timestamp=timestamps.now_ms(), attributes=attributes or {})
    )


def load_job(conn: Connection, job_id: str) -> Job | None:
    row = conn.execute(select(jobs).where(jobs.c.id == job_id)).first()
    return Job.from_row(row) if row else None


def _resource(row) -> dict:
    return {
        "id": row.id,
        "name": row.name,
        "started_at": timestamps.render(row.started_at),
        "status": row.status,
    }


def list_jobs(db: Database, account_id: str) -> list[dict]:
    """The account's jobs, most recent first (without events, as the spec's list shows them)."""
    with db.connect() as conn:
        rows = conn.execute(
            select(jobs.c.id, jobs.c.name, jobs.c.started_at, jobs.c.status)
            .where(jobs.c.account_id == account_id, jobs.c.kind.not_in(UNLISTED_KINDS))
            .order_by(jobs.c.started_at.desc(), jobs.c.id.desc())
        ).all()
    return [_resource(r) for r in rows]


def get_job(db: Database, account_id: str, job_id: str) -> dict:
    """One job with its ``events``; another account's job is indistinguishable from a missing one."""
    with db.connect() as conn:
        row = conn.execute(
            select(jobs.c.id, jobs.c.name, jobs.c.started_at, jobs.c.status).where(
                jobs.c.account_id == account_id, jobs.c.id == job_id, jobs.c.kind.not_in(UNLISTED_KINDS)
            )
        ).first()
        if row is None:
            raise not_found(f"job {job_id!r}")
        history = conn.execute(
            select(job_events.c.name, job_events.c.timestamp, job_events.c.attributes)
            .where(job_events.c.job_id == job_id)
            .order_by(job_events.c.id)
        ).all()
    # Keys in the spec's order: `events` first, then the list view's fields.
    resource = {"events": [
        {"attributes": e.attributes or {}, "name": e.name, "timestamp": timestamps.render(e.timestamp)} for e in history
    ]}  # fmt: skip
    resource.update(_resource(row))
    return resource


def job_events_of(db: Database, job_id: str) -> list[dict]:
    """A job's history as stored (for tests and operators)."""
    with db.connect() as conn:
        rows = conn.execute(
            select(job_events.c.name, job_events.c.attributes).where(job_events.c.job_id == job_id).order_by(job_events.c.id)
        ).all()
    return [{"name": r.name, "attributes": r.attributes or {}} for r in rows]


def _held_by(job_id: str, owner: str) -> tuple:
    """The conditions under which ``owner`` holds the job: one definition for the fence and its check."""
    return jobs.c.id == job_id, jobs.c.lease_owner == owner, jobs.c.status == JobStatus.IN_PROGRESS.value


def progress_update(conn: Connection, job_id: str, owner: str, **values: Any) -> bool:
    """Write ``values`` to the job row only while ``owner`` still holds it (the fence).

    Returns False when the lease was lost: the caller must roll back its transaction.
    """
    result = conn.execute(update(jobs).where(*_held_by(job_id, owner)).values(updated_at=timestamps.now_ms(), **values))
    return result.rowcount == 1


def holds_lease(conn: Connection, job_id: str, owner: str) -> bool:
    """Whether ``owner`` holds the running job, read without locking its row."""
    return conn.execute(select(jobs.c.id).where(*_held_by(job_id, owner))).first() is not None


def release(conn: Connection, job_id: str, owner: str, *, rows_done: int, reason: str) -> bool:
    """Give the job up now (this worker is stopping): its lease expires at once, so another worker
    resumes it from its progress mark without waiting out the lease; a ``Released`` event says why."""
    if not progress_update(conn, job_id, owner, lease_owner=None, lease_expires_at=timestamps.now_ms()):
        return False
    add_event(conn, job_id, "Released", {"reason": reason, "rows_processed": rows_done})
    return True
