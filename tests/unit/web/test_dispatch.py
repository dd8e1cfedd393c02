import pytest
from starlette.applications import Starlette
from starlette.requests import Request

from opencues.errors import bad_request
from opencues.web import errors
from opencues.web.dispatch import DirectRoute
from opencues.web.responses import json_response
from opencues.web.routes import PUBLIC_ROUTES, ROUTES
from tests.in_process_client import InProcessClient


def test_every_api_route_is_a_direct_route(app):
    direct = {(m, r.path) for r in app.router.routes if isinstance(r, DirectRoute) for m in r.methods}
    assert {(r.method, r.path) for r in PUBLIC_ROUTES + ROUTES} <= direct


def test_apps_share_their_route_objects(settings, db):
    # Built once per process: a test suite makes an app per test (building ~150 routes each time
    # was most of what making one cost).
    from opencues.web.app import create_app

    first, second = (create_app(settings, db).router.routes for _ in range(2))
    assert len(first) == len(second) > 100
    assert sum(a is b for a, b in zip(first, second)) >= len(first) - 5  # all but /docs, /healthz…


async def echo(request: Request, name: str):
    if name == "bad":
        raise bad_request("`name` is bad")
    return json_response({"name": name, "q": request.query_params.get("q")})


async def returns_dict(request: Request):
    return {"not": "a response"}


@pytest.fixture
def small_app():
    app = Starlette()
    errors.install(app)
    app.router.routes += [DirectRoute("/echo/{name:path}", echo, "GET"), DirectRoute("/dict", returns_dict, "GET")]
    return app


def test_direct_handlers_get_path_parameters_and_errors_become_problems(small_app):
    with InProcessClient(small_app, raise_server_exceptions=False) as client:
        assert client.get("/echo/a%2Fb?q=1").json() == {"name": "a/b", "q": "1"}
        problem = client.get("/echo/bad")
        assert problem.status_code == 400 and problem.json()["detail"] == "`name` is bad"
        assert client.post("/echo/x").status_code == 405
        assert client.head("/echo/x").status_code == 405  # exactly its method: no HEAD added to a GET
        assert client.get("/dict").status_code == 500  # refused loudly, not sent half-formed


def test_a_handler_of_another_shape_is_refused_when_the_route_is_built():
    async def with_query(request: Request, name: str, q: int = 1):  # nothing would inject `q`
        return json_response({})

    def not_async(request: Request):
        return json_response({})

    for path, handler in (("/query/{name}", with_query), ("/sync", not_async), ("/echo/{other}", echo)):
        with pytest.raises(TypeError, match="must be `async def"):
            DirectRoute(path, handler, "GET")


def test_the_server_process_freezes_its_startup_objects(settings, db):
    """Full garbage collections must not walk the app's long-lived objects (a 40 ms pause under load)."""
    import gc

    from opencues.web.app import create_app

    assert gc.get_freeze_count() == 0
    try:
        with InProcessClient(create_app(settings, db, freeze_gc=True)):
            assert gc.get_freeze_count() > 10_000
    finally:
        gc.unfreeze()
    with InProcessClient(create_app(settings, db)):  # the default (tests, embedding): left alone
        assert gc.get_freeze_count() == 0


def _first_full_match(routes, scope):
    from starlette.routing import Match

    for route in routes:
        match, child_scope = route.matches(scope)
        if match is Match.FULL:
            return route, child_scope
    return None, {}


def test_the_route_index_finds_the_route_the_routers_scan_would():
    """For every API route's path (and near misses), under every method: the route ``RouteIndex``
    answers is the first one in order to match path and method, with the same path parameters;
    none when no route matches both (the router's scan then answers the 404 or 405)."""
    from starlette.routing import Match

    from opencues.web.dispatch import RouteIndex

    direct = [DirectRoute(r.path, r.handler, r.method) for r in PUBLIC_ROUTES + ROUTES]
    index = RouteIndex(direct)
    paths = set()
    for route in PUBLIC_ROUTES + ROUTES:
        for value in ("x", "a/b", "u%40x.com", "ev ents"):
            path = route.path.replace("{user_id:path}", value).replace("{group_id:path}", value)
            for name in ("account_id", "flow_id", "segment_id", "job_id", "tag_id", "experience_id", "resource_id",
                         "sdk_key_id", "token"):  # fmt: skip
                path = path.replace("{" + name + "}", value.replace("/", "-"))
            paths |= {path, path + "/", path + "/extra", path.rsplit("/", 1)[0]}
    paths |= {"/", "/v2/accounts/", "/healthz", "/v2/accounts/a/users//events", "/v2/accounts/a/users/x/events\n"}
    for path in sorted(paths):
        for method in ("GET", "POST", "PATCH", "DELETE", "PUT", "HEAD"):
            scope = {"type": "http", "method": method, "path": path, "root_path": ""}
            expected, expected_scope = _first_full_match(direct, scope)
            match, child_scope = index.matches(scope)
            if expected is None:
                assert match is Match.NONE, (method, path)
            else:
                assert match is Match.FULL and child_scope == expected_scope and child_scope["route"] is expected, (method, path)
