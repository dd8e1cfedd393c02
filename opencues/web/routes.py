"""Every route of the API, in one place."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from opencues.web.views import flows

ACCOUNT = "/v2/accounts/{account_id}"


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    handler: Callable
    summary: str
    tag: str
    status: int = 200
    extra: dict = field(default_factory=dict)


ROUTES: list[Route] = [
    Route("GET", ACCOUNT + "/flows", flows.list_flows, "List flows", "Flows"),
    Route("GET", ACCOUNT + "/flows/{flow_id}", flows.get_flow, "Get flow details", "Flows"),
    Route("POST", ACCOUNT + "/flows/{flow_id}/publish", flows.publish_flow, "Publish flow", "Flows"),
    Route("POST", ACCOUNT + "/flows/{flow_id}/unpublish", flows.unpublish_flow, "Unpublish flow", "Flows"),
]


def register(app) -> None:
    for route in ROUTES:
        app.add_api_route(
            route.path,
            route.handler,
            methods=[route.method],
            summary=route.summary,
            tags=[route.tag],
            status_code=route.status,
            **route.extra,
        )
