from __future__ import annotations

from starlette.requests import Request

from opencues import tags
from opencues.web.auth import authorize
from opencues.web.responses import respond
from opencues.web.urls import account_url

CSV_COLUMNS = (*tags.COLUMNS, "url")


def _with_url(request: Request, account_id: str, tag: dict) -> dict:
    return {**tag, "url": account_url(request, account_id, "tags", tag["id"])}


async def list_tags(request: Request, account_id: str):
    authorize(request, account_id)
    items = tags.list_tags(request.app.state.db, account_id)
    return respond(request, [_with_url(request, account_id, t) for t in items], columns=CSV_COLUMNS)


async def get_tag(request: Request, account_id: str, tag_id: str):
    authorize(request, account_id)
    tag = tags.get_tag(request.app.state.db, account_id, tag_id)
    return respond(request, _with_url(request, account_id, tag), columns=CSV_COLUMNS)
