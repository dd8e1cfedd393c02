"""The control API under /-/, in-process, on both databases."""

from __future__ import annotations

import base64
import time

import orjson
import pytest
from sqlalchemy import func, select

from opencues import snapshots
from opencues.storage.schema import events
from opencues.web.app import create_app
from tests.conftest import assert_problem
from tests.generated_events import generated_events
from tests.in_process_client import InProcessClient

TOKEN = "test-admin-token"
ADMIN = {"Authorization": f"Bearer {TOKEN}"}
NDJSON = {"content-type": "application/ndjson"}


@pytest.fixture
def control_settings(settings):
    return settings.model_copy(update={"admin_token": TOKEN, "journal": "on"})


@pytest.fixture
def web(control_settings, db):
    with InProcessClient(create_app(control_settings, db), base_url="http://testserver") as client:
        yield client


def make(web, **body) -> dict:
    response = web.post("/-/accounts", json=body, headers=ADMIN)
    assert response.status_code == 201, response.text
    return response.json()


def auth(account) -> tuple[str, str]:
    return (account["key"], account["secret"])


def track(web, account, user="u1", name="Clicked", ts="2024-01-01T00:00:00Z"):
    response = web.post(f"/v2/accounts/{account['id']}/users/{user}/events", json={"name": name, "timestamp": ts}, auth=auth(account))
    assert response.status_code == 200, response.text


def history(web, account, user="u1") -> list:
    response = web.get(f"/v2/accounts/{account['id']}/users/{user}/events", auth=auth(account))
    assert response.status_code == 200, response.text
    return response.json()


def import_events(web, account, lines: str):
    return web.post(f"/v2/accounts/{account['id']}/import/events", content=lines, headers=NDJSON, auth=auth(account))


# -- always on / off / auth ---------------------------------------------------------------------


def test_health_and_ready_need_no_token_and_are_always_on(settings, db):
    with InProcessClient(create_app(settings, db)) as plain:
        assert plain.get("/-/health").json()["status"] == 200
        ready = plain.get("/-/ready")
        assert ready.status_code == 200 and ready.json()["schema"]


def test_ready_is_503_with_a_reason_when_the_schema_is_behind(settings, db, monkeypatch):
    from opencues import control

    monkeypatch.setattr(control, "schema_head", lambda: "9999")
    with InProcessClient(create_app(settings, db)) as plain:
        body = assert_problem(plain.get("/-/ready"), 503, "9999")
        assert "opencues migrate" in body["detail"]


def test_control_api_is_404_without_an_admin_token(settings, db):
    with InProcessClient(create_app(settings, db)) as plain:
        assert_problem(plain.post("/-/accounts", json={}, headers=ADMIN), 404)
        assert_problem(plain.get("/-/requests", headers=ADMIN), 404)


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {TOKEN}"}])
def test_a_wrong_or_missing_token_is_401(web, headers):
    response = web.post("/-/reset", headers=headers)
    assert_problem(response, 401)
    assert response.headers["www-authenticate"].startswith("Bearer")


# -- accounts and resets ------------------------------------------------------------------------


def test_create_account_with_chosen_credentials_and_use_them(web):
    account = make(web, id="acme", name="Acme", key="key-1", secret="s3cret")
    assert account == {"id": "acme", "name": "Acme", "key": "key-1", "secret": "s3cret"}
    assert web.get("/v2/accounts/acme/flows", auth=("key-1", "s3cret")).status_code == 200
    assert_problem(web.post("/-/accounts", json={"id": "acme"}, headers=ADMIN), 409)
    assert_problem(web.post("/-/accounts", json={"key": "key-1"}, headers=ADMIN), 409)


def test_create_account_generates_what_is_not_given(web):
    first, second = make(web), make(web)
    assert first["id"] != second["id"] and first["key"] and len(first["secret"]) >= 32
    assert web.get(f"/v2/accounts/{first['id']}/segments", auth=auth(first)).status_code == 200


def test_read_only_account_key(web):
    account = make(web, read_only=True)
    response = web.post(f"/v2/accounts/{account['id']}/segments", json={"name": "x"}, auth=auth(account))
    assert_problem(response, 403)


@pytest.mark.parametrize("body, field", [({"id": 5}, "id"), ({"color": "red"}, "color"), ({"read_only": "yes"}, "read_only"), ({"key": "a:b"}, "key")])
def test_create_account_bad_fields_are_400_naming_them(web, body, field):
    assert_problem(web.post("/-/accounts", json=body, headers=ADMIN), 400, f"`{field}`")


def test_delete_account_removes_it_with_its_data_and_keys(web, db):
    account, other = make(web), make(web)
    track(web, account)
    track(web, other)
    assert web.delete(f"/-/accounts/{account['id']}", headers=ADMIN).status_code == 200
    assert_problem(web.get(f"/v2/accounts/{account['id']}/flows", auth=auth(account)), 401)
    assert len(history(web, other)) == 1
    assert_problem(web.delete(f"/-/accounts/{account['id']}", headers=ADMIN), 404)


def test_reset_removes_every_account_and_its_keys(web):
    account = make(web)
    track(web, account)
    assert web.post("/-/reset", headers=ADMIN).status_code == 200
    assert_problem(web.get(f"/v2/accounts/{account['id']}/flows", auth=auth(account)), 401)


def test_account_reset_keeps_keys_and_other_accounts(web):
    account, other = make(web), make(web)
    track(web, account)
    track(web, other)
    web.post(f"/v2/accounts/{account['id']}/segments", json={"name": "s"}, auth=auth(account))
    assert web.post(f"/-/accounts/{account['id']}/reset", headers=ADMIN).status_code == 200
    assert history(web, account) == []
    assert web.get(f"/v2/accounts/{account['id']}/segments", auth=auth(account)).json() == []
    assert len(history(web, other)) == 1
    assert_problem(web.post("/-/accounts/nobody/reset", headers=ADMIN), 404)


def _files(web) -> set[str]:
    root = web.app.state.file_store.root
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}


@pytest.mark.parametrize("how", ["account reset", "account deleted", "reset"])
def test_resets_remove_the_files_of_what_they_delete(web, how):
    """A waiting import's upload and an account's export files go with the account's data (a
    suite resetting between tests would otherwise fill the disk); another account's stay."""
    account, other = make(web), make(web)
    for each in (account, other):
        web.put(f"/-/accounts/{each['id']}/job-mode", json={"mode": "manual"}, headers=ADMIN)
        assert import_events(web, each, '{"user_id":"u1","name":"held","timestamp":1700000000000}\n').status_code == 202
        with web.app.state.file_store.writer(f"exports/{each['id']}/old-export.json") as handle:
            handle.write(b"[]")
    before = _files(web)
    assert sum(name.startswith("exports/") for name in before) == 2 and len(before) == 4
    if how == "account reset":
        assert web.post(f"/-/accounts/{account['id']}/reset", headers=ADMIN).status_code == 200
    elif how == "account deleted":
        assert web.delete(f"/-/accounts/{account['id']}", headers=ADMIN).status_code == 200
    else:
        assert web.post("/-/reset", headers=ADMIN).status_code == 200
    after = _files(web)
    if how == "reset":
        assert after == set()
    else:
        assert len(after) == 2 and all(account["id"] not in name for name in after)
        assert f"exports/{other['id']}/old-export.json" in after


def test_account_reset_removes_every_event_of_a_large_account_only(web, db):
    # Its speed (< 1 s at 100,000 events) is measured by bench/bench_control.py, not here.
    account, other = make(web), make(web)
    with db.begin() as conn:
        conn.execute(generated_events(account["id"], 100_000))
    track(web, other, name="kept")
    assert web.post(f"/-/accounts/{account['id']}/reset", headers=ADMIN).status_code == 200
    with db.connect() as conn:
        remaining = conn.execute(select(events.c.account_id, func.count()).group_by(events.c.account_id)).all()
    assert remaining == [(other["id"], 1)]


# -- snapshots ---------------------------------------------------------------------------------


def test_snapshot_restore_is_exact(web):
    account = make(web)
    track(web, account, name="before")
    web.patch(f"/v2/accounts/{account['id']}/users/u1/profile", json={"plan": "pro"}, auth=auth(account))
    created = web.post("/-/snapshots", json={"name": "base"}, headers=ADMIN)
    assert created.status_code == 201 and created.json()["name"] == "base"
    saved_history = history(web, account)
    track(web, account, name="after")
    later = make(web)
    assert web.post("/-/snapshots/base/restore", headers=ADMIN).status_code == 200
    assert history(web, account) == saved_history
    profile = web.get(f"/v2/accounts/{account['id']}/users/u1/profile", auth=auth(account)).json()
    assert profile["plan"] == "pro"
    assert_problem(web.get(f"/v2/accounts/{later['id']}/flows", auth=auth(later)), 401)  # made after: gone


def test_account_snapshot_restores_only_that_account(web):
    account, other = make(web), make(web)
    track(web, account, name="mine")
    assert web.post("/-/snapshots", json={"name": "one", "account_id": account["id"]}, headers=ADMIN).status_code == 201
    track(web, account, name="later")
    track(web, other, name="theirs")
    web.post("/-/snapshots/one/restore", headers=ADMIN)
    assert [e["name"] for e in history(web, account)] == ["mine"]
    assert [e["name"] for e in history(web, other)] == ["theirs"]


def test_snapshot_list_get_delete(web):
    make(web)
    web.post("/-/snapshots", json={"name": "s1"}, headers=ADMIN)
    assert [s["name"] for s in web.get("/-/snapshots", headers=ADMIN).json()] == ["s1"]
    document = web.get("/-/snapshots/s1", headers=ADMIN).json()
    assert document["format"] == snapshots.FORMAT and document["version"] == snapshots.VERSION
    assert set(document["tables"]) == {part.name for part in snapshots.PARTS if not part.derived}
    assert web.delete("/-/snapshots/s1", headers=ADMIN).status_code == 200
    assert_problem(web.get("/-/snapshots/s1", headers=ADMIN), 404)
    assert_problem(web.post("/-/snapshots", json={"name": "../x"}, headers=ADMIN), 400, "`name`")


def test_seed_loads_a_snapshot_file_beside_other_accounts(web):
    account = make(web, id="seeded", key="seed-key", secret="seed-secret")
    track(web, account, name="from-file")
    web.post("/-/snapshots", json={"name": "file", "account_id": "seeded"}, headers=ADMIN)
    raw = web.get("/-/snapshots/file", headers=ADMIN).content
    web.delete("/-/accounts/seeded", headers=ADMIN)
    other = make(web)
    track(web, other)
    response = web.post("/-/seed", content=raw, headers={**ADMIN, "content-type": "application/json"})
    assert response.status_code == 200 and response.json()["accounts"] == ["seeded"]
    assert [e["name"] for e in history(web, account)] == ["from-file"]
    assert len(history(web, other)) == 1


@pytest.mark.parametrize(
    "document, mentions",
    [
        (b"not json", "not valid JSON"),
        (b'{"format": "other"}', "not a snapshot"),
        (b'{"format": "opencues-snapshot", "version": 99, "tables": {}}', "newer"),
        (b'{"format": "opencues-snapshot", "version": 0, "tables": {}}', "no longer supported"),
        (b'{"format": "opencues-snapshot", "version": 1, "tables": {"nope": {"columns": [], "rows": []}}}', "tables.nope"),
        (b'{"format": "opencues-snapshot", "version": 1, "tables": {"accounts": {"columns": ["id", "zzz"], "rows": []}}}', "zzz"),
    ],
)
def test_seed_refuses_bad_files_clearly(web, document, mentions):
    assert_problem(web.post("/-/seed", content=document, headers=ADMIN), 400, mentions)


def _waiting_import(web, account) -> str:
    web.put(f"/-/accounts/{account['id']}/job-mode", json={"mode": "manual"}, headers=ADMIN)
    lines = "".join(f'{{"user_id":"u{i}","name":"held","timestamp":1700000000000}}\n' for i in range(3))
    return import_events(web, account, lines).json()["job_id"]


def _uploads_gone(control_settings) -> None:
    """As on another machine: no payload left in the file store."""
    import shutil

    shutil.rmtree(control_settings.data_dir / "files" / "uploads", ignore_errors=True)


def test_a_snapshot_carries_waiting_jobs_with_their_payloads(web, control_settings):
    account = make(web, id="held", key="held-key", secret="held-secret")
    job_id = _waiting_import(web, account)
    assert web.post("/-/snapshots", json={"name": "waiting"}, headers=ADMIN).status_code == 201
    document = web.get("/-/snapshots/waiting", headers=ADMIN).json()
    assert document["version"] == 2 and len(document["files"]) == 1
    assert base64.b64decode(next(iter(document["files"].values()))).count(b"\n") == 3

    for _ in range(2):  # restorable again after the job ran (and its payload was removed)
        web.post("/-/reset", headers=ADMIN)
        _uploads_gone(control_settings)
        assert web.post("/-/snapshots/waiting/restore", headers=ADMIN).json()["files"] == 1
        job = web.get(f"/v2/accounts/held/jobs/{job_id}", auth=auth(account)).json()
        assert job["status"] == "IN_PROGRESS"
        ran = web.post(f"/-/jobs/{job_id}/run", headers=ADMIN).json()
        assert ran["status"] == "COMPLETED" and ran["events"][-1]["attributes"]["ingestions_completed"] == 3
        assert [e["name"] for e in history(web, account, "u2")] == ["held"]


def test_seeding_a_snapshot_file_brings_the_payloads_along(web, control_settings):
    account = make(web, id="carried", key="carried-key", secret="carried-secret")
    job_id = _waiting_import(web, account)
    web.post("/-/snapshots", json={"name": "file", "account_id": "carried"}, headers=ADMIN)
    raw = web.get("/-/snapshots/file", headers=ADMIN).content
    web.post("/-/reset", headers=ADMIN)
    _uploads_gone(control_settings)
    seeded = web.post("/-/seed", content=raw, headers={**ADMIN, "content-type": "application/json"})
    assert seeded.status_code == 200 and seeded.json()["files"] == 1
    assert web.post(f"/-/jobs/{job_id}/run", headers=ADMIN).json()["status"] == "COMPLETED"
    assert len(history(web, account, "u0")) == 1


def test_a_version_1_snapshot_loads_unless_a_waiting_job_lost_its_payload(web, control_settings):
    account = make(web, id="old", key="old-key", secret="old-secret")
    track(web, account, name="kept")
    web.post("/-/snapshots", json={"name": "v2", "account_id": "old"}, headers=ADMIN)
    document = web.get("/-/snapshots/v2", headers=ADMIN).json()
    version_1 = {k: v for k, v in document.items() if k != "files"} | {"version": 1}
    web.delete("/-/accounts/old", headers=ADMIN)
    loaded = web.post("/-/seed", content=orjson.dumps(version_1), headers=ADMIN)
    assert loaded.status_code == 200 and [e["name"] for e in history(web, account)] == ["kept"]

    _waiting_import(web, account)
    web.post("/-/snapshots", json={"name": "v2", "account_id": "old"}, headers=ADMIN)
    document = web.get("/-/snapshots/v2", headers=ADMIN).json()
    version_1 = {k: v for k, v in document.items() if k != "files"} | {"version": 1}
    _uploads_gone(control_settings)
    assert_problem(web.post("/-/seed", content=orjson.dumps(version_1), headers=ADMIN), 400, "version 1")


def test_snapshot_files_must_belong_to_a_job_of_the_snapshot(web):
    account = make(web, id="files")
    _waiting_import(web, account)
    web.post("/-/snapshots", json={"name": "f", "account_id": "files"}, headers=ADMIN)
    document = web.get("/-/snapshots/f", headers=ADMIN).json()
    stray = {**document, "files": {**document["files"], "exports/evil.csv": base64.b64encode(b"x").decode()}}
    assert_problem(web.post("/-/seed", content=orjson.dumps(stray), headers=ADMIN), 400, "exports/evil.csv")
    key = next(iter(document["files"]))
    garbled = {**document, "files": {key: "not base64!"}}
    assert_problem(web.post("/-/seed", content=orjson.dumps(garbled), headers=ADMIN), 400, "base64")


def test_every_table_is_either_snapshotted_or_declared_not_account_data():
    from opencues.storage.schema import metadata

    listed = {part.name for part in snapshots.PARTS}
    assert set(metadata.tables) - listed - snapshots.NOT_ACCOUNT_DATA == set(), "add the new table to snapshots.PARTS"


# -- faults ------------------------------------------------------------------------------------


def test_fault_answers_its_status_for_the_next_n_matching_requests(web):
    account = make(web)
    fault = web.post("/-/faults", json={"path": "*/segments*", "status": 503, "detail": "down", "times": 2}, headers=ADMIN)
    assert fault.status_code == 201 and fault.json()["id"] and fault.json()["times"] == 2
    url = f"/v2/accounts/{account['id']}/segments"
    assert web.get(f"/v2/accounts/{account['id']}/flows", auth=auth(account)).status_code == 200
    for _ in range(2):
        assert_problem(web.get(url, auth=auth(account)), 503, "down")
    assert web.get(url, auth=auth(account)).status_code == 200
    assert web.get("/-/faults", headers=ADMIN).json() == []


def test_429_fault_carries_retry_after(web):
    account = make(web)
    web.post("/-/faults", json={"path": "*", "method": "post", "status": 429, "retry_after": 7}, headers=ADMIN)
    response = web.post(f"/v2/accounts/{account['id']}/segments", json={"name": "x"}, auth=auth(account))
    assert_problem(response, 429)
    assert response.headers["retry-after"] == "7"
    assert web.get(f"/v2/accounts/{account['id']}/segments", auth=auth(account)).status_code == 200  # GET not matched


def test_fault_scoped_to_an_account(web):
    account, other = make(web), make(web)
    web.post("/-/faults", json={"path": "*", "account_id": account["id"], "status": 500}, headers=ADMIN)
    assert_problem(web.get(f"/v2/accounts/{account['id']}/flows", auth=auth(account)), 500)
    assert web.get(f"/v2/accounts/{other['id']}/flows", auth=auth(other)).status_code == 200


def test_delay_only_fault_adds_latency_and_the_request_still_runs(web):
    account = make(web)
    web.post("/-/faults", json={"path": "*/flows", "delay_ms": 300}, headers=ADMIN)
    started = time.perf_counter()
    assert web.get(f"/v2/accounts/{account['id']}/flows", auth=auth(account)).status_code == 200
    assert time.perf_counter() - started >= 0.3


def test_probability_zero_never_fires(web):
    account = make(web)
    web.post("/-/faults", json={"path": "*", "status": 500, "probability": 0}, headers=ADMIN)
    assert web.get(f"/v2/accounts/{account['id']}/flows", auth=auth(account)).status_code == 200


def test_remove_and_clear_faults(web):
    ids = [web.post("/-/faults", json={"path": f"/p{i}", "status": 500}, headers=ADMIN).json()["id"] for i in range(3)]
    assert web.delete(f"/-/faults/{ids[0]}", headers=ADMIN).status_code == 200
    assert [f["id"] for f in web.get("/-/faults", headers=ADMIN).json()] == ids[1:]
    assert_problem(web.delete(f"/-/faults/{ids[0]}", headers=ADMIN), 404)
    assert web.delete("/-/faults", headers=ADMIN).status_code == 200
    assert web.get("/-/faults", headers=ADMIN).json() == []


@pytest.mark.parametrize(
    "body, field",
    [({}, "path"), ({"path": "*"}, "status"), ({"path": "*", "status": 200}, "status"),
     ({"path": "*", "status": 500, "probability": 2}, "probability"), ({"path": "*", "status": 500, "x": 1}, "x")],
)  # fmt: skip
def test_bad_faults_are_400_naming_the_field(web, body, field):
    assert_problem(web.post("/-/faults", json=body, headers=ADMIN), 400, f"`{field}`")


def test_faults_never_touch_the_control_api(web):
    web.post("/-/faults", json={"path": "*", "status": 500}, headers=ADMIN)
    assert web.get("/-/faults", headers=ADMIN).status_code == 200


# -- job modes ---------------------------------------------------------------------------------


def test_instant_job_mode_finishes_the_job_before_the_202(web):
    account = make(web)
    assert web.put(f"/-/accounts/{account['id']}/job-mode", json={"mode": "instant"}, headers=ADMIN).json()["mode"] == "instant"
    accepted = import_events(web, account, '{"user_id":"u1","name":"imported","timestamp":1700000000000}\n')
    assert accepted.status_code == 202
    job = web.get(f"/v2/accounts/{account['id']}/jobs/{accepted.json()['job_id']}", auth=auth(account)).json()
    assert job["status"] == "COMPLETED"
    assert [e["name"] for e in history(web, account)] == ["imported"]


def test_manual_job_mode_holds_jobs_until_run(web):
    account = make(web)
    web.put(f"/-/accounts/{account['id']}/job-mode", json={"mode": "manual"}, headers=ADMIN)
    job_id = import_events(web, account, '{"user_id":"u1","name":"held","timestamp":1700000000000}\n').json()["job_id"]
    time.sleep(0.8)  # longer than a worker's poll: it must not have claimed the job
    job_url = f"/v2/accounts/{account['id']}/jobs/{job_id}"
    assert web.get(job_url, auth=auth(account)).json()["status"] == "IN_PROGRESS"
    ran = web.post(f"/-/jobs/{job_id}/run", headers=ADMIN)
    assert ran.status_code == 200 and ran.json()["status"] == "COMPLETED"
    assert [e["name"] for e in history(web, account)] == ["held"]


def test_fail_job_gives_the_failed_event(web):
    account = make(web)
    web.put(f"/-/accounts/{account['id']}/job-mode", json={"mode": "manual"}, headers=ADMIN)
    job_id = import_events(web, account, '{"user_id":"u1","name":"x","timestamp":1700000000000}\n').json()["job_id"]
    failed = web.post(f"/-/jobs/{job_id}/fail", json={"reason": "disk on fire"}, headers=ADMIN)
    assert failed.status_code == 200 and failed.json()["status"] == "FAILED"
    job = web.get(f"/v2/accounts/{account['id']}/jobs/{job_id}", auth=auth(account)).json()
    assert job["events"][-1]["name"] == "Failed" and job["events"][-1]["attributes"]["reason"] == "disk on fire"
    assert_problem(web.post(f"/-/jobs/{job_id}/fail", json={"reason": "again"}, headers=ADMIN), 409)
    assert_problem(web.post(f"/-/jobs/{job_id}/fail", json={}, headers=ADMIN), 400, "`reason`")
    assert_problem(web.post("/-/jobs/nope/run", headers=ADMIN), 404)


def test_bad_job_mode_is_400(web):
    account = make(web)
    assert_problem(web.put(f"/-/accounts/{account['id']}/job-mode", json={"mode": "fast"}, headers=ADMIN), 400, "`mode`")
    assert_problem(web.put("/-/accounts/nobody/job-mode", json={"mode": "auto"}, headers=ADMIN), 404)


# -- journal -----------------------------------------------------------------------------------


def test_journal_records_requests_newest_first_without_secrets(web):
    account = make(web)
    track(web, account, name="journaled")
    assert_problem(web.get(f"/v2/accounts/{account['id']}/flows/missing", auth=auth(account)), 404)
    entries = web.get("/-/requests", headers=ADMIN).json()
    assert [e["path"] for e in entries[:2]] == [f"/v2/accounts/{account['id']}/flows/missing", f"/v2/accounts/{account['id']}/users/u1/events"]
    newest, tracked = entries[0], entries[1]
    assert newest["status"] == 404 and newest["method"] == "GET" and newest["account_id"] == account["id"]
    assert tracked["status"] == 200 and "journaled" in tracked["body"] and tracked["faulted"] is False
    assert set(tracked) == {"id", "time", "method", "path", "query", "headers", "body", "status", "duration_ms", "account_id", "faulted"}
    assert account["secret"] not in orjson.dumps(entries).decode()
    assert base64.b64encode(f"{account['key']}:{account['secret']}".encode()).decode() not in orjson.dumps(entries).decode()
    assert tracked["headers"]["authorization"] == f"Basic {account['key']}:[redacted]"


def test_journal_filters_and_limit_and_clear(web):
    account, other = make(web), make(web)
    track(web, account)
    web.get(f"/v2/accounts/{other['id']}/flows?x=1", auth=auth(other))
    only = web.get("/-/requests", params={"account_id": other["id"]}, headers=ADMIN).json()
    assert [(e["path"], e["query"]) for e in only] == [(f"/v2/accounts/{other['id']}/flows", "x=1")]
    assert len(web.get("/-/requests", params={"path": "*/events"}, headers=ADMIN).json()) == 1
    assert len(web.get("/-/requests", params={"limit": 1}, headers=ADMIN).json()) == 1
    assert_problem(web.get("/-/requests", params={"limit": "lots"}, headers=ADMIN), 400, "`limit`")
    assert web.delete("/-/requests", headers=ADMIN).status_code == 200
    assert web.get("/-/requests", headers=ADMIN).json() == []


def test_journal_marks_faulted_requests_and_keeps_their_body(web):
    account = make(web)
    web.post("/-/faults", json={"path": "*/segments", "status": 500}, headers=ADMIN)
    web.post(f"/v2/accounts/{account['id']}/segments", json={"name": "kept body"}, auth=auth(account))
    entry = web.get("/-/requests", headers=ADMIN).json()[0]
    assert entry["faulted"] is True and entry["status"] == 500 and "kept body" in entry["body"]


def test_journal_body_is_cut_at_64_kib(web):
    account = make(web)
    big = '{"user_id":"u","name":"' + "x" * 100_000 + '","timestamp":1}\n'
    import_events(web, account, big)
    entry = web.get("/-/requests", params={"path": "*/import/events"}, headers=ADMIN).json()[0]
    assert len(entry["body"].encode()) == 64 * 1024


def test_journal_keeps_only_the_configured_number(db, settings):
    from opencues import journal

    for i in range(30):
        db.direct.write(journal.INSERT, [journal.entry(method="GET", path=f"/p{i}", query="", headers={}, body=b"", status=200, duration_ms=1, account_id=None, faulted=False)])
    journal.trim(db, 10)
    kept = journal.list_requests(db, limit=100)
    assert [e["path"] for e in kept] == [f"/p{i}" for i in range(29, 19, -1)]


def test_journal_lists_by_response_time_whichever_process_committed_first(db):
    """Two server processes commit their entries each from a thread of its own: the later request
    can be committed (and numbered) first, and must still be listed first."""
    from opencues import journal

    def at(path, time_ms):
        row = journal.entry(method="GET", path=path, query="", headers={}, body=b"", status=200, duration_ms=1, account_id="acct", faulted=False)
        return {**row, "time": time_ms}

    db.direct.write(journal.INSERT, [at("/second", 1_000_002), at("/third", 1_000_003)])  # one process
    db.direct.write(journal.INSERT, [at("/first", 1_000_001), at("/fourth", 1_000_004)])  # the other, later
    expected = ["/fourth", "/third", "/second", "/first"]
    assert [e["path"] for e in journal.list_requests(db)] == expected
    assert [e["path"] for e in journal.list_requests(db, account_id="acct")] == expected
    assert [e["path"] for e in journal.list_requests(db, account_id="acct", limit=2)] == expected[:2]


def test_journal_off_records_nothing(settings, db):
    with InProcessClient(create_app(settings.model_copy(update={"admin_token": TOKEN}), db)) as web:
        account = make(web)
        track(web, account)
        assert web.get("/-/requests", headers=ADMIN).json() == []


# -- outbox ------------------------------------------------------------------------------------


def test_outbox_shows_the_export_email_and_its_link(web):
    account = make(web)
    web.put(f"/-/accounts/{account['id']}/job-mode", json={"mode": "instant"}, headers=ADMIN)
    track(web, account)
    body = {"conditions": [], "email": "me@example.com", "format": "csv", "start_time": "2023-01-01T00:00:00Z", "end_time": "2025-01-01T00:00:00Z"}
    accepted = web.post(f"/v2/accounts/{account['id']}/export/events", json=body, auth=auth(account))
    assert accepted.status_code == 202, accepted.text
    messages = web.get("/-/outbox", headers=ADMIN).json()
    assert len(messages) == 1
    message = messages[0]
    assert message["to"] == "me@example.com" and "export" in message["subject"].lower()
    assert len(message["links"]) == 1 and "/downloads/" in message["links"][0]
    download = web.get(message["links"][0].replace("http://testserver", ""))
    assert download.status_code == 200 and "Clicked" in download.text
    raw = web.get(f"/-/outbox/{message['id']}", headers=ADMIN)
    assert raw.headers["content-type"].startswith("message/rfc822") and b"me@example.com" in raw.content
    assert web.delete("/-/outbox", headers=ADMIN).status_code == 200
    assert web.get("/-/outbox", headers=ADMIN).json() == []
    assert_problem(web.get(f"/-/outbox/{message['id']}", headers=ADMIN), 404)


def test_journal_records_a_request_that_crashed(control_settings, db, monkeypatch):
    from opencues import flows

    def crash(db, account_id):
        raise RuntimeError("boom")

    monkeypatch.setattr(flows, "list_flows", crash)
    with InProcessClient(create_app(control_settings, db), raise_server_exceptions=False) as web:
        account = make(web)
        assert web.get(f"/v2/accounts/{account['id']}/flows", auth=auth(account)).status_code == 500
        entry = web.get("/-/requests", headers=ADMIN).json()[0]
        assert entry["status"] == 500 and entry["path"].endswith("/flows")
