"""Every route of Studio (``/studio``), in one place: plain Starlette routes, outside the API's
OpenAPI document (Studio is ours, not the vendor's)."""

from __future__ import annotations

from starlette.routing import Route as StarletteRoute

from opencues.studio import views
from opencues.studio.render import static_file
from opencues.web.routes import Route

TAG = "Studio"
ACCOUNT = "/studio/accounts/{account_id}"

STUDIO_ROUTES: list[Route] = [
    Route("GET", "/studio", views.home, "Studio's home: the account list (admin) or the key's account", TAG),
    Route("GET", "/studio/login", views.login_form, "Sign-in form (API key and secret, or the admin token)", TAG),
    Route("POST", "/studio/login", views.login, "Sign in", TAG),
    Route("POST", "/studio/logout", views.logout, "Sign out", TAG),
    Route("GET", "/studio/static/{name}", static_file, "Studio's CSS and JavaScript", TAG),
    Route("GET", "/studio/accounts", views.accounts_page, "Accounts (admin)", TAG),
    Route("POST", "/studio/accounts", views.create_account, "Create an account with a key (admin)", TAG),
    Route("GET", ACCOUNT + "/keys", views.keys_page, "An account's API keys (admin)", TAG),
    Route("POST", ACCOUNT + "/keys", views.create_key, "Create a key: its secret is shown once (admin)", TAG),
    Route("POST", ACCOUNT + "/keys/{key}/revoke", views.revoke_key, "Revoke a key (admin)", TAG),
    Route("GET", ACCOUNT + "/content", views.content_page, "Flows and experiences, searched and filtered", TAG),
    Route("GET", ACCOUNT + "/content/{resource}/{item_id}", views.content_detail, "One flow or experience", TAG),
    Route("POST", ACCOUNT + "/content/{resource}/{item_id}/publish", views.publish, "Publish", TAG),
    Route("POST", ACCOUNT + "/content/{resource}/{item_id}/unpublish", views.unpublish, "Unpublish", TAG),
    Route("GET", ACCOUNT + "/tags", views.tags_page, "Tags", TAG),
    Route("GET", ACCOUNT + "/segments", views.segments_page, "Segments", TAG),
    Route("POST", ACCOUNT + "/segments", views.create_segment, "Create a segment", TAG),
    Route("GET", ACCOUNT + "/segments/{segment_id}", views.segment_page, "A segment and its members (keyset pages)", TAG),
    Route("POST", ACCOUNT + "/segments/{segment_id}/rename", views.rename_segment, "Rename a segment", TAG),
    Route("POST", ACCOUNT + "/segments/{segment_id}/delete", views.delete_segment, "Delete a segment", TAG),
    Route("POST", ACCOUNT + "/segments/{segment_id}/upload", views.upload_members, "Add or remove the user ids of a file (a job)", TAG),
    Route("GET", ACCOUNT + "/users", views.users_page, "Users by id prefix (keyset pages)", TAG),
    Route("GET", ACCOUNT + "/users/view", views.user_page, "A user: profile, group and event timeline", TAG),
    Route("POST", ACCOUNT + "/users/profile", views.edit_profile, "Set or remove a profile key", TAG),
    Route("GET", ACCOUNT + "/groups/view", views.group_page, "A group's profile", TAG),
    Route("GET", ACCOUNT + "/jobs", views.jobs_page, "Jobs, and the import form", TAG),
    Route("POST", ACCOUNT + "/jobs/import", views.start_import, "Start an import from an uploaded file", TAG),
    Route("GET", ACCOUNT + "/jobs/{job_id}", views.job_page, "A job, followed live", TAG),
    Route("GET", ACCOUNT + "/jobs/{job_id}/status", views.job_status, "A job as JSON (the job page polls it)", TAG),
    Route("GET", ACCOUNT + "/export", views.export_form, "The export form with its conditions builder", TAG),
    Route("POST", ACCOUNT + "/export", views.start_export, "Start an export", TAG),
    Route("GET", ACCOUNT + "/analytics", views.analytics_page, "Events and users per day, charted", TAG),
    Route("GET", "/studio/developer", views.developer_page, "The control API: journal, faults, job modes, outbox, snapshots", TAG),
    Route("GET", "/studio/developer/journal", views.journal_json, "The request journal as JSON (polled live)", TAG),
    Route("POST", "/studio/developer/faults", views.add_fault, "Inject a fault", TAG),
    Route("POST", "/studio/developer/faults/{fault_id}/remove", views.remove_fault, "Remove a fault", TAG),
    Route("POST", "/studio/developer/job-mode", views.set_job_mode, "Set an account's job mode", TAG),
    Route("POST", "/studio/developer/snapshots", views.create_snapshot, "Save a snapshot", TAG),
    Route("POST", "/studio/developer/snapshots/{name}/restore", views.restore_snapshot, "Restore a snapshot", TAG),
    Route("POST", "/studio/developer/reset", views.reset, "Reset one account's data, or everything", TAG),
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
    for route in STUDIO_ROUTES:
        app.router.routes.append(StudioRoute(route.path, route.handler, methods=[route.method]))
