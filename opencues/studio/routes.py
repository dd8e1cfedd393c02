"""Every route of Studio (``/studio``), in one place: plain Starlette routes, outside the API's
OpenAPI document (Studio is ours, not the vendor's).

Each route names its view, imported with its module — the pages, their templates (Jinja2), the
upload intake and the control library — when Studio serves its first request: a plain start of
the API does without them."""

from __future__ import annotations

import functools
import importlib

from starlette.routing import Route as StarletteRoute

from opencues.web.routes import Route


def view(name: str, module: str = "opencues.studio.views"):
    """The view ``name`` of ``module``, its module imported when the view is first called."""

    async def call(request):
        return await getattr(importlib.import_module(module), name)(request)

    call.__name__ = call.__qualname__ = name
    return call


TAG = "Studio"
ACCOUNT = "/studio/accounts/{account_id}"

STUDIO_ROUTES: list[Route] = [
    Route("GET", "/studio", view("home"), "Studio's home: the account list (admin) or the key's account", TAG),
    Route("GET", "/studio/login", view("login_form"), "Sign-in form (API key and secret, or the admin token)", TAG),
    Route("POST", "/studio/login", view("login"), "Sign in", TAG),
    Route("POST", "/studio/logout", view("logout"), "Sign out", TAG),
    Route("GET", "/studio/static/{name}", view("static_file", "opencues.studio.render"), "Studio's CSS and JavaScript", TAG),
    Route("GET", "/studio/accounts", view("accounts_page"), "Accounts (admin)", TAG),
    Route("POST", "/studio/accounts", view("create_account"), "Create an account with a key (admin)", TAG),
    Route("GET", ACCOUNT + "/keys", view("keys_page"), "An account's API keys (admin)", TAG),
    Route("POST", ACCOUNT + "/keys", view("create_key"), "Create a key: its secret is shown once (admin)", TAG),
    Route("POST", ACCOUNT + "/keys/{key}/revoke", view("revoke_key"), "Revoke a key (admin)", TAG),
    Route("GET", ACCOUNT + "/content", view("content_page"), "Flows and experiences, searched and filtered", TAG),
    Route("GET", ACCOUNT + "/content/{resource}/{item_id}", view("content_detail"), "One flow or experience", TAG),
    Route("POST", ACCOUNT + "/content/{resource}/{item_id}/publish", view("publish"), "Publish", TAG),
    Route("POST", ACCOUNT + "/content/{resource}/{item_id}/unpublish", view("unpublish"), "Unpublish", TAG),
    Route("GET", ACCOUNT + "/tags", view("tags_page"), "Tags", TAG),
    Route("GET", ACCOUNT + "/segments", view("segments_page"), "Segments", TAG),
    Route("POST", ACCOUNT + "/segments", view("create_segment"), "Create a segment", TAG),
    Route("GET", ACCOUNT + "/segments/{segment_id}", view("segment_page"), "A segment and its members (keyset pages)", TAG),
    Route("POST", ACCOUNT + "/segments/{segment_id}/rename", view("rename_segment"), "Rename a segment", TAG),
    Route("POST", ACCOUNT + "/segments/{segment_id}/delete", view("delete_segment"), "Delete a segment", TAG),
    Route("POST", ACCOUNT + "/segments/{segment_id}/upload", view("upload_members"), "Add or remove the user ids of a file (a job)", TAG),
    Route("GET", ACCOUNT + "/users", view("users_page"), "Users by id prefix (keyset pages)", TAG),
    Route("GET", ACCOUNT + "/users/view", view("user_page"), "A user: profile, group and event timeline", TAG),
    Route("POST", ACCOUNT + "/users/profile", view("edit_profile"), "Set or remove a profile key", TAG),
    Route("GET", ACCOUNT + "/groups/view", view("group_page"), "A group's profile", TAG),
    Route("GET", ACCOUNT + "/jobs", view("jobs_page"), "Jobs, and the import form", TAG),
    Route("POST", ACCOUNT + "/jobs/import", view("start_import"), "Start an import from an uploaded file", TAG),
    Route("GET", ACCOUNT + "/jobs/{job_id}", view("job_page"), "A job, followed live", TAG),
    Route("GET", ACCOUNT + "/jobs/{job_id}/status", view("job_status"), "A job as JSON (the job page polls it)", TAG),
    Route("GET", ACCOUNT + "/export", view("export_form"), "The export form with its conditions builder", TAG),
    Route("POST", ACCOUNT + "/export", view("start_export"), "Start an export", TAG),
    Route("GET", ACCOUNT + "/analytics", view("analytics_page"), "Events and users per day, charted", TAG),
    Route("GET", "/studio/developer", view("developer_page"), "The control API: journal, faults, job modes, outbox, snapshots", TAG),
    Route("GET", "/studio/developer/journal", view("journal_json"), "The request journal as JSON (polled live)", TAG),
    Route("POST", "/studio/developer/faults", view("add_fault"), "Inject a fault", TAG),
    Route("POST", "/studio/developer/faults/{fault_id}/remove", view("remove_fault"), "Remove a fault", TAG),
    Route("POST", "/studio/developer/job-mode", view("set_job_mode"), "Set an account's job mode", TAG),
    Route("POST", "/studio/developer/snapshots", view("create_snapshot"), "Save a snapshot", TAG),
    Route("POST", "/studio/developer/snapshots/{name}/restore", view("restore_snapshot"), "Restore a snapshot", TAG),
    Route("POST", "/studio/developer/reset", view("reset"), "Reset one account's data, or everything", TAG),
]


class StudioRoute(StarletteRoute):
    """A plain Starlette route that names itself in the scope, as the API's routes do, so the
    access log and the metrics count Studio's pages by their template."""

    def matches(self, scope):
        match, child_scope = super().matches(scope)
        if child_scope:
            child_scope["route"] = self
        return match, child_scope


def register(app) -> None:
    app.router.routes.extend(_built_routes())


@functools.cache
def _built_routes() -> tuple:
    """Built once per process and shared by every app (each test makes one)."""
    return tuple(StudioRoute(route.path, route.handler, methods=[route.method]) for route in STUDIO_ROUTES)
