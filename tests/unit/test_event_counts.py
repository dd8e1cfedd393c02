"""Every writer of events keeps ``events.flow_id`` and the hourly counts by name
(``opencues.event_counts``) exact: what they hold equals a recount of the stored events.
Imports are checked in ``test_imports.py``."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import event as sqlalchemy_event
from sqlalchemy import select

from opencues import analytics, control, event_counts, events, snapshots
from opencues.storage import Database
from opencues.storage.schema import event_name_hours
from opencues.storage.schema import events as events_table
from tests.conftest import make_account

STAMP = "2026-03-01T10:15:00Z"


def counts(db) -> list[tuple]:
    with db.connect() as conn:
        return sorted(conn.execute(select(event_name_hours.c.account_id, event_name_hours.c.name, event_name_hours.c.hour,
                                          event_name_hours.c.events)).all())  # fmt: skip


def recounted(db) -> list[tuple]:
    """What a rebuild from the stored events gives (rolled back: the table keeps what writers wrote)."""
    with db.connect() as conn:
        event_counts.rebuild(conn)
        rows = sorted(conn.execute(select(event_name_hours.c.account_id, event_name_hours.c.name, event_name_hours.c.hour,
                                          event_name_hours.c.events)).all())  # fmt: skip
        conn.rollback()
    return rows


def flow_ids(db) -> list:
    with db.connect() as conn:
        return conn.execute(select(events_table.c.flow_id).order_by(events_table.c.id)).scalars().all()


def test_track_and_insert_event_keep_flow_id_and_counts(db):
    events.track(db, "a1", "u1", {"name": "seen", "timestamp": STAMP, "attributes": {"flowId": "f1"}})
    events.track(db, "a1", "u2", {"name": "seen", "timestamp": "2026-03-01T10:59:59.999Z", "attributes": {"flowId": 3}})
    events.track(db, "a1", "u2", {"name": "seen", "timestamp": "2026-03-01T11:00:00Z"})
    events.track(db, "a2", "u1", {"name": "other", "timestamp": STAMP, "attributes": {"flowId": {"no": "object"}}})
    with db.begin() as conn:
        events.insert_event(conn, "a1", "u3", "seen", 1772360100000, {"flowId": True})

    async def grouped():
        await asyncio.gather(*(events.track_grouped(db, "a1", f"g{i}", {"name": "grouped", "timestamp": STAMP,
                                                                      "attributes": {"flowId": "f2"}}) for i in range(5)))  # fmt: skip

    asyncio.run(grouped())
    db.direct.dispose()
    assert flow_ids(db) == ["f1", "3", None, None, "true"] + ["f2"] * 5
    hour = 1772360100000 // 3_600_000
    assert counts(db) == recounted(db) == [("a1", "grouped", hour, 5), ("a1", "seen", hour, 3), ("a1", "seen", hour + 1, 1),
                                           ("a2", "other", hour, 1)]  # fmt: skip
    spec = analytics.parse_spec({"metrics": ["events"], "dimensions": ["name"], "conditions": [["flow_id", "in", ["f1", "f2"]]],
                                 "start_time": "2026-03-01", "end_time": "2026-03-02"})  # fmt: skip
    assert analytics.run_query(db, "a1", spec).rows == [{"name": "grouped", "events": 5}, {"name": "seen", "events": 1}]


def test_a_snapshot_load_refills_flow_id_and_the_counts(db):
    make_account(db, "a1")
    make_account(db, "a2")
    events.track(db, "a1", "u1", {"name": "seen", "timestamp": STAMP, "attributes": {"flowId": "f1"}})
    events.track(db, "a2", "u1", {"name": "kept", "timestamp": STAMP})
    with db.connect() as conn:
        document = snapshots.dump(conn, "a1")
    assert "event_name_hours" not in document["tables"] and "flow_id" not in document["tables"]["events"]["columns"]
    with db.begin() as conn:
        snapshots.load(conn, document)
        snapshots.load(conn, document)  # loading again replaces the account's data, counts included
    assert flow_ids(db)[-1] == "f1"
    assert counts(db) == recounted(db) and [c[0] for c in counts(db)] == ["a1", "a2"]
    with db.begin() as conn:
        snapshots.load(conn, document, replace_all=True)
    assert counts(db) == recounted(db) and [c[0] for c in counts(db)] == ["a1"]


@pytest.mark.parametrize("backend", ["postgres"], indirect=True)  # SQLite's write lock keeps the track out
@pytest.mark.parametrize("reset", ["account", "everything"])
def test_a_track_committed_at_any_point_of_a_reset_keeps_counts_and_events_together(db, settings, reset):
    """A track from another process commits just before each statement of the reset's transaction
    in turn (a new name and hour: it waits for no lock the reset holds); afterwards the counts
    still equal a recount of the events. Deleting the counts and the events in two statements
    failed this: a track committed between them lost its event and kept its count."""
    make_account(db, "a1")
    elsewhere = Database(settings.resolved_database_url)
    state = {"statement": 0, "inject_at": 0, "injected": False}

    def before_statement(conn, cursor, statement, parameters, context, executemany):
        if state["statement"] == state["inject_at"] and not state["injected"]:
            state["injected"] = True
            late = {"name": f"late{state['inject_at']}", "timestamp": f"2026-05-{1 + state['inject_at']:02d}T00:00:00Z"}
            events.track(elsewhere, "a1", "late", late)
        state["statement"] += 1

    try:
        while True:
            events.track(db, "a1", "u1", {"name": "seen", "timestamp": STAMP})
            events.track(db, "a1", "u2", {"name": "seen", "timestamp": STAMP})
            state.update(statement=0, injected=False)
            sqlalchemy_event.listen(db.engine, "before_cursor_execute", before_statement)
            try:
                if reset == "account":
                    control.reset_account(db, "a1")
                else:
                    control.reset(db)
            finally:
                sqlalchemy_event.remove(db.engine, "before_cursor_execute", before_statement)
            assert counts(db) == recounted(db), f"a track committed before statement {state['inject_at']}"
            if not state["injected"]:  # past the reset's last statement
                break
            state["inject_at"] += 1
            control.reset(db)
            make_account(db, "a1")
    finally:
        elsewhere.dispose()
    assert state["inject_at"] >= 4  # the reset's statements were each tried
