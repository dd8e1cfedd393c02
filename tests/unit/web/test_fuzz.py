"""Fuzzing the API from its own OpenAPI document (schemathesis), on SQLite and PostgreSQL.

For every documented operation, ``FUZZ_EXAMPLES`` requests generated from ``/openapi.json`` —
valid ones and deliberately invalid ones — go to the in-process app with a real account's API
key (now and then with none, or a wrong one). The path's account is the key's own, and ids in
the path are now and then ones that exist (a flow, a segment, a job, a user with a profile), so
the authenticated paths run to the database and back instead of stopping at 401/403/404. A
generated body is now and then patched with the few fields the schema cannot say enough about
(a valid time, an e-mail address), so it gets past validation too.

Every response must be no 5xx and must match the document: its status is documented for the
operation, its content type is, and its body validates against the documented schema. Then the
jobs the requests started (imports, segment uploads, exports of whatever was generated) are run,
and none may fail with an internal error.

``OPENCUES_FUZZ_EXAMPLES`` changes the number of requests per operation and database (default
60: ~2,500 requests per run); the ``ci`` hypothesis profile makes them the same on every run.
"""

from __future__ import annotations

import base64
import collections
import os

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from sqlalchemy import select

from opencues import flows, jobs, profiles, segments
from opencues.settings import Settings
from opencues.storage import Database
from opencues.storage.schema import jobs as jobs_table
from opencues.web.app import create_app
from opencues.web.routes import PUBLIC_ROUTES, ROUTES
from opencues.worker import run_pending_jobs
from tests.conftest import create_postgres_database, make_account

pytestmark = pytest.mark.fuzz

FUZZ_EXAMPLES = int(os.environ.get("OPENCUES_FUZZ_EXAMPLES", "60"))
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
# Requests sent, by backend and status: printed at the end of the run (tests/unit/web/conftest.py).
SENT: collections.Counter = collections.Counter()
OPERATIONS = [(r.method, r.path.replace(":path}", "}")) for r in [*PUBLIC_ROUTES, *ROUTES]]


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def fuzz_target(request, tmp_path_factory):
    """Per backend, one app (no worker threads: each test runs its jobs at the end) on a database
    of its own that every operation's requests share — what one creates, the next can find —
    with a real account and key, and ids that exist."""
    data_dir = tmp_path_factory.mktemp("fuzz") / "data"
    drop = None
    database_url = None
    if request.param == "postgres":
        database_url, drop = create_postgres_database("opencues_fuzz")
    settings = Settings(data_dir=data_dir, database_url=database_url, job_workers=0)
    db = Database(settings.resolved_database_url)
    db.migrate()
    creds = make_account(db, "acct1")
    make_account(db, "acct2")  # another account: its URLs must be 403 for this key
    flow = flows.create_flow(db, "acct1", "Onboarding", flow_id="flow1")
    segment = segments.create_segment(db, "acct1", {"name": "Fuzzed"}, by="tests")
    profiles.update_profile(db, "acct1", "user1", {"plan": "pro"})
    app = create_app(settings, db)
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    yield {"backend": request.param, "db": db, "settings": settings, "app": app, "schema": schema, "creds": creds,
           "ids": {"flow_id": [flow["id"]], "segment_id": [segment["id"]], "user_id": ["user1"], "job_id": []}}  # fmt: skip
    db.dispose()
    if drop is not None:
        drop()


def _existing_job_ids(db) -> list[str]:
    with db.connect() as conn:
        return [row.id for row in conn.execute(select(jobs_table.c.id).limit(20))]


VALID_PATCHES = {
    ("POST", "/v2/accounts/{account_id}/users/{user_id}/events"): {"timestamp": "2021-07-16T16:02:50.037Z"},
    ("POST", "/v2/accounts/{account_id}/export/events"): {
        "email": "fuzz@example.com", "start_time": "2021-01-01T00:00:00Z", "end_time": 1_700_000_000_000,
    },
}  # fmt: skip


@pytest.mark.parametrize("method, path", OPERATIONS, ids=[f"{m} {p}" for m, p in OPERATIONS])
def test_fuzzed_requests_get_documented_answers(fuzz_target, method, path):
    schema, creds, backend = fuzz_target["schema"], fuzz_target["creds"], fuzz_target["backend"]
    operation = schema[path][method]
    ids = fuzz_target["ids"]
    ids["job_id"] = _existing_job_ids(fuzz_target["db"])
    wrong = "Basic " + base64.b64encode(f"{creds.key}:not-the-secret".encode()).decode()
    cases = st.one_of(
        operation.as_strategy(schemathesis.GenerationMode.POSITIVE),
        operation.as_strategy(schemathesis.GenerationMode.NEGATIVE),
    )

    @settings(max_examples=FUZZ_EXAMPLES, suppress_health_check=list(HealthCheck))
    @given(case=cases, data=st.data())
    def fuzz(case, data):
        if "account_id" in (case.path_parameters or {}) and data.draw(st.integers(0, 9), "own account") < 9:
            case.path_parameters["account_id"] = creds.account_id
        for name, known in ids.items():
            if name in (case.path_parameters or {}) and known and data.draw(st.booleans(), f"existing {name}"):
                case.path_parameters[name] = data.draw(st.sampled_from(known))
        patch = VALID_PATCHES.get((method, path))
        if patch and isinstance(case.body, dict) and data.draw(st.booleans(), "valid fields"):
            case.body.update(patch)
        auth = data.draw(st.sampled_from(["key"] * 8 + ["none", "wrong"]), "credentials")
        headers = {k: v for k, v in (case.headers or {}).items() if k.lower() != "authorization"}
        if auth != "none":
            headers["Authorization"] = creds.header["Authorization"] if auth == "key" else wrong
        case.headers = headers
        response = case.call()
        SENT[(backend, response.status_code)] += 1
        case.validate_response(response, checks=CHECKS)

    fuzz()
    _no_job_fails_internally(fuzz_target)


def _no_job_fails_internally(target) -> None:
    """Run the jobs the fuzzed requests started: a job may fail for its input (a deleted
    segment), never with an internal error."""
    db, settings = target["db"], target["settings"]
    run_pending_jobs(db, target["app"].state.file_store, settings, timeout=120)
    for account in ("acct1", "acct2"):
        for job in jobs.list_jobs(db, account):
            detail = jobs.get_job(db, account, job["id"])
            for event in detail["events"]:
                reason = str(event["attributes"].get("reason", ""))
                assert "internal error" not in reason, (job["name"], reason)
