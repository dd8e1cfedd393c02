"""Segment membership exports (``POST segments/{id}/segment_membership_export``): a job that writes
a segment's members, with the profile properties asked for, to a file behind a signed link.

The file has one record per member, in user id order: NDJSON ``{"user_id": …, "<property>": …}``
(a property the profile lacks is ``null``), or CSV with the header ``user_id,<property_names in
request order>`` (cells as everywhere: strings as is, objects and arrays as JSON, null empty).
Like ``export/events``, the link (valid ``export_link_ttl_days``) is emailed to each ``email``
when any is given, and is always on the job's ``Completed`` event as ``download_url``; the file
lives under the exports prefix of the file store, so the workers delete it once the link expired.
"""

from __future__ import annotations

import io
import logging
from typing import Annotated, Any, Literal

import orjson
from pydantic import BaseModel, Field, StringConstraints, ValidationError
from sqlalchemy import and_, select

from opencues import exports, mail, timestamps, worker
from opencues.csv_writer import CsvWriter
from opencues.errors import ApiError, bad_request, invalid_field
from opencues.filestore import EXPORT_FILES
from opencues.storage import Database
from opencues.storage.schema import profiles, segment_members, segments

log = logging.getLogger("opencues.segment_exports")

JOB_KIND = "export_segment_membership"
FORMATS = ("json", "csv")
MAX_PROPERTY_NAMES = 1_000
FETCH_ROWS = 5_000


class MembershipExportRequest(BaseModel):
    """The body of ``POST segments/{id}/segment_membership_export`` (it validates it); all optional."""

    property_names: list[Annotated[str, StringConstraints(min_length=1)]] = Field(
        default_factory=list, max_length=MAX_PROPERTY_NAMES, description="Profile properties to add as columns"
    )
    format: Literal["json", "csv"] = Field("json", description="File format: NDJSON (default) or CSV")
    email: str | list[str] | None = Field(None, description="Address(es) the secure download link is sent to")


def validate_request(body: Any) -> dict:
    """The job's params from a request body (400 naming the bad field)."""
    if not isinstance(body, dict):
        raise bad_request("request body must be a JSON object")
    fields = {k: v for k, v in body.items() if k in MembershipExportRequest.model_fields and v is not None}
    try:
        request = MembershipExportRequest.model_validate(fields, strict=True)
    except ValidationError as exc:
        raise invalid_field(exc) from None
    emails = () if request.email is None else exports._emails(request.email)
    # `user_id` is always the first column; a property of that name could not be told apart.
    properties = [name for name in dict.fromkeys(request.property_names) if name != "user_id"]
    return {"property_names": properties, "format": request.format, "emails": list(emails)}


def check_segment(db: Database, account_id: str, segment_id: str) -> None:
    with db.connect() as conn:
        found = conn.execute(
            select(segments.c.id).where(segments.c.account_id == account_id, segments.c.id == segment_id)
        ).first()
    if found is None:
        raise ApiError(404, "segment not found")


def job_params(request: dict, segment_id: str, base_url: str) -> dict:
    return {**request, "segment_id": segment_id, "base_url": base_url}


def write_members(db: Database, account_id: str, segment_id: str, property_names: list[str], fmt: str, out) -> int:
    """Write the segment's members to ``out`` (binary) as they are read; return how many."""
    joined = segment_members.outerjoin(
        profiles,
        and_(profiles.c.account_id == segment_members.c.account_id, profiles.c.user_id == segment_members.c.user_id),
    )
    query = (
        select(segment_members.c.user_id, profiles.c.attributes)
        .select_from(joined)
        .where(segment_members.c.account_id == account_id, segment_members.c.segment_id == segment_id)
        .order_by(segment_members.c.user_id)
    )
    written = 0
    text = io.TextIOWrapper(out, encoding="utf-8", newline="", write_through=False) if fmt == "csv" else None
    writer = None
    if text is not None:
        writer = CsvWriter(text)
        writer.header(["user_id", *property_names])
    try:
        with db.connect() as conn:
            result = conn.execute(query.execution_options(stream_results=True, yield_per=FETCH_ROWS))
            for rows in result.partitions():
                for user_id, attributes in rows:
                    attributes = attributes or {}
                    values = [attributes.get(name) for name in property_names]
                    if writer is not None:
                        writer.row([user_id, *values])
                    else:
                        out.write(orjson.dumps({"user_id": user_id, **dict(zip(property_names, values))}) + b"\n")
                written += len(rows)
        if text is not None:
            text.flush()
    finally:
        if text is not None:
            text.detach()
    return written


def run_membership_export(ctx) -> dict:
    """The job: check the segment still exists, write the file, sign its link, mail it."""
    job = ctx.job
    params = job.params
    segment_id = params["segment_id"]
    try:
        check_segment(ctx.db, job.account_id, segment_id)
    except ApiError:
        raise worker.JobFailed(f"segment {segment_id!r} was deleted") from None
    extension = exports.EXTENSIONS[params["format"]]
    key = f"{EXPORT_FILES}/{job.account_id}/{job.id}.{extension}"
    with ctx.file_store.writer(key) as handle:
        rows = write_members(ctx.db, job.account_id, segment_id, params["property_names"], params["format"], handle)
    settings = ctx.settings
    base_url = (settings.public_url or params.get("base_url") or "http://localhost:8000").rstrip("/")
    url, expires_at = exports.download_link(settings, ctx.file_store, key, f"segment-{segment_id}-{job.id[:8]}.{extension}", base_url)
    attributes = {"rows_exported": rows, "download_url": url, "expires_at": timestamps.render(expires_at * 1000)}
    emails = params.get("emails") or []
    if emails:
        mail_args = dict(url=url, expires_at=expires_at, rows=rows, fmt=params["format"], job_id=job.id,
                         title="segment membership export", items="members")  # fmt: skip
        try:
            mail.send_export_link(settings, emails, **mail_args)
        except Exception as exc:  # noqa: BLE001 - SMTP/network errors of any kind: keep the export
            log.exception("segment export %s: emailing the link failed", job.id)
            attributes["email_error"] = f"{type(exc).__name__}: {exc}"
            mail.send_export_link(settings.model_copy(update={"smtp_url": None}), emails, **mail_args)
    attributes["runtime_ms"] = ctx.runtime_ms()
    return attributes


worker.register(JOB_KIND, "Export Segment Membership", run_membership_export, start_event="Exporting")
