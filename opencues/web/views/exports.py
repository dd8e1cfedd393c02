"""``POST export/events`` (202 + an ``Export Events`` job) and the signed download link.

The download is served without API credentials: the signed token in the URL is the credential
(``opencues.links``). Files are streamed from the store in chunks. A gzip-compressed export is
sent as stored with ``Content-Encoding: gzip`` to clients that accept gzip, and decompressed on
the fly for clients that do not, so the saved file is always the plain ``.csv``/``.ndjson``.
"""

from __future__ import annotations

import gzip
import hashlib

import orjson
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import FileResponse, StreamingResponse

from opencues import idempotency, jobs, links
from opencues.errors import ApiError
from opencues.web.auth import authorize
from opencues.web.bodies import read_json
from opencues.web.responses import accepted
from opencues.web.urls import account_url, base_url
from opencues.web.views.imports import idempotency_key

CHUNK_BYTES = 256 * 1024


async def export_events(request: Request, account_id: str):
    # Exporting reads data: read-only keys may export too.
    authorize(request, account_id)
    key = idempotency_key(request)
    body = await read_json(request)
    settings = request.app.state.settings
    from opencues import exports  # (with the job machinery: on first use)

    export = exports.validate_request(body, max_rows=settings.export_max_rows)
    body_hash = hashlib.sha256(orjson.dumps(body, option=orjson.OPT_SORT_KEYS)).hexdigest()
    submitted = jobs.submit(
        request.app.state.db, account_id, exports.JOB_KIND,
        params=exports.job_params(export, base_url(request)),
        idempotency_key=key, request_hash=idempotency.request_hash(request.method, request.url.path, body_hash),
        ttl_hours=settings.idempotency_ttl_hours,
    )  # fmt: skip
    request.app.state.wake_workers()
    return accepted(request, submitted.job_id, account_url(request, account_id, "jobs", submitted.job_id))


async def download(request: Request, token: str):
    link = links.verify(links.server_secret(request.app.state.settings), token)
    store = request.app.state.file_store
    if not await run_in_threadpool(store.exists, link.key):
        raise ApiError(404, "this export file no longer exists")
    compressed = link.key.endswith(".gz")
    plain_key = link.key[:-3] if compressed else link.key
    from opencues import exports  # (with the job machinery: on first use)

    media_type = exports.MEDIA_TYPES["csv" if plain_key.endswith(".csv") else "json"]
    if plain_key.endswith(".json"):  # an analytics export: one JSON array
        media_type = "application/json"
    disposition = {"Content-Disposition": f'attachment; filename="{link.filename}"', "Cache-Control": "private, no-store"}
    as_stored = not compressed or _accepts_gzip(request)
    headers = dict(disposition)
    if compressed:
        headers["Vary"] = "Accept-Encoding"
        if as_stored:
            headers["Content-Encoding"] = "gzip"
    if hasattr(store, "path"):  # a local file: sendfile, ranges and all
        path = store.path(link.key)
        if as_stored:
            return FileResponse(path, media_type=media_type, headers=headers)
        return StreamingResponse(_gunzip(open(path, "rb")), media_type=media_type, headers=headers)
    # An object store: streamed from it in chunks, never whole in memory.
    stream = await run_in_threadpool(store.open, link.key)
    if as_stored:
        headers["Content-Length"] = str(await run_in_threadpool(store.size, link.key))
        return StreamingResponse(_chunks(stream), media_type=media_type, headers=headers)
    return StreamingResponse(_gunzip(stream), media_type=media_type, headers=headers)


def _chunks(handle):
    with handle:
        while chunk := handle.read(CHUNK_BYTES):
            yield chunk


def _accepts_gzip(request: Request) -> bool:
    for item in request.headers.get("accept-encoding", "").split(","):
        name, _, params = item.strip().partition(";")
        if name.strip().lower() in ("gzip", "x-gzip", "*") and params.replace(" ", "") not in ("q=0", "q=0.0", "q=0.00", "q=0.000"):
            return True
    return False


def _gunzip(raw):
    with raw, gzip.GzipFile(fileobj=raw, mode="rb") as handle:
        while chunk := handle.read(CHUNK_BYTES):
            yield chunk
