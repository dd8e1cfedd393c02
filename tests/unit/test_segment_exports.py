"""``POST segments/{id}/segment_membership_export`` (spec §6): a job writing the segment's members
with the requested profile properties behind a signed link, emailed when asked. SQLite and PostgreSQL."""

from __future__ import annotations

import csv
import io
from email import message_from_bytes
from pathlib import Path

import orjson
import pytest

from opencues import jobs, timestamps
from opencues.settings import Settings
from opencues.worker import run_pending_jobs
from tests.conftest import AccountClient, assert_problem, make_account


@pytest.fixture
def settings(database_url, tmp_path):
    return Settings(data_dir=tmp_path / "data", database_url=database_url, job_workers=0)


def drain(app) -> int:
    return run_pending_jobs(app.state.db, app.state.file_store, app.state.settings)


@pytest.fixture
def segment(api, app) -> str:
    """A segment of u1..u3 (u3 without a profile) with profiles for u1, u2 and a non-member."""
    segment_id = api.post("segments", json={"name": "Power users"}).json()["id"]
    api.patch("users/u1/profile", json={"plan": "pro", "seats": 3, "address": {"city": "Paris"}, "flag": True})
    api.patch("users/u2/profile", json={"plan": "free, basic"})
    api.patch("users/outsider/profile", json={"plan": "none"})
    api.post(f"segments/{segment_id}/add_user_ids", json={"user_ids": ["u2", "u1", "u3"]})
    drain(app)
    return segment_id


def done(api, response) -> dict:
    assert response.status_code == 202, response.text
    body = response.json()
    assert set(body) == {"job_id", "job_url", "status", "title"} and body["status"] == 202
    job = api.get(f"jobs/{body['job_id']}").json()
    assert job["status"] == "COMPLETED", job
    assert job["name"] == "Export Segment Membership"
    assert [e["name"] for e in job["events"]] == ["Exporting", "Completed"]
    return job["events"][-1]["attributes"]


def test_default_is_ndjson_of_user_ids(api, app, client, segment):
    response = api.post(f"segments/{segment}/segment_membership_export", json={})
    drain(app)
    attributes = done(api, response)
    assert attributes["rows_exported"] == 3
    download = client.get(attributes["download_url"])  # the link is the credential
    assert download.status_code == 200
    assert download.headers["content-type"].startswith("application/x-ndjson")
    assert f'filename="segment-{segment}-' in download.headers["content-disposition"]
    assert [orjson.loads(line) for line in download.content.splitlines()] == [{"user_id": "u1"}, {"user_id": "u2"}, {"user_id": "u3"}]


def test_an_empty_body_is_accepted(api, app, segment):
    response = api.post(f"segments/{segment}/segment_membership_export")
    drain(app)
    assert done(api, response)["rows_exported"] == 3


def test_json_with_properties_in_request_order(api, app, client, segment):
    body = {"property_names": ["seats", "plan", "missing", "address", "plan"], "format": "json"}
    response = api.post(f"segments/{segment}/segment_membership_export", json=body)
    drain(app)
    lines = client.get(done(api, response)["download_url"]).content.splitlines()
    assert [orjson.loads(line) for line in lines] == [
        {"user_id": "u1", "seats": 3, "plan": "pro", "missing": None, "address": {"city": "Paris"}},
        {"user_id": "u2", "seats": None, "plan": "free, basic", "missing": None, "address": None},
        {"user_id": "u3", "seats": None, "plan": None, "missing": None, "address": None},
    ]
    assert lines[0].startswith(b'{"user_id":"u1","seats":3,"plan"')


def test_csv_with_properties_and_emailed_link(api, app, client, segment, settings):
    body = {"property_names": ["plan", "address", "flag"], "format": "csv", "email": ["a@example.com", "b@example.com"]}
    response = api.post(f"segments/{segment}/segment_membership_export", json=body)
    drain(app)
    attributes = done(api, response)
    expires = timestamps.parse_iso(attributes["expires_at"], field="expires_at")
    assert abs(expires - timestamps.now_ms() - 7 * 86_400_000) < 120_000
    download = client.get(attributes["download_url"])
    assert download.headers["content-type"].startswith("text/csv")
    assert list(csv.reader(io.StringIO(download.text, newline=""))) == [
        ["user_id", "plan", "address", "flag"],
        ["u1", "pro", '{"city":"Paris"}', "true"],
        ["u2", "free, basic", "", ""],
        ["u3", "", "", ""],
    ]
    mails = [message_from_bytes(p.read_bytes()) for p in sorted((Path(settings.data_dir) / "outbox").glob("*.eml"))]
    assert sorted(m["To"] for m in mails) == ["a@example.com", "b@example.com"]
    assert all(attributes["download_url"] in m.get_payload(decode=True).decode() for m in mails)
    assert "3 members" in mails[0]["Subject"]


def test_without_email_nothing_is_mailed(api, app, segment, settings):
    response = api.post(f"segments/{segment}/segment_membership_export", json={"format": "csv"})
    drain(app)
    done(api, response)
    assert not list((Path(settings.data_dir) / "outbox").glob("*.eml"))


def test_unknown_segment_is_404_segment_not_found(api, client, db, segment):
    assert assert_problem(api.post("segments/nope/segment_membership_export", json={}), 404)["detail"] == "segment not found"
    other = AccountClient(client, make_account(db, "acct2"))
    assert_problem(other.post(f"segments/{segment}/segment_membership_export", json={}), 404, "segment not found")


@pytest.mark.parametrize(
    "body, field",
    [({"format": "xml"}, "`format`"), ({"property_names": "plan"}, "`property_names`"),
     ({"property_names": ["plan", 3]}, "`property_names[1]`"), ({"email": "not-an-address"}, "`email`"), ([], "object")],
)  # fmt: skip
def test_bad_bodies_are_400_naming_the_field(api, segment, body, field):
    assert_problem(api.post(f"segments/{segment}/segment_membership_export", json=body), 400, field)
    assert api.get("jobs").json()[0]["name"] != "Export Segment Membership"


def test_415_405_and_read_only_keys_may_export(api, client, db, app, segment):
    assert_problem(api.post(f"segments/{segment}/segment_membership_export", content=b"x", headers={"Content-Type": "text/plain"}), 415)
    response = api.request("GET", f"segments/{segment}/segment_membership_export")
    assert_problem(response, 405)
    assert response.headers["allow"] == "POST"
    reader = AccountClient(client, make_account(db, "acct1", read_only=True))
    assert reader.post(f"segments/{segment}/segment_membership_export", json={}).status_code == 202


def test_idempotency_key_returns_the_first_job(api, segment):
    headers = {"Idempotency-Key": "seg-export-1"}
    first = api.post(f"segments/{segment}/segment_membership_export", json={"format": "csv"}, headers=headers).json()
    assert api.post(f"segments/{segment}/segment_membership_export", json={"format": "csv"}, headers=headers).json() == first
    assert_problem(api.post(f"segments/{segment}/segment_membership_export", json={"format": "json"}, headers=headers), 422)


def test_a_segment_deleted_before_the_job_runs_fails_it(api, app, segment):
    response = api.post(f"segments/{segment}/segment_membership_export", json={})
    api.delete(f"segments/{segment}")
    drain(app)
    job = api.get(f"jobs/{response.json()['job_id']}").json()
    assert job["status"] == "FAILED" and "deleted" in job["events"][-1]["attributes"]["reason"]


def test_job_name():
    assert jobs.JOB_NAMES["export_segment_membership"] == "Export Segment Membership"
