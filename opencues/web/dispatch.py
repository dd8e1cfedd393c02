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
"""

from __future__ import annotations

import inspect

from fastapi.routing import APIRoute
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route, request_response


def _takes_request_and_path_only(endpoint, path_params) -> bool:
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


def _direct(endpoint):
    async def handle(request: Request) -> Response:
        response = await endpoint(request, **request.path_params)
        if not isinstance(response, Response):
            raise TypeError(f"{endpoint.__qualname__} must return a Response, not {type(response).__name__}")
        return response

    return handle


class LeanRoute(APIRoute):
    """An ``APIRoute`` that calls a request-and-path-parameters handler directly (see above)."""

    def __init__(self, path: str, endpoint, **kwargs):
        super().__init__(path, endpoint, **kwargs)
        if kwargs.get("max_body_size") is None and _takes_request_and_path_only(endpoint, self.param_convertors):
            self.app = request_response(_direct(endpoint))
            self.lean = True
        else:
            self.lean = False

    def matches(self, scope):
        # FastAPI's matching also resolves per-route context on every probe, for every route
        # tried (~4 µs each, ~25 routes); a direct handler needs only Starlette's path match.
        if self.lean:
            match, child_scope = Route.matches(self, scope)
            if child_scope:
                child_scope["route"] = self  # as FastAPI's own matching does: the access log and metrics read it
            return match, child_scope
        return super().matches(scope)
