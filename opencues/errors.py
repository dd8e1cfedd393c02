"""The one error type of opencues and its one wire shape (RFC 7807-style Problem Details).

Library code raises ``ApiError``; the web layer renders every error, including the framework's
own 404/405 and unexpected exceptions, through ``problem_body`` so clients always see
``{"error": true, "status": ..., "title": ..., "detail": ...}``.
"""

from __future__ import annotations

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


def problem_body(status: int, detail: str) -> dict:
    return {"error": True, "status": status, "title": status_title(status), "detail": detail}


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
