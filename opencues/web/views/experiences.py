"""The eight experience types' views: one set of four handlers per type, made by ``views_for``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from starlette.requests import Request

from opencues import experiences
from opencues.web.auth import authorize
from opencues.web.responses import ok, respond
from opencues.web.urls import account_url


@dataclass(frozen=True)
class ExperienceViews:
    list: Callable
    get: Callable
    publish: Callable
    unpublish: Callable


def views_for(resource: str) -> ExperienceViews:
    """The list, get, publish and unpublish handlers of one experience type (``pins``…)."""
    columns = experiences.columns(resource)

    def shown(request: Request, account_id: str, item: dict) -> dict:
        if "url" in columns:
            return {**item, "url": account_url(request, account_id, resource, item["id"])}
        return item

    def render(request: Request, payload):
        return respond(request, payload, columns=columns, objects_as_json=True)

    async def list_experiences(request: Request, account_id: str):
        authorize(request, account_id)
        items = experiences.list_experiences(request.app.state.db, account_id, resource)
        return render(request, [shown(request, account_id, i) for i in items])

    async def get_experience(request: Request, account_id: str, experience_id: str):
        authorize(request, account_id)
        item = experiences.get_experience(request.app.state.db, account_id, resource, experience_id)
        return render(request, shown(request, account_id, item))

    async def publish(request: Request, account_id: str, experience_id: str):
        # No body is needed: none, `{}` and an empty form are all accepted, as for flows.
        principal = authorize(request, account_id, write=True)
        experiences.set_published(request.app.state.db, account_id, resource, experience_id, True, principal.key_id)
        return ok(request)

    async def unpublish(request: Request, account_id: str, experience_id: str):
        principal = authorize(request, account_id, write=True)
        experiences.set_published(request.app.state.db, account_id, resource, experience_id, False, principal.key_id)
        return ok(request)

    # Distinct names: FastAPI derives each route's OpenAPI operationId from its handler's name.
    handlers = {"list": list_experiences, "get": get_experience, "publish": publish, "unpublish": unpublish}
    for verb, handler in handlers.items():
        handler.__name__ = handler.__qualname__ = f"{verb}_{resource.replace('-', '_')}"
    return ExperienceViews(list_experiences, get_experience, publish, unpublish)


VIEWS: dict[str, ExperienceViews] = {resource: views_for(resource) for resource in experiences.TYPES}
