"""The API's routes: plain Starlette routes that call their handler directly.

Every handler of the API takes the request and its path parameters (strings) and reads bodies,
query strings and headers itself, returning a ``Response``. A ``DirectRoute`` calls it as
``handler(request, **path_params)`` and answers an ``ApiError`` (a handler's refusal) with its
Problem Details itself; any other exception goes on to the app's error handlers. A ``RouteIndex``
in front of the API's routes finds the one a request is for. There is no per-request framework
work beyond that (FastAPI's — solving dependencies, validating ``str`` path parameters as strings, two
exit stacks — changed nothing for such handlers and cost about 100 µs a request), and no
framework set-up at start: the OpenAPI document is generated from the same route table when it
is first read (``opencues.web.openapi``), so a plain start never imports FastAPI or its models.

A handler of any other shape (a query parameter in its signature, a body model, a dependency)
is refused when the route is built: nothing would inject them.
"""

from __future__ import annotations

import functools
import inspect
import re

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Match, NoMatchFound, Route, compile_path

from opencues.errors import ApiError
from opencues.web.responses import problem_response


@functools.cache
def _takes_request_and_path_only(endpoint, path_params: frozenset) -> bool:
    """Whether ``endpoint`` is ``async (request: Request, <path params: str>)``. Cached: reading a
    signature is most of what building a route costs, and an app (each test's, each server
    process's) builds ~100 routes of the same handlers."""
    if not inspect.iscoroutinefunction(endpoint):
        return False
    params = list(inspect.signature(endpoint).parameters.values())
    if not params or params[0].annotation not in (Request, "Request"):
        return False
    rest = params[1:]
    return all(
        p.kind is p.POSITIONAL_OR_KEYWORD and p.default is p.empty and p.annotation in (str, "str")
        for p in rest
    ) and {p.name for p in rest} == set(path_params)


@functools.cache
def _path_params(path: str) -> frozenset:
    return frozenset(compile_path(path)[2])


class DirectRoute(Route):
    """A route of one method whose handler is ``async (request, <path params: str>) -> Response``."""

    def __init__(self, path: str, endpoint, method: str, *, name: str | None = None, include_in_schema: bool = True):
        if not _takes_request_and_path_only(endpoint, _path_params(path)):
            raise TypeError(
                f"{endpoint.__qualname__} must be `async def (request: Request, <each path parameter>: str)`"
            )
        super().__init__(path, endpoint, name=name or endpoint.__name__, include_in_schema=include_in_schema)
        # Exactly this method: Starlette would add HEAD to a GET, and the API answers HEAD with 405.
        self.methods = {method.upper()}

    def matches(self, scope):
        match, child_scope = super().matches(scope)
        if child_scope:
            child_scope["route"] = self  # the access log and the metrics name a request by its route's path
        return match, child_scope

    async def handle(self, scope, receive, send) -> None:
        """Starlette's request/response wrapper, less its per-request exception layer (only
        ``ApiError`` is handled here, as the app's handler would: ``errors.api_error``)."""
        if scope["method"] not in self.methods:
            return await super().handle(scope, receive, send)  # 405 (the app's HTTPException handler)
        endpoint = self.endpoint
        try:
            response = await endpoint(Request(scope, receive, send), **scope["path_params"])
        except ApiError as refusal:
            refusal.__traceback__ = None  # (a module-level instance raised again must not keep every frame)
            response = problem_response(refusal.status, refusal.detail, refusal.headers)
        if not isinstance(response, Response):
            raise TypeError(f"{endpoint.__qualname__} must return a Response, not {type(response).__name__}")
        await response(scope, receive, send)


class RouteIndex(BaseRoute):
    """Which of the ``DirectRoute``s placed right after it in the router a request is for: one
    regular expression per method, their paths' patterns in route order, where Starlette's
    router tries each route in turn (~65 API routes; matching was ~8 % of track's CPU). It
    answers only a full match (path and method), the one the router's scan would pick — the
    first route in order that matches both — and leaves anything else (404, 405, the slash
    redirect) to that scan, which still holds every route."""

    def __init__(self, routes: list[DirectRoute]):
        by_method: dict[str, list[DirectRoute]] = {}
        for route in routes:
            for method in route.methods:
                by_method.setdefault(method, []).append(route)
        self._by_method = {
            method: (re.compile("|".join(f"(?P<r{i}>{_unnamed(r.path_regex.pattern)})" for i, r in enumerate(rs))), rs)
            for method, rs in by_method.items()
        }  # fmt: skip

    def matches(self, scope):
        if scope["type"] != "http" or (entry := self._by_method.get(scope["method"])) is None:
            return Match.NONE, {}
        pattern, routes = entry
        found = pattern.match(_route_path(scope))
        if found is None:
            return Match.NONE, {}
        # The outermost group closes last: ``lastgroup`` names the alternative that matched.
        return routes[int(found.lastgroup[1:])].matches(scope)  # a full match, its "route" set

    async def handle(self, scope, receive, send) -> None:
        await scope["route"].handle(scope, receive, send)

    def url_path_for(self, name: str, /, **path_params):
        raise NoMatchFound(name, path_params)  # the routes it indexes answer for themselves


def _route_path(scope) -> str:
    """The path the routes' patterns are matched against: the request's path less the app's
    mount point (``root_path``), as Starlette's routes take it (its helper for this is private)."""
    path, root = scope["path"], scope.get("root_path", "")
    if root and path.startswith(root) and (len(path) == len(root) or path[len(root)] == "/"):
        return path[len(root):]
    return path


def _unnamed(pattern: str) -> str:
    """A route's path pattern with its parameters' named groups made plain groups (the names
    repeat from route to route; the route's own pattern reads them)."""
    return re.sub(r"\(\?P<\w+>", "(?:", pattern)
