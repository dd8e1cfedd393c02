"""Calling handlers without FastAPI's per-request machinery.

Every handler here takes the request and its path parameters (strings) and reads bodies, query
strings and headers itself, returning a ``Response``. For such a handler FastAPI's per-request
work — solving dependencies, validating ``str`` path parameters as strings, two exit stacks —
changes nothing but costs about 100 µs a request, more than the handler of a track. ``LeanRoute``
keeps FastAPI's route (OpenAPI documentation, 405s, ``app.url_path_for``) and calls the handler
as ``handler(request, **path_params)`` through Starlette's plain request/response wrapper, which
still hands exceptions to the app's error handlers.

A handler declaring anything else (a query parameter, a body model, a dependency) keeps FastAPI's
full handling, so the shortcut never changes behaviour.

A direct route also puts off FastAPI's own set-up (the models of its OpenAPI documentation: ~660
pydantic adapters over the API's ~100 routes, two thirds of the server's start-up CPU) until
something first reads it — the OpenAPI document; serving a request never does.
"""

from __future__ import annotations

import functools
import inspect

from fastapi.routing import APIRoute
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


class LeanRoute(APIRoute):
    """An ``APIRoute`` that calls a request-and-path-parameters handler directly (see above)."""

    def __init__(self, path: str, endpoint, *, docs=None, **kwargs):
        """``docs``: a function returning more keyword arguments (the OpenAPI documentation),
        called only when FastAPI's part of the route is built."""
        direct = kwargs.get("max_body_size") is None and _takes_request_and_path_only(endpoint, _path_params(path))
        if docs is not None and not direct:
            kwargs.update(docs())
            docs = None
        if direct:
            # Only what matching and calling need now; FastAPI's part when first read (__getattr__).
            Route.__init__(self, path, _direct(endpoint), name=kwargs.get("name") or endpoint.__name__,
                           include_in_schema=kwargs.get("include_in_schema", True))  # fmt: skip
            self.methods = {m.upper() for m in kwargs.get("methods") or ("GET",)}
            self.endpoint = endpoint
            self._deferred = (path, endpoint, kwargs, docs)
            self.lean = True
        else:
            super().__init__(path, endpoint, **kwargs, **(docs() if docs else {}))
            self.lean = False

    def __getattr__(self, name: str):
        """FastAPI's route state (response models, dependant, …), built when first asked for."""
        deferred = self.__dict__.get("_deferred")
        if deferred is None or name.startswith("__"):
            raise AttributeError(name)
        self._deferred = None
        direct = self.app
        path, endpoint, kwargs, docs = deferred
        APIRoute.__init__(self, path, endpoint, **kwargs, **(docs() if docs else {}))
        self.app = direct
        return getattr(self, name)

    def matches(self, scope):
        # FastAPI's matching also resolves per-route context on every probe, for every route
        # tried (~4 µs each, ~25 routes); a direct handler needs only Starlette's path match.
        if self.lean:
            match, child_scope = Route.matches(self, scope)
            if child_scope:
                child_scope["route"] = self  # as FastAPI's own matching does: the access log and metrics read it
            return match, child_scope
        return super().matches(scope)
