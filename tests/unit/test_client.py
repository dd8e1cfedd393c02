"""opencues.client against the in-process app (both databases), through the real HTTP stack of httpx."""

from __future__ import annotations

import json

import pytest
from starlette.testclient import TestClient

from opencues import flows
from opencues.client import DEFAULT_BASE_URL, AppcuesError, Client, Control
from opencues.web.app import create_app

TOKEN = "client-admin-token"


@pytest.fixture
def server(settings, db):
    app = create_app(settings.model_copy(update={"admin_token": TOKEN, "journal": "on"}), db)
    with TestClient(app, base_url="http://testserver") as test_client:
        yield test_client


@pytest.fixture
def control(server):
    with Control("http://testserver", TOKEN, transport=server._transport) as control:
        yield control


@pytest.fixture
def appcues(control, server):
    account = control.create_account()
    with control.client(account, transport=server._transport) as client:
        yield client


def test_settings_come_from_the_environment(monkeypatch):
    monkeypatch.setenv("APPCUES_API_KEY", "k")
    monkeypatch.setenv("APPCUES_API_SECRET", "s")
    monkeypatch.setenv("APPCUES_ACCOUNT_ID", "42")
    monkeypatch.delenv("APPCUES_BASE_URL", raising=False)
    client = Client()
    assert (client.base_url, client.key, client.secret, client.account_id) == (DEFAULT_BASE_URL, "k", "s", "42")
    monkeypatch.setenv("APPCUES_BASE_URL", "http://localhost:9")
    assert Client(account_id="7").base_url == "http://localhost:9"
    monkeypatch.delenv("APPCUES_API_KEY")
    with pytest.raises(ValueError, match="key"):
        Client()


def test_flows(appcues, db):
    flows.create_flow(db, appcues.account_id, "Tour", flow_id="f1", frequency="once")
    assert [f["id"] for f in appcues.list_flows()] == ["f1"]
    assert appcues.publish_flow("f1")["status"] == 200
    assert appcues.get_flow("f1")["published"] is True
    appcues.unpublish_flow("f1")
    assert appcues.get_flow("f1")["published"] is False
    assert appcues.list_flows(csv=True).splitlines()[0].startswith("id,")


def test_segments_and_members(appcues):
    segment = appcues.create_segment("Beta", description="testers")
    assert appcues.get_segment(segment["id"])["name"] == "Beta"
    assert appcues.update_segment(segment["id"], name="Beta 2")["name"] == "Beta 2"
    added = appcues.wait(appcues.add_user_ids(segment["id"], ["u1", "u2", "u3"]))
    assert added["status"] == "COMPLETED"
    streamed = appcues.wait(appcues.remove_user_ids(segment["id"], iter(["u1"])))
    assert streamed["status"] == "COMPLETED" and streamed["events"][-1]["attributes"]["ingestions_completed"] == 1
    assert [s["id"] for s in appcues.list_segments()] == [segment["id"]]
    appcues.delete_segment(segment["id"])
    with pytest.raises(AppcuesError) as missing:
        appcues.get_segment(segment["id"])
    assert missing.value.status == 404 and "not found" in missing.value.detail and missing.value.title == "Not Found"


def test_profiles_and_events(appcues):
    appcues.update_profile("u1", {"plan": "pro"})
    assert appcues.get_profile("u1")["plan"] == "pro"
    appcues.track("u1", "First", timestamp="2024-01-01T00:00:00Z", attributes={"n": 1})
    appcues.track("u1", "Second")
    assert [e["name"] for e in appcues.events("u1")] == ["Second", "First"]
    assert [e["name"] for e in appcues.events("u1", limit=1)] == ["Second"]
    assert appcues.events("u1", csv=True).splitlines()[0].startswith("user_id")


def test_bulk_imports_from_rows_and_files(appcues, tmp_path):
    rows = ({"user_id": f"u{i}", "name": "Imported", "timestamp": 1700000000000 + i} for i in range(500))
    job = appcues.wait(appcues.import_events(rows))
    assert job["status"] == "COMPLETED" and job["events"][-1]["attributes"]["ingestions_completed"] == 500
    csv_file = tmp_path / "profiles.csv"
    csv_file.write_text("user_id,plan\nu1,pro\nu2,free\n")
    assert appcues.wait(appcues.import_profiles(csv_file))["status"] == "COMPLETED"
    assert appcues.get_profile("u2")["plan"] == "free"
    ndjson = tmp_path / "events.ndjson"
    ndjson.write_text(json.dumps({"user_id": "file-user", "name": "FromFile", "timestamp": 1700000000000}) + "\n")
    with open(ndjson, "rb") as handle:
        submitted = appcues.import_events(handle, idempotency_key="once")
    assert appcues.wait(submitted["job_id"])["status"] == "COMPLETED"
    assert [e["name"] for e in appcues.events("file-user")] == ["FromFile"]
    assert submitted["job_id"] in [j["id"] for j in appcues.list_jobs()]


def test_export_and_its_email(appcues, control):
    control.set_job_mode(appcues.account_id, "instant")
    appcues.track("u1", "Exported", timestamp="2024-01-01T00:00:00Z")
    job = appcues.export_events(email="me@example.com", start_time="2023-01-01T00:00:00Z", end_time="2025-01-01T00:00:00Z")
    assert appcues.get_job(job["job_id"])["status"] == "COMPLETED"  # instant: done before the 202
    [message] = control.outbox()
    assert message["to"] == "me@example.com" and b"me@example.com" in control.outbox_message(message["id"])
    control.clear_outbox()
    assert control.outbox() == []


def test_a_429_is_retried_after_retry_after(appcues, control):
    control.add_fault("*/segments", status=429, retry_after=0, times=2)
    assert appcues.list_segments() == []
    sent = control.requests(path="*/segments")
    assert [e["status"] for e in sent] == [200, 429, 429]


def test_retries_give_up_with_the_429(appcues, control):
    control.add_fault("*/segments", status=429, retry_after=0)
    appcues.max_retries = 1
    with pytest.raises(AppcuesError) as limited:
        appcues.list_segments()
    assert limited.value.status == 429 and limited.value.response.headers["retry-after"] == "0"
    control.clear_faults()
    assert control.list_faults() == []


def test_wait_times_out_on_a_held_job(appcues, control):
    control.set_job_mode(appcues.account_id, "manual")
    submitted = appcues.import_events([{"user_id": "u", "name": "x", "timestamp": 1700000000000}])
    with pytest.raises(TimeoutError):
        appcues.wait(submitted, timeout=0.3)
    assert control.run_job(submitted["job_id"])["status"] == "COMPLETED"


def test_control_snapshots_seed_and_reset(appcues, control):
    appcues.track("u1", "Saved", timestamp="2024-01-01T00:00:00Z")
    control.create_snapshot("base", account_id=appcues.account_id)
    assert [s["name"] for s in control.list_snapshots()] == ["base"]
    document = control.get_snapshot("base")
    control.reset_account(appcues.account_id)
    assert appcues.events("u1") == []
    control.restore_snapshot("base")
    assert [e["name"] for e in appcues.events("u1")] == ["Saved"]
    control.reset_account(appcues.account_id)
    control.seed(json.loads(document))
    assert [e["name"] for e in appcues.events("u1")] == ["Saved"]
    control.delete_snapshot("base")
    control.clear_requests()
    assert control.requests() == []
    assert control.health()["status"] == 200 and control.ready()["status"] == 200


def test_control_errors_carry_problem_details(control):
    with pytest.raises(AppcuesError) as wrong:
        Control(control.base_url, "wrong", transport=control.http._transport).reset()
    assert wrong.value.status == 401
    with pytest.raises(AppcuesError) as bad:
        control.add_fault("*")
    assert bad.value.status == 400 and "`status`" in bad.value.detail
