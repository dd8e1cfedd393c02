"""The in-process client the unit tests speak to the app with (tests/in_process_client.py)."""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import time

import pytest
from starlette.applications import Starlette
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.in_process_client import InProcessClient


def make_app(events: list):
    @contextlib.asynccontextmanager
    async def lifespan(app):
        events.append("startup")
        ticker = asyncio.create_task(tick(app))  # a background task on the app's loop
        yield
        ticker.cancel()
        events.append("shutdown")

    async def tick(app):
        while True:
            app.state.ticks += 1
            await asyncio.sleep(0.01)

    async def echo(request):
        return JSONResponse({
            "path": request.scope["path"], "raw_path": request.scope["raw_path"].decode(),
            "body": (await request.body()).decode(), "client": request.client.host,
            "user_agent": request.headers["user-agent"], "started": "startup" in events,
        })  # fmt: skip

    async def compressed(_request):
        return Response(gzip.compress(b"x" * 1000), headers={"content-encoding": "gzip"}, media_type="text/plain")

    async def explode(_request):
        raise RuntimeError("boom")

    async def ticks(request):
        return JSONResponse(request.app.state.ticks)

    app = Starlette(lifespan=lifespan, routes=[
        Route("/compressed", compressed), Route("/explode", explode), Route("/ticks", ticks),
        Route("/{rest:path}", echo, methods=["GET", "POST"]),
    ])  # fmt: skip
    app.state.ticks = 0
    return app


def test_the_lifespan_runs_around_the_requests_and_its_tasks_run_between_them():
    events: list = []
    with InProcessClient(make_app(events)) as client:
        assert client.get("/x").json()["started"] is True
        first = client.get("/ticks").json()
        time.sleep(0.1)  # the app's loop keeps running while the test waits
        assert client.get("/ticks").json() > first
    assert events == ["startup", "shutdown"]


def test_the_app_shuts_down_when_the_block_raises():
    events: list = []
    with pytest.raises(AssertionError, match="failed inside"), InProcessClient(make_app(events)):
        raise AssertionError("failed inside")
    assert events == ["startup", "shutdown"]


def test_a_request_reaches_the_app_as_a_server_would_send_it():
    with InProcessClient(make_app([])) as client:
        seen = client.get("/a%2500b%2Fc").json()
        assert seen["path"] == "/a%00b/c"  # decoded once, as uvicorn does (TestClient decoded twice)
        assert seen["raw_path"] == "/a%2500b%2Fc"
        assert (seen["client"], seen["user_agent"]) == ("testclient", "testclient")
        assert client.post("/body", content=iter([b"from ", b"an iterator"])).json()["body"] == "from an iterator"
        assert "hello" in client.post("/body", files={"file": ("a.csv", b"hello")}).json()["body"]


def test_a_compressed_body_is_decoded_once():
    with InProcessClient(make_app([])) as client:
        response = client.get("/compressed")
    assert response.headers["content-encoding"] == "gzip" and response.content == b"x" * 1000


def test_app_errors_raise_or_answer_500_as_asked():
    with InProcessClient(make_app([])) as client, pytest.raises(RuntimeError, match="boom"):
        client.get("/explode")
    with InProcessClient(make_app([]), raise_server_exceptions=False) as client:
        assert client.get("/explode").status_code == 500


def test_outside_a_with_block_a_request_runs_without_the_lifespan():
    events: list = []
    assert InProcessClient(make_app(events)).get("/x").json()["started"] is False
    assert events == []
