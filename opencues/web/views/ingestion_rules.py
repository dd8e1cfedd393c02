"""``GET``/``POST ingestion_filtering_rules``: an account's rules object (a POST replaces it)."""

from __future__ import annotations

from starlette.requests import Request

from opencues import ingestion_rules
from opencues.web.auth import authorize
from opencues.web.bodies import read_json
from opencues.web.responses import respond

COLUMNS = ("mode", *ingestion_rules.CATEGORIES)


async def get_rules(request: Request, account_id: str):
    authorize(request, account_id)
    return respond(request, ingestion_rules.get(request.app.state.db, account_id), columns=COLUMNS)


async def replace_rules(request: Request, account_id: str):
    authorize(request, account_id, write=True)
    body = await read_json(request)
    saved = ingestion_rules.replace(request.app.state.db, account_id, body)
    request.app.state.ingestion_rules.forget(account_id)  # this process applies them at once
    return respond(request, saved, columns=COLUMNS)
