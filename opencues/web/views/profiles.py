from __future__ import annotations

from functools import partial

import orjson
from starlette.requests import Request
from starlette.responses import Response

from opencues import profiles
from opencues.web.auth import authorize
from opencues.web.bodies import read_json
from opencues.web.responses import JSON_TYPE, ok, respond, wants_csv


# `user_id` comes through the `{user_id:path}` converter, already percent-decoded, so ids
# holding `/`, `@` or spaces (sent as %2F, %40, %20) reach the library intact.
async def get_profile(request: Request, account_id: str, user_id: str):
    authorize(request, account_id)
    db = request.app.state.db
    body = await db.direct.run_async(profiles.profile_json_reads(account_id, user_id))
    if wants_csv(request):
        return respond(request, orjson.loads(body))
    return Response(body, media_type=JSON_TYPE)


async def update_profile(request: Request, account_id: str, user_id: str):
    authorize(request, account_id, write=True)
    state = request.app.state
    max_keys = state.settings.max_attribute_keys
    changes = await read_json(request, prepare=partial(profiles.check_changes, max_attribute_keys=max_keys))
    rules = state.ingestion_rules.rules(state.db, account_id)
    await profiles.update_profile_grouped(state.db, account_id, user_id, changes, rules, max_attribute_keys=max_keys)
    return ok(request)


async def delete_profile(request: Request, account_id: str, user_id: str):
    authorize(request, account_id, write=True)
    profiles.delete_profile(request.app.state.db, account_id, user_id)
    return ok(request)
