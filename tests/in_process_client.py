"""An in-process HTTP client of an ASGI app for synchronous tests: one thread hop per request.

Starlette's ``TestClient`` (1.x) streams each response through its portal: about eight calls
across threads per request (events, a memory stream, a cancel scope, each body chunk), ~3 ms of
CPU a request on the project's machines against ~0.7 ms for the same request through httpx's own
``ASGITransport``. The unit tests send thousands of requests, so
this client keeps ``TestClient``'s interface and defaults and does the same work with httpx's
transport for apps (``httpx.ASGITransport``), ``asgi-lifespan`` for the app's start-up and
shut-down, and anyio's blocking portal for the event loop the app lives on — the app's
background tasks run there between requests, as under ``TestClient``. Each request is one
``portal.call``: the body is read in this thread first, the whole response in the loop's.

Responses are buffered (``ASGITransport`` hands back a body once the app has finished it): no
test here reads an endless stream in process.
"""

from __future__ import annotations

import contextlib

import anyio.from_thread
import httpx
from asgi_lifespan import LifespanManager


class InProcessClient(httpx.Client):
    """``httpx.Client`` bound to ``app``. Use it as a context manager to run the app's lifespan
    (start-up before the first request, shut-down at the end) on one event loop; outside one,
    each request runs on a loop of its own and the lifespan does not run, as with ``TestClient``."""

    __test__ = False  # not a test class, whatever pytest's name patterns say

    def __init__(
        self,
        app,
        base_url: str = "http://testserver",
        raise_server_exceptions: bool = True,
        follow_redirects: bool = True,
        headers: dict[str, str] | None = None,
        **kwargs,
    ):
        self.app = app
        self.portal: anyio.from_thread.BlockingPortal | None = None
        self._running = contextlib.ExitStack()
        asgi = httpx.ASGITransport(app=app, raise_app_exceptions=raise_server_exceptions, client=("testclient", 50000))
        super().__init__(
            base_url=base_url,
            transport=_OneHopTransport(self, asgi),
            follow_redirects=follow_redirects,
            headers={"user-agent": "testclient", **(headers or {})},
            **kwargs,
        )

    def __enter__(self) -> "InProcessClient":
        with contextlib.ExitStack() as running:
            self.portal = running.enter_context(anyio.from_thread.start_blocking_portal())
            running.callback(setattr, self, "portal", None)
            lifespan = self.portal.call(_lifespan_manager, self.app)
            running.enter_context(self.portal.wrap_async_context_manager(lifespan))
            self._running = running.pop_all()
        return self

    def __exit__(self, *exc_info) -> None:
        # The app's shut-down runs even when the block raised (LifespanManager skips it then, and
        # an app's worker threads would outlive the failed test), as under TestClient.
        self._running.__exit__(None, None, None)
        super().__exit__(*exc_info)


async def _lifespan_manager(app) -> LifespanManager:
    """Made on the app's loop, where it finds which async library runs it. Generous timeouts: a
    loaded machine can take seconds to open the app's database."""
    return LifespanManager(app, startup_timeout=60, shutdown_timeout=60)


class _OneHopTransport(httpx.BaseTransport):
    def __init__(self, client: InProcessClient, asgi: httpx.ASGITransport):
        self.client = client
        self.asgi = asgi

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        request.read()  # a body from an iterator becomes bytes, which the app's loop can read
        if self.client.portal is not None:
            return self.client.portal.call(self._send, request)
        with anyio.from_thread.start_blocking_portal() as portal:
            return portal.call(self._send, request)

    async def _send(self, request: httpx.Request) -> httpx.Response:
        response = await self.asgi.handle_async_request(request)
        body = b"".join([chunk async for chunk in response.aiter_raw()])  # as sent: still compressed
        return httpx.Response(response.status_code, headers=response.headers, content=body,
                              extensions=response.extensions)  # fmt: skip
