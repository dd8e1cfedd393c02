"""The one error type of opencues and its one wire shape (RFC 7807-style Problem Details).

Library code raises ``ApiError``; the web layer renders every error, including the framework's
own 404/405 and unexpected exceptions, through ``problem_body`` so clients always see
``{"type": "about:blank", "error": true, "status": ..., "title": ..., "detail": ...}``.
``type`` is RFC 9457's problem type: ``about:blank`` says the HTTP status is the whole story, so a
generic Problem Details client reads these bodies as well as one written for the vendor's API.
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


PROBLEM_TYPE = "about:blank"


def problem_body(status: int, detail: str) -> dict:
    return {"type": PROBLEM_TYPE, "error": True, "status": status, "title": status_title(status), "detail": detail}


def bad_request(detail: str) -> ApiError:
    return ApiError(400, detail)


def not_found(what: str) -> ApiError:
    return ApiError(404, f"{what} not found")
