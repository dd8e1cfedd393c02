from __future__ import annotations

from starlette.requests import Request

from opencues import segments
from opencues.web.auth import authorize
from opencues.web.bodies import read_json
from opencues.web.responses import ok, respond
from opencues.web.urls import account_url

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
