"""Migration 0004 upgrades a database holding data in place: the existing rows stay as they were
and the new features (event group/context, groups, ingestion rules, ``ingestions_filtered``)
work on them at once. SQLite and PostgreSQL."""

from __future__ import annotations

from opencues import events, groups, ingestion_rules, jobs, profiles
from opencues.storage.migrations import downgrade, upgrade
from tests.unit.storage.test_migrations import _diffs, empty_db  # noqa: F401 - the fixture

STAMP = "2021-08-11T00:00:00Z"


def test_a_database_with_data_upgrades_in_place(empty_db):  # noqa: F811
    upgrade(empty_db, "0002")
    with empty_db.begin() as conn:  # written by the previous release, in its own columns
        conn.exec_driver_sql("INSERT INTO accounts (id, name, created_at) VALUES ('a1', 'A', 1)")
        conn.exec_driver_sql(
            "INSERT INTO events (account_id, user_id, name, timestamp, attributes) VALUES ('a1', 'u1', 'old', 5, '{\"k\": 1}')"
        )
        conn.exec_driver_sql(
            "INSERT INTO profiles (account_id, user_id, attributes, created_at, updated_at) VALUES ('a1', 'u1', '{\"plan\": \"pro\"}', 1, 1)"
        )
        conn.exec_driver_sql(
            "INSERT INTO jobs (id, account_id, kind, name, status, started_at, updated_at, params, rows_done, "
            "ingestions_completed, ingestions_failed, requests_failed, row_errors, runtime_ms, attempts) "
            "VALUES ('j1', 'a1', 'import_events', 'Import Events', 'COMPLETED', 1, 1, '{}', 3, 3, 0, 0, '[]', 7, 1)"
        )
    upgrade(empty_db)
    assert _diffs(empty_db) == []
    assert events.history(empty_db, "a1", "u1") == [
        {"user_id": "u1", "timestamp": "1970-01-01T00:00:00.005Z", "name": "old", "attributes": {"k": 1}}]  # fmt: skip
    assert profiles.get_profile(empty_db, "a1", "u1") == {"plan": "pro"}
    with empty_db.connect() as conn:
        assert jobs.load_job(conn, "j1").ingestions_filtered == 0
    events.track(empty_db, "a1", "u1", {"name": "new", "timestamp": STAMP, "group_id": "g1", "context": {"ip": "1"}})
    assert events.history(empty_db, "a1", "u1")[0]["group_id"] == "g1"
    groups.add_users(empty_db, "a1", "g1", {"user_ids": ["u1"]})
    assert groups.group_of(empty_db, "a1", "u1") == "g1"
    assert profiles.get_profile(empty_db, "a1", "u1") == {"plan": "pro"}
    ingestion_rules.replace(empty_db, "a1", {"event_names": ["noise"]})
    assert events.track(empty_db, "a1", "u1", {"name": "noise", "timestamp": STAMP}) is False


def test_0004_goes_down_to_0002_and_up_again(empty_db):  # noqa: F811
    upgrade(empty_db)
    events.track(empty_db, "a1", "u1", {"name": "e", "timestamp": STAMP, "group_id": "g"})
    downgrade(empty_db, "0002")
    upgrade(empty_db)
    assert _diffs(empty_db) == []
    assert [e["name"] for e in events.history(empty_db, "a1", "u1")] == ["e"]
