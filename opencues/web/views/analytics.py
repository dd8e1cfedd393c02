"""``POST analytics/query``, ``POST analytics/exports``, ``GET analytics/exports/{job_id}`` (spec §9).

Every response of these routes — success or error — carries the account's analytics rate-limit
headers (``X-RateLimit-Limit``, ``-Remaining``, ``-Reset`` in epoch seconds); the export routes also
``X-Concurrency-Limit``/``-Used``. The limit (OPENCUES_ANALYTICS_RATE_LIMIT) is per account,
counted after authentication, on the same limiter storage as the per-key limit. Queries run in a
thread so the event loop keeps serving while the database works.
"""

from __future__ import annotations

import math
import time

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request

from opencues.errors import ApiError
from opencues.web.auth import analytics_rate_limiter, authorize
from opencues.web.bodies import read_json
from opencues.web.responses import json_response
from opencues.web.urls import base_url


def _limit_key(account_id: str) -> str:
    return f"analytics/{account_id}"


def _rate_headers(request: Request, account_id: str, *, hit: bool) -> dict[str, str]:
    """Count this request (``hit``) against the account's analytics limit and describe the limit;
    429 (with the headers and ``Retry-After``) when it is exhausted."""
    limiter = analytics_rate_limiter(request.app.state)
    rate = limiter.rate
    allowed, remaining, reset_time = limiter.window(_limit_key(account_id), hit=hit)
    reset = max(math.ceil(reset_time), math.floor(time.time()) + 1)
    headers = {"X-RateLimit-Limit": str(rate.amount), "X-RateLimit-Remaining": str(max(0, remaining)),
               "X-RateLimit-Reset": str(reset)}  # fmt: skip
    if not allowed:
        retry_after = max(1, math.ceil(reset_time - time.time()))
        raise ApiError(429, f"rate limited: at most {rate} analytics requests per account; retry after {retry_after}s",
                       {**headers, "Retry-After": str(retry_after)})  # fmt: skip
    return headers


async def _handle(request: Request, account_id: str, work, *, concurrency: bool = False):
    """Authorize, count, run ``work(headers)``; every outcome leaves with the limit headers."""
    headers: dict[str, str] = {}
    try:
        authorize(request, account_id)
        headers = _rate_headers(request, account_id, hit=True)
        if concurrency:
            headers.update(await _concurrency_headers(request, account_id))
        return await work(headers)
    except ApiError as exc:
        if not headers:
            try:
                headers = _rate_headers(request, account_id, hit=False)
            except Exception:  # noqa: BLE001 - never let the headers hide the error itself
                headers = {}
            if concurrency and exc.status not in (401, 403):
                headers.update(await _concurrency_headers(request, account_id))
        exc.headers = {**headers, **exc.headers}
        raise


async def _concurrency_headers(request: Request, account_id: str, used: int | None = None) -> dict[str, str]:
    from opencues import analytics  # (its query builder and models: on first use)

    if used is None:
        used = await run_in_threadpool(analytics.unfinished_exports, request.app.state.db, account_id)
    return {"X-Concurrency-Limit": str(request.app.state.settings.analytics_export_concurrency), "X-Concurrency-Used": str(used)}


async def query(request: Request, account_id: str):
    from opencues import analytics  # (its query builder and models: on first use)

    async def work(headers):
        spec = analytics.parse_spec(await read_json(request))
        result = await run_in_threadpool(analytics.run_query, request.app.state.db, account_id, spec)
        if result.truncated:
            headers["X-Rows-Truncated"] = "true"
        return json_response(result.rows, headers=headers)

    return await _handle(request, account_id, work)


async def create_export(request: Request, account_id: str):
    from opencues import analytics  # (its query builder and models: on first use)

    async def work(headers):
        spec = analytics.parse_spec(await read_json(request), sync=False)
        settings = request.app.state.settings
        job_id = await run_in_threadpool(
            analytics.submit_export, request.app.state.db, account_id, spec, limit=settings.analytics_export_concurrency
        )
        request.app.state.wake_workers()
        headers.update(await _concurrency_headers(request, account_id))
        return json_response({"job_id": job_id, "status": "queued"}, status=202, headers=headers)

    return await _handle(request, account_id, work, concurrency=True)


async def get_export(request: Request, account_id: str, job_id: str):
    from opencues import analytics  # (its query builder and models: on first use)

    async def work(headers):
        app = request.app.state
        status = await run_in_threadpool(
            analytics.export_status, app.db, app.file_store, app.settings, account_id, job_id, base_url(request)
        )
        return json_response(status, headers=headers)

    return await _handle(request, account_id, work, concurrency=True)
