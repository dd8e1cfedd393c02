"""``/docs`` without the internet: Swagger UI's files come from the ``swagger-ui-bundle`` package
and are served by opencues under ``/docs/static`` (FastAPI's default page loads them from a CDN,
which a server behind a firewall, or a laptop on a train, cannot reach). ``/redoc`` is CDN-only
in FastAPI, so it is not offered."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from starlette.requests import Request
from starlette.staticfiles import StaticFiles

STATIC = "/docs/static"


def install(app: FastAPI) -> None:
    from swagger_ui_bundle import swagger_ui_path

    app.mount(STATIC, StaticFiles(directory=swagger_ui_path), name="swagger-ui")

    @app.get("/docs", include_in_schema=False)
    async def docs(request: Request):
        root = request.scope.get("root_path", "")
        return get_swagger_ui_html(
            openapi_url=root + app.openapi_url,
            title=app.title + " — docs",
            swagger_js_url=f"{root}{STATIC}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{STATIC}/swagger-ui.css",
            swagger_favicon_url=f"{root}{STATIC}/favicon-32x32.png",
        )
