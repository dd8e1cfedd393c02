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

    # -- end users ---------------------------------------------------------------------------

    def get_profile(self, user_id: str, *, csv: bool = False):
        return self._call("GET", "users", user_id, "profile", csv=csv)

    def update_profile(self, user_id: str, attributes: dict) -> dict:
        return self._call("PATCH", "users", user_id, "profile", json=attributes)

    def delete_profile(self, user_id: str) -> dict:
        return self._call("DELETE", "users", user_id, "profile")

    def track(self, user_id: str, name: str, *, timestamp=None, attributes: dict | None = None) -> dict:
        """Track one event at ``timestamp`` (an ISO 8601 string; default: now)."""
        if timestamp is None:
            timestamp = datetime.now(timezone.utc).isoformat(timespec="milliseconds")
        body: dict = {"name": name, "timestamp": timestamp}
        if attributes is not None:
            body["attributes"] = attributes
        return self._call("POST", "users", user_id, "events", json=body)

    def events(self, user_id: str, *, limit: int | None = None, time_zone: str | None = None, csv: bool = False):
        """A user's events, most recent first."""
        params = {k: v for k, v in (("limit", limit), ("time_zone", time_zone)) if v is not None}
        return self._call("GET", "users", user_id, "events", params=params, csv=csv)

    # -- bulk --------------------------------------------------------------------------------

    def import_events(self, rows, *, content_type: str | None = None, idempotency_key: str | None = None) -> dict:
        """202 + job. ``rows``: event dicts (streamed as NDJSON), a file path (.csv, .ndjson, .json) or a binary file."""
        return self._bulk(("import", "events"), rows, content_type, idempotency_key)

    def import_profiles(self, rows, *, content_type: str | None = None, idempotency_key: str | None = None) -> dict:
        return self._bulk(("import", "profiles"), rows, content_type, idempotency_key)

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
