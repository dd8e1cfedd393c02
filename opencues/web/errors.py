"""Exception handlers: every error leaves the server as Problem Details JSON, never HTML or a trace."""

from __future__ import annotations

import logging

from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request
from starlette.routing import Match

from opencues.errors import ApiError
from opencues.web.auth import authorize
from opencues.web.responses import problem_response

log = logging.getLogger("opencues")


async def api_error(_request: Request, exc: ApiError):
    return problem_response(exc.status, exc.detail, exc.headers)


def _allowed_methods(request: Request) -> list[str]:
    methods: set[str] = set()
    for route in request.app.router.routes:
        match, _ = route.matches({**request.scope, "method": "OPTIONS-PROBE"})
        if match != Match.NONE and getattr(route, "methods", None):
            methods |= set(route.methods)
    return sorted(methods)


ACCOUNT_PATH_PREFIX = "/v2/accounts/"


def _account_check(request: Request):
    """For a request under ``/v2/accounts/{account_id}/`` that no route answers (404 or 405):
    the auth error it deserves first, as the vendor's gateway does — 401 without valid
    credentials, 403 for another account's key — so an unknown path never tells an anonymous
    caller anything. None when the caller may hear the 404/405. Only unrouted requests get
    here, so routed ones (track's hot path) pay nothing."""
    path = request.scope["path"]  # decoded, as the router matched it
    if not path.startswith(ACCOUNT_PATH_PREFIX):
        return None
    account_id = path[len(ACCOUNT_PATH_PREFIX) :].split("/", 1)[0]
    if not account_id:
        return None
    try:
        authorize(request, account_id)
    except ApiError as denied:
        return problem_response(denied.status, denied.detail, denied.headers)
    return None


async def http_error(request: Request, exc: StarletteHTTPException):
    if exc.status_code in (404, 405):
        denied = _account_check(request)
        if denied is not None:
            return denied
    headers = dict(exc.headers or {})
    if exc.status_code == 404:
        detail = f"no such endpoint: {request.method} {request.url.path}"
    elif exc.status_code == 405:
        allowed = _allowed_methods(request)
        headers["Allow"] = ", ".join(allowed)
        detail = f"method {request.method} is not allowed here; allowed: {', '.join(allowed)}"
    else:
        detail = str(exc.detail)
    return problem_response(exc.status_code, detail, headers)


async def validation_error(_request: Request, exc: RequestValidationError):
    first = exc.errors()[0] if exc.errors() else {}
    location = ".".join(str(p) for p in first.get("loc", ()) if p not in ("body", "query", "path"))
    return problem_response(400, f"`{location}`: {first.get('msg', 'invalid value')}")


async def unexpected_error(request: Request, exc: Exception):
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return problem_response(500, "something went wrong on our side; it has been logged")


def install(app) -> None:
    app.add_exception_handler(ApiError, api_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(Exception, unexpected_error)
