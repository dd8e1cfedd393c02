from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from opencues import events, timestamps
from opencues.web.auth import authorize
from opencues.web.bodies import read_json
from opencues.web.responses import JSON_TYPE, ok, respond, wants_csv


async def track_event(request: Request, account_id: str, user_id: str):
    authorize(request, account_id, write=True)
    payload = await read_json(request)
    db = request.app.state.db
    rules = request.app.state.ingestion_rules.rules(db, account_id)
    await events.track_grouped(db, account_id, user_id, payload, rules)
    return ok(request)


async def event_history(request: Request, account_id: str, user_id: str):
    authorize(request, account_id)
    settings = request.app.state.settings
    query = request.query_params
    limit = events.parse_limit(query.get("limit"), settings.history_default_limit, settings.history_max_limit)
    offset = timestamps.parse_offset(query["time_zone"]) if "time_zone" in query else 0
    db = request.app.state.db
    if wants_csv(request):
        return respond(request, events.history(db, account_id, user_id, limit, offset), leading=events.CSV_LEADING)
    return Response(events.history_json(db, account_id, user_id, limit, offset), media_type=JSON_TYPE)
