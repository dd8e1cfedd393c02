"""The analytics routes over HTTP: rows, truncation, errors, the rate-limit and concurrency
headers on every response, and the export jobs from queued to a downloaded JSON file."""

from __future__ import annotations

import time
import uuid

import pytest

from opencues import jobs, worker
from opencues.storage.schema import events
from opencues.web.app import create_app
from tests.conftest import AccountClient, assert_problem, make_account
from tests.in_process_client import InProcessClient

RATE_HEADERS = ("x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-reset")
SPEC = {"metrics": ["events", "users"], "dimensions": ["user_id"], "start_time": "2026-01-01", "end_time": "2026-01-03"}


def _seed(db, account_id: str, count: int) -> None:
    with db.begin() as conn:
        conn.execute(events.insert(), [
            {"account_id": account_id, "user_id": f"user-{i:05d}", "name": "appcues:flow_started",
             "timestamp": 1767225600000 + i * 1000, "attributes": {"flowId": "f1"}} for i in range(count)
        ])  # fmt: skip


def _client(settings, db, **overrides) -> InProcessClient:
    return InProcessClient(create_app(settings.model_copy(update={"job_workers": 0, **overrides}), db))


@pytest.fixture
def analytics_api(settings, db, account):
    with _client(settings, db) as client:
        yield AccountClient(client, account)


def _has_rate_headers(response) -> None:
    for header in RATE_HEADERS:
        assert header in response.headers, f"{header} missing on {response.status_code}"
    assert response.headers["x-ratelimit-limit"] == "60"
    assert 0 <= int(response.headers["x-ratelimit-remaining"]) <= 60
    assert abs(int(response.headers["x-ratelimit-reset"]) - time.time()) <= 2


def test_query_answers_a_bare_array_with_rate_headers(analytics_api, db, account):
    _seed(db, account.account_id, 3)
    response = analytics_api.post("analytics/query", json=SPEC)
    assert response.status_code == 200
    assert response.json() == [{"user_id": f"user-{i:05d}", "events": 1, "users": 1} for i in range(3)]
    _has_rate_headers(response)
    assert "x-rows-truncated" not in response.headers


def test_more_than_1000_rows_are_truncated_with_a_header(analytics_api, db, account):
    _seed(db, account.account_id, 1200)
    response = analytics_api.post("analytics/query", json=SPEC)
    assert len(response.json()) == 1000
    assert response.headers["x-rows-truncated"] == "true"


@pytest.mark.parametrize(
    "body, mentions",
    [({**SPEC, "start_time": None}, "start_time is required"), ({**SPEC, "dimensions": ["foo"]}, 'unknown dimension "foo"'),
     ({**SPEC, "end_time": "2026-05-28"}, "time range of 147 days exceeds the 90-day maximum")],
)
def test_errors_are_400_problems_with_the_rate_headers(analytics_api, body, mentions):
    response = analytics_api.post("analytics/query", json={k: v for k, v in body.items() if v is not None})
    assert_problem(response, 400, mentions)
    _has_rate_headers(response)


def test_auth_failures_carry_the_rate_headers_too(analytics_api, other_account):
    response = analytics_api.post("analytics/query", json=SPEC, auth=("nobody", "nothing"))
    assert_problem(response, 401)
    _has_rate_headers(response)
    response = analytics_api.post("analytics/query", json=SPEC, auth=other_account.auth)
    assert_problem(response, 403)
    _has_rate_headers(response)


def test_read_only_keys_may_query(analytics_api, db, account):
    reader = make_account(db, account.account_id, read_only=True)
    assert analytics_api.post("analytics/query", json=SPEC, auth=reader.auth).status_code == 200


def test_over_the_analytics_limit_is_429_with_an_integer_retry_after(settings, db, account):
    with _client(settings, db, analytics_rate_limit="3/minute") as client:
        api = AccountClient(client, account)
        remaining = [int(api.post("analytics/query", json=SPEC).headers["x-ratelimit-remaining"]) for _ in range(3)]
        assert remaining == [2, 1, 0]
        response = api.post("analytics/query", json=SPEC)
        assert_problem(response, 429, "rate limited")
        assert 1 <= int(response.headers["retry-after"]) <= 60
        assert response.headers["x-ratelimit-remaining"] == "0"
        assert_problem(api.get("analytics/exports/whatever"), 429)  # the account's budget covers every analytics route
        assert api.get("flows").status_code == 200  # the rest of the API is not counted


def test_the_analytics_limit_is_shared_through_redis(settings, db, redis_url):
    creds = make_account(db, f"acct-{uuid.uuid4().hex[:8]}")
    overrides = dict(analytics_rate_limit="4/minute", redis_url=redis_url)
    with _client(settings, db, **overrides) as one, _client(settings, db, **overrides) as two:
        first, second = AccountClient(one, creds), AccountClient(two, creds)
        codes = [c.post("analytics/query", json=SPEC).status_code for c in (first, second, first, second, first)]
        assert codes == [200, 200, 200, 200, 429]


def _run_jobs(client) -> None:
    state = client.app.state
    worker.run_pending_jobs(state.db, state.file_store, state.settings)


def test_export_goes_from_queued_to_done_and_downloads_every_row(analytics_api, db, account):
    _seed(db, account.account_id, 1200)
    spec = {**SPEC, "metrics": None, "dimensions": None, "columns": ["timestamp", "user_id", "name"]}
    spec = {k: v for k, v in spec.items() if v is not None}
    created = analytics_api.post("analytics/exports", json=spec)
    assert created.status_code == 202
    job_id = created.json()["job_id"]
    assert created.json() == {"job_id": job_id, "status": "queued"}
    assert (created.headers["x-concurrency-limit"], created.headers["x-concurrency-used"]) == ("2", "1")
    _has_rate_headers(created)
    polled = analytics_api.get(f"analytics/exports/{job_id}")
    assert polled.json() == {"job_id": job_id, "status": "queued"}
    assert polled.headers["x-concurrency-used"] == "1"
    _run_jobs(analytics_api.client)
    done = analytics_api.get(f"analytics/exports/{job_id}")
    body = done.json()
    assert body["status"] == "done" and done.headers["x-concurrency-used"] == "0"
    expires = time.mktime(time.strptime(body["expires_at"][:19], "%Y-%m-%dT%H:%M:%S")) - time.timezone
    assert 3590 <= expires - time.time() <= 3610
    download = analytics_api.client.get(body["download_url"])  # no credentials: the link is the key
    assert download.status_code == 200 and download.headers["content-type"].startswith("application/json")
    rows = download.json()
    assert len(rows) == 1200  # no 1000-row clamp
    assert rows[:2] == [
        {"timestamp": "2026-01-01T00:00:00.000Z", "user_id": "user-00000", "name": "appcues:flow_started"},
        {"timestamp": "2026-01-01T00:00:01.000Z", "user_id": "user-00001", "name": "appcues:flow_started"},
    ]
    synchronous = analytics_api.post("analytics/query", json={**spec, "limit": 1000}).json()
    assert rows[:1000] == synchronous
    # analytics exports are not legacy jobs
    assert job_id not in [j["id"] for j in analytics_api.get("jobs").json()]
    assert_problem(analytics_api.get(f"jobs/{job_id}"), 404)


def test_an_expired_export_file_reads_failed(analytics_api, db, account):
    job_id = analytics_api.post("analytics/exports", json={**SPEC, "limit": 5}).json()["job_id"]
    _run_jobs(analytics_api.client)
    analytics_api.client.app.state.file_store.delete(f"exports/{account.account_id}/analytics-{job_id}.json")
    assert analytics_api.get(f"analytics/exports/{job_id}").json() == {"job_id": job_id, "status": "failed", "failure_reason": "export expired"}


def test_a_failed_export_tells_why(analytics_api, db, account):
    with db.begin() as conn:
        jobs.create_job(conn, account.account_id, "analytics_export", params={"spec": {"metrics": ["events"]}}, job_id="bad-job")
    _run_jobs(analytics_api.client)
    body = analytics_api.get("analytics/exports/bad-job").json()
    assert body["status"] == "failed" and "start_time is required" in body["failure_reason"]


def test_at_most_two_unfinished_exports_per_account(analytics_api):
    assert [analytics_api.post("analytics/exports", json=SPEC).status_code for _ in range(2)] == [202, 202]
    refused = analytics_api.post("analytics/exports", json=SPEC)
    assert_problem(refused, 429)
    assert (refused.headers["x-concurrency-limit"], refused.headers["x-concurrency-used"]) == ("2", "2")
    _has_rate_headers(refused)
    _run_jobs(analytics_api.client)
    assert analytics_api.post("analytics/exports", json=SPEC).status_code == 202


def test_unknown_and_legacy_job_ids_are_no_such_export_job(analytics_api, db, account):
    assert_problem(analytics_api.get("analytics/exports/nope"), 404, "no such export job")
    with db.begin() as conn:
        jobs.create_job(conn, account.account_id, "export_events", params={}, job_id="legacy-job")
    assert_problem(analytics_api.get("analytics/exports/legacy-job"), 404, "no such export job")


def test_exports_have_no_90_day_cap_but_validate_the_spec(analytics_api):
    assert analytics_api.post("analytics/exports", json={**SPEC, "end_time": "2027-01-01"}).status_code == 202
    assert_problem(analytics_api.post("analytics/exports", json={**SPEC, "metrics": ["nope"]}), 400, 'unknown metric "nope"')


def test_a_per_key_429_still_carries_the_analytics_headers(settings, db, account):
    with _client(settings, db, rate_limit="1/minute") as client:
        api = AccountClient(client, account)
        assert api.post("analytics/query", json=SPEC).status_code == 200
        refused = api.post("analytics/query", json=SPEC)
        assert_problem(refused, 429)
        _has_rate_headers(refused)
