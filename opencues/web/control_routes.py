"""Every route of the control API (``/-/``), in one place: ours, not the vendor's, so they are
kept out of the API's OpenAPI document and its route table (see ``opencues.web.views.control``)."""

from __future__ import annotations

import functools

from opencues.web.dispatch import DirectRoute
from opencues.web.routes import Route
from opencues.web.views import control as views

TAG = "Control"

CONTROL_ROUTES: list[Route] = [
    Route("GET", "/-/health", views.health, "The process is up", TAG),
    Route("GET", "/-/ready", views.ready, "The database answers and its schema is current", TAG),
    Route("POST", "/-/accounts", views.create_account, "Create an account with an API key", TAG, status=201),
    Route("DELETE", "/-/accounts/{account_id}", views.delete_account, "Delete an account and all its data", TAG),
    Route("POST", "/-/reset", views.reset, "Delete every account, key and datum", TAG),
    Route("POST", "/-/accounts/{account_id}/reset", views.reset_account, "Delete an account's data, keeping its keys", TAG),
    Route("POST", "/-/snapshots", views.create_snapshot, "Save all data (or one account's)", TAG, status=201),
    Route("GET", "/-/snapshots", views.list_snapshots, "List snapshots", TAG),
    Route("GET", "/-/snapshots/{name}", views.get_snapshot, "The snapshot file", TAG),
    Route("POST", "/-/snapshots/{name}/restore", views.restore_snapshot, "Restore a snapshot exactly", TAG),
    Route("DELETE", "/-/snapshots/{name}", views.delete_snapshot, "Delete a snapshot", TAG),
    Route("POST", "/-/seed", views.seed, "Load a snapshot file", TAG),
    Route("POST", "/-/faults", views.add_fault, "Inject a fault", TAG, status=201),
    Route("GET", "/-/faults", views.list_faults, "List faults", TAG),
    Route("DELETE", "/-/faults/{fault_id}", views.remove_fault, "Remove a fault", TAG),
    Route("DELETE", "/-/faults", views.clear_faults, "Remove every fault", TAG),
    Route("PUT", "/-/accounts/{account_id}/job-mode", views.set_job_mode, "Set an account's job mode", TAG),
    Route("POST", "/-/jobs/{job_id}/run", views.run_job, "Run a waiting job now", TAG),
    Route("POST", "/-/jobs/{job_id}/fail", views.fail_job, "Fail a job", TAG),
    Route("GET", "/-/requests", views.list_requests, "The request journal, newest first", TAG),
    Route("DELETE", "/-/requests", views.clear_requests, "Clear the request journal", TAG),
    Route("GET", "/-/outbox", views.list_outbox, "Export emails sent or written", TAG),
    Route("GET", "/-/outbox/{message_id}", views.get_outbox_message, "One email, raw (message/rfc822)", TAG),
    Route("DELETE", "/-/outbox", views.clear_outbox, "Clear the outbox", TAG),
]


def register(app) -> None:
    app.router.routes.extend(_built_routes())


@functools.cache
def _built_routes() -> tuple:
    """Built once per process and shared by every app (each test makes one)."""
    return tuple(
        DirectRoute(route.path, route.handler, route.method, include_in_schema=False) for route in CONTROL_ROUTES
    )
