"""The API's routes: plain Starlette routes that call their handler directly.

Every handler of the API takes the request and its path parameters (strings) and reads bodies,
query strings and headers itself, returning a ``Response``. A ``DirectRoute`` calls it as
``handler(request, **path_params)`` through Starlette's request/response wrapper, which hands
exceptions to the app's error handlers. There is no per-request framework work beyond Starlette's
path match (FastAPI's — solving dependencies, validating ``str`` path parameters as strings, two
exit stacks — changed nothing for such handlers and cost about 100 µs a request), and no
framework set-up at start: the OpenAPI document is generated from the same route table when it
is first read (``opencues.web.openapi``), so a plain start never imports FastAPI or its models.

A handler of any other shape (a query parameter in its signature, a body model, a dependency)
is refused when the route is built: nothing would inject them.
"""

from __future__ import annotations

import functools
import inspect

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route, compile_path


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


def _direct(endpoint):
    async def handle(request: Request) -> Response:
        response = await endpoint(request, **request.path_params)
        if not isinstance(response, Response):
            raise TypeError(f"{endpoint.__qualname__} must return a Response, not {type(response).__name__}")
        return response

    return handle


class DirectRoute(Route):
    """A route of one method whose handler is ``async (request, <path params: str>) -> Response``."""

    def __init__(self, path: str, endpoint, method: str, *, name: str | None = None, include_in_schema: bool = True):
        if not _takes_request_and_path_only(endpoint, _path_params(path)):
            raise TypeError(
                f"{endpoint.__qualname__} must be `async def (request: Request, <each path parameter>: str)`"
            )
        super().__init__(path, _direct(endpoint), name=name or endpoint.__name__, include_in_schema=include_in_schema)
        # Exactly this method: Starlette would add HEAD to a GET, and the API answers HEAD with 405.
        self.methods = {method.upper()}
        self.endpoint = endpoint  # the handler itself, as the matched scope's `endpoint` names it

    def matches(self, scope):
        match, child_scope = super().matches(scope)
        if child_scope:
            child_scope["route"] = self  # the access log and the metrics name a request by its route's path
        return match, child_scope
