import pytest
from fastapi import FastAPI
from starlette.requests import Request
from starlette.testclient import TestClient

from opencues.errors import bad_request
from opencues.web import errors
from opencues.web.dispatch import LeanRoute
from opencues.web.responses import json_response


def test_every_api_route_is_called_directly(app):
    api_routes = [r for r in app.router.routes if isinstance(r, LeanRoute)]
    assert len(api_routes) > 10
    assert [r.path for r in api_routes if not r.lean] == []  # a handler fell back to FastAPI's handling


@pytest.fixture
def small_app():
    app = FastAPI()
    app.router.route_class = LeanRoute
    errors.install(app)

    async def echo(request: Request, name: str):
        if name == "bad":
            raise bad_request("`name` is bad")
        return json_response({"name": name, "q": request.query_params.get("q")})

    async def with_query(request: Request, name: str, q: int = 1):  # FastAPI must inject `q`
        return json_response({"name": name, "q": q})

    async def returns_dict(request: Request):
        return {"not": "a response"}

    app.add_api_route("/echo/{name:path}", echo, methods=["GET"])
    app.add_api_route("/query/{name}", with_query, methods=["GET"])
    app.add_api_route("/dict", returns_dict, methods=["GET"])
    return app


def test_direct_handlers_get_path_parameters_and_errors_become_problems(small_app):
    [echo, with_query, returns_dict] = [r for r in small_app.router.routes if isinstance(r, LeanRoute)]
    assert echo.lean and not with_query.lean and returns_dict.lean
    with TestClient(small_app, raise_server_exceptions=False) as client:
        assert client.get("/echo/a%2Fb?q=1").json() == {"name": "a/b", "q": "1"}
        problem = client.get("/echo/bad")
        assert problem.status_code == 400 and problem.json()["detail"] == "`name` is bad"
        assert client.post("/echo/x").status_code == 405
        assert client.get("/query/x?q=7").json() == {"name": "x", "q": 7}  # FastAPI's handling kept
        assert client.get("/dict").status_code == 500  # refused loudly, not sent half-formed


def test_the_server_process_freezes_its_startup_objects(settings, db):
    """Full garbage collections must not walk the app's long-lived objects (a 40 ms pause under load)."""
    import gc

    from opencues.web.app import create_app

    assert gc.get_freeze_count() == 0
    try:
        with TestClient(create_app(settings, db, freeze_gc=True)):
            assert gc.get_freeze_count() > 10_000
    finally:
        gc.unfreeze()
    with TestClient(create_app(settings, db)):  # the default (tests, embedding): left alone
        assert gc.get_freeze_count() == 0
