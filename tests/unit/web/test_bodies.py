"""Reading JSON bodies: large ones are parsed (and prepared) off the event loop, small ones in
place, and no body can make the NUL check itself fail."""

from __future__ import annotations

import threading

import orjson
import pytest
from starlette.applications import Starlette
from starlette.requests import Request

from opencues.web import bodies, errors
from opencues.web.dispatch import DirectRoute
from opencues.web.responses import json_response
from tests.conftest import assert_problem
from tests.in_process_client import InProcessClient


@pytest.fixture
def client():
    app = Starlette()
    errors.install(app)

    class State:
        max_body_bytes = 20 * 1024 * 1024

    app.state.settings = State()

    async def echo(request: Request):
        loop_thread = threading.current_thread().name

        def prepare(payload):
            return {"keys": len(payload), "on_loop": threading.current_thread().name == loop_thread}

        return json_response(await bodies.read_json(request, prepare=prepare))

    app.router.routes.append(DirectRoute("/echo", echo, "POST"))
    with InProcessClient(app) as test_client:
        yield test_client


def test_a_small_body_is_parsed_on_the_event_loop_and_a_large_one_in_a_thread(client):
    small = orjson.dumps({"k": "x"})
    large = orjson.dumps({"k": "x" * bodies.LARGE_BODY_BYTES})
    assert client.post("/echo", content=small).json() == {"keys": 1, "on_loop": True}
    assert client.post("/echo", content=large).json() == {"keys": 1, "on_loop": False}


def test_errors_from_the_thread_are_problems_like_any_other(client):
    padding = b" " * bodies.LARGE_BODY_BYTES
    assert_problem(client.post("/echo", content=b"{oops" + padding), 400, "not valid JSON")
    assert_problem(client.post("/echo", content=b'{"k": ["\\u0000"]}' + padding), 400, "`k[0]`")


def test_nul_deep_in_a_body_nested_a_thousand_levels_is_a_400(client):
    body = '{"a":' + "[" * 1000 + '"\\u0000"' + "]" * 1000 + "}"
    assert_problem(client.post("/echo", content=body.encode()), 400, "NUL")
