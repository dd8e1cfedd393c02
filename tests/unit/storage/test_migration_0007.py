"""Migration 0007 fills ``events.flow_id`` from the stored attributes (as the writers fill it for
new events) and the hourly counts by name from the stored events. SQLite and PostgreSQL."""

from __future__ import annotations

from sqlalchemy import select

from opencues import analytics, event_counts, events
from opencues.storage.migrations import downgrade, upgrade
from opencues.storage.schema import event_name_hours
from opencues.storage.schema import events as events_table
from tests.unit.storage.test_migrations import _diffs, empty_db  # noqa: F401 - the fixture

OLD = [  # (name, timestamp, attributes JSON) as the previous release stored them
    ("a", 5, '{"flowId": "f1"}'),
    ("a", 3_600_000 * 2 + 1, '{"flowId": 7}'),
    ("b", -1_800_000, '{"flowId": true}'),  # before 1970: in the hour below zero
    ("b", 10, '{"flowId": null, "k": 1}'),
    ("b", 11, '{"k": {"flowId": "nested"}}'),
    ("c", 12, '{"flowId": {"id": 1}}'),
]


def test_flow_ids_and_hourly_counts_are_filled_in_place(empty_db):  # noqa: F811
    upgrade(empty_db, "0006")
    with empty_db.begin() as conn:
        conn.exec_driver_sql("INSERT INTO accounts (id, name, created_at) VALUES ('a1', 'A', 1)")
        for name, stamp, attributes in OLD:
            conn.exec_driver_sql(
                "INSERT INTO events (account_id, user_id, name, timestamp, attributes) "
                f"VALUES ('a1', 'u1', '{name}', {stamp}, '{attributes}')"
            )
    upgrade(empty_db)
    assert _diffs(empty_db) == []
    with empty_db.connect() as conn:
        stored = conn.execute(select(events_table.c.flow_id).order_by(events_table.c.id)).scalars().all()
        counts = sorted(conn.execute(select(event_name_hours.c.name, event_name_hours.c.hour, event_name_hours.c.events)).all())
    import orjson

    assert stored == [events.flow_id_of(orjson.loads(a)) for _, _, a in OLD] == ["f1", "7", "true", None, None, None]
    assert counts == [("a", 0, 1), ("a", 2, 1), ("b", -1, 1), ("b", 0, 2), ("c", 0, 1)]
    # the analytics read both at once
    spec = {"metrics": ["events"], "dimensions": ["flow_id"], "start_time": "1969-12-31", "end_time": "1970-01-02"}
    assert analytics.run_query(empty_db, "a1", analytics.parse_spec(spec)).rows == [
        {"flow_id": "", "events": 3}, {"flow_id": "7", "events": 1}, {"flow_id": "f1", "events": 1},
        {"flow_id": "true", "events": 1}]  # fmt: skip
    by_name = {"metrics": ["events"], "dimensions": ["name"], "start_time": "1969-12-31", "end_time": "1970-01-02"}
    assert analytics.run_query(empty_db, "a1", analytics.parse_spec(by_name)).rows == [
        {"name": "a", "events": 2}, {"name": "b", "events": 3}, {"name": "c", "events": 1}]  # fmt: skip


def test_0007_goes_down_to_0006_and_up_again(empty_db):  # noqa: F811
    upgrade(empty_db)
    events.track(empty_db, "a1", "u1", {"name": "e", "timestamp": "2026-01-01T00:00:00Z", "attributes": {"flowId": "f"}})
    downgrade(empty_db, "0006")
    upgrade(empty_db)
    assert _diffs(empty_db) == []
    with empty_db.connect() as conn:
        assert conn.execute(select(events_table.c.flow_id)).scalars().all() == ["f"]
        assert conn.execute(select(event_name_hours.c.events)).scalars().all() == [1]
        event_counts.rebuild(conn)
        assert conn.execute(select(event_name_hours.c.events)).scalars().all() == [1]
