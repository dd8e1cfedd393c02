"""The OpenAPI document: real request and response bodies for every route in ``ROUTES``.

The app's routes are plain Starlette routes (``opencues.web.dispatch``); the document is generated
from the same route table, ``ROUTES``, by FastAPI's generator over FastAPI routes made for it
alone, when the document is first read (this module, FastAPI and the models are imported then,
never on a plain start). Handlers read their bodies themselves and return ``Response`` objects:
the pydantic models here document them and cost nothing per request. Each route's documentation
is a ``Docs``: given explicitly as ``Route(..., docs=...)`` or, for the spec's endpoints, found in
``SPEC_DOCS`` by method and path shape, so adding a route of the spec needs no extra wiring.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from typing import Any, Literal

import orjson
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute
from pydantic import BaseModel, ConfigDict, Field, RootModel, create_model
from starlette.responses import Response

from opencues.experiences import TYPES as EXPERIENCE_TYPES
from opencues.sdk_keys import SWITCHES as SDK_SWITCHES
from opencues.sdk_keys import SdkKeyCreate, SdkKeyTagField

from opencues import groups, ingestion_rules, segment_exports
from opencues.errors import status_title

from opencues import analytics

SECURITY_SCHEME = "basicAuth"
ACCOUNT_PREFIX = "/v2/accounts/{account_id}"
ISO = "ISO 8601 date-time with milliseconds, e.g. 2021-07-16T16:02:50.037Z"


# --- response bodies ---


class Flow(BaseModel):
    id: str = Field(description="Flow ID")
    name: str = Field(description="Flow name")
    published: bool = Field(description="Whether the flow is currently published")
    frequency: Literal["once", "every_time"] = Field(description="How often the flow is shown")
    created_at: str = Field(description=ISO)
    updated_at: str = Field(description=ISO)
    published_at: str | None = Field(description="Time of the last publish, if any")
    created_by: str | None = Field(description="Creator's user or API key ID")
    updated_by: str | None = Field(description="Last updater's user or API key ID")
    url: str = Field(description="The URL of this flow")
    tag_ids: list[str] = Field(description="IDs of the flow's tags")
    tags: dict[str, bool] = Field(description="The same tags as an object: tag ID → true")


class Segment(BaseModel):
    created_at: str = Field(description=ISO)
    created_by: str | None = Field(description="API key ID of the creator")
    description: str | None = Field(description="Segment description")
    id: str = Field(description="Segment ID")
    name: str = Field(description="Segment name")
    updated_at: str = Field(description=ISO)
    updated_by: str | None = Field(description="API key ID of the last updater")
    url: str = Field(description="The URL of this segment")


class Profile(RootModel[dict[str, Any]]):
    """A user's profile: free-form key-value attributes."""


class Event(BaseModel):
    user_id: str = Field(description="End user ID")
    timestamp: str = Field(description=ISO + ", in the requested time zone")
    name: str = Field(description="Event name")
    attributes: dict[str, Any] = Field(description="Free-form key/value data about the event")
    group_id: str | None = Field(None, description="The event's group, present only when it was tracked with one")
    context: dict[str, Any] | None = Field(None, description="The event's context, present only when it was tracked with one")


class Job(BaseModel):
    id: str = Field(description="Job ID")
    name: str = Field(description="Job name, e.g. Import Profiles")
    status: Literal["IN_PROGRESS", "COMPLETED", "FAILED"]
    started_at: str = Field(description="Time the job was created")
    url: str = Field(description="The URL of this job")


class JobEvent(BaseModel):
    attributes: dict[str, Any] = Field(description="Progress counters, errors")
    name: str = Field(description="Event name, e.g. Ingesting, Completed")
    timestamp: str = Field(description=ISO)


class JobDetail(BaseModel):
    events: list[JobEvent] = Field(description="The job's history (absent from the CSV form)")
    id: str = Field(description="Job ID")
    name: str = Field(description="Job name")
    started_at: str = Field(description="Time the job was created")
    status: Literal["IN_PROGRESS", "COMPLETED", "FAILED"]
    url: str = Field(description="The URL of this job")


EPOCH_MS = "Milliseconds since 1970 (a number)"


class Tag(BaseModel):
    id: str = Field(description="Tag ID")
    name: str | None = Field(description="Tag name, e.g. onboarding")
    created_at: str | None = Field(description=ISO)
    updated_at: str = Field(description=ISO)
    created_by: str | None = Field(description="Studio user ID of the creator")
    updated_by: str | None = Field(description="Studio user ID of the last updater")
    url: str = Field(description="The URL of this tag")


class Experience(BaseModel):
    """A launchpad, mobile flow, embed, NPS survey or Flows 2.0 flow (pins and banners add two fields)."""

    id: str = Field(description="Experience ID")
    type: str | None = Field(description="Kind: flow, persistent (pins), banner, launchpad, embed, nps")
    account_id: str | None = Field(description="Owning account")
    app_id: str | None = Field(description="Mobile or web app ID")
    name: str | None = Field(description="Display name")
    platform: str | None = Field(description="web, ios or android")
    published: bool = Field(description="Whether it is live")
    state: str | None = Field(description="PUBLISHED or DRAFT")
    frequency: str | None = Field(description="once or every_time")
    created_at: int | None = Field(description=EPOCH_MS)
    created_by: str | None = Field(description="Studio user ID of the creator")
    updated_at: int = Field(description=EPOCH_MS)
    updated_by: str | None = Field(description="Last updater's user or API key ID")
    steps: list[dict[str, Any]] | None = Field(description="Step objects (camelCase fields, times in epoch ms)")
    traits: list[dict[str, Any]] | None = Field(description="Experience-level traits {type, config}")
    locked_for_localization: bool | None = Field(description="Whether localization locked it")
    contains_localized_blocks: bool | None = Field(description="Whether it has localized blocks")
    tag_ids: list[str] = Field(description="IDs of its tags")
    tags: dict[str, bool] = Field(description="The same tags as an object: tag ID → true")
    url: str = Field(description="The URL of this experience")


def _themed(model: type[BaseModel]) -> type[BaseModel]:
    """The experience model with ``theme`` and ``preview_url`` after ``traits``: pins and banners."""
    fields: dict[str, Any] = {}
    for name, info in model.model_fields.items():
        fields[name] = (info.annotation, info)
        if name == "traits":
            fields["theme"] = (str | None, Field(description="Theme ID"))
            fields["preview_url"] = (str | None, Field(description="Preview URL"))
    return create_model("ThemedExperience", __doc__="A pin or a banner.", **fields)


ThemedExperience = _themed(Experience)


class Checklist(BaseModel):
    id: str = Field(description="Checklist ID")
    checklist_id: str = Field(description="The same ID again")
    type: str | None = Field(description="Checklist style type")
    account_id: str | None = Field(description="Owning account")
    internal_name: str | None = Field(description="Studio name (checklists have no `name`)")
    title: str | None = Field(description="End-user title")
    state: str | None = Field(description="PUBLISHED or DRAFT")
    published: bool = Field(description="Whether it is live")
    is_dismissable: bool | None = Field(description="Whether end users may dismiss it")
    is_sequential: bool | None = Field(description="Whether items must be done in order")
    open_behavior: str | None = Field(description="How it opens")
    intro_flow_id: str | None = Field(description="Flow shown before it")
    completion_flow_id: str | None = Field(description="Flow shown after it")
    items: dict[str, Any] | None = Field(description="Item ID → item {id, index, label, depends_on, actions, …}")
    rule: dict[str, Any] | None = Field(description="Targeting conditions")
    styles: dict[str, Any] | None = Field(description="Colours, icons, position…")
    text_tokens: dict[str, Any] | None = Field(description="Texts: header_text, completion_text…")
    created_at: int | None = Field(description=EPOCH_MS)
    updated_at: int = Field(description=EPOCH_MS)
    created_by: str | None = Field(description="Studio user ID of the creator")
    updated_by: str | None = Field(description="Last updater's user or API key ID")


class SdkKey(BaseModel):
    id: str = Field(description="SDK key ID")
    name: str = Field(description="Key name")
    tag_field: str | None = Field(description="Tag field, stored as given")
    enforcement_mode: bool = Field(description="SDK calls without a valid signature get no experiences")
    secure_data_ingest: bool = Field(description="Unsigned SDK data is refused")
    created_at: str = Field(description=ISO)


class SdkKeyWithSecret(BaseModel):
    id: str = Field(description="SDK key ID")
    name: str = Field(description="Key name")
    tag_field: str | None = Field(description="Tag field, stored as given")
    enforcement_mode: bool = Field(description="Off for a new key")
    secure_data_ingest: bool = Field(description="Off for a new key")
    created_at: str = Field(description=ISO)
    secret: str = Field(description="The signing secret: shown only in this response")


class StatusOK(BaseModel):
    status: int = Field(200, description="200")
    title: str = Field("OK", description="OK")


class Accepted(BaseModel):
    job_id: str = Field(description="Job ID")
    job_url: str = Field(description="Job URL, to follow the job's progress")
    status: int = Field(202, description="202")
    title: str = Field("Accepted", description="Accepted")


class Problem(BaseModel):
    """Problem Details: the shape of every error response."""

    type: str = Field("about:blank", description="The problem type (RFC 9457); always `about:blank`: the status says it all")
    error: bool = Field(True, description="Always true")
    status: int = Field(description="The HTTP status")
    title: str = Field(description="The status phrase, e.g. Bad Request")
    detail: str = Field(description="What went wrong, naming the offending field")


# --- request bodies ---


class SegmentCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, description="Required. Name of segment")
    description: str | None = Field(None, description="Description of segment")


class SegmentUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    # Optional, but not nullable: a default_factory keeps a (non-string) default out of the schema.
    name: str = Field(default_factory=str, min_length=1, description="New name of segment")
    description: str | None = Field(None, description="New description; null clears it")


class ProfileUpdate(RootModel[dict[str, Any]]):
    """Key-value profile data merged into the profile; a null value removes the key."""


class EventTrack(BaseModel):
    name: str = Field(description="Required. Event name")
    timestamp: str = Field(description="Required. Event time in ISO 8601 format")
    attributes: dict[str, Any] = Field(default_factory=dict, description="Free-form key/value data about the event")
    group_id: str | None = Field(None, description="Optional. The group (account) the event belongs to; kept with the event")
    context: dict[str, Any] | None = Field(None, description="Optional. Context of the event (page, device, …); kept with the event")


class UserIds(BaseModel):
    user_ids: list[str] = Field(description="User IDs of end users")


class ProfileRow(BaseModel):
    """One imported profile: ``user_id`` (or ``userId``) and the attributes to assign."""

    model_config = ConfigDict(extra="allow")
    user_id: str = Field(description="Required (or `userId`). User ID of end user")


class EventRow(BaseModel):
    """One imported event; fields other than these four become event attributes."""

    model_config = ConfigDict(extra="allow")
    user_id: str = Field(description="Required (or `userId`). User ID of end user")
    name: str = Field(description="Required. Event name")
    timestamp: str = Field(description="Required. Event time in ISO 8601 format")
    attributes: dict[str, Any] = Field(default_factory=dict, description="Free-form key/value data about the event")


class GroupProfile(RootModel[dict[str, Any]]):
    """A group's properties: `group_id` first, then the stored properties (JSON types kept)."""


class GroupProfileUpdate(RootModel[dict[str, Any]]):
    """Key-value group properties merged into the group (created if missing); a null value removes the key."""


class GroupRow(BaseModel):
    """One imported group: ``group_id`` (or ``groupId``) and the properties to assign."""

    model_config = ConfigDict(extra="allow")
    group_id: str = Field(description="Required (or `groupId`). Group ID")


class ExportRequest(BaseModel):
    email: str | list[str] = Field(description="Required. Address(es) the link to the export is sent to")
    format: Literal["csv", "json"] = Field(description="Required. Output encoding")
    conditions: list[list[Any]] = Field(
        description='Required. Conditions events must match, e.g. [["flow_id", "==", "…"]]; [] for all events'
    )
    start_time: str | int = Field(description="Required. ISO 8601 string or milliseconds since 1970")
    end_time: str | int | None = Field(None, description="ISO 8601 string or milliseconds since 1970")
    time_zone: str | int | None = Field(None, description="+HH:MM/-HH:MM or minutes offset from UTC")
    limit: int | None = Field(None, description="Maximum number of events to export")
    offset: int | None = Field(None, description="Number of rows to skip")


# --- per-route documentation ---

# Models referenced from request bodies, added to the document's components when it is built.
_BODY_MODELS: dict[str, type[BaseModel]] = {}


def _ref(model: type[BaseModel]) -> dict:
    _BODY_MODELS[model.__name__] = model
    return {"$ref": f"#/components/schemas/{model.__name__}"}


@dataclass(frozen=True)
class Param:
    """A query (or header) parameter the handler reads itself."""

    name: str
    schema: dict
    description: str
    required: bool = False
    where: Literal["query", "header"] = "query"


@dataclass(frozen=True)
class Docs:
    """What one route takes and returns. ``body`` maps a media type to a model or a raw schema."""

    response: Any = StatusOK
    status: int = 200
    body: dict[str, Any] = field(default_factory=dict)
    params: tuple[Param, ...] = ()
    csv: bool = True
    description: str = ""
    # The success body's media types when it is neither JSON nor CSV (a ZIP): replaces both.
    content: dict[str, Any] | None = None


def json_body(model) -> dict[str, Any]:
    return {"application/json": model}


def upload_bodies(json_body_schema, row_description: str) -> dict[str, Any]:
    """The four ways to send rows to a bulk endpoint: JSON, NDJSON, CSV, or a file upload."""
    return {
        "application/json": json_body_schema,
        "application/ndjson": {"type": "string", "description": f"One JSON value per line: {row_description}"},
        "text/csv": {"type": "string", "description": f"A header line, then one row per line: {row_description}"},
        "multipart/form-data": {
            "type": "object",
            "required": ["file"],
            "properties": {"file": {"type": "string", "format": "binary", "description": "A .csv or .ndjson file"}},
        },
    }


def rows_body(model: type[BaseModel]) -> dict:
    """A JSON body of rows: one row object, or an array of them."""
    return {"oneOf": [_ref(model), {"type": "array", "items": _ref(model)}]}


USER_IDS_BODY = upload_bodies(
    {"oneOf": [_ref(UserIds), {"type": "array", "items": {"type": "string"}}]},
    'a user ID ("quoted" in NDJSON; CSV header, if any, user_id or userId)',
)
IDEMPOTENCY = (
    Param(
        "Idempotency-Key", {"type": "string", "maxLength": 255},
        "Optional. Retrying with the same key and body returns the first job instead of creating another",
        where="header",
    ),
)  # fmt: skip
HISTORY_QUERY = (
    Param("limit", {"type": "integer", "minimum": 1, "default": 100}, "Return at most this many events"),
    Param("time_zone", {"type": "string", "example": "-04:00"}, "Render timestamps at this offset (-04:00 or -240)"),
)

# The spec's endpoints, by method and path shape under /v2/accounts/{account_id} ({} = a parameter).
SPEC_DOCS: dict[tuple[str, str], Docs] = {
    ("GET", "/flows"): Docs(list[Flow]),
    ("GET", "/flows/{}"): Docs(Flow),
    ("POST", "/flows/{}/publish"): Docs(),
    ("POST", "/flows/{}/unpublish"): Docs(),
    ("GET", "/segments"): Docs(list[Segment]),
    ("GET", "/segments/{}"): Docs(Segment),
    ("POST", "/segments"): Docs(Segment, 201, json_body(SegmentCreate)),
    ("PATCH", "/segments/{}"): Docs(Segment, body=json_body(SegmentUpdate)),
    ("DELETE", "/segments/{}"): Docs(),
    ("POST", "/segments/{}/add_user_ids"): Docs(Accepted, 202, USER_IDS_BODY, IDEMPOTENCY),
    ("POST", "/segments/{}/remove_user_ids"): Docs(Accepted, 202, USER_IDS_BODY, IDEMPOTENCY),
    ("GET", "/users/{}/profile"): Docs(Profile, description="CSV: one header row of the profile's keys "
                                       "(nested objects flattened with dots) and one data row."),
    ("PATCH", "/users/{}/profile"): Docs(body=json_body(ProfileUpdate)),
    ("GET", "/users/{}/events"): Docs(list[Event], params=HISTORY_QUERY),
    ("POST", "/users/{}/events"): Docs(body=json_body(EventTrack)),
    ("POST", "/import/profiles"): Docs(Accepted, 202, upload_bodies(rows_body(ProfileRow), "user_id and attributes"), IDEMPOTENCY),
    ("POST", "/import/events"): Docs(Accepted, 202, upload_bodies(rows_body(EventRow), "user_id, name, timestamp, …"), IDEMPOTENCY),
    ("POST", "/export/events"): Docs(Accepted, 202, json_body(ExportRequest), IDEMPOTENCY),
    ("POST", "/analytics/query"): Docs(list[dict[str, Any]], body=json_body(analytics.SpecBody), csv=False,
                                      description="Rows: dimensions then metrics (or the raw columns). At most 1000 rows; "
                                      "`X-Rows-Truncated: true` when more matched. Rate-limit headers on every response."),
    ("POST", "/analytics/exports"): Docs(analytics.ExportAccepted, 202, json_body(analytics.SpecBody), csv=False,
                                        description="Starts an export job (429 beyond the account's concurrent exports)."),
    ("GET", "/analytics/exports/{}"): Docs(analytics.ExportStatus, csv=False,
                                          description="404 `no such export job` for unknown ids."),
    ("GET", "/jobs"): Docs(list[Job]),
    ("GET", "/jobs/{}"): Docs(JobDetail, description="The CSV form has no `events` column."),
    ("GET", "/tags"): Docs(list[Tag]),
    ("GET", "/tags/{}"): Docs(Tag),
    ("GET", "/screenshots/{}"): Docs(
        None, content={"application/zip": {"schema": {"type": "string", "format": "binary"}}},
        description="A ZIP of the draft content's step screenshots (empty when there are none), "
        "whatever the Accept header; 404 `content not found` for an unknown ID.",
    ),
    ("GET", "/sdk_keys"): Docs(list[SdkKey]),
    ("GET", "/sdk_keys/{}"): Docs(SdkKey),
    ("POST", "/sdk_keys"): Docs(SdkKeyWithSecret, 201, json_body(SdkKeyCreate)),
    ("DELETE", "/sdk_keys/{}"): Docs(),
    ("PATCH", "/sdk_keys/{}"): Docs(SdkKey, body=json_body(SdkKeyTagField)),
    ("PATCH", "/sdk_keys/{}/tag_field"): Docs(SdkKey, body=json_body(SdkKeyTagField)),
    **{("POST", f"/sdk_keys/{{}}/{switch}/{verb}"): Docs() for switch in SDK_SWITCHES for verb in ("enable", "disable")},
    ("DELETE", "/users/{}/profile"): Docs(description="Erases the profile and the user's group membership; "
                                          "the user's events are kept. 404 `user not found` when there is no profile."),
    ("GET", "/groups/{}/profile"): Docs(GroupProfile, description="404 `group not found` for an unknown group. "
                                        "CSV: one header row of the keys and one data row."),
    ("PATCH", "/groups/{}/profile"): Docs(body=json_body(GroupProfileUpdate)),
    ("POST", "/groups/{}/users"): Docs(body=json_body(groups.GroupUsers), description="Sets each user's current group "
                                       "(unknown users get an empty profile). Only POST: PATCH is 405."),
    ("POST", "/import/groups"): Docs(Accepted, 202, upload_bodies(rows_body(GroupRow), "group_id and properties"), IDEMPOTENCY),
    ("POST", "/segments/{}/segment_membership_export"): Docs(
        Accepted, 202, json_body(segment_exports.MembershipExportRequest), IDEMPOTENCY,
        description="Every field is optional (an empty body too). 404 `segment not found`.",
    ),
    ("GET", "/ingestion_filtering_rules"): Docs(ingestion_rules.RulesBody),
    ("POST", "/ingestion_filtering_rules"): Docs(ingestion_rules.RulesBody, body=json_body(ingestion_rules.RulesBody),
                                                 description="Replaces the whole set (no merge)."),
}  # fmt: skip

# The eight experience types: the same four calls each, checklists with their own object.
for _resource in EXPERIENCE_TYPES:
    _model = Checklist if _resource == "checklists" else ThemedExperience if _resource in ("pins", "banners") else Experience
    _missing = "checklist not found" if _resource == "checklists" else "experience not found"
    SPEC_DOCS[("GET", f"/{_resource}")] = Docs(
        list[_model], description="CSV: one column per field, objects and arrays as JSON text."
    )
    SPEC_DOCS[("GET", f"/{_resource}/{{}}")] = Docs(_model, description=f"404 `{_missing}` for an unknown ID.")
    SPEC_DOCS[("POST", f"/{_resource}/{{}}/publish")] = Docs()
    SPEC_DOCS[("POST", f"/{_resource}/{{}}/unpublish")] = Docs()

ERRORS = {
    400: "Bad Request: the request was malformed or invalid; `detail` names the field",
    401: "Unauthorized: credentials missing or invalid",
    403: "Forbidden: the key does not grant access to this account, or is read-only",
    404: "Not Found: no such endpoint or resource",
    413: "Payload Too Large: the body exceeds the configured limit",
    415: "Unsupported Media Type: the Content-type is not accepted here",
    429: "Too Many Requests: this API key is being throttled; see Retry-After",
    422: "Unprocessable Content: this Idempotency-Key was already used for a different request",
    503: "Service Unavailable: the database connection was lost; retry after Retry-After seconds",
    405: "Method Not Allowed: this path does not take this method (`Allow` lists those it does)",
    410: "Gone: the download link has expired; request a new export",
}
# A download link is its own credential: tampered or foreign (403), file gone (404), expired (410).
DOWNLOAD_ERRORS = {
    403: "Forbidden: the link was altered or not issued by this server",
    404: "Not Found: the export file no longer exists",
    410: "Gone: the link has expired",
}
BODY_ERRORS = (413, 415)
PATH_PARAMS = {
    "account_id": "Appcues account ID",
    "user_id": "End user ID, percent-encoded (`/` as %2F, `@` as %40, space as %20)",
    "segment_id": "Segment ID",
    "flow_id": "Flow ID",
    "job_id": "Job ID",
    "tag_id": "Tag ID",
    "experience_id": "ID of the experience (or checklist) of this type",
    "resource_id": "ID of a flow, experience or checklist",
    "sdk_key_id": "SDK key ID",
    "group_id": "Group ID, percent-encoded like a user ID",
}


def problem_responses(descriptions: dict[int, str]) -> dict[int, Any]:
    """``responses`` entries for error statuses: each a Problem Details body."""
    return {code: {"model": Problem, "description": text} for code, text in descriptions.items()}


def shape(method: str, path: str) -> tuple[str, str]:
    """``("GET", "/v2/accounts/{account_id}/users/{user_id:path}/profile")`` → ``("GET", "/users/{}/profile")``."""
    tail = path[len(ACCOUNT_PREFIX) :] if path.startswith(ACCOUNT_PREFIX) else path
    return method.upper(), re.sub(r"\{[^}]*\}", "{}", tail)


def docs_for(route) -> Docs | None:
    explicit = getattr(route, "docs", None)
    return explicit if explicit is not None else SPEC_DOCS.get(shape(route.method, route.path))


def _body_schema(spec) -> dict:
    if isinstance(spec, type) and issubclass(spec, BaseModel):
        return _ref(spec)
    return dict(spec or {"type": "object"})


def route_kwargs(route) -> dict[str, Any]:
    """Keyword arguments for a FastAPI ``APIRoute`` documenting ``route`` (``route.extra`` wins)."""
    docs = docs_for(route)
    status = route.status
    kwargs: dict[str, Any] = {}
    operation: dict[str, Any] = {"security": [{SECURITY_SCHEME: []}]}
    codes = [401, 403, 404, 429, 503]
    if docs is not None:
        if status == 200:
            status = docs.status
        kwargs["response_model"] = docs.response
        if docs.content is not None:
            kwargs["response_class"] = Response  # the body is no JSON: document only `content`
        if docs.description:
            kwargs["description"] = docs.description
        if docs.body:
            operation["requestBody"] = {
                "required": True,
                "content": {media: {"schema": _body_schema(spec)} for media, spec in docs.body.items()},
            }
            codes += BODY_ERRORS
        if docs.body or docs.params:
            codes.append(400)
        if IDEMPOTENCY[0] in docs.params:
            codes.append(422)
        if docs.params:
            operation["parameters"] = [
                {"name": p.name, "in": p.where, "required": p.required, "schema": p.schema, "description": p.description}
                for p in docs.params
            ]
    responses: dict[int | str, Any] = {code: {"model": Problem, "description": ERRORS[code]} for code in sorted(codes)}
    if docs is not None and docs.content is not None:
        responses[status] = {"content": docs.content, "description": "Success"}
    elif docs is None or docs.csv:
        responses[status] = {
            "content": {"text/csv": {"schema": {"type": "string"}}},
            "description": "Success: JSON, or CSV with `Accept: text/csv`",
        }
    kwargs.update(status_code=status, responses=responses, openapi_extra=operation)
    return {**kwargs, **route.extra}


def operation_kwargs(route) -> dict[str, Any]:
    """FastAPI route keyword arguments documenting one route of ``ROUTES``."""
    return {"summary": route.summary, "tags": [route.tag], **route_kwargs(route)}


def download_kwargs(route) -> dict[str, Any]:
    """The same for the export download link (``PUBLIC_ROUTES``): no API key, its own errors."""
    return {
        "summary": route.summary,
        "tags": [route.tag],
        "description": "Streams an export file. The link itself is the credential: a tampered link "
        "is 403, an expired one 410, a removed file 404.",
        "response_class": Response,
        "responses": {
            200: {"content": {"text/csv": {}, "application/x-ndjson": {}}, "description": "The export file"},
            **problem_responses(DOWNLOAD_ERRORS),
        },
    }


def documented_routes() -> list[APIRoute]:
    """The route table as FastAPI routes, for its document generator only (never served)."""
    from opencues.web.routes import PUBLIC_ROUTES, ROUTES

    return [APIRoute(r.path, r.handler, methods=[r.method], **download_kwargs(r)) for r in PUBLIC_ROUTES] + [
        APIRoute(r.path, r.handler, methods=[r.method], **operation_kwargs(r)) for r in ROUTES
    ]


@functools.cache
def build(title: str, version: str, description: str) -> dict:
    """The document (the same for every app of a process: built once): FastAPI's, plus the
    security scheme and body models, minus the 422 responses FastAPI adds for path parameters
    (this API answers invalid input with 400)."""
    document = get_openapi(title=title, version=version, description=description, routes=documented_routes())
    components = document.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    used = orjson.dumps(document.get("paths", {})).decode()
    for name, model in _BODY_MODELS.items():
        if f'"#/components/schemas/{name}"' not in used:
            continue  # registered by a spec endpoint this server does not route
        schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
        schemas.update(schema.pop("$defs", {}))
        schemas[name] = schema
    components["securitySchemes"] = {
        SECURITY_SCHEME: {
            "type": "http",
            "scheme": "basic",
            "description": "API key as the user name, API secret as the password (`opencues keys create`).",
        }
    }
    for operations in document.get("paths", {}).values():
        for operation in operations.values():
            if operation.get("responses", {}).get("422", {}).get("description") == "Validation Error":
                del operation["responses"]["422"]  # FastAPI's; this API's own 422s stay
            for parameter in operation.get("parameters", []):
                if parameter["in"] == "path" and parameter["name"] in PATH_PARAMS:
                    parameter.setdefault("description", PATH_PARAMS[parameter["name"]])
    for unused in ("HTTPValidationError", "ValidationError"):
        schemas.pop(unused, None)
    for path, operations in document.get("paths", {}).items():
        for operation in operations.values():
            responses = operation.setdefault("responses", {})
            responses.setdefault("405", _problem_response(405))
            if path.startswith("/downloads/"):
                responses.setdefault("410", _problem_response(410))
    _add_examples(document)
    return document


# --- examples: every request and response body gets one, made from its schema ---

EXAMPLE_STRINGS = {
    "date-time": "2021-07-16T16:02:50.037Z",
    "date": "2021-07-16",
    "uri": "https://cues.example.com/v2/accounts/12345/flows/flow1",
    "email": "someone@example.com",
    "binary": "(file contents)",
}
PROBLEM_DETAILS = {
    400: "`name` is required", 401: "missing or invalid API key and secret",
    403: "this API key cannot write", 404: "flow not found", 405: "method not allowed here; see Allow",
    410: "this download link has expired; request a new export", 413: "the body is larger than 20971520 bytes",
    415: "Content-Type must be application/json", 429: "rate limit of 100 per 1 second exceeded for this API key; retry after 1s",
}  # fmt: skip


def _problem_response(status: int) -> dict:
    return {
        "description": ERRORS[status],
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Problem"}}},
    }


def _named_string(name: str) -> str | None:
    if name.endswith("_at") or name in ("timestamp", "start_time", "end_time"):
        return EXAMPLE_STRINGS["date-time"]
    if name == "url" or name.endswith("_url"):
        return EXAMPLE_STRINGS["uri"]
    if name == "id" or name.endswith("_id") or name.endswith("_by"):
        return "0b9a3d52-7c1e-4f0e-9a51-3c2f1d6e8a47"
    if "email" in name:
        return EXAMPLE_STRINGS["email"]
    if name == "name":
        return "Welcome tour"
    return None


def example_for(schema: dict, components: dict, depth: int = 0, name: str = "") -> Any:
    """A value valid against ``schema`` (first alternatives, documented examples and defaults first)."""
    if depth > 12:
        return None
    if "$ref" in schema:
        return example_for(components.get(schema["$ref"].rsplit("/", 1)[1], {}), components, depth + 1)
    for key in ("example", "const", "default"):
        if key in schema and schema[key] is not None:
            return schema[key]
    if schema.get("examples"):
        return schema["examples"][0]
    if "enum" in schema:
        return schema["enum"][0]
    for key in ("oneOf", "anyOf", "allOf"):
        if schema.get(key):
            choices = [c for c in schema[key] if c.get("type") != "null"] or schema[key]
            return example_for(choices[0], components, depth + 1, name)
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "object" or "properties" in schema:
        value = {key: example_for(sub, components, depth + 1, key) for key, sub in schema.get("properties", {}).items()}
        extra = schema.get("additionalProperties")
        if not value and isinstance(extra, dict):
            value = {"key": example_for(extra, components, depth + 1)}
        return value
    if kind == "array":
        count = max(1, schema.get("minItems", 1))
        return [example_for(schema.get("items", {}), components, depth + 1, name.removesuffix("s"))] * count
    if kind == "string":
        if schema.get("format") in EXAMPLE_STRINGS:
            return EXAMPLE_STRINGS[schema["format"]]
        named = _named_string(name)
        if named and not schema.get("pattern") and len(named) <= schema.get("maxLength", 1000):
            return named
        return "example"[: schema.get("maxLength", 7)].ljust(schema.get("minLength", 0), "x")
    if kind == "integer":
        return max(1, schema.get("minimum", 1))
    if kind == "number":
        return max(1.5, schema.get("minimum", 1.5))
    if kind == "boolean":
        return True
    return None


def _csv_cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    text = orjson.dumps(value).decode()
    return '"' + text.replace('"', '""') + '"' if "," in text or '"' in text else text


def _text_example(media: str, value: Any) -> str:
    rows = value if isinstance(value, list) else [value]
    if media == "text/csv":
        if rows and isinstance(rows[0], dict):
            header = list(rows[0])
            cells = [[_csv_cell(r.get(h)) for h in header] for r in rows]
            return ",".join(header) + "\n" + "".join(",".join(row) + "\n" for row in cells)
        return "user_id\nuser-1\n"
    return "".join(orjson.dumps(row).decode() + "\n" for row in rows)


def _add_examples(document: dict) -> None:
    components = document.get("components", {}).get("schemas", {})
    for operations in document.get("paths", {}).values():
        for operation in operations.values():
            bodies = [(None, operation.get("requestBody", {}).get("content", {}))]
            bodies += [(code, r.get("content", {})) for code, r in operation.get("responses", {}).items()]
            for code, content in bodies:
                json_example = None
                for media, entry in content.items():
                    if "example" in entry or "examples" in entry:
                        continue
                    schema = entry.get("schema", {})
                    if code is not None and code[0] in "45":
                        entry["example"] = {"error": True, "status": int(code), "title": status_title(int(code)),
                                            "detail": PROBLEM_DETAILS.get(int(code), ERRORS.get(int(code), ""))}  # fmt: skip
                    elif media.endswith("json") and media != "application/ndjson":
                        json_example = example_for(schema, components)
                        entry["example"] = json_example
                    elif media in ("text/csv", "application/ndjson", "application/x-ndjson"):
                        if json_example is None:
                            json_source = content.get("application/json", {}).get("schema")
                            json_example = example_for(json_source, components) if json_source else {"user_id": "user-1"}
                        entry["example"] = _text_example(media, json_example)
                    elif media == "multipart/form-data":
                        entry["example"] = {"file": "(the contents of a .csv or .ndjson file)"}
                    else:  # a ZIP or another binary body
                        entry["example"] = "(binary file contents)"
