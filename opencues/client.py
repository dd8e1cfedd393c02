"""A Python client for the Appcues Public API v2 — the vendor's or opencues' — and for opencues'
control API (``Control``).

    from opencues.client import Client

    appcues = Client()      # APPCUES_BASE_URL, APPCUES_API_KEY, APPCUES_API_SECRET, APPCUES_ACCOUNT_ID
    appcues.track("user-1", "Clicked button", attributes={"color": "red"})
    job = appcues.wait(appcues.import_events("events.ndjson"))
    assert job["status"] == "COMPLETED"

One method per endpoint, named after the operation. Answers are the decoded JSON (``csv=True``
returns the CSV text instead, where the API offers it). Every error is raised as ``AppcuesError``
carrying the Problem Details fields; a 429 is retried after its ``Retry-After`` (up to
``max_retries`` times). Bulk methods take a file path, a binary file, or an iterable of rows
(dicts; plain strings for user ids), streamed without being held in memory. ``wait(job)`` polls a
job — its id or the 202 answer — until it ends.

Adding an endpoint is a few lines: ``self._call(method, path, …)`` under the account's URL.
"""

from __future__ import annotations

import json
import os
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any, Iterable, Iterator
from urllib.parse import quote

import httpx

DEFAULT_BASE_URL = "https://api.appcues.com"
CSV = "text/csv"
NDJSON = "application/ndjson"
JSON = "application/json"
_TYPES = {".csv": CSV, ".ndjson": NDJSON, ".jsonl": NDJSON, ".json": JSON}
_CHUNK = 256 * 1024


class AppcuesError(Exception):
    """An error answer: the Problem Details fields (``status``, ``title``, ``detail``, ``type``)
    and the whole ``body`` and ``response``."""

    def __init__(self, status: int, title: str | None, detail: str | None, body: Any = None, response=None):
        super().__init__(f"{status} {title or ''}: {detail or ''}".strip())
        self.status = status
        self.title = title
        self.detail = detail
        self.body = body
        self.response = response

    @property
    def type(self) -> str | None:
        return self.body.get("type") if isinstance(self.body, dict) else None

    @classmethod
    def from_response(cls, response: httpx.Response) -> "AppcuesError":
        try:
            body = response.json()
        except ValueError:
            body = response.text
        fields = body if isinstance(body, dict) else {}
        return cls(
            int(fields.get("status") or response.status_code),
            fields.get("title") or response.reason_phrase,
            fields.get("detail") or (body if isinstance(body, str) else None),
            body,
            response,
        )


class _Http:
    """The shared HTTP plumbing: base URL, retries of 429, errors as ``AppcuesError``."""

    def __init__(self, base_url: str, *, auth=None, headers=None, timeout: float, max_retries: int, transport=None):
        self.max_retries = max_retries
        self.http = httpx.Client(base_url=base_url.rstrip("/"), auth=auth, headers=headers, timeout=timeout, transport=transport)

    def close(self) -> None:
        self.http.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()

    def _send(self, method: str, url: str, *, retryable: bool = True, **kwargs) -> httpx.Response:
        attempt = 0
        while True:
            response = self.http.request(method, url, **kwargs)
            if response.status_code == 429 and retryable and attempt < self.max_retries:
                attempt += 1
                time.sleep(_retry_after(response, attempt))
                continue
            if response.status_code >= 400:
                raise AppcuesError.from_response(response)
            return response


def _retry_after(response: httpx.Response, attempt: int) -> float:
    value = response.headers.get("retry-after", "")
    try:
        return max(0.0, float(value))
    except ValueError:
        return min(30.0, 0.5 * 2**attempt)


def _decoded(response: httpx.Response, csv: bool):
    if csv:
        return response.text
    return response.json() if response.content else None


class Client(_Http):
    """The Appcues Public API v2 for one account (see the module docstring)."""

    def __init__(
        self,
        base_url: str | None = None,
        key: str | None = None,
        secret: str | None = None,
        account_id: str | None = None,
        *,
        timeout: float = 60.0,
        max_retries: int = 5,
        transport: httpx.BaseTransport | None = None,
    ):
        self.base_url = base_url or os.environ.get("APPCUES_BASE_URL") or DEFAULT_BASE_URL
        self.key = key or os.environ.get("APPCUES_API_KEY")
        self.secret = secret or os.environ.get("APPCUES_API_SECRET")
        self.account_id = account_id or os.environ.get("APPCUES_ACCOUNT_ID")
        if not (self.key and self.secret and self.account_id):
            raise ValueError("key, secret and account_id are required (or APPCUES_API_KEY, APPCUES_API_SECRET, APPCUES_ACCOUNT_ID)")
        super().__init__(self.base_url, auth=(self.key, self.secret), timeout=timeout, max_retries=max_retries, transport=transport)

    def _url(self, *parts: str) -> str:
        return "/v2/accounts/" + "/".join(quote(str(p), safe="") for p in (self.account_id, *parts))

    def _call(self, method: str, *parts: str, csv: bool = False, headers: dict | None = None, **kwargs):
        headers = {**(headers or {}), "Accept": CSV if csv else JSON}
        return _decoded(self._send(method, self._url(*parts), headers=headers, **kwargs), csv)

    # -- flows -------------------------------------------------------------------------------

    def list_flows(self, *, csv: bool = False):
        return self._call("GET", "flows", csv=csv)

    def get_flow(self, flow_id: str, *, csv: bool = False):
        return self._call("GET", "flows", flow_id, csv=csv)

    def publish_flow(self, flow_id: str) -> dict:
        return self._call("POST", "flows", flow_id, "publish")

    def unpublish_flow(self, flow_id: str) -> dict:
        return self._call("POST", "flows", flow_id, "unpublish")

    # -- tags --------------------------------------------------------------------------------

    def list_tags(self, *, csv: bool = False):
        return self._call("GET", "tags", csv=csv)

    def get_tag(self, tag_id: str, *, csv: bool = False):
        return self._call("GET", "tags", tag_id, csv=csv)

    # -- experiences: checklists, pins, banners, launchpads, mobile, embeds, nps, flows-v2 ----

    def list_checklists(self, *, csv: bool = False):
        return self._call("GET", "checklists", csv=csv)

    def get_checklist(self, checklist_id: str, *, csv: bool = False):
        return self._call("GET", "checklists", checklist_id, csv=csv)

    def publish_checklist(self, checklist_id: str) -> dict:
        return self._call("POST", "checklists", checklist_id, "publish")

    def unpublish_checklist(self, checklist_id: str) -> dict:
        return self._call("POST", "checklists", checklist_id, "unpublish")

    def list_pins(self, *, csv: bool = False):
        return self._call("GET", "pins", csv=csv)

    def get_pin(self, pin_id: str, *, csv: bool = False):
        return self._call("GET", "pins", pin_id, csv=csv)

    def publish_pin(self, pin_id: str) -> dict:
        return self._call("POST", "pins", pin_id, "publish")

    def unpublish_pin(self, pin_id: str) -> dict:
        return self._call("POST", "pins", pin_id, "unpublish")

    def list_banners(self, *, csv: bool = False):
        return self._call("GET", "banners", csv=csv)

    def get_banner(self, banner_id: str, *, csv: bool = False):
        return self._call("GET", "banners", banner_id, csv=csv)

    def publish_banner(self, banner_id: str) -> dict:
        return self._call("POST", "banners", banner_id, "publish")

    def unpublish_banner(self, banner_id: str) -> dict:
        return self._call("POST", "banners", banner_id, "unpublish")

    def list_launchpads(self, *, csv: bool = False):
        return self._call("GET", "launchpads", csv=csv)

    def get_launchpad(self, launchpad_id: str, *, csv: bool = False):
        return self._call("GET", "launchpads", launchpad_id, csv=csv)

    def publish_launchpad(self, launchpad_id: str) -> dict:
        return self._call("POST", "launchpads", launchpad_id, "publish")

    def unpublish_launchpad(self, launchpad_id: str) -> dict:
        return self._call("POST", "launchpads", launchpad_id, "unpublish")

    def list_mobile_flows(self, *, csv: bool = False):
        return self._call("GET", "mobile", csv=csv)

    def get_mobile_flow(self, mobile_id: str, *, csv: bool = False):
        return self._call("GET", "mobile", mobile_id, csv=csv)

    def publish_mobile_flow(self, mobile_id: str) -> dict:
        return self._call("POST", "mobile", mobile_id, "publish")

    def unpublish_mobile_flow(self, mobile_id: str) -> dict:
        return self._call("POST", "mobile", mobile_id, "unpublish")

    def list_embeds(self, *, csv: bool = False):
        return self._call("GET", "embeds", csv=csv)

    def get_embed(self, embed_id: str, *, csv: bool = False):
        return self._call("GET", "embeds", embed_id, csv=csv)

    def publish_embed(self, embed_id: str) -> dict:
        return self._call("POST", "embeds", embed_id, "publish")

    def unpublish_embed(self, embed_id: str) -> dict:
        return self._call("POST", "embeds", embed_id, "unpublish")

    def list_nps_surveys(self, *, csv: bool = False):
        return self._call("GET", "nps", csv=csv)

    def get_nps_survey(self, nps_id: str, *, csv: bool = False):
        return self._call("GET", "nps", nps_id, csv=csv)

    def publish_nps_survey(self, nps_id: str) -> dict:
        return self._call("POST", "nps", nps_id, "publish")

    def unpublish_nps_survey(self, nps_id: str) -> dict:
        return self._call("POST", "nps", nps_id, "unpublish")

    def list_flows_v2(self, *, csv: bool = False):
        return self._call("GET", "flows-v2", csv=csv)

    def get_flow_v2(self, flow_id: str, *, csv: bool = False):
        return self._call("GET", "flows-v2", flow_id, csv=csv)

    def publish_flow_v2(self, flow_id: str) -> dict:
        return self._call("POST", "flows-v2", flow_id, "publish")

    def unpublish_flow_v2(self, flow_id: str) -> dict:
        return self._call("POST", "flows-v2", flow_id, "unpublish")

    def get_screenshots(self, resource_id: str) -> bytes:
        """Screenshots of a draft flow, experience or checklist: the ZIP file's bytes."""
        return self._send("GET", self._url("screenshots", resource_id)).content

    # -- SDK keys ----------------------------------------------------------------------------

    def list_sdk_keys(self, *, csv: bool = False):
        return self._call("GET", "sdk_keys", csv=csv)

    def create_sdk_key(self, name: str, *, tag_field: str | None = None) -> dict:
        """201: the key with its ``secret``, shown only here."""
        body = {"name": name} if tag_field is None else {"name": name, "tag_field": tag_field}
        return self._call("POST", "sdk_keys", json=body)

    def get_sdk_key(self, sdk_key_id: str, *, csv: bool = False):
        return self._call("GET", "sdk_keys", sdk_key_id, csv=csv)

    def delete_sdk_key(self, sdk_key_id: str) -> dict:
        return self._call("DELETE", "sdk_keys", sdk_key_id)

    def update_sdk_key(self, sdk_key_id: str, *, tag_field: str | None) -> dict:
        """``PATCH sdk_keys/{id}``: sets ``tag_field`` (None clears it)."""
        return self._call("PATCH", "sdk_keys", sdk_key_id, json={"tag_field": tag_field})

    def set_sdk_key_tag_field(self, sdk_key_id: str, tag_field: str | None) -> dict:
        """``PATCH sdk_keys/{id}/tag_field`` (None clears it)."""
        return self._call("PATCH", "sdk_keys", sdk_key_id, "tag_field", json={"tag_field": tag_field})

    def enable_enforcement_mode(self, sdk_key_id: str) -> dict:
        return self._call("POST", "sdk_keys", sdk_key_id, "enforcement_mode", "enable")

    def disable_enforcement_mode(self, sdk_key_id: str) -> dict:
        return self._call("POST", "sdk_keys", sdk_key_id, "enforcement_mode", "disable")

    def enable_secure_data_ingest(self, sdk_key_id: str) -> dict:
        return self._call("POST", "sdk_keys", sdk_key_id, "secure_data_ingest", "enable")

    def disable_secure_data_ingest(self, sdk_key_id: str) -> dict:
        return self._call("POST", "sdk_keys", sdk_key_id, "secure_data_ingest", "disable")

    # -- segments ----------------------------------------------------------------------------

    def list_segments(self, *, csv: bool = False):
        return self._call("GET", "segments", csv=csv)

    def create_segment(self, name: str, description: str | None = None) -> dict:
        body = {"name": name} if description is None else {"name": name, "description": description}
        return self._call("POST", "segments", json=body)

    def get_segment(self, segment_id: str, *, csv: bool = False):
        return self._call("GET", "segments", segment_id, csv=csv)

    def update_segment(self, segment_id: str, *, name: str | None = None, description: str | None = None) -> dict:
        body = {k: v for k, v in (("name", name), ("description", description)) if v is not None}
        return self._call("PATCH", "segments", segment_id, json=body)

    def delete_segment(self, segment_id: str) -> dict:
        return self._call("DELETE", "segments", segment_id)

    def add_user_ids(self, segment_id: str, user_ids, *, content_type: str | None = None, idempotency_key: str | None = None) -> dict:
        """202 + job. ``user_ids``: a list of ids, an iterable of ids (streamed), a file path or a binary file."""
        return self._bulk(("segments", segment_id, "add_user_ids"), user_ids, content_type, idempotency_key, user_ids=True)

    def remove_user_ids(self, segment_id: str, user_ids, *, content_type: str | None = None, idempotency_key: str | None = None) -> dict:
        return self._bulk(("segments", segment_id, "remove_user_ids"), user_ids, content_type, idempotency_key, user_ids=True)

    def export_segment_members(self, segment_id: str, *, property_names: list | None = None, format: str | None = None,
                               email=None, idempotency_key: str | None = None) -> dict:  # fmt: skip
        """202 + job: the segment's members with ``property_names`` of their profiles; the
        download link is on the job's ``Completed`` event (and emailed to ``email``, if given)."""
        body = {k: v for k, v in (("property_names", property_names), ("format", format), ("email", email)) if v is not None}
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else None
        return self._call("POST", "segments", segment_id, "segment_membership_export", json=body, headers=headers)

    # -- end users ---------------------------------------------------------------------------

    def get_profile(self, user_id: str, *, csv: bool = False):
        return self._call("GET", "users", user_id, "profile", csv=csv)

    def update_profile(self, user_id: str, attributes: dict) -> dict:
        return self._call("PATCH", "users", user_id, "profile", json=attributes)

    def delete_profile(self, user_id: str) -> dict:
        return self._call("DELETE", "users", user_id, "profile")

    def track(self, user_id: str, name: str, *, timestamp=None, attributes: dict | None = None,
              group_id: str | None = None, context: dict | None = None) -> dict:  # fmt: skip
        """Track one event at ``timestamp`` (an ISO 8601 string; default: now), optionally with
        the user's ``group_id`` and the event's ``context``."""
        if timestamp is None:
            timestamp = datetime.now(timezone.utc).isoformat(timespec="milliseconds")
        body: dict = {"name": name, "timestamp": timestamp}
        for field, value in (("attributes", attributes), ("group_id", group_id), ("context", context)):
            if value is not None:
                body[field] = value
        return self._call("POST", "users", user_id, "events", json=body)

    def events(self, user_id: str, *, limit: int | None = None, time_zone: str | None = None, csv: bool = False):
        """A user's events, most recent first."""
        params = {k: v for k, v in (("limit", limit), ("time_zone", time_zone)) if v is not None}
        return self._call("GET", "users", user_id, "events", params=params, csv=csv)

    # -- groups ------------------------------------------------------------------------------

    def get_group(self, group_id: str, *, csv: bool = False):
        return self._call("GET", "groups", group_id, "profile", csv=csv)

    def update_group(self, group_id: str, properties: dict) -> dict:
        """Merge ``properties`` into the group's, creating the group."""
        return self._call("PATCH", "groups", group_id, "profile", json=properties)

    def add_group_users(self, group_id: str, user_ids: list) -> dict:
        """Make ``group_id`` the current group of each of ``user_ids``."""
        return self._call("POST", "groups", group_id, "users", json={"user_ids": list(user_ids)})

    # -- account configuration ---------------------------------------------------------------

    def get_ingestion_rules(self, *, csv: bool = False):
        return self._call("GET", "ingestion_filtering_rules", csv=csv)

    def replace_ingestion_rules(self, rules: dict) -> dict:
        """``{"mode": "deny"|"allow", "event_names": [...], "profile_attributes": [...], "group_attributes": [...]}``."""
        return self._call("POST", "ingestion_filtering_rules", json=rules)

    # -- analytics ---------------------------------------------------------------------------

    def query_analytics(self, spec: dict) -> list:
        """The rows of an analytics query (at most 1000; see docs/analytics.md for ``spec``)."""
        return self._call("POST", "analytics", "query", json=spec)

    def create_analytics_export(self, spec: dict) -> dict:
        """202 ``{"job_id", "status"}``: every row of the query, as a JSON file."""
        return self._call("POST", "analytics", "exports", json=spec)

    def get_analytics_export(self, job_id: str) -> dict:
        """The export's status and, once done, a fresh download link (``download``)."""
        return self._call("GET", "analytics", "exports", job_id)

    # -- bulk --------------------------------------------------------------------------------

    def import_events(self, rows, *, content_type: str | None = None, idempotency_key: str | None = None) -> dict:
        """202 + job. ``rows``: event dicts (streamed as NDJSON), a file path (.csv, .ndjson, .json) or a binary file."""
        return self._bulk(("import", "events"), rows, content_type, idempotency_key)

    def import_profiles(self, rows, *, content_type: str | None = None, idempotency_key: str | None = None) -> dict:
        return self._bulk(("import", "profiles"), rows, content_type, idempotency_key)

    def import_groups(self, rows, *, content_type: str | None = None, idempotency_key: str | None = None) -> dict:
        """202 + job. ``rows``: group dicts (``group_id`` and properties), a file path or a binary file."""
        return self._bulk(("import", "groups"), rows, content_type, idempotency_key)

    def export_events(self, *, email, format: str = "csv", conditions: list | None = None, start_time=None,
                      end_time=None, idempotency_key: str | None = None, **options) -> dict:  # fmt: skip
        """202 + job; the download link is emailed. Extra spec fields go in ``options``."""
        body = {"email": email, "format": format, "conditions": conditions or [], **options}
        if start_time is not None:
            body["start_time"] = start_time
        if end_time is not None:
            body["end_time"] = end_time
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else None
        return self._call("POST", "export", "events", json=body, headers=headers)

    def _bulk(self, parts, data, content_type, idempotency_key, *, user_ids: bool = False) -> dict:
        body, kind, retryable = _body_of(data, content_type, user_ids)
        headers = {"Content-Type": kind}
        if idempotency_key:
            headers["Idempotency-Key"] = idempotency_key
        return self._call("POST", *parts, content=body, headers=headers, retryable=retryable)

    def download(self, url: str, to=None) -> bytes | None:
        """An export file by its link (``download_url``; the link is the credential): the bytes,
        or — with ``to``, a path or a binary file — streamed there."""
        with self.http.stream("GET", url, auth=None) as response:  # no API credentials: the link is one
            if response.status_code >= 400:
                response.read()
                raise AppcuesError.from_response(response)
            if to is None:
                return response.read()
            out = open(to, "wb") if isinstance(to, (str, os.PathLike)) else to
            try:
                for chunk in response.iter_bytes():
                    out.write(chunk)
            finally:
                if out is not to:
                    out.close()
        return None

    # -- jobs --------------------------------------------------------------------------------

    def list_jobs(self, *, csv: bool = False):
        return self._call("GET", "jobs", csv=csv)

    def get_job(self, job_id: str, *, csv: bool = False):
        return self._call("GET", "jobs", job_id, csv=csv)

    def wait(self, job, *, timeout: float = 600.0, interval: float = 0.1, on_poll=None) -> dict:
        """Poll a job (its id, or the 202 answer that started it) until it is no longer
        ``IN_PROGRESS``; returns it. ``on_poll(job)`` is called after every poll (progress)."""
        job_id = job.get("job_id") or job.get("id") if isinstance(job, dict) else job
        deadline = time.monotonic() + timeout
        delay = interval
        while True:
            current = self.get_job(job_id)
            if on_poll is not None:
                on_poll(current)
            if current.get("status") != "IN_PROGRESS":
                return current
            if time.monotonic() + delay > deadline:
                raise TimeoutError(f"job {job_id} still IN_PROGRESS after {timeout:.0f}s")
            time.sleep(delay)
            delay = min(2.0, delay * 1.5)


def _body_of(data, content_type: str | None, user_ids: bool):
    """(content, content type, whether a retry can resend it)."""
    if isinstance(data, (str, os.PathLike)):
        path = Path(data)
        kind = content_type or _TYPES.get(path.suffix.lower(), NDJSON)
        return _read_file(path), kind, False
    if isinstance(data, (bytes, bytearray)):
        return bytes(data), content_type or NDJSON, True
    if hasattr(data, "read"):
        return _chunks(data), content_type or NDJSON, False
    if user_ids and isinstance(data, (list, tuple)):
        return json.dumps({"user_ids": list(data)}).encode(), JSON, True
    return _ndjson(data), NDJSON, False


def _read_file(path: Path) -> Iterator[bytes]:
    with open(path, "rb") as handle:
        yield from _chunks(handle)


def _chunks(handle: IO[bytes]) -> Iterator[bytes]:
    while chunk := handle.read(_CHUNK):
        yield chunk if isinstance(chunk, bytes) else chunk.encode()


def _ndjson(rows: Iterable) -> Iterator[bytes]:
    batch: list[bytes] = []
    size = 0
    for row in rows:
        line = json.dumps(row, separators=(",", ":")).encode() + b"\n"
        batch.append(line)
        size += len(line)
        if size >= _CHUNK:
            yield b"".join(batch)
            batch, size = [], 0
    if batch:
        yield b"".join(batch)


class Control(_Http):
    """opencues' control API (``/-/``): ``base_url`` is the server's root (default
    ``OPENCUES_TEST_URL``, then ``APPCUES_BASE_URL``), ``admin_token`` its admin token (default
    ``OPENCUES_ADMIN_TOKEN``)."""

    def __init__(self, base_url: str | None = None, admin_token: str | None = None, *, timeout: float = 120.0,
                 transport: httpx.BaseTransport | None = None):  # fmt: skip
        self.base_url = base_url or os.environ.get("OPENCUES_TEST_URL") or os.environ.get("APPCUES_BASE_URL")
        if not self.base_url:
            raise ValueError("base_url is required (or OPENCUES_TEST_URL)")
        self.admin_token = admin_token or os.environ.get("OPENCUES_ADMIN_TOKEN")
        headers = {"Authorization": f"Bearer {self.admin_token}"} if self.admin_token else None
        super().__init__(self.base_url, headers=headers, timeout=timeout, max_retries=0, transport=transport)

    def _call(self, method: str, path: str, **kwargs):
        response = self._send(method, path, **kwargs)
        return response.json() if response.content else None

    def health(self) -> dict:
        return self._call("GET", "/-/health")

    def ready(self) -> dict:
        return self._call("GET", "/-/ready")

    def create_account(self, id: str | None = None, *, name: str | None = None, key: str | None = None,
                       secret: str | None = None, read_only: bool = False) -> dict:  # fmt: skip
        body = {k: v for k, v in (("id", id), ("name", name), ("key", key), ("secret", secret)) if v is not None}
        return self._call("POST", "/-/accounts", json={**body, "read_only": read_only})

    def client(self, account: dict, **kwargs) -> Client:
        """A ``Client`` for an account made by ``create_account``."""
        return Client(self.base_url, account["key"], account["secret"], account["id"], **kwargs)

    def delete_account(self, account_id: str) -> dict:
        return self._call("DELETE", f"/-/accounts/{quote(account_id, safe='')}")

    def reset(self) -> dict:
        return self._call("POST", "/-/reset")

    def reset_account(self, account_id: str) -> dict:
        return self._call("POST", f"/-/accounts/{quote(account_id, safe='')}/reset")

    def create_snapshot(self, name: str, account_id: str | None = None) -> dict:
        body = {"name": name} if account_id is None else {"name": name, "account_id": account_id}
        return self._call("POST", "/-/snapshots", json=body)

    def list_snapshots(self) -> list:
        return self._call("GET", "/-/snapshots")

    def get_snapshot(self, name: str) -> bytes:
        return self._send("GET", f"/-/snapshots/{quote(name, safe='')}").content

    def restore_snapshot(self, name: str) -> dict:
        return self._call("POST", f"/-/snapshots/{quote(name, safe='')}/restore")

    def delete_snapshot(self, name: str) -> dict:
        return self._call("DELETE", f"/-/snapshots/{quote(name, safe='')}")

    def seed(self, snapshot) -> dict:
        """Load a snapshot file: a path, bytes or a decoded document."""
        if isinstance(snapshot, dict):
            snapshot = json.dumps(snapshot).encode()
        elif isinstance(snapshot, (str, os.PathLike)):
            snapshot = Path(snapshot).read_bytes()
        return self._call("POST", "/-/seed", content=snapshot, headers={"Content-Type": JSON})

    def add_fault(self, path: str, **fields) -> dict:
        """``add_fault("*/segments*", status=503, times=1)``; fields as ``POST /-/faults``."""
        return self._call("POST", "/-/faults", json={"path": path, **fields})

    def list_faults(self) -> list:
        return self._call("GET", "/-/faults")

    def remove_fault(self, fault_id: str) -> dict:
        return self._call("DELETE", f"/-/faults/{quote(fault_id, safe='')}")

    def clear_faults(self) -> dict:
        return self._call("DELETE", "/-/faults")

    def set_job_mode(self, account_id: str, mode: str) -> dict:
        return self._call("PUT", f"/-/accounts/{quote(account_id, safe='')}/job-mode", json={"mode": mode})

    def run_job(self, job_id: str) -> dict:
        return self._call("POST", f"/-/jobs/{quote(job_id, safe='')}/run")

    def fail_job(self, job_id: str, reason: str) -> dict:
        return self._call("POST", f"/-/jobs/{quote(job_id, safe='')}/fail", json={"reason": reason})

    def requests(self, *, path: str | None = None, account_id: str | None = None, limit: int | None = None) -> list:
        params = {k: v for k, v in (("path", path), ("account_id", account_id), ("limit", limit)) if v is not None}
        return self._call("GET", "/-/requests", params=params)

    def clear_requests(self) -> dict:
        return self._call("DELETE", "/-/requests")

    def outbox(self) -> list:
        return self._call("GET", "/-/outbox")

    def outbox_message(self, message_id: str) -> bytes:
        return self._send("GET", f"/-/outbox/{quote(message_id, safe='')}").content

    def clear_outbox(self) -> dict:
        return self._call("DELETE", "/-/outbox")
