from __future__ import annotations

from starlette.requests import Request

from opencues import profiles
from opencues.web.auth import authorize
from opencues.web.bodies import read_json
from opencues.web.responses import ok, respond


# `user_id` comes through the `{user_id:path}` converter, already percent-decoded, so ids
# holding `/`, `@` or spaces (sent as %2F, %40, %20) reach the library intact.
async def get_profile(request: Request, account_id: str, user_id: str):
    authorize(request, account_id)
    profile = profiles.get_profile(request.app.state.db, account_id, user_id)
    return respond(request, profile)


async def update_profile(request: Request, account_id: str, user_id: str):
    authorize(request, account_id, write=True)
    changes = await read_json(request)
    db = request.app.state.db
    profiles.update_profile(db, account_id, user_id, changes, request.app.state.ingestion_rules.rules(db, account_id))
    return ok(request)


async def delete_profile(request: Request, account_id: str, user_id: str):
    authorize(request, account_id, write=True)
    profiles.delete_profile(request.app.state.db, account_id, user_id)
    return ok(request)
