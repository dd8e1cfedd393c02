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
25: ~3,900 requests per run over the API's 77 operations; ``OPENCUES_FUZZ_EXAMPLES=200`` for a
longer hunt); the ``ci`` hypothesis profile makes them the same on every run. The default was 60,
and this module was a quarter of the whole suite's CPU (most of it generating cases, not serving
them): every operation is still fuzzed on both databases, with fewer cases each. Each generated
case is sent to both databases (one test per operation), so it is generated once, not once per
database (docs/decisions.md, "The test suite under 3 minutes", "The test suite under 3 minutes:
the second pass"). Each target keeps one in-process client, its apps and databases live as long as
the (xdist worker's) session, and a finished job is checked once, not after every later test
("The fuzz test's CPU"). Under the ``ci`` profile the cases come from the ``fuzz`` function's
source: editing it draws other cases, and the status mix of the summary line moves with them.
"""

from __future__ import annotations

import base64
import collections
import os
from dataclasses import dataclass, field

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.python import asgi as schemathesis_asgi
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from sqlalchemy import select

from opencues import flows, jobs, profiles, segments
from opencues.settings import Settings
from opencues.storage import Database
from opencues.storage import schema as schema_tables
from opencues.web.app import create_app
from opencues.web.routes import PUBLIC_ROUTES, ROUTES
from opencues.worker import run_pending_jobs
from tests.conftest import create_postgres_database, make_account

pytestmark = pytest.mark.fuzz

FUZZ_EXAMPLES = int(os.environ.get("OPENCUES_FUZZ_EXAMPLES", "25"))
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
# Requests sent, by backend and status: printed at the end of the run (tests/unit/web/conftest.py).
SENT: collections.Counter = collections.Counter()
OPERATIONS = [(r.method, r.path.replace(":path}", "}")) for r in [*PUBLIC_ROUTES, *ROUTES]]


@dataclass
class FuzzTarget:
    """One database's app, with a real account's credentials on it."""

    backend: str
    db: Database
    settings: Settings
    app: object
    creds: object
    # schemathesis' in-process client of the app, kept for every request (see _fuzz_target).
    client: schemathesis_asgi.ASGIClient
    # Jobs already seen finished, and checked: their events no longer change (_no_job_fails_internally).
    checked_jobs: set = field(default_factory=set)


def _fuzz_target(backend: str, data_dir, database_url: str | None) -> FuzzTarget:
    settings = Settings(data_dir=data_dir, database_url=database_url, job_workers=0)
    db = Database(settings.resolved_database_url)
    db.migrate()
    creds = make_account(db, "acct1")
    make_account(db, "acct2")  # another account: its URLs must be 403 for this key
    flows.create_flow(db, "acct1", "Onboarding", flow_id="flow1")
    profiles.update_profile(db, "acct1", "user1", {"plan": "pro"})
    app = create_app(settings, db)
    # `Case.call` without a session makes this client (a `requests` session) for each request, and
    # `requests` then reads the environment for proxies and a .netrc file every time (~1.3 ms of
    # CPU a request, the app's own work aside): an in-process app has no proxy to go through.
    client = schemathesis_asgi.get_client(app)
    client.trust_env = False
    return FuzzTarget(backend, db, settings, app, creds, client.__enter__())


# Session-scoped: under pytest-xdist a worker makes its targets at its first test of this module and
# keeps them until it ends. Module-scoped, they were made again (a PostgreSQL database created and
# migrated) each time the worker came back to this module from another one.
@pytest.fixture(scope="session")
def fuzz_targets(tmp_path_factory):
    """One app per database (no worker threads: each test runs its jobs at the end), each on a
    database of its own that every operation's requests share — what one creates, the next can
    find — with a real account and key, and ids that exist. PostgreSQL is left out when it is
    not to be had (a failure instead under ``OPENCUES_REQUIRE_POSTGRES=1``); the summary line's
    count per database shows it."""
    targets = [_fuzz_target("sqlite", tmp_path_factory.mktemp("fuzz") / "data", None)]
    drop = None
    try:
        database_url, drop = create_postgres_database("opencues_fuzz")
    except pytest.skip.Exception:
        pass
    else:
        targets.append(_fuzz_target("postgres", tmp_path_factory.mktemp("fuzz") / "data", database_url))
    yield targets
    for target in targets:
        target.client.__exit__(None, None, None)
        target.db.dispose()
    if drop is not None:
        drop()


@pytest.fixture(scope="session")
def fuzz_schema(fuzz_targets):
    """The API's document, read once from the first target's app; each case is sent to every
    target's app."""
    return schemathesis.openapi.from_asgi("/openapi.json", fuzz_targets[0].app)


def _existing_ids(db) -> dict[str, list[str]]:
    """Ids that exist now, for the path parameters (what earlier operations created included)."""
    segments.create_segment(db, "acct1", {"name": "Fuzzed"}, by="tests")  # one survives the DELETEs
    with db.connect() as conn:
        column = lambda table, name: sorted(
            row[0] for row in conn.execute(select(table.c[name]).where(table.c.account_id == "acct1").limit(50))
        )
        return {
            "flow_id": column(schema_tables.flows, "id"),
            "segment_id": column(schema_tables.segments, "id"),
            "job_id": column(schema_tables.jobs, "id"),
            "user_id": column(schema_tables.profiles, "user_id") + column(schema_tables.events, "user_id")[:5],
        }


# The fields a generated body gets wrong nearly always (free-form strings that must be a time, an
# address, a conditions tree), replaced now and then by valid ones so that the rest is exercised.
VALID_FIELDS = {
    ("POST", "/v2/accounts/{account_id}/users/{user_id}/events"): st.fixed_dictionaries(
        {"name": st.sampled_from(["Clicked", "appcues:nps_score"]),
         "timestamp": st.sampled_from(["2021-07-16T16:02:50.037Z", "2021-07-16", "2021-07-16T12:02:50-04:00"])}
    ),
    ("POST", "/v2/accounts/{account_id}/export/events"): st.fixed_dictionaries(
        {"email": st.sampled_from(["fuzz@example.com", ["a@example.com", "b@example.com"]]),
         "start_time": st.sampled_from(["2021-01-01T00:00:00Z", 0]),
         "end_time": st.sampled_from([1_700_000_000_000, "2030-01-01"]),
         "conditions": st.sampled_from([[], [["flow_id", "==", "f1"]], [["or", ["name", "like", "a%"], ["not", ["user_id", "in", ["u1"]]]]],
                                        [["attributes.plan", "is not null"], ["timestamp", ">=", "2021-01-01"]]])},
        optional={"time_zone": st.sampled_from(["-04:00", 330, None]), "limit": st.integers(1, 10), "offset": st.integers(0, 3)},
    ),
}  # fmt: skip


@pytest.mark.parametrize("method, path", OPERATIONS, ids=[f"{m} {p}" for m, p in OPERATIONS])
def test_fuzzed_requests_get_documented_answers(fuzz_targets, fuzz_schema, method, path):
    operation = fuzz_schema[path][method]
    ids = {target.backend: _existing_ids(target.db) for target in fuzz_targets}
    valid_fields = VALID_FIELDS.get((method, path))
    cases = st.one_of(
        operation.as_strategy(schemathesis.GenerationMode.POSITIVE),
        operation.as_strategy(schemathesis.GenerationMode.NEGATIVE),
    )

    # Each generated case goes to every database, changed in the same ways: generating a case
    # costs more than serving it, and under the `ci` profile (derandomized) the two databases
    # were sent the same cases anyway when each had a test of its own.
    @settings(max_examples=FUZZ_EXAMPLES, suppress_health_check=list(HealthCheck))
    @given(case=cases, data=st.data())
    def fuzz(case, data):
        params = dict(case.path_parameters or {})
        own_account = "account_id" in params and data.draw(st.integers(0, 9), "own account") < 9
        existing = {
            name: data.draw(st.integers(0, 49), f"existing {name}")
            for name in ids[fuzz_targets[0].backend]
            if name in params and data.draw(st.integers(0, 3), f"existing {name}?") < 3
        }
        if valid_fields is not None and isinstance(case.body, dict) and data.draw(st.integers(0, 2), "valid fields"):
            case.body.update(data.draw(valid_fields))
        auth = data.draw(st.sampled_from(["key"] * 8 + ["none", "wrong"]), "credentials")
        headers = {k: v for k, v in (case.headers or {}).items() if k.lower() != "authorization"}
        for target in fuzz_targets:
            sent = case.derive()
            if own_account:
                sent.path_parameters["account_id"] = target.creds.account_id
            for name, pick in existing.items():
                if known := ids[target.backend][name]:
                    sent.path_parameters[name] = known[pick % len(known)]
            target_headers = dict(headers)
            if auth != "none":
                creds = target.creds
                wrong = "Basic " + base64.b64encode(f"{creds.key}:not-the-secret".encode()).decode()
                target_headers["Authorization"] = creds.header["Authorization"] if auth == "key" else wrong
            # Assigned, not changed in place: schemathesis then re-checks whether the case is still a
            # negative one (a header it had left out to make it one is back), as it did before.
            sent.headers = target_headers
            response = sent.call(app=target.app, session=target.client)
            target.client.cookies.clear()  # as a new client per request had none
            SENT[(target.backend, f"{method} {path}", response.status_code)] += 1
            sent.validate_response(response, checks=CHECKS)

    fuzz()
    for target in fuzz_targets:
        _no_job_fails_internally(target)


def _no_job_fails_internally(target) -> None:
    """Run the jobs the fuzzed requests started: a job may fail for its input (a deleted
    segment), never with an internal error. A job seen finished has been checked for good;
    the others are checked again after the next test's requests (re-reading every job of the
    database after each test made this quadratic: ~4,000 reads in a run)."""
    db, settings = target.db, target.settings
    run_pending_jobs(db, target.app.state.file_store, settings, timeout=120)
    for account in ("acct1", "acct2"):
        for job in jobs.list_jobs(db, account):
            if job["id"] in target.checked_jobs:
                continue
            detail = jobs.get_job(db, account, job["id"])
            for event in detail["events"]:
                reason = str(event["attributes"].get("reason", ""))
                assert "internal error" not in reason, (job["name"], reason)
            if detail["status"] != jobs.JobStatus.IN_PROGRESS.value:
                target.checked_jobs.add(job["id"])
