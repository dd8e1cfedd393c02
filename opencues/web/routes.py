"""Every route of the API, in one place."""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Callable

from opencues.web.dispatch import DirectRoute, RouteIndex
from opencues.web.views import flows, profiles, segments
from opencues.web.views import events as event_views
from opencues.web.views import imports as import_views
from opencues.web.views import jobs as job_views
from opencues.web.views import exports as export_views
from opencues.web.views import tags as tag_views
from opencues.web.views import screenshots as screenshot_views
from opencues.web.views import sdk_keys as sdk_key_views
from opencues.web.views.experiences import VIEWS as EXPERIENCE_VIEWS
from opencues.web.views import groups as group_views
from opencues.web.views import ingestion_rules as rules_views
from opencues.web.views import analytics as analytics_views

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
    Route("GET", ACCOUNT + "/tags", tag_views.list_tags, "List tags", "Tags"),
    Route("GET", ACCOUNT + "/tags/{tag_id}", tag_views.get_tag, "Get tag details", "Tags"),
]

# The eight experience types (``checklists``, ``pins``, …, ``flows-v2``): four routes each.
for _resource, _views in EXPERIENCE_VIEWS.items():
    _tag = "Checklists" if _resource == "checklists" else "Experiences"
    ROUTES += [
        Route("GET", f"{ACCOUNT}/{_resource}", _views.list, f"List {_resource}", _tag),
        Route("GET", f"{ACCOUNT}/{_resource}/{{experience_id}}", _views.get, f"Get one of {_resource}", _tag),
        Route("POST", f"{ACCOUNT}/{_resource}/{{experience_id}}/publish", _views.publish, f"Publish one of {_resource}", _tag),
        Route("POST", f"{ACCOUNT}/{_resource}/{{experience_id}}/unpublish", _views.unpublish, f"Unpublish one of {_resource}", _tag),
    ]

ROUTES += [
    Route("GET", ACCOUNT + "/screenshots/{resource_id}", screenshot_views.get_screenshots, "Download screenshots of draft content (ZIP)", "Screenshots"),
    Route("GET", ACCOUNT + "/sdk_keys", sdk_key_views.list_sdk_keys, "List SDK keys", "SDK Keys"),
    Route("POST", ACCOUNT + "/sdk_keys", sdk_key_views.create_sdk_key, "Create an SDK key (201; the secret is shown only here)", "SDK Keys", status=201),
    Route("GET", ACCOUNT + "/sdk_keys/{sdk_key_id}", sdk_key_views.get_sdk_key, "Get an SDK key", "SDK Keys"),
    Route("DELETE", ACCOUNT + "/sdk_keys/{sdk_key_id}", sdk_key_views.delete_sdk_key, "Delete an SDK key", "SDK Keys"),
    Route("PATCH", ACCOUNT + "/sdk_keys/{sdk_key_id}", sdk_key_views.set_tag_field, "Set an SDK key's tag field", "SDK Keys"),
    Route("PATCH", ACCOUNT + "/sdk_keys/{sdk_key_id}/tag_field", sdk_key_views.set_tag_field, "Set an SDK key's tag field", "SDK Keys"),
    Route("POST", ACCOUNT + "/sdk_keys/{sdk_key_id}/enforcement_mode/enable", sdk_key_views.enable_enforcement_mode, "Turn on enforcement mode", "SDK Keys"),
    Route("POST", ACCOUNT + "/sdk_keys/{sdk_key_id}/enforcement_mode/disable", sdk_key_views.disable_enforcement_mode, "Turn off enforcement mode", "SDK Keys"),
    Route("POST", ACCOUNT + "/sdk_keys/{sdk_key_id}/secure_data_ingest/enable", sdk_key_views.enable_secure_data_ingest, "Turn on secure data ingest", "SDK Keys"),
    Route("POST", ACCOUNT + "/sdk_keys/{sdk_key_id}/secure_data_ingest/disable", sdk_key_views.disable_secure_data_ingest, "Turn off secure data ingest", "SDK Keys"),
    Route("DELETE", ACCOUNT + "/users/{user_id:path}/profile", profiles.delete_profile, "Delete a user profile", "End Users"),
    Route("GET", ACCOUNT + "/groups/{group_id:path}/profile", group_views.get_group, "Get group profile", "Groups"),
    Route("PATCH", ACCOUNT + "/groups/{group_id:path}/profile", group_views.update_group, "Update a group profile", "Groups"),
    Route("POST", ACCOUNT + "/groups/{group_id:path}/users", group_views.add_users, "Associate users with a group", "Groups"),
    Route("POST", ACCOUNT + "/import/groups", group_views.import_groups, "Import bulk group data", "Importing Data in Bulk", status=202),
    Route("POST", ACCOUNT + "/segments/{segment_id}/segment_membership_export", segments.export_membership, "Export segment membership", "Segments", status=202),
    Route("GET", ACCOUNT + "/ingestion_filtering_rules", rules_views.get_rules, "Get ingestion filtering rules", "Account Configuration"),
    Route("POST", ACCOUNT + "/ingestion_filtering_rules", rules_views.replace_rules, "Replace ingestion filtering rules", "Account Configuration"),
    Route("POST", ACCOUNT + "/analytics/query", analytics_views.query, "Run an analytics query", "Analytics"),
    Route("POST", ACCOUNT + "/analytics/exports", analytics_views.create_export, "Start an analytics export", "Analytics", status=202),
    Route("GET", ACCOUNT + "/analytics/exports/{job_id}", analytics_views.get_export, "Get an analytics export's status", "Analytics"),
]


# Routes without API-key auth: the signed token in an export link is the credential.
PUBLIC_ROUTES: list[Route] = [
    Route("GET", "/downloads/{token}", export_views.download, "Download an export file (signed link)", "Exporting Data in Bulk"),
]


def register(app) -> None:
    """Add every route. Their OpenAPI documentation (``opencues.web.openapi``, with its models) is
    generated from these same tables when first read: a plain start does without it."""
    app.router.routes.extend(_built_routes())


@functools.cache
def _built_routes() -> tuple:
    """Built once per process and shared by every app (each test makes one; ~2 ms an app): the
    routes, with the index that finds them right before them."""
    direct = [DirectRoute(route.path, route.handler, route.method) for route in PUBLIC_ROUTES + ROUTES]
    return (RouteIndex(direct), *direct)
