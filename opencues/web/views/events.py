from __future__ import annotations

from functools import partial

from starlette.requests import Request
from starlette.responses import Response

from opencues import events, timestamps
from opencues.web.auth import authorize
from opencues.web.bodies import read_json
from opencues.web.responses import JSON_TYPE, ok, respond, wants_csv


async def track_event(request: Request, account_id: str, user_id: str):
    authorize(request, account_id, write=True)
    state = request.app.state
    # The row is built (and validated) right after parsing: off the event loop for a large body.
    row = await read_json(request, prepare=partial(
        events.event_row, account_id, user_id, max_attribute_keys=state.settings.max_attribute_keys
    ))  # fmt: skip
    if state.ingestion_rules.rules(state.db, account_id).keeps_event(row["name"]):  # else dropped by a rule
        await events.write_grouped(state.db, row)
    return ok(request)


async def event_history(request: Request, account_id: str, user_id: str):
    authorize(request, account_id)
    settings = request.app.state.settings
    query = request.query_params
    limit = events.parse_limit(query.get("limit"), settings.history_default_limit, settings.history_max_limit)
    offset = timestamps.parse_offset(query["time_zone"]) if "time_zone" in query else 0
    db = request.app.state.db
    if wants_csv(request):
        rows = await db.direct.run_async(events.history_rows_reads(db, account_id, user_id, limit))
        return respond(request, events.history_events(rows, offset), leading=events.CSV_LEADING)
    body = await db.direct.run_async(events.history_json_reads(db, account_id, user_id, limit, offset))
    return Response(body, media_type=JSON_TYPE)
