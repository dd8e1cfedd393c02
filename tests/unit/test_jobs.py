"""The job resource (`GET jobs`, `GET jobs/{id}`) and job creation with Idempotency-Key."""

from __future__ import annotations

from datetime import datetime

import pytest
from sqlalchemy import func, select, update

from opencues import idempotency, jobs
from opencues.errors import ApiError
from opencues.settings import Settings
from opencues.storage.schema import idempotency_keys
from opencues.storage.schema import jobs as jobs_table
from opencues.timestamps import now_ms
from tests.conftest import AccountClient, assert_problem, make_account


@pytest.fixture
def settings(database_url, tmp_path):
    """No in-process job worker: these tests read jobs made by hand, which a worker would claim
    (and, finding no payload, resume) while the test reads them."""
    return Settings(data_dir=tmp_path / "data", database_url=database_url, job_workers=0)


def new_job(db, kind="import_profiles", account_id="acct1", started_at=None) -> str:
    with db.begin() as conn:
        job_id = jobs.create_job(conn, account_id, kind)
        if started_at is not None:
            conn.execute(update(jobs_table).where(jobs_table.c.id == job_id).values(started_at=started_at))
        jobs.add_event(conn, job_id, "Ingesting")
    return job_id


def test_list_jobs_most_recent_first(api, db):
    older = new_job(db, started_at=1_627_510_318_000)
    newer = new_job(db, "import_events", started_at=1_627_579_428_123)
    body = api.get("jobs").json()
    assert [j["id"] for j in body] == [newer, older]
    assert body[0] == {
        "id": newer,
        "name": "Import Events",
        "started_at": "2021-07-29T17:23:48.123Z",
        "status": "IN_PROGRESS",
        "url": f"http://testserver/v2/accounts/acct1/jobs/{newer}",
    }
    assert "events" not in body[1]


def test_list_jobs_csv_uses_the_spec_columns(api, db):
    job_id = new_job(db, started_at=1_627_510_318_000)
    lines = api.get("jobs", headers={"Accept": "text/csv"}).text.splitlines()
    assert lines == [
        "id,name,status,started_at,url",
        f"{job_id},Import Profiles,IN_PROGRESS,2021-07-28T22:11:58.000Z,http://testserver/v2/accounts/acct1/jobs/{job_id}",
    ]


def test_get_job_has_events_and_csv_omits_them(api, db):
    job_id = new_job(db)
    body = api.get(f"jobs/{job_id}").json()
    assert list(body) == ["events", "id", "name", "started_at", "status", "url"]
    assert [e["name"] for e in body["events"]] == ["Ingesting"]
    event = body["events"][0]
    assert event["attributes"] == {}
    datetime.strptime(event["timestamp"], "%Y-%m-%dT%H:%M:%S.%fZ")
    lines = api.get(f"jobs/{job_id}", headers={"Accept": "text/csv"}).text.splitlines()
    assert lines[0] == "id,name,status,started_at,url"
    assert lines[1].startswith(f"{job_id},Import Profiles,IN_PROGRESS,")


def test_unknown_job_and_another_accounts_job_are_404(client, api, db):
    theirs = new_job(db, account_id="acct2")
    make_account(db, "acct2")
    assert_problem(api.get("jobs/nope"), 404, "nope")
    assert_problem(api.get(f"jobs/{theirs}"), 404)
    assert api.get("jobs").json() == []


def test_read_only_keys_can_read_jobs(client, db, account):
    job_id = new_job(db)
    reader = AccountClient(client, make_account(db, "acct1", read_only=True))
    assert reader.get(f"jobs/{job_id}").status_code == 200


def test_submit_with_a_repeated_key_returns_the_original_job(db):
    first = jobs.submit(db, "acct1", "import_events", idempotency_key="k", request_hash="h1")
    again = jobs.submit(db, "acct1", "import_events", idempotency_key="k", request_hash="h1")
    assert again.job_id == first.job_id and again.replayed and not first.replayed
    with pytest.raises(ApiError) as raised:
        jobs.submit(db, "acct1", "import_events", idempotency_key="k", request_hash="h2")
    assert raised.value.status == 422
    assert len(jobs.list_jobs(db, "acct1")) == 1


def test_expired_idempotency_keys_are_forgotten(db):
    first = jobs.submit(db, "acct1", "import_events", idempotency_key="k", request_hash="h", ttl_hours=1)
    with db.begin() as conn:
        conn.execute(update(idempotency_keys).values(created_at=now_ms() - 2 * 3_600_000))
    second = jobs.submit(db, "acct1", "import_events", idempotency_key="k", request_hash="h", ttl_hours=1)
    assert second.job_id != first.job_id and not second.replayed
    with db.connect() as conn:
        assert conn.execute(select(func.count()).select_from(idempotency_keys)).scalar() == 1


def test_request_hash_distinguishes_every_part():
    base = idempotency.request_hash("POST", "/a", "ndjson", "abc")
    assert base == idempotency.request_hash("post", "/a", "ndjson", "abc")
    assert base != idempotency.request_hash("POST", "/b", "ndjson", "abc")
    assert base != idempotency.request_hash("POST", "/a", "csv", "abc")
    assert base != idempotency.request_hash("POST", "/a", "ndjson", "abd")
