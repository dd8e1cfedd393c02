from __future__ import annotations

from starlette.requests import Request

from opencues import flows
from opencues.web.auth import authorize
from opencues.web.responses import ok, respond
from opencues.web.urls import account_url

# The beta's columns keep their places; the current API's tag fields follow them.
CSV_COLUMNS = (*flows.COLUMNS, "url", *flows.TAG_COLUMNS)


def _with_url(request: Request, account_id: str, flow: dict) -> dict:
    shown = {name: flow[name] for name in flows.COLUMNS}
    shown["url"] = account_url(request, account_id, "flows", flow["id"])
    return {**shown, **{name: flow[name] for name in flows.TAG_COLUMNS}}


async def list_flows(request: Request, account_id: str):
    authorize(request, account_id)
    items = flows.list_flows(request.app.state.db, account_id)
    return respond(request, [_with_url(request, account_id, f) for f in items], columns=CSV_COLUMNS, objects_as_json=True)


async def get_flow(request: Request, account_id: str, flow_id: str):
    authorize(request, account_id)
    flow = flows.get_flow(request.app.state.db, account_id, flow_id)
    return respond(request, _with_url(request, account_id, flow), columns=CSV_COLUMNS, objects_as_json=True)


async def publish_flow(request: Request, account_id: str, flow_id: str):
    # No body is needed: none, `{}` and curl's empty form body (`-d ''`) are all accepted.
    principal = authorize(request, account_id, write=True)
    flows.set_published(request.app.state.db, account_id, flow_id, True, principal.key_id)
    return ok(request)


async def unpublish_flow(request: Request, account_id: str, flow_id: str):
    principal = authorize(request, account_id, write=True)
    flows.set_published(request.app.state.db, account_id, flow_id, False, principal.key_id)
    return ok(request)
