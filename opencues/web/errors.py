"""Exception handlers: every error leaves the server as Problem Details JSON, never HTML or a trace."""

from __future__ import annotations

import logging
import time

from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request
from starlette.routing import Match

from opencues.errors import ApiError, storage_fault
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


class OutageLog:
    """One warning per outage rather than one per request: while the disk stays full every write
    fails, and a line for each would flood the log (on that same disk, perhaps). At most one line
    per ``interval`` seconds, which counts the ones held back."""

    def __init__(self, interval: float = 60.0, clock=time.monotonic):
        self.interval = interval
        self.clock = clock
        self._quiet_until = 0.0
        self._held = 0

    def warning(self, message: str) -> None:
        now = self.clock()
        if now < self._quiet_until:
            self._held += 1
            return
        if self._held:
            message += f" ({self._held} more like it since the last such line)"
        self._held, self._quiet_until = 0, now + self.interval
        log.warning(message)


_OUTAGES = OutageLog()  # for errors outside ``ContainUnexpectedErrors`` (each app's layer has its own)


def unexpected_response(method: str, path: str, exc: Exception, outages: OutageLog = _OUTAGES):
    """An exception no handler expected: 507/503 when the disk refused a write (an outage, not a
    bug: a warning in ``outages``), else a 500 with its traceback logged (never sent)."""
    fault = storage_fault(exc)
    if fault is not None:
        outages.warning(f"{method} {path}: {fault.detail} ({type(exc).__name__}: {exc})")
        return problem_response(fault.status, fault.detail, fault.headers)
    if database_unavailable(exc):
        log.error("database unavailable on %s %s: %s", method, path, exc)
        return problem_response(503, "the database is unavailable; retry in a moment", {"Retry-After": "1"})
    log.error("unhandled error on %s %s", method, path, exc_info=exc)
    return problem_response(500, "something went wrong on our side; it has been logged")


async def unexpected_error(request: Request, exc: Exception):
    return unexpected_response(request.method, request.url.path, exc)


class ContainUnexpectedErrors:
    """ASGI layer that answers an unexpected exception itself, so the connection stays usable.

    Starlette's outermost layer renders the 500 and then re-raises for the server to log, and
    uvicorn answers a re-raised exception by closing the connection — after a response sent
    without ``Connection: close``, so a keep-alive client's next request on it fails. Here the
    exception ends with the response. One raised after the response started cannot be answered
    any more: it goes on to the server, which closes the connection (the only honest ending of
    a half-sent response)."""

    def __init__(self, app):
        self.app = app
        self.outages = OutageLog()

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = False

        async def send_and_note(message):
            nonlocal started
            started = True
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        except Exception as exc:
            if started:
                raise
            response = unexpected_response(scope["method"], scope["path"], exc, self.outages)
            await response(scope, receive, send)


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
    app.add_exception_handler(Exception, unexpected_error)  # what fails outside the layer below
    app.add_middleware(ContainUnexpectedErrors)
