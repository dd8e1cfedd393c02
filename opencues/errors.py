"""The one error type of opencues and its one wire shape (RFC 7807-style Problem Details).

Library code raises ``ApiError``; the web layer renders every error, including the framework's
own 404/405 and unexpected exceptions, through ``problem_body`` so clients always see
``{"type": "about:blank", "error": true, "status": ..., "title": ..., "detail": ...}``.
``type`` is RFC 9457's problem type: ``about:blank`` says the HTTP status is the whole story, so a
generic Problem Details client reads these bodies as well as one written for the vendor's API.
"""

from __future__ import annotations

import errno
from http import HTTPStatus


class ApiError(Exception):
    """A failure with an HTTP status and a human-readable detail naming the offending field."""

    def __init__(self, status: int, detail: str, headers: dict[str, str] | None = None):
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.headers = headers or {}

    @property
    def title(self) -> str:
        return status_title(self.status)


def status_title(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


PROBLEM_TYPE = "about:blank"


def problem_body(status: int, detail: str) -> dict:
    return {"type": PROBLEM_TYPE, "error": True, "status": status, "title": status_title(status), "detail": detail}


def bad_request(detail: str) -> ApiError:
    return ApiError(400, detail)


def not_found(what: str) -> ApiError:
    return ApiError(404, f"{what} not found")


def invalid_field(exc) -> ApiError:
    """A 400 naming the first field a pydantic model refused (``exc``: its ``ValidationError``)."""
    error = exc.errors(include_url=False)[0]
    where = ""
    for part in error["loc"]:
        where += f"[{part}]" if isinstance(part, int) else (f".{part}" if where else str(part))
    message = error["msg"]
    if error["type"] == "extra_forbidden":
        message = "is not a field of this body"
    elif error["type"] == "missing":
        message = "is required"
    return bad_request(f"`{where}` {message[:1].lower()}{message[1:]}" if where else f"request body: {message}")


# A full or read-only disk is an outage of the server's storage, not a bug: writes answer 507 or
# 503 (reads go on working) and it ends by itself when space returns. These are how the file
# store, SQLite and PostgreSQL report it.
_FULL_ERRNOS = {errno.ENOSPC, errno.EDQUOT}
_SQLITE_FULL, _SQLITE_READONLY = 13, 8  # primary result codes (the low byte of an extended code)
_PG_DISK_FULL, _PG_READ_ONLY = "53100", "25006"  # disk_full; read_only_sql_transaction


def storage_fault(exc: BaseException) -> ApiError | None:
    """The 507 (storage full) or 503 (storage read-only) for an exception that means the disk
    refused a write, looking through wrapped causes (SQLAlchemy's ``orig``); None otherwise."""
    seen: set[int] = set()
    pending: list[BaseException | None] = [exc]
    while pending:
        cause = pending.pop()
        if cause is None or id(cause) in seen:
            continue
        seen.add(id(cause))
        kind = _storage_fault_kind(cause)
        if kind == "full":
            return ApiError(507, "the server's storage is full, so nothing was written; reads still work: retry the write later")
        if kind == "read-only":
            return ApiError(
                503, "the server's storage is read-only, so nothing was written; reads still work: retry the write later",
                {"Retry-After": "60"},
            )  # fmt: skip
        pending.extend((getattr(cause, "orig", None), cause.__cause__, cause.__context__))
    return None


def _storage_fault_kind(exc: BaseException) -> str | None:
    if isinstance(exc, OSError) and exc.errno is not None:
        if exc.errno in _FULL_ERRNOS:
            return "full"
        return "read-only" if exc.errno == errno.EROFS else None
    code = getattr(exc, "sqlite_errorcode", None)  # sqlite3.Error
    if code is not None:
        if code & 0xFF == _SQLITE_FULL:
            return "full"
        return "read-only" if code & 0xFF == _SQLITE_READONLY else None
    sqlstate = getattr(exc, "sqlstate", None)  # psycopg.Error
    if isinstance(sqlstate, str):
        if sqlstate == _PG_DISK_FULL:
            return "full"
        return "read-only" if sqlstate == _PG_READ_ONLY else None
    return None
