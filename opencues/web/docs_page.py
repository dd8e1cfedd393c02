"""The API's documentation: ``/openapi.json`` and ``/docs``, plain routes of the app.

The document is generated from the route table when first asked for (``opencues.web.openapi``,
which imports FastAPI's generator and the body models then: a plain start never does).

``/docs`` works without the internet: Swagger UI's files come from the ``swagger-ui-bundle``
package and are served by opencues under ``/docs/static`` (FastAPI's default page loads them from
a CDN, which a server behind a firewall, or a laptop on a train, cannot reach). ``/redoc`` is
CDN-only in FastAPI, so it is not offered."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.staticfiles import StaticFiles

from opencues import __version__
from opencues.web.dispatch import DirectRoute

TITLE = "opencues — Appcues Public API v2"
DESCRIPTION = (
    "A self-hostable implementation of the Appcues Public API v2. "
    "Authenticate with HTTP Basic auth using an API key and secret (`opencues keys create`)."
)
OPENAPI_URL = "/openapi.json"
STATIC = "/docs/static"


def openapi_document() -> dict:
    """The OpenAPI document (built once per process)."""
    from opencues.web import openapi

    return openapi.build(TITLE, __version__, DESCRIPTION)


async def openapi_json(request: Request):
    document = openapi_document()
    root_path = request.scope.get("root_path", "").rstrip("/")
    if root_path and root_path not in {server.get("url") for server in document.get("servers", [])}:
        document = {**document, "servers": [{"url": root_path}, *document.get("servers", [])]}  # behind a proxy
    return JSONResponse(document)


async def swagger_ui(request: Request):
    from fastapi.openapi.docs import get_swagger_ui_html

    root = request.scope.get("root_path", "")
    return get_swagger_ui_html(
        openapi_url=root + OPENAPI_URL,
        title=TITLE + " — docs",
        swagger_js_url=f"{root}{STATIC}/swagger-ui-bundle.js",
        swagger_css_url=f"{root}{STATIC}/swagger-ui.css",
        swagger_favicon_url=f"{root}{STATIC}/favicon-32x32.png",
    )


class SwaggerFiles:
    """Swagger UI's files, located (an import of ``swagger_ui_bundle``) at the first request for one."""

    def __init__(self):
        self.files: StaticFiles | None = None

    async def __call__(self, scope, receive, send):
        if self.files is None:
            from swagger_ui_bundle import swagger_ui_path

            self.files = StaticFiles(directory=swagger_ui_path)
        await self.files(scope, receive, send)


def install(app) -> None:
    app.router.routes.append(Route(OPENAPI_URL, openapi_json, include_in_schema=False))
    app.mount(STATIC, SwaggerFiles(), name="swagger-ui")
    app.router.routes.append(DirectRoute("/docs", swagger_ui, "GET", include_in_schema=False))
