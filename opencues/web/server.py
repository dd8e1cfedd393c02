"""How ``opencues serve`` runs uvicorn: its HTTP protocol, bounded and speaking Problem Details.

uvicorn's httptools protocol (the fast one, chosen deliberately rather than left to ``auto``)
reads a request head of any size — a 100 MB header is buffered whole before anything can refuse
it — and answers a request it cannot parse with plain text. ``ProblemHttpProtocol`` keeps that
protocol and adds, through its parser callbacks and its one error hook (``send_400_response``):

- a URL over ``max_url_bytes`` → 414, more than ``max_header_count`` headers or a head over
  ``max_header_bytes`` → 431, the connection closed before the rest is read;
- malformed HTTP (a bad request line, a control character in a header, …) → 400;

each as the API's Problem Details JSON with ``Connection: close``. The checks cost a counter per
header and per socket read, nothing per request beyond that.
"""

from __future__ import annotations

from functools import cache
from http import HTTPStatus

import orjson
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from opencues.errors import problem_body
from opencues.settings import Settings, load_settings


class _Refused(Exception):
    """Raised inside a parser callback to stop parsing; the parser reports it as a parse error."""


class ProblemHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with bounded request heads and Problem Details refusals."""

    settings: Settings | None = None  # None: read from the environment, as the app does

    @classmethod
    def configured(cls, settings: Settings) -> type["ProblemHttpProtocol"]:
        """This protocol with ``settings``' limits (for an in-process server; ``opencues serve``
        names the class by import path so that every server process reads its environment)."""
        return type(cls.__name__, (cls,), {"settings": settings})

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        settings = type(self).settings or _environment_settings()
        self.max_url_bytes = settings.max_url_bytes
        self.max_header_bytes = settings.max_header_bytes
        self.max_header_count = settings.max_header_count
        self.in_head = False  # between the start of a request and the end of its headers
        self.head_bytes = 0
        self.refusal: tuple[int, str] | None = None

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.in_head and not self.transport.is_closing():
            # httptools buffers a header's value until it ends: count what a head has sent so far.
            self.head_bytes += len(data)
            if self.head_bytes > self.max_header_bytes:
                self.refuse(431, f"the request's headers are larger than {self.max_header_bytes} bytes")
                self.send_400_response("")

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self.in_head = True
        self.head_bytes = 0

    def on_url(self, url: bytes) -> None:
        self.url += url
        if len(self.url) > self.max_url_bytes:
            raise self.refuse(414, f"the request URL is longer than {self.max_url_bytes} bytes")

    def on_header(self, name: bytes, value: bytes) -> None:
        super().on_header(name, value)
        if len(self.headers) > self.max_header_count:
            raise self.refuse(431, f"the request has more than {self.max_header_count} headers")

    def on_headers_complete(self) -> None:
        self.in_head = False
        super().on_headers_complete()

    def refuse(self, status: int, detail: str) -> _Refused:
        self.refusal = (status, detail)
        return _Refused(detail)

    def send_400_response(self, msg: str) -> None:
        """uvicorn's hook for a request it cannot parse (and ours for a refused head): answer
        Problem Details JSON, then close the connection."""
        status, detail = self.refusal or (400, "malformed HTTP request: it could not be parsed as HTTP/1.1")
        body = orjson.dumps(problem_body(status, detail))
        head = [f"HTTP/1.1 {status} {HTTPStatus(status).phrase}\r\n".encode()]
        for name, value in self.server_state.default_headers:
            head.append(name + b": " + value + b"\r\n")
        head.append(b"content-type: application/json\r\ncontent-length: %d\r\nconnection: close\r\n\r\n" % len(body))
        self.transport.write(b"".join(head) + body)
        self.transport.close()
        self.in_head = False


@cache
def _environment_settings() -> Settings:
    return load_settings()


def uvicorn_options(settings: Settings | None) -> dict:
    """uvicorn's options (besides the app, address and process count) for serving opencues.
    ``settings`` given here bind the protocol's limits; ``opencues serve`` passes none so each of
    its processes reads them from the environment, like the app."""
    return {
        "http": ProblemHttpProtocol.configured(settings) if settings is not None else f"{__name__}:ProblemHttpProtocol",
        "log_level": "info",
        "access_log": False,
        "ws": "none",  # the API has no WebSocket routes: not loading uvicorn's implementation saves start-up time
    }
