"""How every Studio page is guarded and rendered.

``page(...)`` wraps a handler: it loads the session (``opencues.studio.session``), sends an
anonymous browser to the sign-in form, refuses an account the session may not see (403), and on a
POST checks the form's CSRF token and, for writes, the session's right to write — the checks the
API makes with ``authorize(…, write=True)``. An ``ApiError`` from the library becomes an HTML page
with the same status and detail. Responses carry a strict Content-Security-Policy: Studio's only
script is its own file, so no inline script can run.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from opencues import timestamps
from opencues.errors import ApiError
from opencues.studio import session as sessions
from opencues.studio.session import Session

HERE = Path(__file__).parent
STATIC_DIR = HERE / "static"
HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}

templates = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=select_autoescape(["html"]))
templates.filters["time"] = lambda ms: timestamps.render(ms) if ms is not None else ""
templates.filters["q"] = lambda value: quote(str(value), safe="")
# Each template is compiled on its first use and kept (a start does without the ~0.1 s for all).


@dataclass
class Context:
    """What a handler gets besides the request: the session and the submitted form (POST)."""

    request: Request
    session: Session
    form: dict

    @property
    def db(self):
        return self.request.app.state.db

    @property
    def settings(self):
        return self.request.app.state.settings

    @property
    def control_on(self) -> bool:
        return bool(self.settings.admin_token)

    def render(self, template: str, status: int = 200, **values) -> HTMLResponse:
        account_id = self.request.path_params.get("account_id")
        html = templates.get_template(template).render(
            session=self.session, csrf=self.session.csrf, account_id=account_id, control_on=self.control_on,
            path=self.request.url.path, **values,
        )  # fmt: skip
        response = HTMLResponse(html, status_code=status, headers=HEADERS)
        if self.session.fresh:
            sessions.set_cookie(response, self.request, self.session)
        return response


def redirect(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303, headers={"Cache-Control": "no-store"})


def error_page(request: Request, session: Session, status: int, detail: str) -> HTMLResponse:
    return Context(request, session, {}).render("error.html", status=status, status_code=status, detail=detail)


def page(*, write: bool = False, admin: bool = False, control: bool = False, upload: bool = False):
    """Guard a Studio handler ``handler(ctx, **path_params)`` (see the module docstring).
    ``upload``: the handler reads the multipart body itself and checks the CSRF token with
    ``check_upload`` (the token arrives in the same stream as the file)."""

    def wrap(handler):
        @functools.wraps(handler)
        async def endpoint(request: Request) -> Response:
            session = sessions.load(request)
            params = dict(request.path_params)
            try:
                if not session.signed_in:
                    if request.method == "GET":
                        return redirect("/studio/login?next=" + quote(request.url.path, safe="/"))
                    raise ApiError(403, "sign in first: this session is not signed in (or has expired)")
                account_id = params.get("account_id")
                if account_id is not None and not session.may_see(account_id):
                    raise ApiError(403, f"this session does not grant access to account {account_id!r}")
                if (admin or control) and not session.admin:
                    raise ApiError(403, "only the admin (signed in with OPENCUES_ADMIN_TOKEN) may do this")
                if control and not request.app.state.settings.admin_token:
                    raise ApiError(404, "the control API is off (set OPENCUES_ADMIN_TOKEN)")
                form: dict = {}
                if request.method == "POST" and not upload:
                    form = {k: v for k, v in (await request.form()).multi_items() if isinstance(v, str)}
                    sessions.check_csrf(session, form.get("csrf_token"))
                if request.method == "POST" and write and not session.may_write:
                    raise ApiError(403, "this API key is read-only")
                return await handler(Context(request, session, form), **params)
            except ApiError as exc:
                return error_page(request, session, exc.status, exc.detail)

        return endpoint

    return wrap


def check_upload(ctx: Context, fields: dict) -> None:
    """The CSRF check of an upload form (its fields were read with the file)."""
    sessions.check_csrf(ctx.session, fields.get("csrf_token"))


_MEDIA_TYPES = {".css": "text/css; charset=utf-8", ".js": "text/javascript; charset=utf-8"}
# Two small files, read once: served from memory.
STATIC_FILES = {path.name: (path.read_bytes(), _MEDIA_TYPES[path.suffix]) for path in STATIC_DIR.iterdir() if path.suffix in _MEDIA_TYPES}


async def static_file(request: Request) -> Response:
    """Studio's own CSS and JS (no CDN: Studio works offline)."""
    found = STATIC_FILES.get(request.path_params["name"])
    if found is None:
        return Response("not found", status_code=404, media_type="text/plain")
    body, media_type = found
    return Response(body, media_type=media_type, headers={"Cache-Control": "public, max-age=300", "X-Content-Type-Options": "nosniff"})
