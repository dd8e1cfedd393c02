"""Exception handlers: every error leaves the server as Problem Details JSON, never HTML or a trace."""

from __future__ import annotations

import logging

from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request
from starlette.routing import Match

from opencues.errors import ApiError
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


async def http_error(request: Request, exc: StarletteHTTPException):
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
    if database_unavailable(exc):
        log.error("database unavailable on %s %s: %s", request.method, request.url.path, exc)
        return problem_response(503, "the database is unavailable; retry in a moment", {"Retry-After": "1"})
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return problem_response(500, "something went wrong on our side; it has been logged")


_UNAVAILABLE_STATES = frozenset({"57P01", "57P02", "57P03", "53300"})


def database_unavailable(exc: BaseException) -> bool:
    """Whether ``exc`` is the database going away — a dropped or refused connection, a server
    shutting down, SQLite's lock held past its timeout — rather than a bug: a client should retry
    (503), and the next request gets a fresh connection (SQLAlchemy's pool and ``Direct`` drop
    broken ones)."""
    from sqlalchemy.exc import DBAPIError

    if isinstance(exc, DBAPIError):
        if exc.connection_invalidated:
            return True
        exc = exc.orig
    module = type(exc).__module__.split(".", 1)[0]
    if module == "psycopg":
        import psycopg

        if not isinstance(exc, (psycopg.OperationalError, psycopg.InterfaceError)):
            return False
        # No SQLSTATE: the client lost the connection. 08: connection exceptions; 57P01-03: the
        # server shut down, crashed or is starting; 53300: too many connections.
        state = getattr(exc, "sqlstate", None)
        return state is None or state.startswith("08") or state in _UNAVAILABLE_STATES
    if module == "sqlite3":
        return "locked" in str(exc) or "busy" in str(exc)
    return False


def install(app) -> None:
    app.add_exception_handler(ApiError, api_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(Exception, unexpected_error)
