"""Ingestion filtering rules (spec §8.1): stored per account, replaced whole, and applied at track,
profile and group PATCH, and in the imports (counted as ``ingestions_filtered``). SQLite and PostgreSQL."""

from __future__ import annotations

import csv
import io
import time

import orjson
import pytest
from sqlalchemy import select

from opencues import events, groups, ingestion_rules, profiles
from opencues.settings import Settings
from opencues.storage import Database
from opencues.storage.schema import events as events_table
from opencues.worker import run_pending_jobs
from tests.conftest import AccountClient, assert_problem, make_account

STAMP = "2021-08-11T00:00:00Z"
NDJSON = {"Content-Type": "application/ndjson"}


@pytest.fixture
def settings(database_url, tmp_path):
    return Settings(data_dir=tmp_path / "data", database_url=database_url, job_workers=0, import_batch_rows=2)


def drain(app) -> int:
    return run_pending_jobs(app.state.db, app.state.file_store, app.state.settings)


def ndjson(*records) -> bytes:
    return b"".join(orjson.dumps(r) + b"\n" for r in records)


def completed(api, response) -> dict:
    job = api.get(f"jobs/{response.json()['job_id']}").json()
    assert job["status"] == "COMPLETED", job
    return job["events"][-1]["attributes"]


def names_stored(db, account_id="acct1") -> list[str]:
    with db.connect() as conn:
        return list(conn.execute(select(events_table.c.name).where(events_table.c.account_id == account_id).order_by(events_table.c.timestamp, events_table.c.id)).scalars())


# --- the rules object -------------------------------------------------------------------------


def test_initial_rules_are_an_empty_deny_set(api):
    assert api.get("ingestion_filtering_rules").json() == {
        "mode": "deny", "profile_attributes": [], "event_names": [], "group_attributes": []}  # fmt: skip


def test_post_replaces_the_whole_set(api):
    saved = api.post("ingestion_filtering_rules", json={"mode": "deny", "event_names": ["a", "b", "a"], "profile_attributes": ["ssn"]})
    assert saved.status_code == 200
    assert saved.json() == {"mode": "deny", "profile_attributes": ["ssn"], "event_names": ["a", "b"], "group_attributes": []}
    api.post("ingestion_filtering_rules", json={"mode": "allow", "group_attributes": ["plan"], "account_id": "ignored"})
    assert api.get("ingestion_filtering_rules").json() == {
        "mode": "allow", "profile_attributes": [], "event_names": [], "group_attributes": ["plan"]}  # fmt: skip


def test_rules_csv(api):
    api.post("ingestion_filtering_rules", json={"event_names": ["a", "b"]})
    rows = list(csv.reader(io.StringIO(api.get("ingestion_filtering_rules", headers={"Accept": "text/csv"}).text)))
    assert rows == [["mode", "profile_attributes", "event_names", "group_attributes"], ["deny", "[]", '["a","b"]', "[]"]]


@pytest.mark.parametrize(
    "body, field",
    [({"mode": "block"}, "`mode`"), ({"event_names": "a"}, "`event_names`"), ({"event_names": ["a", 3]}, "`event_names[1]`"),
     ({"profile_attributes": [""]}, "`profile_attributes[0]`"), ({"eventNames": []}, "`eventNames`"), ([], "object")],
)  # fmt: skip
def test_bad_rules_are_400_naming_the_field(api, body, field):
    assert_problem(api.post("ingestion_filtering_rules", json=body), 400, field)
    assert api.get("ingestion_filtering_rules").json()["mode"] == "deny"


def test_rules_errors_405_415_and_read_only(api, client, db):
    response = api.patch("ingestion_filtering_rules", json={})
    assert_problem(response, 405)
    assert {m.strip() for m in response.headers["allow"].split(",")} == {"GET", "POST"}
    assert_problem(api.post("ingestion_filtering_rules", content=b"x", headers={"Content-Type": "text/plain"}), 415)
    reader = AccountClient(client, make_account(db, "acct1", read_only=True))
    assert reader.get("ingestion_filtering_rules").status_code == 200
    assert_problem(reader.post("ingestion_filtering_rules", json={}), 403, "read-only")


def test_rules_are_per_account(api, client, db):
    api.post("ingestion_filtering_rules", json={"event_names": ["secret"]})
    other = AccountClient(client, make_account(db, "acct2"))
    assert other.get("ingestion_filtering_rules").json()["event_names"] == []
    other.post("users/u/events", json={"name": "secret", "timestamp": STAMP})
    assert names_stored(db, "acct2") == ["secret"]


# --- applied ----------------------------------------------------------------------------------


def test_track_drops_denied_event_names_silently_but_never_appcues_events(api, db):
    api.post("ingestion_filtering_rules", json={"event_names": ["Noise", "appcues:flow_started"]})
    for name in ("Noise", "Signal", "appcues:flow_started"):
        response = api.post("users/u1/events", json={"name": name, "timestamp": STAMP})
        assert response.json() == {"status": 200, "title": "OK"}
    assert names_stored(db) == ["Signal", "appcues:flow_started"]


def test_allow_mode_keeps_only_the_listed_names_and_an_empty_list_keeps_all(api, db):
    api.post("ingestion_filtering_rules", json={"mode": "allow", "event_names": ["Signal"], "profile_attributes": []})
    for name in ("Noise", "Signal"):
        api.post("users/u1/events", json={"name": name, "timestamp": STAMP})
    api.patch("users/u1/profile", json={"anything": 1})
    assert names_stored(db) == ["Signal"]
    assert api.get("users/u1/profile").json() == {"anything": 1}


def test_profile_and_group_patches_drop_denied_attributes(api):
    api.post("ingestion_filtering_rules", json={"profile_attributes": ["ssn"], "group_attributes": ["revenue"]})
    api.patch("users/u1/profile", json={"ssn": "123", "plan": "pro"})
    api.patch("groups/g1/profile", json={"revenue": 10, "ssn": "kept: not a group rule"})
    assert api.get("users/u1/profile").json() == {"plan": "pro"}
    assert api.get("groups/g1/profile").json() == {"group_id": "g1", "ssn": "kept: not a group rule"}
    api.post("ingestion_filtering_rules", json={"mode": "allow", "group_attributes": ["tier"]})
    api.patch("groups/g1/profile", json={"tier": "gold", "other": 1})
    assert api.get("groups/g1/profile").json() == {"group_id": "g1", "ssn": "kept: not a group rule", "tier": "gold"}


def test_imports_drop_and_count_what_the_rules_filter(api, app, db):
    api.post("ingestion_filtering_rules", json={"event_names": ["Noise"], "profile_attributes": ["ssn"], "group_attributes": ["revenue"]})
    event_import = api.post("import/events", headers=NDJSON, content=ndjson(
        *({"user_id": "u", "name": "Noise" if i % 2 else "Signal", "timestamp": i} for i in range(5)),
        {"user_id": "u", "name": "appcues:x", "timestamp": 9}, {"name": "bad row"}))  # fmt: skip
    profile_import = api.post("import/profiles", headers=NDJSON, content=ndjson(
        {"user_id": "a", "ssn": 1, "plan": "x"}, {"user_id": "b", "ssn": 2}, {"user_id": "c", "ok": True}))  # fmt: skip
    group_import = api.post("import/groups", json=[{"group_id": "g", "revenue": 5, "tier": "gold"}])
    assert drain(app) == 3
    attributes = completed(api, event_import)
    assert (attributes["ingestions_completed"], attributes["ingestions_filtered"], attributes["ingestions_failed"]) == (4, 2, 1)
    assert names_stored(db) == ["Signal", "Signal", "Signal", "appcues:x"]
    attributes = completed(api, profile_import)
    assert (attributes["ingestions_completed"], attributes["ingestions_filtered"]) == (3, 2)
    assert profiles.get_profile(db, "acct1", "a") == {"plan": "x"} and profiles.get_profile(db, "acct1", "b") == {}
    attributes = completed(api, group_import)
    assert (attributes["ingestions_completed"], attributes["ingestions_filtered"]) == (1, 1)
    assert groups.get_group(db, "acct1", "g") == {"group_id": "g", "tier": "gold"}


def test_segment_uploads_do_not_report_filtering(api, app):
    segment = api.post("segments", json={"name": "s"}).json()
    response = api.post(f"segments/{segment['id']}/add_user_ids", json={"user_ids": ["u"]})
    drain(app)
    assert "ingestions_filtered" not in completed(api, response)


# --- the library and the server's cache ---------------------------------------------------------


def test_library_calls_read_the_rules_now(db, account):
    ingestion_rules.replace(db, "acct1", {"event_names": ["x"]})
    assert events.track(db, "acct1", "u", {"name": "x", "timestamp": STAMP}) is False
    assert events.track(db, "acct1", "u", {"name": "y", "timestamp": STAMP}) is True
    assert names_stored(db) == ["y"]


def test_a_save_bumps_the_version(db, account):
    from opencues.storage.schema import ingestion_rules as table

    ingestion_rules.replace(db, "acct1", {})
    ingestion_rules.replace(db, "acct1", {"mode": "allow"})
    with db.connect() as conn:
        assert conn.execute(select(table.c.version).where(table.c.account_id == "acct1")).scalar_one() == 2


def test_another_process_sees_a_change_once_its_cache_entry_expires(db, account, settings):
    cache = ingestion_rules.RulesCache(ttl=0.2)
    assert cache.rules(db, "acct1").keeps_event("x")
    elsewhere = Database(settings.resolved_database_url)  # another server process, in effect
    try:
        ingestion_rules.replace(elsewhere, "acct1", {"event_names": ["x"]})
    finally:
        elsewhere.dispose()
    assert cache.rules(db, "acct1").keeps_event("x")  # still cached
    time.sleep(0.25)
    assert not cache.rules(db, "acct1").keeps_event("x")


def test_the_saving_process_applies_new_rules_at_once(api, db):
    api.post("users/u/events", json={"name": "x", "timestamp": STAMP})  # caches the empty rules
    api.post("ingestion_filtering_rules", json={"event_names": ["x"]})
    api.post("users/u/events", json={"name": "x", "timestamp": STAMP})
    assert names_stored(db) == ["x"]


def test_rules_compile_for_membership_tests():
    rules = ingestion_rules.compile_rules({"mode": "deny", "event_names": [f"e{i}" for i in range(50)]})
    assert not rules.keeps_event("e7") and rules.keeps_event("e50") and rules.keeps_event("appcues:e7")
    assert rules.filter_profile({"a": 1}) == ({"a": 1}, 0)
    allow = ingestion_rules.compile_rules({"mode": "allow", "profile_attributes": ["a"]})
    assert allow.filter_profile({"a": 1, "b": 2, "c": 3}) == ({"a": 1}, 2)
