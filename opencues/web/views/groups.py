"""Groups (``groups/{id}/profile``, ``groups/{id}/users``) and ``import/groups``."""

from __future__ import annotations

from starlette.requests import Request

from opencues import groups
from opencues.web.auth import authorize
from opencues.web.bodies import read_json
from opencues.web.responses import ok, respond
from opencues.web.views.imports import submit_upload


async def get_group(request: Request, account_id: str, group_id: str):
    authorize(request, account_id)
    group = groups.get_group(request.app.state.db, account_id, group_id)
    return respond(request, group)  # as a profile: `group_id` first, then the properties as stored


async def update_group(request: Request, account_id: str, group_id: str):
    authorize(request, account_id, write=True)
    changes = await read_json(request)
    db = request.app.state.db
    settings = request.app.state.settings
    rules = request.app.state.ingestion_rules.rules(db, account_id)
    groups.update_group(db, account_id, group_id, changes, rules, max_attribute_keys=settings.max_attribute_keys)
    return ok(request)


async def add_users(request: Request, account_id: str, group_id: str):
    authorize(request, account_id, write=True)
    groups.check_group_id(group_id)  # 400 before reading the body
    body = await read_json(request)
    groups.add_users(request.app.state.db, account_id, group_id, body)
    return ok(request)


async def import_groups(request: Request, account_id: str):
    authorize(request, account_id, write=True)
    return await submit_upload(request, account_id, "import_groups")
