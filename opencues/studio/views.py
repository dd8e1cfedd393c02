"""Studio's pages and form actions: thin over the same library functions the API's views call.

Each handler takes a ``Context`` (session, form) and the path parameters; ``render.page`` guards
it. Forms post back and are answered with a redirect (303) to the page showing the result, except
key creation, whose page is the only place the new secret is ever shown.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from urllib.parse import quote
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import orjson
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse

from opencues import (
    accounts,
    control,
    events,
    experiences,
    faults,
    flows,
    groups,
    jobs,
    journal,
    profiles,
    segments,
    tags,
    timestamps,
)
from opencues.errors import ApiError, bad_request
from opencues.studio import session as sessions
from opencues.studio.render import Context, check_upload, error_page, page, redirect
from opencues.web.intake import receive_payload
from opencues.web.urls import base_url

PAGE_SIZE = 50  # rows per page of members, users and events
CONTENT_TYPES = ("flows", *experiences.TYPES)
IMPORT_KINDS = {"import_profiles": "Profiles", "import_events": "Events", "import_groups": "Groups"}
TIME_ZONES = ("UTC", "America/Los_Angeles", "America/New_York", "America/Sao_Paulo", "Europe/London", "Europe/Berlin",
              "Asia/Kolkata", "Asia/Tokyo", "Australia/Sydney", "-08:00", "-05:00", "+01:00", "+05:30", "+09:00")  # fmt: skip


def _home(ctx_session) -> str:
    if ctx_session.admin:
        return "/studio/accounts"
    return f"/studio/accounts/{ctx_session.account_id}/content"


# -- sign-in ------------------------------------------------------------------------------------


async def login_form(request: Request):
    session = sessions.load(request)
    if session.signed_in:
        return redirect(_home(session))
    return Context(request, session, {}).render("login.html", next=request.query_params.get("next", ""))


async def login(request: Request):
    session = sessions.load(request)
    form = {k: v for k, v in (await request.form()).multi_items() if isinstance(v, str)}
    ctx = Context(request, session, form)
    try:
        sessions.check_csrf(session, form.get("csrf_token"))
        signed_in = sessions.sign_in(request, form)
    except ApiError as exc:
        return ctx.render("login.html", status=exc.status, error=exc.detail, next=form.get("next", ""))
    target = form.get("next") or ""
    if not target.startswith("/studio/") or target.startswith("//"):
        target = _home(signed_in)
    response = redirect(target)
    sessions.set_cookie(response, request, signed_in)
    return response


async def logout(request: Request):
    session = sessions.load(request)
    form = await request.form()
    try:
        sessions.check_csrf(session, form.get("csrf_token"))
    except ApiError as exc:
        return error_page(request, session, exc.status, exc.detail)
    response = redirect("/studio/login")
    sessions.clear_cookie(response)
    return response


@page()
async def home(ctx: Context):
    return redirect(_home(ctx.session))


# -- accounts and keys ----------------------------------------------------------------------------


@page(admin=True)
async def accounts_page(ctx: Context):
    return ctx.render("accounts.html", accounts=accounts.list_accounts(ctx.db))


@page(admin=True)
async def create_account(ctx: Context):
    name = ctx.form.get("name", "").strip() or None
    account_id = ctx.form.get("id", "").strip() or None
    created = control.create_account(ctx.db, {k: v for k, v in {"id": account_id, "name": name}.items() if v})
    return ctx.render("keys.html", status=201, created=created, account={"id": created["id"], "name": created["name"]},
                      keys=accounts.list_keys(ctx.db, created["id"]), account_id_override=created["id"])  # fmt: skip


@page(admin=True)
async def keys_page(ctx: Context, account_id: str):
    return ctx.render("keys.html", account=accounts.get_account(ctx.db, account_id), keys=accounts.list_keys(ctx.db, account_id))


@page(admin=True)
async def create_key(ctx: Context, account_id: str):
    created = accounts.create_key(ctx.db, account_id, read_only=ctx.form.get("read_only") == "on")
    return ctx.render("keys.html", status=201, created=created, account=accounts.get_account(ctx.db, account_id),
                      keys=accounts.list_keys(ctx.db, account_id))  # fmt: skip


@page(admin=True)
async def revoke_key(ctx: Context, account_id: str, key: str):
    if key not in {k["key"] for k in accounts.list_keys(ctx.db, account_id)}:
        raise ApiError(404, f"API key {key!r} not found in account {account_id!r}")
    accounts.revoke_key(ctx.db, key)
    return redirect(f"/studio/accounts/{account_id}/keys")


# -- content --------------------------------------------------------------------------------------


def _content_items(db, account_id: str, resource: str) -> list[dict]:
    if resource == "flows":
        items = flows.list_flows(db, account_id)
    else:
        items = experiences.list_experiences(db, account_id, resource)
    for item in items:
        item["label"] = item.get("name") or item.get("internal_name") or item.get("title") or item["id"]
        item["shown_state"] = item.get("state") or ("published" if item.get("published") else "draft")
    return items


@page()
async def content_page(ctx: Context, account_id: str):
    query = ctx.request.query_params
    resource = query.get("type") or "flows"
    if resource not in CONTENT_TYPES:
        raise bad_request(f"`type` must be one of {', '.join(CONTENT_TYPES)}")
    search, state, tag = query.get("q", "").strip(), query.get("state", ""), query.get("tag", "")
    items = _content_items(ctx.db, account_id, resource)
    states = sorted({i["shown_state"] for i in items})
    if search:
        needle = search.lower()
        items = [i for i in items if needle in i["label"].lower() or needle in i["id"].lower()]
    if state:
        items = [i for i in items if i["shown_state"] == state]
    if tag:
        items = [i for i in items if tag in (i.get("tag_ids") or [])]
    return ctx.render("content.html", resource=resource, types=CONTENT_TYPES, items=items, search=search, state=state,
                      tag=tag, states=states, tags=tags.list_tags(ctx.db, account_id))  # fmt: skip


@page()
async def content_detail(ctx: Context, account_id: str, resource: str, item_id: str):
    if resource == "flows":
        item = flows.get_flow(ctx.db, account_id, item_id)
    elif resource in experiences.TYPES:
        item = experiences.get_experience(ctx.db, account_id, resource, item_id)
    else:
        raise ApiError(404, f"no content type {resource!r}")
    document = orjson.dumps(item, option=orjson.OPT_INDENT_2, default=str).decode()
    return ctx.render("content_detail.html", resource=resource, item=item, document=document,
                      label=item.get("name") or item.get("internal_name") or item_id)  # fmt: skip


async def _set_published(ctx: Context, account_id: str, resource: str, item_id: str, published: bool):
    if resource == "flows":
        flows.set_published(ctx.db, account_id, item_id, published, ctx.session.by)
    elif resource in experiences.TYPES:
        experiences.set_published(ctx.db, account_id, resource, item_id, published, ctx.session.by)
    else:
        raise ApiError(404, f"no content type {resource!r}")
    return redirect(f"/studio/accounts/{account_id}/content/{resource}/{item_id}")


@page(write=True)
async def publish(ctx: Context, account_id: str, resource: str, item_id: str):
    return await _set_published(ctx, account_id, resource, item_id, True)


@page(write=True)
async def unpublish(ctx: Context, account_id: str, resource: str, item_id: str):
    return await _set_published(ctx, account_id, resource, item_id, False)


@page()
async def tags_page(ctx: Context, account_id: str):
    return ctx.render("tags.html", tags=tags.list_tags(ctx.db, account_id))


# -- segments -------------------------------------------------------------------------------------


@page()
async def segments_page(ctx: Context, account_id: str):
    return ctx.render("segments.html", segments=segments.list_segments(ctx.db, account_id))


@page(write=True)
async def create_segment(ctx: Context, account_id: str):
    body = {"name": ctx.form.get("name", ""), "description": ctx.form.get("description") or None}
    segment = segments.create_segment(ctx.db, account_id, body, ctx.session.by)
    return redirect(f"/studio/accounts/{account_id}/segments/{segment['id']}")


@page()
async def segment_page(ctx: Context, account_id: str, segment_id: str):
    segment = segments.get_segment(ctx.db, account_id, segment_id)
    after = ctx.request.query_params.get("after")
    members = segments.list_members(ctx.db, account_id, segment_id, after=after, limit=PAGE_SIZE + 1)
    return ctx.render("segment.html", segment=segment, members=members[:PAGE_SIZE], after=after,
                      next_after=members[PAGE_SIZE - 1] if len(members) > PAGE_SIZE else None)  # fmt: skip


@page(write=True)
async def rename_segment(ctx: Context, account_id: str, segment_id: str):
    body = {"name": ctx.form.get("name", "")}
    if "description" in ctx.form:
        body["description"] = ctx.form["description"] or None
    segments.update_segment(ctx.db, account_id, segment_id, body, ctx.session.by)
    return redirect(f"/studio/accounts/{account_id}/segments/{segment_id}")


@page(write=True)
async def delete_segment(ctx: Context, account_id: str, segment_id: str):
    segments.delete_segment(ctx.db, account_id, segment_id)
    return redirect(f"/studio/accounts/{account_id}/segments")


async def _submit_upload(ctx: Context, account_id: str, kind_of, *, user_ids: bool, params_of=lambda fields: None):
    """Store the uploaded file (as the API's bulk routes do), check the form, submit the job."""
    fields: dict = {}
    request = ctx.request
    payload = await receive_payload(request, user_ids=user_ids, fields=fields, text_as_csv=user_ids)
    try:
        check_upload(ctx, fields)
        kind = kind_of(fields)
        params = params_of(fields)
    except ApiError:
        request.app.state.file_store.delete(payload.key)
        raise
    submitted = jobs.submit(ctx.db, account_id, kind, params=params, payload_key=payload.key,
                            payload_format=payload.format.value, file_store=request.app.state.file_store)  # fmt: skip
    await _start(ctx, account_id, submitted.job_id)
    return redirect(f"/studio/accounts/{account_id}/jobs/{submitted.job_id}")


async def _start(ctx: Context, account_id: str, job_id: str) -> None:
    """Wake the workers — or, for an account in the control API's ``instant`` job mode, run the
    job before answering, as the API's 202 does."""
    if ctx.control_on and control.job_mode(ctx.db, account_id) == "instant":
        state = ctx.request.app.state
        await run_in_threadpool(control.run_job, ctx.db, state.file_store, ctx.settings, job_id)
    else:
        ctx.request.app.state.wake_workers()


@page(write=True, upload=True)
async def upload_members(ctx: Context, account_id: str, segment_id: str):
    segments.get_segment(ctx.db, account_id, segment_id)  # 404 before reading the upload

    def kind_of(fields):
        if fields.get("mode", "add") not in ("add", "remove"):
            raise bad_request("`mode` must be add or remove")
        return "remove_user_ids" if fields.get("mode") == "remove" else "add_user_ids"

    return await _submit_upload(ctx, account_id, kind_of, user_ids=True, params_of=lambda f: {"segment_id": segment_id})


# -- users ----------------------------------------------------------------------------------------


@page()
async def users_page(ctx: Context, account_id: str):
    query = ctx.request.query_params
    prefix, after = query.get("prefix", ""), query.get("after")
    found = profiles.list_user_ids(ctx.db, account_id, prefix=prefix, after=after, limit=PAGE_SIZE + 1)
    return ctx.render("users.html", prefix=prefix, users=found[:PAGE_SIZE], after=after,
                      next_after=found[PAGE_SIZE - 1] if len(found) > PAGE_SIZE else None)  # fmt: skip


def _zone_offset(zone: str):
    """``ms -> offset minutes`` for a zone given as an IANA name (its offset at each instant, DST
    included) or as a fixed offset such as ``+05:30``; 400 naming ``tz`` otherwise."""
    if not zone or zone == "UTC":
        return lambda ms: 0
    if zone[0] in "+-":
        fixed = timestamps.parse_offset(zone, field="tz")
        return lambda ms: fixed
    try:
        tz = ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError):
        raise bad_request(f"`tz` {zone!r} is not a time zone: an IANA name or an offset such as +05:30") from None
    return lambda ms: int(datetime.fromtimestamp(ms / 1000, timezone.utc).astimezone(tz).utcoffset().total_seconds() // 60)


@page()
async def user_page(ctx: Context, account_id: str):
    query = ctx.request.query_params
    user_id = query.get("id", "")
    if not user_id:
        return redirect(f"/studio/accounts/{account_id}/users")
    zone = query.get("tz", "UTC")
    offset_of = _zone_offset(zone)
    before = None
    if query.get("before"):
        try:
            ts, event_id = query["before"].split(":", 1)
            before = (int(ts), int(event_id))
        except ValueError:
            raise bad_request("`before` must be TIMESTAMP:ID") from None
    try:
        profile = profiles.get_profile(ctx.db, account_id, user_id)
    except ApiError as exc:
        if exc.status != 404:
            raise
        profile = None
    page_events = events.timeline(ctx.db, account_id, user_id, before=before, limit=PAGE_SIZE + 1)
    for event in page_events:
        event["shown_time"] = timestamps.render(event["timestamp_ms"], offset_of(event["timestamp_ms"]))
        event["attributes_json"] = orjson.dumps(event["attributes"], option=orjson.OPT_INDENT_2).decode()
    last = page_events[PAGE_SIZE - 1] if len(page_events) > PAGE_SIZE else None
    return ctx.render("user.html", user_id=user_id, profile=profile, events=page_events[:PAGE_SIZE], zone=zone,
                      zones=TIME_ZONES, group_id=groups.group_of(ctx.db, account_id, user_id),
                      next_before=f"{last['timestamp_ms']}:{last['id']}" if last else None,
                      typed=[(k, _type_of(v), _shown(v)) for k, v in (profile or {}).items()])  # fmt: skip


def _type_of(value) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if value is None:
        return "null"
    return "json"


def _shown(value) -> str:
    return value if isinstance(value, str) else orjson.dumps(value).decode()


def typed_value(kind: str, raw: str):
    """A form's value as the type chosen beside it (400 naming ``value`` when it is not one)."""
    if kind == "string":
        return raw
    if kind == "number":
        try:
            number = float(raw)
        except ValueError:
            raise bad_request(f"`value` {raw!r} is not a number") from None
        return int(number) if number.is_integer() and "." not in raw and "e" not in raw.lower() else number
    if kind == "boolean":
        if raw.strip().lower() not in ("true", "false"):
            raise bad_request("`value` must be true or false")
        return raw.strip().lower() == "true"
    if kind == "json":
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise bad_request("`value` is not valid JSON") from None
    raise bad_request("`type` must be one of string, number, boolean, json")


@page(write=True)
async def edit_profile(ctx: Context, account_id: str):
    user_id = ctx.form.get("user_id", "")
    key = ctx.form.get("key", "")
    if not key:
        raise bad_request("`key` is required")
    if ctx.form.get("action") == "remove":
        changes = {key: None}
    else:
        changes = {key: typed_value(ctx.form.get("type", "string"), ctx.form.get("value", ""))}
    state = ctx.request.app.state
    rules = state.ingestion_rules.rules(state.db, account_id)
    # As the API's PATCH: the update joins the event loop's group commit.
    await profiles.update_profile_grouped(ctx.db, account_id, user_id, changes, rules,
                                          max_attribute_keys=ctx.settings.max_attribute_keys)  # fmt: skip
    return redirect(f"/studio/accounts/{account_id}/users/view?id={quote(user_id, safe='')}")


@page()
async def group_page(ctx: Context, account_id: str):
    group_id = ctx.request.query_params.get("id", "")
    group = groups.get_group(ctx.db, account_id, group_id)
    document = orjson.dumps(group, option=orjson.OPT_INDENT_2).decode()
    return ctx.render("group.html", group_id=group_id, document=document)


# -- jobs, imports, exports -------------------------------------------------------------------------


@page()
async def jobs_page(ctx: Context, account_id: str):
    return ctx.render("jobs.html", jobs=jobs.list_jobs(ctx.db, account_id)[:200], import_kinds=IMPORT_KINDS)


def _job_view(db, account_id: str, job_id: str) -> dict:
    job = jobs.get_job(db, account_id, job_id)
    job["links"] = [v for e in job["events"] for k, v in e["attributes"].items()
                    if isinstance(v, str) and k.endswith("url") and v.startswith("http")]  # fmt: skip
    samples = []
    for event in job["events"]:
        for key in ("errors", "row_errors", "error_samples", "ingestion_errors"):
            if isinstance(event["attributes"].get(key), list):
                samples.extend(event["attributes"][key])
    job["error_samples"] = samples[:100]
    return job


@page()
async def job_page(ctx: Context, account_id: str, job_id: str):
    job = _job_view(ctx.db, account_id, job_id)
    return ctx.render("job.html", job=job, events_json=[orjson.dumps(e["attributes"]).decode() for e in job["events"]])


@page()
async def job_status(ctx: Context, account_id: str, job_id: str):
    """The job as JSON, for the job page's polling."""
    return JSONResponse(_job_view(ctx.db, account_id, job_id), headers={"Cache-Control": "no-store"})


@page(write=True, upload=True)
async def start_import(ctx: Context, account_id: str):
    def kind_of(fields):
        if fields.get("kind") not in IMPORT_KINDS:
            raise bad_request(f"`kind` must be one of {', '.join(IMPORT_KINDS)}")
        return fields["kind"]

    return await _submit_upload(ctx, account_id, kind_of, user_ids=False)


EXPORT_OPERATORS = ("==", "!=", "<", "<=", ">", ">=", "in", "not in", "like", "not like", "ilike", "not ilike", "is null", "is not null")


@page()
async def export_form(ctx: Context, account_id: str):
    return ctx.render("export.html", operators=EXPORT_OPERATORS, rows=range(3))


def export_body(form: dict) -> dict:
    """The ``POST export/events`` body a Studio export form describes."""
    conditions = []
    for index in range(10):
        field = form.get(f"field{index}", "").strip()
        if not field:
            continue
        operator = form.get(f"op{index}", "==")
        raw = form.get(f"value{index}", "")
        if operator in ("is null", "is not null"):
            conditions.append([field, operator])
            continue
        if operator in ("in", "not in"):
            value = [v.strip() for v in raw.split(",") if v.strip()]
        else:
            try:
                value = orjson.loads(raw)
            except orjson.JSONDecodeError:
                value = raw
        conditions.append([field, operator, value])
    body = {"format": form.get("format", "csv"), "conditions": conditions, "start_time": form.get("start_time") or None,
            "end_time": form.get("end_time") or None}  # fmt: skip
    if form.get("email", "").strip():
        body["email"] = form["email"].strip()
    if form.get("limit", "").strip():
        try:
            body["limit"] = int(form["limit"])
        except ValueError:
            raise bad_request("`limit` must be an integer") from None
    return body


@page()  # exporting reads data: read-only keys may export, as with the API
async def start_export(ctx: Context, account_id: str):
    from opencues import exports  # on first use: a start does without it

    body = export_body(ctx.form)
    export = exports.validate_request(body, max_rows=ctx.settings.export_max_rows)
    submitted = jobs.submit(ctx.db, account_id, exports.JOB_KIND, params=exports.job_params(export, base_url(ctx.request)))
    await _start(ctx, account_id, submitted.job_id)
    return redirect(f"/studio/accounts/{account_id}/jobs/{submitted.job_id}")


# -- analytics --------------------------------------------------------------------------------------


@page()
async def analytics_page(ctx: Context, account_id: str):
    from opencues import analytics  # on first use: a start does without it

    query = ctx.request.query_params
    event_name, flow_id = query.get("event", "").strip(), query.get("flow", "").strip()
    today = date.today()
    start = query.get("start") or (today - timedelta(days=29)).isoformat()
    end = query.get("end") or (today + timedelta(days=1)).isoformat()
    zone = query.get("tz") or "UTC"
    rows, chart = [], None
    if event_name or flow_id:
        conditions = [["name", "==", event_name]] if event_name else []
        if flow_id:
            conditions.append(["flow_id", "==", flow_id])
        spec = analytics.parse_spec({"metrics": ["events", "users"], "dimensions": ["day"], "conditions": conditions,
                                     "start_time": start, "end_time": end, "timezone": zone})  # fmt: skip
        result = await run_in_threadpool(analytics.run_query, ctx.db, account_id, spec)
        rows = result.rows
        chart = _chart(rows)
    return ctx.render("analytics.html", event=event_name, flow=flow_id, start=start, end=end, tz=zone, rows=rows, chart=chart)


def _chart(rows: list[dict], width: int = 720, height: int = 240, pad: int = 32) -> dict:
    """Two polylines (events, users) over the days, in SVG user units."""
    top = max([1] + [r["events"] for r in rows] + [r["users"] for r in rows])
    step = (width - 2 * pad) / max(1, len(rows) - 1)

    def points(metric):
        return " ".join(
            f"{pad + i * step:.1f},{height - pad - (r[metric] / top) * (height - 2 * pad):.1f}" for i, r in enumerate(rows)
        )

    return {"width": width, "height": height, "pad": pad, "top": top, "events": points("events"),
            "users": points("users"), "first": rows[0]["day"] if rows else "", "last": rows[-1]["day"] if rows else ""}  # fmt: skip


# -- developer view (the control API) ---------------------------------------------------------------


@page(control=True)
async def developer_page(ctx: Context):
    return ctx.render(
        "developer.html",
        requests=journal.list_requests(ctx.db, limit=50),
        faults=faults.list_faults(ctx.db),
        outbox=control.list_outbox(ctx.settings)[:50],
        snapshots=control.list_snapshots(ctx.db),
        accounts=accounts.list_accounts(ctx.db),
        modes={a["id"]: control.job_mode(ctx.db, a["id"]) for a in accounts.list_accounts(ctx.db)[:100]},
        job_modes=control.JOB_MODES,
        journal_on=ctx.settings.journal == "on",
    )


@page(control=True)
async def journal_json(ctx: Context):
    return JSONResponse(journal.list_requests(ctx.db, limit=50), headers={"Cache-Control": "no-store"})


@page(control=True)
async def add_fault(ctx: Context):
    body = {"path": ctx.form.get("path") or "*", "method": ctx.form.get("method") or None}
    if ctx.form.get("status"):
        body["status"] = int(ctx.form["status"]) if ctx.form["status"].isdigit() else ctx.form["status"]
    if ctx.form.get("delay_ms"):
        body["delay_ms"] = int(ctx.form["delay_ms"]) if ctx.form["delay_ms"].isdigit() else ctx.form["delay_ms"]
    faults.add_fault(ctx.db, {k: v for k, v in body.items() if v is not None})
    return redirect("/studio/developer")


@page(control=True)
async def remove_fault(ctx: Context, fault_id: str):
    faults.remove_fault(ctx.db, fault_id)
    return redirect("/studio/developer")


@page(control=True)
async def set_job_mode(ctx: Context):
    control.set_job_mode(ctx.db, ctx.form.get("account_id", ""), ctx.form.get("mode"))
    return redirect("/studio/developer")


@page(control=True)
async def create_snapshot(ctx: Context):
    await run_in_threadpool(control.create_snapshot, ctx.db, ctx.form.get("name", ""),
                            ctx.form.get("account_id") or None, ctx.request.app.state.file_store)  # fmt: skip
    return redirect("/studio/developer")


@page(control=True)
async def restore_snapshot(ctx: Context, name: str):
    await run_in_threadpool(control.restore_snapshot, ctx.db, name, ctx.request.app.state.file_store)
    return redirect("/studio/developer")


@page(control=True)
async def reset(ctx: Context):
    account_id = ctx.form.get("account_id") or ""
    if account_id:
        await run_in_threadpool(control.reset_account, ctx.db, account_id)
    elif ctx.form.get("confirm") == "everything":
        await run_in_threadpool(control.reset, ctx.db)
    else:
        raise bad_request("`confirm` must be `everything` to reset every account")
    return redirect("/studio/developer")
