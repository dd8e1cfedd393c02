"""Job-creating POSTs: bulk imports and segment membership uploads (202 + a job to poll).

The 202 is sent only after the payload is durably stored and the job row (with its
``Idempotency-Key``, if any) committed.
"""

from __future__ import annotations

from starlette.requests import Request

from opencues import idempotency, jobs, segments
from opencues.web.auth import authorize
from opencues.web.responses import accepted
from opencues.web.urls import account_url


def idempotency_key(request: Request) -> str | None:
    """The request's ``Idempotency-Key`` (validated; 400 when malformed), or None."""
    key = request.headers.get(idempotency.HEADER)
    return None if key is None else idempotency.validate_key(key.strip())


async def _submit(request: Request, account_id: str, kind: str, *, params: dict | None = None, user_ids: bool = False):
    # (the intake and its readers: imported at the first upload, not at start)
    from opencues.web.intake import receive_payload

    key = idempotency_key(request)
    payload = await receive_payload(request, user_ids=user_ids)
    fmt = payload.format.value
    settings = request.app.state.settings
    submitted = jobs.submit(
        request.app.state.db, account_id, kind, params=params, payload_key=payload.key, payload_format=fmt,
        idempotency_key=key, request_hash=idempotency.request_hash(request.method, request.url.path, fmt, payload.sha256),
        file_store=request.app.state.file_store, ttl_hours=settings.idempotency_ttl_hours,
    )  # fmt: skip
    request.app.state.wake_workers()
    return accepted(request, submitted.job_id, account_url(request, account_id, "jobs", submitted.job_id))


async def submit_upload(request: Request, account_id: str, kind: str):
    """Store a bulk upload and submit its job (for the other resources' bulk endpoints)."""
    return await _submit(request, account_id, kind)


async def import_profiles(request: Request, account_id: str):
    authorize(request, account_id, write=True)
    return await _submit(request, account_id, "import_profiles")


async def import_events(request: Request, account_id: str):
    authorize(request, account_id, write=True)
    return await _submit(request, account_id, "import_events")


async def add_user_ids(request: Request, account_id: str, segment_id: str):
    authorize(request, account_id, write=True)
    segments.get_segment(request.app.state.db, account_id, segment_id)  # 404 before reading the upload
    return await _submit(request, account_id, "add_user_ids", params={"segment_id": segment_id}, user_ids=True)


async def remove_user_ids(request: Request, account_id: str, segment_id: str):
    authorize(request, account_id, write=True)
    segments.get_segment(request.app.state.db, account_id, segment_id)
    return await _submit(request, account_id, "remove_user_ids", params={"segment_id": segment_id}, user_ids=True)
