from __future__ import annotations

import hashlib

import orjson
from starlette.requests import Request

from opencues import idempotency, jobs, segments
from opencues.web.auth import authorize
from opencues.web.bodies import read_json
from opencues.web.responses import accepted, ok, respond
from opencues.web.urls import account_url, base_url
from opencues.web.views.imports import idempotency_key

CSV_COLUMNS = (*segments.COLUMNS, "url")


def _with_url(request: Request, account_id: str, segment: dict) -> dict:
    return {**segment, "url": account_url(request, account_id, "segments", segment["id"])}


async def list_segments(request: Request, account_id: str):
    authorize(request, account_id)
    items = segments.list_segments(request.app.state.db, account_id)
    return respond(request, [_with_url(request, account_id, s) for s in items], columns=CSV_COLUMNS)


async def get_segment(request: Request, account_id: str, segment_id: str):
    authorize(request, account_id)
    segment = segments.get_segment(request.app.state.db, account_id, segment_id)
    return respond(request, _with_url(request, account_id, segment), columns=CSV_COLUMNS)


async def create_segment(request: Request, account_id: str):
    principal = authorize(request, account_id, write=True)
    body = await read_json(request)
    segment = segments.create_segment(request.app.state.db, account_id, body, principal.key_id)
    return respond(request, _with_url(request, account_id, segment), status=201, columns=CSV_COLUMNS)


async def update_segment(request: Request, account_id: str, segment_id: str):
    principal = authorize(request, account_id, write=True)
    body = await read_json(request)
    segment = segments.update_segment(request.app.state.db, account_id, segment_id, body, principal.key_id)
    return respond(request, _with_url(request, account_id, segment), columns=CSV_COLUMNS)


async def delete_segment(request: Request, account_id: str, segment_id: str):
    authorize(request, account_id, write=True)
    segments.delete_segment(request.app.state.db, account_id, segment_id)
    return ok(request)


async def export_membership(request: Request, account_id: str, segment_id: str):
    # Exporting reads data: read-only keys may export too (as `export/events`).
    authorize(request, account_id)
    key = idempotency_key(request)
    body = await read_json(request, empty={})
    db = request.app.state.db
    from opencues import segment_exports  # (exports and the job machinery: on first use)

    segment_exports.check_segment(db, account_id, segment_id)
    export = segment_exports.validate_request(body)
    settings = request.app.state.settings
    body_hash = hashlib.sha256(orjson.dumps([segment_id, export], option=orjson.OPT_SORT_KEYS)).hexdigest()
    submitted = jobs.submit(
        db, account_id, segment_exports.JOB_KIND,
        params=segment_exports.job_params(export, segment_id, base_url(request)),
        idempotency_key=key, request_hash=idempotency.request_hash(request.method, request.url.path, body_hash),
        ttl_hours=settings.idempotency_ttl_hours,
    )  # fmt: skip
    request.app.state.wake_workers()
    return accepted(request, submitted.job_id, account_url(request, account_id, "jobs", submitted.job_id))
