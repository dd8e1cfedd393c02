"""Every route of the API, in one place."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from starlette.responses import Response

from opencues.web import openapi
from opencues.web.views import flows, profiles, segments
from opencues.web.views import events as event_views
from opencues.web.views import imports as import_views
from opencues.web.views import jobs as job_views
from opencues.web.views import exports as export_views

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
    # An ``openapi.Docs`` (request/response bodies); None: looked up in ``openapi.SPEC_DOCS``.
    docs: object = None


ROUTES: list[Route] = [
    Route("GET", ACCOUNT + "/flows", flows.list_flows, "List flows", "Flows"),
    Route("GET", ACCOUNT + "/flows/{flow_id}", flows.get_flow, "Get flow details", "Flows"),
    Route("POST", ACCOUNT + "/flows/{flow_id}/publish", flows.publish_flow, "Publish flow", "Flows"),
    Route("POST", ACCOUNT + "/flows/{flow_id}/unpublish", flows.unpublish_flow, "Unpublish flow", "Flows"),
    Route("GET", ACCOUNT + "/segments", segments.list_segments, "List segments", "Segments"),
    Route("GET", ACCOUNT + "/segments/{segment_id}", segments.get_segment, "Get segment details", "Segments"),
    Route("POST", ACCOUNT + "/segments", segments.create_segment, "Create segment", "Segments", status=201),
    Route("PATCH", ACCOUNT + "/segments/{segment_id}", segments.update_segment, "Update segment details", "Segments"),
    Route("DELETE", ACCOUNT + "/segments/{segment_id}", segments.delete_segment, "Delete segment", "Segments"),
    Route("GET", ACCOUNT + "/users/{user_id:path}/profile", profiles.get_profile, "Get user profile", "End Users"),
    Route("PATCH", ACCOUNT + "/users/{user_id:path}/profile", profiles.update_profile, "Update a user profile", "End Users"),
    Route("GET", ACCOUNT + "/users/{user_id:path}/events", event_views.event_history, "Get user event history", "End Users"),
    Route("POST", ACCOUNT + "/users/{user_id:path}/events", event_views.track_event, "Track a user event", "End Users"),
    Route("POST", ACCOUNT + "/segments/{segment_id}/add_user_ids", import_views.add_user_ids, "Add User IDs to Segment", "Segments", status=202),
    Route("POST", ACCOUNT + "/segments/{segment_id}/remove_user_ids", import_views.remove_user_ids, "Remove User IDs from Segment", "Segments", status=202),
    Route("POST", ACCOUNT + "/import/profiles", import_views.import_profiles, "Import bulk profile data", "Importing Data in Bulk", status=202),
    Route("POST", ACCOUNT + "/import/events", import_views.import_events, "Import bulk event data", "Importing Data in Bulk", status=202),
    Route("GET", ACCOUNT + "/jobs", job_views.list_jobs, "List jobs", "Offline Jobs"),
    Route("GET", ACCOUNT + "/jobs/{job_id}", job_views.get_job, "Get job status", "Offline Jobs"),
    Route("POST", ACCOUNT + "/export/events", export_views.export_events, "Export bulk event data", "Exporting Data in Bulk", status=202),
]


# Routes without API-key auth: the signed token in an export link is the credential.
PUBLIC_ROUTES: list[Route] = [
    Route("GET", "/downloads/{token}", export_views.download, "Download an export file (signed link)", "Exporting Data in Bulk"),
]


def register(app) -> None:
    for route in PUBLIC_ROUTES:
        app.add_api_route(
            route.path,
            route.handler,
            methods=[route.method],
            summary=route.summary,
            tags=[route.tag],
            description="Streams an export file. The link itself is the credential: a tampered link "
            "is 403, an expired one 410, a removed file 404.",
            response_class=Response,
            responses={
                200: {"content": {"text/csv": {}, "application/x-ndjson": {}}, "description": "The export file"},
                **openapi.problem_responses(openapi.DOWNLOAD_ERRORS),
            },
        )
    for route in ROUTES:
        app.add_api_route(
            route.path,
            route.handler,
            methods=[route.method],
            summary=route.summary,
            tags=[route.tag],
            **openapi.route_kwargs(route),
        )
